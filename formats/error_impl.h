/* Private: how every flock library returns and forwards errors, in the
 * spirit of zstd's RETURN_ERROR_IF / FORWARD_IF_ERROR (lib/common/error_private.h).
 * The other libraries see it through the flock_internal CMake target.
 *
 * A function that fails returns a flock_status and, when the caller passed
 * an error buffer, leaves a message there. The status depends on the input
 * alone, never on whether `err` is NULL: every macro here takes the status
 * (or the callee's) and returns it; without a buffer the message is simply
 * not kept. So code never reads err->status to learn what went wrong. */
#ifndef FLOCK_FORMATS_ERROR_IMPL_H
#define FLOCK_FORMATS_ERROR_IMPL_H

#include "flock/formats.h"

/* Returns `status` from the enclosing function, with a printf-style message
 * in `err` (which may be NULL). */
#define RETURN_ERROR(status, err, ...) return flock_error_set((err), (status), __VA_ARGS__)

/* The same, when `cond` holds. */
#define RETURN_ERROR_IF(cond, status, err, ...)                                                                \
    do {                                                                                                       \
        if (cond)                                                                                              \
            RETURN_ERROR(status, err, __VA_ARGS__);                                                            \
    } while (0)

/* Evaluates `expr` (a flock_status) once and returns it when it is not
 * FLOCK_OK: the callee has written the message already. */
#define TRY(expr)                                                                                              \
    do {                                                                                                       \
        const flock_status try_st_ = (expr);                                                                   \
        if (try_st_ != FLOCK_OK)                                                                               \
            return try_st_;                                                                                    \
    } while (0)

/* TRY, with context: a failing status is returned after the callee's message
 * is prefixed with a printf-style one ("tensor 'x': <callee's message>"). */
#define FORWARD_IF_ERROR(expr, err, ...)                                                                       \
    do {                                                                                                       \
        const flock_status fwd_st_ = (expr);                                                                   \
        if (fwd_st_ != FLOCK_OK)                                                                               \
            return flock_error_prefix((err), fwd_st_, __VA_ARGS__);                                            \
    } while (0)

#endif
