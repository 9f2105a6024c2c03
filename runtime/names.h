/* Private: the name tables behind the public enum <-> string functions
 * (flock_device_parse, flock_select_mode_parse, flock_kernel_choice_parse,
 * flock_kv_type_parse). */
#ifndef FLOCK_RUNTIME_NAMES_H
#define FLOCK_RUNTIME_NAMES_H

#include <string.h>

/* The index of s in names[0..n), or -1 (also for s NULL). */
static inline int flock_name_index(const char *const *names, int n, const char *s)
{
    for (int i = 0; s && i < n; i++)
        if (strcmp(s, names[i]) == 0)
            return i;
    return -1;
}

#endif
