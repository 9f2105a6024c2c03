/* libFuzzer target: flock serve's request parser (tools/serve_req.c) on
 * arbitrary bytes. The first byte picks the endpoint (chat or completion).
 * A rejected body must come with a status 400 and a message; an accepted one
 * must hold what the parser promises (a role and content per message, a
 * prompt for a completion, bounded fields). Either way the JSON written back
 * (the error object, a completion and a stream chunk carrying the input as
 * text) must parse again with json-c. */
#include "serve_req.h"

#include <json-c/json.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void must_parse(char *s)
{
    if (!s)
        abort();
    const char *j = s;
    if (strncmp(j, "data: ", 6) == 0)
        j += 6;
    json_object *o = json_tokener_parse(j);
    if (!o)
        abort();
    json_object_put(o);
    free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    serve_kind kind = data[0] & 1 ? SERVE_COMPLETION : SERVE_CHAT;
    const char *body = (const char *)data + 1;
    size_t n = size - 1;
    serve_req r;
    serve_err e;
    if (!serve_req_parse(kind, body, n, &r, &e)) {
        if (e.status != 400 || e.message[0] == '\0')
            abort();
        must_parse(serve_err_json(&e));
        return 0;
    }
    if (r.kind != kind || r.n_stops > SERVE_MAX_STOPS || r.n_msgs > SERVE_MAX_MESSAGES)
        abort();
    if (kind == SERVE_CHAT && (r.n_msgs == 0 || !r.msgs))
        abort();
    for (size_t i = 0; i < r.n_msgs; i++)
        if (!r.msgs[i].role || !r.msgs[i].content)
            abort();
    if (kind == SERVE_COMPLETION && !r.prompt)
        abort();
    if (!(r.temperature >= 0 && r.temperature <= 2) || !(r.top_p > 0 && r.top_p <= 1))
        abort();
    if (r.has_keep && !(r.keep > 0 && r.keep <= 1))
        abort();
    serve_result res = {.id = "x-1", .model = r.model ? r.model : "m", .finish = "stop", .keep = 1,
                        .select = "griffin"};
    must_parse(serve_completion_json(kind, &res, body, n));
    must_parse(serve_chunk_json(kind, &res, body, n, true, false, false));
    serve_req_free(&r);
    return 0;
}
