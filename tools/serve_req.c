/* Parsing OpenAI-style request bodies with json-c, and writing the JSON
 * responses (serve_req.h). */
#include "serve_req.h"

#include "flock_cli.h"

#include <json-c/json.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

bool serve_err_set(serve_err *e, int status, const char *type, const char *param, const char *code,
                   const char *fmt, ...)
{
    e->status = status;
    e->type = type;
    snprintf(e->param, sizeof e->param, "%s", param ? param : "");
    snprintf(e->code, sizeof e->code, "%s", code ? code : "");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
    return false;
}

static bool bad(serve_err *e, const char *param, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static bool bad(serve_err *e, const char *param, const char *fmt, ...)
{
    char msg[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return serve_err_set(e, 400, "invalid_request_error", param, NULL, "%s", msg);
}

void serve_req_free(serve_req *r)
{
    if (!r)
        return;
    free(r->model);
    for (size_t i = 0; i < r->n_msgs; i++) {
        free((char *)r->msgs[i].role);
        free((char *)r->msgs[i].content);
    }
    free(r->msgs);
    free(r->prompt);
    for (size_t i = 0; i < r->n_stops; i++)
        free(r->stops[i]);
    memset(r, 0, sizeof *r);
}

/* A string copy that refuses embedded NULs (they would cut the text short). */
static bool dup_str(json_object *v, const char *param, char **out, serve_err *e)
{
    if (!json_object_is_type(v, json_type_string))
        return bad(e, param, "'%s' must be a string", param);
    size_t n = (size_t)json_object_get_string_len(v);
    const char *s = json_object_get_string(v);
    if (memchr(s, 0, n))
        return bad(e, param, "'%s' holds a NUL character", param);
    if (!(*out = strdup(s)))
        return serve_err_set(e, 500, "server_error", NULL, NULL, "out of memory");
    return true;
}

static bool get_number(json_object *v, const char *param, double lo, double hi, double *out, serve_err *e)
{
    if (!json_object_is_type(v, json_type_double) && !json_object_is_type(v, json_type_int))
        return bad(e, param, "'%s' must be a number", param);
    double d = json_object_get_double(v);
    if (!(d >= lo && d <= hi))
        return bad(e, param, "'%s' is %g: it must be in [%g, %g]", param, d, lo, hi);
    *out = d;
    return true;
}

static bool get_int(json_object *v, const char *param, long long lo, long long hi, long long *out, serve_err *e)
{
    if (json_object_is_type(v, json_type_double)) {
        double d = json_object_get_double(v);
        if (!(d == floor(d) && d >= (double)lo && d <= (double)hi))
            return bad(e, param, "'%s' must be an integer in [%lld, %lld]", param, lo, hi);
        *out = (long long)d;
        return true;
    }
    if (!json_object_is_type(v, json_type_int))
        return bad(e, param, "'%s' must be an integer", param);
    int64_t i = json_object_get_int64(v);
    if (i < lo || i > hi)
        return bad(e, param, "'%s' is %lld: it must be in [%lld, %lld]", param, (long long)i, lo, hi);
    *out = i;
    return true;
}

static bool get_bool(json_object *v, const char *param, bool *out, serve_err *e)
{
    if (!json_object_is_type(v, json_type_boolean))
        return bad(e, param, "'%s' must be true or false", param);
    *out = json_object_get_boolean(v);
    return true;
}

/* A message's content: a string, or an array of {"type": "text", "text": ...} parts joined. */
static bool get_content(json_object *v, char **out, serve_err *e)
{
    if (json_object_is_type(v, json_type_string))
        return dup_str(v, "messages.content", out, e);
    if (json_object_is_type(v, json_type_null)) {
        *out = strdup("");
        return *out ? true : serve_err_set(e, 500, "server_error", NULL, NULL, "out of memory");
    }
    if (!json_object_is_type(v, json_type_array))
        return bad(e, "messages", "a message's 'content' must be a string or an array of text parts");
    size_t n = json_object_array_length(v), total = 1;
    for (size_t i = 0; i < n; i++) {
        json_object *p = json_object_array_get_idx(v, i), *type, *text;
        if (!json_object_is_type(p, json_type_object) || !json_object_object_get_ex(p, "type", &type) ||
            !json_object_is_type(type, json_type_string) || strcmp(json_object_get_string(type), "text") != 0 ||
            !json_object_object_get_ex(p, "text", &text) || !json_object_is_type(text, json_type_string))
            return bad(e, "messages", "content part %zu is not {\"type\": \"text\", \"text\": ...} (only text is "
                       "supported)", i);
        total += (size_t)json_object_get_string_len(text);
    }
    char *s = malloc(total);
    if (!s)
        return serve_err_set(e, 500, "server_error", NULL, NULL, "out of memory");
    size_t len = 0;
    for (size_t i = 0; i < n; i++) {
        json_object *text;
        json_object_object_get_ex(json_object_array_get_idx(v, i), "text", &text);
        size_t l = (size_t)json_object_get_string_len(text);
        memcpy(s + len, json_object_get_string(text), l);
        len += l;
    }
    s[len] = 0;
    if (strlen(s) != len) {
        free(s);
        return bad(e, "messages", "a message's content holds a NUL character");
    }
    *out = s;
    return true;
}

static bool get_messages(json_object *v, serve_req *r, serve_err *e)
{
    if (!json_object_is_type(v, json_type_array))
        return bad(e, "messages", "'messages' must be an array of {\"role\", \"content\"} objects");
    size_t n = json_object_array_length(v);
    if (n == 0)
        return bad(e, "messages", "'messages' is empty");
    if (n > SERVE_MAX_MESSAGES)
        return bad(e, "messages", "'messages' holds %zu messages; at most %d are taken", n, SERVE_MAX_MESSAGES);
    if (!(r->msgs = calloc(n, sizeof *r->msgs)))
        return serve_err_set(e, 500, "server_error", NULL, NULL, "out of memory");
    for (size_t i = 0; i < n; i++) {
        json_object *m = json_object_array_get_idx(v, i), *role, *content;
        if (!json_object_is_type(m, json_type_object))
            return bad(e, "messages", "message %zu is not an object", i);
        if (!json_object_object_get_ex(m, "role", &role))
            return bad(e, "messages", "message %zu has no 'role'", i);
        char *rs = NULL;
        if (!dup_str(role, "messages.role", &rs, e))
            return false;
        r->msgs[i].role = rs;
        r->n_msgs = i + 1;
        if (strcmp(rs, "system") && strcmp(rs, "user") && strcmp(rs, "assistant") && strcmp(rs, "developer"))
            return bad(e, "messages", "message %zu has role '%s' (system, developer, user or assistant)", i, rs);
        if (!json_object_object_get_ex(m, "content", &content))
            return bad(e, "messages", "message %zu has no 'content'", i);
        char *cs = NULL;
        if (!get_content(content, &cs, e))
            return false;
        r->msgs[i].content = cs;
    }
    return true;
}

static bool get_stops(json_object *v, serve_req *r, serve_err *e)
{
    if (json_object_is_type(v, json_type_null))
        return true;
    if (json_object_is_type(v, json_type_string)) {
        if (!dup_str(v, "stop", &r->stops[0], e))
            return false;
        r->n_stops = 1;
    } else if (json_object_is_type(v, json_type_array)) {
        size_t n = json_object_array_length(v);
        if (n > SERVE_MAX_STOPS)
            return bad(e, "stop", "'stop' holds %zu strings; at most %d", n, SERVE_MAX_STOPS);
        for (size_t i = 0; i < n; i++) {
            if (!dup_str(json_object_array_get_idx(v, i), "stop", &r->stops[i], e))
                return false;
            r->n_stops = i + 1;
        }
    } else {
        return bad(e, "stop", "'stop' must be a string or an array of strings");
    }
    for (size_t i = 0; i < r->n_stops; i++) {
        if (r->stops[i][0] == 0)
            return bad(e, "stop", "stop string %zu is empty", i);
        if (strlen(r->stops[i]) >= 4096)
            return bad(e, "stop", "stop string %zu is longer than 4095 bytes", i);
    }
    return true;
}

/* The fields that both endpoints take, and those a client may send that
 * are ignored (accepted so that standard clients work). */
static bool parse_fields(json_object *o, serve_req *r, serve_err *e)
{
    json_object_object_foreach(o, key, v)
    {
        double d = 0;
        long long ll;
        if (strcmp(key, "model") == 0) {
            if (!dup_str(v, "model", &r->model, e))
                return false;
        } else if (strcmp(key, "messages") == 0 && r->kind == SERVE_CHAT) {
            if (!get_messages(v, r, e))
                return false;
        } else if (strcmp(key, "prompt") == 0 && r->kind == SERVE_COMPLETION) {
            if (json_object_is_type(v, json_type_array)) {
                if (json_object_array_length(v) != 1)
                    return bad(e, "prompt", "'prompt' as an array must hold exactly one string");
                v = json_object_array_get_idx(v, 0);
            }
            if (!dup_str(v, "prompt", &r->prompt, e))
                return false;
        } else if (strcmp(key, "max_tokens") == 0 || strcmp(key, "max_completion_tokens") == 0) {
            if (json_object_is_type(v, json_type_null))
                continue;
            if (!get_int(v, key, 0, 1 << 24, &r->max_tokens, e))
                return false;
        } else if (strcmp(key, "temperature") == 0) {
            if (!json_object_is_type(v, json_type_null) && !get_number(v, key, 0, 2, &r->temperature, e))
                return false;
        } else if (strcmp(key, "top_p") == 0) {
            if (!json_object_is_type(v, json_type_null) && !get_number(v, key, 0, 1, &r->top_p, e))
                return false;
            if (r->top_p == 0)
                r->top_p = 1e-9; /* 0 means the single most likely token */
        } else if (strcmp(key, "seed") == 0) {
            if (json_object_is_type(v, json_type_null))
                continue;
            if (!get_int(v, key, 0, INT64_MAX, &ll, e))
                return false;
            r->has_seed = true;
            r->seed = (uint64_t)ll;
        } else if (strcmp(key, "n") == 0) {
            if (json_object_is_type(v, json_type_null))
                continue;
            if (!get_int(v, key, 1, 1 << 20, &ll, e))
                return false;
            if (ll != 1)
                return bad(e, "n", "'n' is %lld: this server makes one choice per request (n = 1)", ll);
        } else if (strcmp(key, "stop") == 0) {
            if (!get_stops(v, r, e))
                return false;
        } else if (strcmp(key, "stream") == 0) {
            if (!json_object_is_type(v, json_type_null) && !get_bool(v, key, &r->stream, e))
                return false;
        } else if (strcmp(key, "stream_options") == 0) {
            if (json_object_is_type(v, json_type_null))
                continue;
            json_object *u;
            if (!json_object_is_type(v, json_type_object))
                return bad(e, key, "'stream_options' must be an object");
            if (json_object_object_get_ex(v, "include_usage", &u) &&
                !get_bool(u, "stream_options.include_usage", &r->include_usage, e))
                return false;
        } else if (strcmp(key, "keep") == 0) {
            if (!get_number(v, key, 1e-9, 1, &d, e))
                return false;
            r->has_keep = true;
            r->keep = d;
        } else if (strcmp(key, "select") == 0) {
            if (!json_object_is_type(v, json_type_string) ||
                flock_select_mode_parse(json_object_get_string(v), &r->select) != FLOCK_OK)
                return bad(e, key, "'select' must be \"griffin\", \"magnitude\" or \"random\"");
            r->has_select = true;
        } else if (strcmp(key, "frequency_penalty") == 0 || strcmp(key, "presence_penalty") == 0) {
            if (json_object_is_type(v, json_type_null))
                continue;
            if (!get_number(v, key, -2, 2, &d, e))
                return false;
            if (d != 0)
                return bad(e, key, "'%s' other than 0 is not supported", key);
        } else if (strcmp(key, "logprobs") == 0 || strcmp(key, "top_logprobs") == 0 ||
                   strcmp(key, "tools") == 0 || strcmp(key, "tool_choice") == 0 ||
                   strcmp(key, "response_format") == 0) {
            if (!json_object_is_type(v, json_type_null) &&
                !(json_object_is_type(v, json_type_boolean) && !json_object_get_boolean(v)))
                return bad(e, key, "'%s' is not supported by this server", key);
        }
        /* other fields (user, metadata, logit_bias {} ...) are accepted and ignored */
    }
    return true;
}

bool serve_req_parse(serve_kind kind, const char *body, size_t len, serve_req *r, serve_err *e)
{
    memset(r, 0, sizeof *r);
    r->kind = kind;
    r->max_tokens = -1;
    r->temperature = 1.0;
    r->top_p = 1.0;
    r->keep = 1.0;
    if (len > (size_t)INT32_MAX)
        return bad(e, NULL, "the body is too large");
    json_tokener *tok = json_tokener_new_ex(32);
    if (!tok)
        return serve_err_set(e, 500, "server_error", NULL, NULL, "out of memory");
    json_object *o = json_tokener_parse_ex(tok, body, (int)len);
    enum json_tokener_error jerr = json_tokener_get_error(tok);
    size_t used = json_tokener_get_parse_end(tok);
    json_tokener_free(tok);
    bool ok = false;
    if (!o || jerr != json_tokener_success) {
        bad(e, NULL, "the body is not valid JSON: %s at byte %zu",
            jerr == json_tokener_continue ? "it ends early" : json_tokener_error_desc(jerr), used);
    } else {
        while (used < len && (body[used] == ' ' || body[used] == '\n' || body[used] == '\r' || body[used] == '\t'))
            used++;
        if (used < len)
            bad(e, NULL, "the body holds more than one JSON value (extra bytes at %zu)", used);
        else if (!json_object_is_type(o, json_type_object))
            bad(e, NULL, "the body must be a JSON object");
        else if (parse_fields(o, r, e)) {
            if (kind == SERVE_CHAT && r->n_msgs == 0)
                bad(e, "messages", "'messages' is required");
            else if (kind == SERVE_COMPLETION && !r->prompt)
                bad(e, "prompt", "'prompt' is required");
            else
                ok = true;
        }
    }
    json_object_put(o);
    if (!ok)
        serve_req_free(r);
    return ok;
}

bool serve_mem_open(serve_mem *m)
{
    m->buf = NULL;
    m->len = 0;
    m->f = open_memstream(&m->buf, &m->len);
    return m->f != NULL;
}

char *serve_mem_close(serve_mem *m)
{
    bool err = ferror(m->f) != 0;
    if (fclose(m->f) != 0 || err) {
        free(m->buf);
        return NULL;
    }
    return m->buf;
}

void serve_json_str(FILE *f, const char *s)
{
    flock_cli_json_str(f, s);
}

static void str_or_null(FILE *f, const char *s)
{
    if (s && s[0])
        flock_cli_json_str(f, s);
    else
        fputs("null", f);
}

char *serve_err_json(const serve_err *e)
{
    serve_mem m;
    if (!serve_mem_open(&m))
        return NULL;
    fputs("{\"error\":{\"message\":", m.f);
    flock_cli_json_str(m.f, e->message);
    fputs(",\"type\":", m.f);
    flock_cli_json_str(m.f, e->type ? e->type : "invalid_request_error");
    fputs(",\"param\":", m.f);
    str_or_null(m.f, e->param);
    fputs(",\"code\":", m.f);
    str_or_null(m.f, e->code);
    fputs("}}", m.f);
    return serve_mem_close(&m);
}

static void usage(FILE *f, const serve_result *res)
{
    fprintf(f, "\"usage\":{\"prompt_tokens\":%zu,\"completion_tokens\":%zu,\"total_tokens\":%zu}", res->prompt_tokens,
            res->completion_tokens, res->prompt_tokens + res->completion_tokens);
}

/* flock's own block: which experts setting ran, and how fast. */
static void flock_fields(FILE *f, const serve_result *res)
{
    fprintf(f, "\"flock\":{\"keep\":%g,\"select\":", res->keep);
    flock_cli_json_str(f, res->select);
    fputs(",\"prefill_tok_s\":", f);
    flock_cli_json_double(f, res->prefill_tok_s);
    fputs(",\"decode_tok_s\":", f);
    flock_cli_json_double(f, res->decode_tok_s);
    fputc('}', f);
}

static void head(FILE *f, const serve_result *res, const char *object)
{
    fputs("{\"id\":", f);
    flock_cli_json_str(f, res->id);
    fprintf(f, ",\"object\":\"%s\",\"created\":%lld,\"model\":", object, res->created);
    flock_cli_json_str(f, res->model);
    fputc(',', f);
}

char *serve_completion_json(serve_kind kind, const serve_result *res, const char *text, size_t n)
{
    serve_mem m;
    if (!serve_mem_open(&m))
        return NULL;
    head(m.f, res, kind == SERVE_CHAT ? "chat.completion" : "text_completion");
    fputs("\"choices\":[{\"index\":0,", m.f);
    if (kind == SERVE_CHAT) {
        fputs("\"message\":{\"role\":\"assistant\",\"content\":", m.f);
        flock_cli_json_strn(m.f, text, n);
        fputs("},", m.f);
    } else {
        fputs("\"text\":", m.f);
        flock_cli_json_strn(m.f, text, n);
        fputs(",\"logprobs\":null,", m.f);
    }
    fprintf(m.f, "\"finish_reason\":\"%s\"}],", res->finish);
    usage(m.f, res);
    fputc(',', m.f);
    flock_fields(m.f, res);
    fputc('}', m.f);
    return serve_mem_close(&m);
}

char *serve_chunk_json(serve_kind kind, const serve_result *res, const char *text, size_t n, bool first,
                       bool finish, bool usage_only)
{
    serve_mem m;
    if (!serve_mem_open(&m))
        return NULL;
    fputs("data: ", m.f);
    head(m.f, res, kind == SERVE_CHAT ? "chat.completion.chunk" : "text_completion");
    if (usage_only) {
        fputs("\"choices\":[],", m.f);
        usage(m.f, res);
        fputc(',', m.f);
        flock_fields(m.f, res);
    } else {
        fputs("\"choices\":[{\"index\":0,", m.f);
        if (kind == SERVE_CHAT) {
            fputs("\"delta\":{", m.f);
            if (first)
                fputs("\"role\":\"assistant\"", m.f);
            if (!finish) {
                fputs(first ? ",\"content\":" : "\"content\":", m.f);
                flock_cli_json_strn(m.f, text, n);
            }
            fputs("},", m.f);
        } else {
            fputs("\"text\":", m.f);
            flock_cli_json_strn(m.f, finish ? "" : text, finish ? 0 : n);
            fputs(",\"logprobs\":null,", m.f);
        }
        fputs("\"finish_reason\":", m.f);
        if (finish)
            fprintf(m.f, "\"%s\"", res->finish);
        else
            fputs("null", m.f);
        fputs("}]", m.f);
        if (finish) {
            fputc(',', m.f);
            flock_fields(m.f, res);
        }
    }
    fputs("}\n\n", m.f);
    return serve_mem_close(&m);
}
