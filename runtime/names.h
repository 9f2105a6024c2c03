/* Private: the name tables behind the public enum <-> string functions
 * (flock_device_parse, flock_select_mode_parse, flock_kernel_choice_parse,
 * flock_kv_type_parse and their _name twins). */
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

/* Defines NAME_FN(TYPE v), NAMES[v] or "?" outside [0, COUNT), and
 * PARSE_FN(const char *s, TYPE *out), FLOCK_E_INVALID_ARG for a name not in
 * NAMES (or NULL), the public pair of each enum. */
#define FLOCK_NAME_FUNCS(TYPE, NAMES, COUNT, NAME_FN, PARSE_FN)                                             \
    const char *NAME_FN(TYPE v)                                                                             \
    {                                                                                                       \
        return (unsigned)v < (unsigned)(COUNT) ? NAMES[v] : "?";                                            \
    }                                                                                                       \
    flock_status PARSE_FN(const char *s, TYPE *out)                                                         \
    {                                                                                                       \
        int i = flock_name_index(NAMES, (COUNT), s);                                                        \
        if (i < 0)                                                                                          \
            return FLOCK_E_INVALID_ARG;                                                                     \
        *out = (TYPE)i;                                                                                     \
        return FLOCK_OK;                                                                                    \
    }

#endif
