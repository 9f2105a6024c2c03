/* Private to tools/: the requests `flock serve` takes (OpenAI's
 * /v1/chat/completions and /v1/completions bodies, plus flock's own `keep`
 * and `select`), parsed from JSON into plain values, and the JSON it writes
 * back (completions, stream chunks, OpenAI error objects). No HTTP and no
 * model here, so the parser can be fuzzed on its own (tests/fuzz). */
#ifndef FLOCK_TOOLS_SERVE_REQ_H
#define FLOCK_TOOLS_SERVE_REQ_H

#include "flock/flock.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define SERVE_MAX_STOPS 4      /* OpenAI's limit */
#define SERVE_MAX_MESSAGES 256 /* a bound on what one request may hold */

typedef enum { SERVE_CHAT, SERVE_COMPLETION } serve_kind;

typedef struct serve_req {
    serve_kind kind;
    char *model;                /* NULL when not given */
    flock_chat_message *msgs;   /* chat: role and content strings owned here */
    size_t n_msgs;
    char *prompt;               /* completion */
    long long max_tokens;       /* -1 when not given */
    double temperature;         /* OpenAI's default 1 */
    double top_p;               /* default 1 */
    bool has_seed;
    uint64_t seed;
    char *stops[SERVE_MAX_STOPS];
    size_t n_stops;
    bool stream, include_usage; /* stream_options.include_usage */
    bool has_keep;
    double keep;
    bool has_select;
    flock_select_mode select;
} serve_req;

/* An error as OpenAI's API returns it: HTTP status and the error object's
 * fields (param and code may be empty: written as null). */
typedef struct serve_err {
    int status;
    const char *type; /* "invalid_request_error", "not_found_error", ... */
    char param[64];
    char code[64];
    char message[512];
} serve_err;

/* Fills *e and returns false. */
bool serve_err_set(serve_err *e, int status, const char *type, const char *param, const char *code,
                   const char *fmt, ...) __attribute__((format(printf, 6, 7)));

/* Parses a request body of `kind` (`len` bytes, not NUL-terminated;
 * `max_depth` bounds nesting). On success fills *r (free with
 * serve_req_free) and returns true; otherwise *r is empty and *e says which
 * field is wrong, with status 400. */
bool serve_req_parse(serve_kind kind, const char *body, size_t len, serve_req *r, serve_err *e);
void serve_req_free(serve_req *r);

/* The error object, {"error": {"message", "type", "param", "code"}}, as a
 * malloc'd string (NULL when out of memory). */
char *serve_err_json(const serve_err *e);

/* What one finished (or streamed) completion reports. */
typedef struct serve_result {
    const char *id;      /* "chatcmpl-7" / "cmpl-7" */
    const char *model;
    long long created;   /* Unix time */
    const char *finish;  /* "stop" or "length" */
    size_t prompt_tokens, completion_tokens;
    double keep;
    const char *select;
    double prefill_tok_s, decode_tok_s;
} serve_result;

/* A whole response (`text`, `n` bytes; invalid UTF-8 becomes U+FFFD),
 * malloc'd. */
char *serve_completion_json(serve_kind kind, const serve_result *res, const char *text, size_t n);
/* One server-sent event of a stream ("data: {...}\n\n"), malloc'd:
 * a piece of text (first: also the assistant role, for chat), or with
 * `finish` set the last chunk (empty delta, finish_reason), or with
 * `usage_only` the usage chunk (empty choices) that stream_options asks for. */
char *serve_chunk_json(serve_kind kind, const serve_result *res, const char *text, size_t n, bool first,
                       bool finish, bool usage_only);

/* A response written with stdio (open_memstream) and the CLI's JSON helpers. */
typedef struct serve_mem {
    FILE *f;
    char *buf;
    size_t len;
} serve_mem;
bool serve_mem_open(serve_mem *m);
/* Closes the stream: the malloc'd text, or NULL when writing failed. */
char *serve_mem_close(serve_mem *m);

/* Writes `s` as a JSON string (for other responses: /v1/models). */
void serve_json_str(FILE *f, const char *s);

#endif
