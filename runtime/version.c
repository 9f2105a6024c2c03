/* The version of the library loaded (flock/version.h holds the headers'). */
#include "flock/flock.h"
#include "flock/version.h"

const char *flock_version(void)
{
    return FLOCK_VERSION_STRING;
}

int flock_version_number(void)
{
    return FLOCK_VERSION_NUMBER;
}
