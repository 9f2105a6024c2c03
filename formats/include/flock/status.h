/*
 * flock/status.h - status values and error messages of every flock function
 * (public: installed with flock.h), and FLOCK_API, the mark of an exported
 * function. The internal base of the libraries (storage types, conversions,
 * the kept-neuron count, file mappings) is flock/base.h.
 *
 * Conventions for the whole project:
 *  - functions that can fail return flock_status and, when `err` is non-NULL,
 *    fill it with a message naming what is wrong (offset, key, tensor, expected
 *    vs found); `err` may be NULL everywhere, and the status is the same with
 *    or without it;
 *  - on failure `*out` is left untouched;
 *  - every *_free / *_close accepts NULL.
 */
#ifndef FLOCK_STATUS_H
#define FLOCK_STATUS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A function of the public API: exported from libflock.so. libflock is
 * built with -fvisibility=hidden, so nothing else is. */
#if defined(__GNUC__) || defined(__clang__)
#define FLOCK_API __attribute__((visibility("default")))
#else
#define FLOCK_API
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* ======================================================================== */
/* Status and errors                                                        */
/* ======================================================================== */

/* Only grows at the end (values are part of the ABI). */
typedef enum flock_status {
    FLOCK_OK = 0,
    FLOCK_E_INVALID_ARG, /* bad argument: NULL, out of range, unknown flag value */
    FLOCK_E_IO,          /* open, read, write or mmap failed */
    FLOCK_E_NOMEM,       /* allocation failed */
    FLOCK_E_TRUNCATED,   /* input ends before a structure it declares */
    FLOCK_E_CORRUPT,     /* a field holds an impossible value */
    FLOCK_E_CHECKSUM,    /* a checksum does not match */
    FLOCK_E_VERSION,     /* a newer, unsupported format version */
    FLOCK_E_UNSUPPORTED, /* well-formed but not supported (architecture, dtype, quant type) */
    FLOCK_E_NOT_FOUND,   /* a key, tensor or section is absent */
    FLOCK_E_TYPE,        /* a key exists but holds another type */
    FLOCK_E_RANGE,       /* beyond a limit, e.g. a prompt longer than the context */
    FLOCK_E_DEVICE,      /* GPU driver or runtime failure */
    FLOCK_E_INTERNAL,    /* a bug in flock */
    FLOCK_STATUS_COUNT
} flock_status;

/* A short constant name for a status ("truncated input", ...). Never NULL. */
FLOCK_API const char *flock_status_str(flock_status s);

/* Detailed error, filled by the function that failed. */
typedef struct flock_error {
    flock_status status;
    char msg[512];
} flock_error;

#ifdef __cplusplus
}
#endif
#endif /* FLOCK_STATUS_H */
