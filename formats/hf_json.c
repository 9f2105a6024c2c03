/* JSON parsing through json-c with located error messages. */
#include "hf_json.h"

#include <limits.h>
#include <string.h>

/* 1-based line and column of byte `pos` in `text`, for messages. */
static void line_col(const char *text, size_t pos, size_t *line, size_t *col)
{
    size_t l = 1, c = 1;
    for (size_t i = 0; i < pos; i++) {
        if (text[i] == '\n') {
            l++;
            c = 1;
        } else {
            c++;
        }
    }
    *line = l;
    *col = c;
}

static bool is_json_ws(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

flock_status flock_json_parse(const char *text, size_t len, bool strict, const char *what,
                              struct json_object **out, flock_error *err)
{
    if ((!text && len) || !what || !out)
        return flock_error_set(err, FLOCK_E_INVALID_ARG, "flock_json_parse: NULL argument");
    /* json_tokener_parse_ex takes an int length. */
    if (len > (size_t)INT_MAX - 1)
        return flock_error_set(err, FLOCK_E_RANGE, "%s: %zu bytes of JSON is more than the %d supported",
                               what, len, INT_MAX - 1);
    /* json-c's handling of NUL bytes inside the text is not part of its
     * documented contract, so they never reach it. */
    const char *nul = len ? memchr(text, '\0', len) : NULL;
    if (nul) {
        size_t line, col, pos = (size_t)(nul - text);
        line_col(text, pos, &line, &col);
        return flock_error_set(err, FLOCK_E_CORRUPT, "%s: NUL byte in JSON text at offset %zu (line %zu, column %zu)",
                               what, pos, line, col);
    }
    json_tokener *tok = json_tokener_new_ex(64);
    if (!tok)
        return flock_error_set(err, FLOCK_E_NOMEM, "%s: cannot allocate a JSON tokener", what);
    json_tokener_set_flags(tok, strict ? JSON_TOKENER_STRICT | JSON_TOKENER_VALIDATE_UTF8 : 0);
    struct json_object *obj = json_tokener_parse_ex(tok, text ? text : "", (int)len);
    enum json_tokener_error jerr = json_tokener_get_error(tok);
    size_t end = json_tokener_get_parse_end(tok);
    json_tokener_free(tok);
    if (end > len)
        end = len;

    if (!obj || jerr != json_tokener_success) {
        json_object_put(obj);
        size_t line, col;
        line_col(text ? text : "", end, &line, &col);
        const char *desc = jerr == json_tokener_continue ? "unexpected end of input"
                                                        : json_tokener_error_desc(jerr);
        return flock_error_set(err, jerr == json_tokener_continue ? FLOCK_E_TRUNCATED : FLOCK_E_CORRUPT,
                               "%s: invalid JSON at offset %zu (line %zu, column %zu): %s", what, end,
                               line, col, desc);
    }
    for (size_t i = end; i < len; i++) {
        if (!is_json_ws(text[i])) {
            json_object_put(obj);
            size_t line, col;
            line_col(text, i, &line, &col);
            return flock_error_set(err, FLOCK_E_CORRUPT,
                                   "%s: unexpected data after the JSON value at offset %zu (line %zu, column %zu)",
                                   what, i, line, col);
        }
    }
    *out = obj;
    return FLOCK_OK;
}

const char *flock_json_type_word(const struct json_object *o)
{
    switch (json_object_get_type(o)) {
    case json_type_null: return "null";
    case json_type_boolean: return "a boolean";
    case json_type_double: return "a floating-point number";
    case json_type_int: return "an integer";
    case json_type_object: return "an object";
    case json_type_array: return "an array";
    case json_type_string: return "a string";
    }
    return "an unknown JSON type";
}
