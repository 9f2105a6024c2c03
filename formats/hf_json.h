/* Private: JSON text -> json-c object, with errors that say where. Used by the
 * safetensors header parser and the Hugging Face folder reader. */
#ifndef FLOCK_FORMATS_HF_JSON_H
#define FLOCK_FORMATS_HF_JSON_H

#include "flock/formats.h"

#include <json-c/json.h>

/* Parses `len` bytes of `text` (need not be NUL-terminated) as one JSON value
 * followed only by whitespace. `strict` selects json-c's strict RFC 8259 mode
 * (no NaN/Infinity, no single quotes). A NUL byte anywhere is an error.
 * On failure the message names `what` and the byte offset, line and column
 * where json-c stopped, with json-c's own description. The caller owns *out
 * (json_object_put). */
flock_status flock_json_parse(const char *text, size_t len, bool strict, const char *what,
                              struct json_object **out, flock_error *err);

/* A JSON type as a word for messages ("an integer", "a string", ...). */
const char *flock_json_type_word(const struct json_object *o);

#endif
