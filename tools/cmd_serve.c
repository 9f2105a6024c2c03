/* `flock serve`: an OpenAI-compatible HTTP server over one bundle.
 *
 * libmicrohttpd does the HTTP, one thread per connection; json-c (through
 * serve_req.c) the JSON; serve_engine.c the scheduling: N slots, each with
 * its own KV cache and GRIFFIN experts, fed from a bounded queue. A handler
 * thread parses a request, submits it and then waits on the job's output,
 * writing it as one JSON body or as server-sent events. The main thread
 * waits for SIGINT/SIGTERM: it stops accepting, lets running requests finish
 * for --grace seconds, cancels the rest and exits 0.
 *
 * libmicrohttpd is loaded with dlopen when `flock serve` starts, never
 * linked: it pulls in GnuTLS and five more libraries, about 2.5 MB of
 * resident pages in every flock process (run, bench, chat), which is 2% of
 * a 135M model's weights. Only its header is needed at build time. */
#include "flock_cli.h"
#include "run_common.h"
#include "serve_engine.h"
#include "serve_req.h"

#include <microhttpd.h>

#include <dlfcn.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define CMD "serve"

/* The libmicrohttpd functions flock serve calls, resolved by mhd_load. */
static struct {
    __typeof__(MHD_start_daemon) *start_daemon;
    __typeof__(MHD_stop_daemon) *stop_daemon;
    __typeof__(MHD_quiesce_daemon) *quiesce_daemon;
    __typeof__(MHD_get_daemon_info) *get_daemon_info;
    __typeof__(MHD_get_connection_info) *get_connection_info;
    __typeof__(MHD_lookup_connection_value) *lookup_connection_value;
    __typeof__(MHD_create_response_from_buffer) *create_response_from_buffer;
    __typeof__(MHD_create_response_from_callback) *create_response_from_callback;
    __typeof__(MHD_add_response_header) *add_response_header;
    __typeof__(MHD_queue_response) *queue_response;
    __typeof__(MHD_destroy_response) *destroy_response;
} mhd;

/* Loads libmicrohttpd (ABI 12, the one the header describes) and its
 * functions; 0, or -1 after saying what is missing. */
static int mhd_load(void)
{
    static const char *const names[] = {"libmicrohttpd.so.12", "libmicrohttpd.so"};
    void *h = NULL;
    for (size_t i = 0; !h && i < sizeof names / sizeof *names; i++)
        h = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        fprintf(stderr, "flock " CMD ": cannot load libmicrohttpd (%s); install it (Debian: libmicrohttpd12)\n",
                dlerror());
        return -1;
    }
    struct {
        const char *name;
        void **slot;
    } fn[] = {
#define MHD_FN(f) {"MHD_" #f, (void **)&mhd.f}
        MHD_FN(start_daemon),          MHD_FN(stop_daemon),
        MHD_FN(quiesce_daemon),        MHD_FN(get_daemon_info),
        MHD_FN(get_connection_info),   MHD_FN(lookup_connection_value),
        MHD_FN(create_response_from_buffer), MHD_FN(create_response_from_callback),
        MHD_FN(add_response_header),   MHD_FN(queue_response),
        MHD_FN(destroy_response),
#undef MHD_FN
    };
    for (size_t i = 0; i < sizeof fn / sizeof *fn; i++)
        if (!(*fn[i].slot = dlsym(h, fn[i].name))) {
            fprintf(stderr, "flock " CMD ": libmicrohttpd has no %s: too old a version\n", fn[i].name);
            dlclose(h);
            return -1;
        }
    return 0; /* kept loaded for the life of the process */
}

#define MHD_start_daemon mhd.start_daemon
#define MHD_stop_daemon mhd.stop_daemon
#define MHD_quiesce_daemon mhd.quiesce_daemon
#define MHD_get_daemon_info mhd.get_daemon_info
#define MHD_get_connection_info mhd.get_connection_info
#define MHD_lookup_connection_value mhd.lookup_connection_value
#define MHD_create_response_from_buffer mhd.create_response_from_buffer
#define MHD_create_response_from_callback mhd.create_response_from_callback
#define MHD_add_response_header mhd.add_response_header
#define MHD_queue_response mhd.queue_response
#define MHD_destroy_response mhd.destroy_response
#define WAIT_MS 50 /* a waiting handler looks for a gone client this often */

typedef struct server {
    serve_engine *eng;
    flock_model *m;
    const char *model_name;
    const char *api_key; /* NULL: no auth */
    size_t max_body;
    long long created;
    int n_ctx;
    bool quiet;
    pthread_mutex_t log_mu;
    int active; /* requests between their first call and their end (log_mu) */
} server;

/* One request's state across libmicrohttpd's calls of the handler. */
typedef struct conn {
    char *body;
    size_t n, cap;
    bool too_large;
    double t0;
} conn;

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void log_line(server *sv, const char *method, const char *url, int status, const conn *c,
                     const serve_result *res)
{
    if (sv->quiet)
        return;
    pthread_mutex_lock(&sv->log_mu);
    fprintf(stderr, "flock serve: %s %s %d %.3fs", method, url, status, now_s() - c->t0);
    if (res && res->id)
        fprintf(stderr, " %s prompt=%zu completion=%zu keep=%g", res->id, res->prompt_tokens, res->completion_tokens,
                res->keep);
    fputc('\n', stderr);
    pthread_mutex_unlock(&sv->log_mu);
}

/* True when the client closed its side (or the socket broke): its request is
 * dropped and its slot freed. */
static bool client_gone(struct MHD_Connection *mc)
{
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(mc, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (!ci)
        return false;
    struct pollfd p = {.fd = ci->connect_fd, .events = POLLRDHUP};
    return poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL));
}

static enum MHD_Result send_buf(struct MHD_Connection *mc, int status, const char *type, char *buf, size_t n,
                                const char *retry_after)
{
    struct MHD_Response *r = MHD_create_response_from_buffer(n, buf, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        free(buf);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    if (retry_after)
        MHD_add_response_header(r, MHD_HTTP_HEADER_RETRY_AFTER, retry_after);
    enum MHD_Result ret = MHD_queue_response(mc, (unsigned)status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result send_json(struct MHD_Connection *mc, int status, char *json)
{
    if (!json)
        return MHD_NO;
    return send_buf(mc, status, "application/json", json, strlen(json), NULL);
}

static enum MHD_Result send_err(server *sv, struct MHD_Connection *mc, const char *method, const char *url,
                                const conn *c, const serve_err *e)
{
    log_line(sv, method, url, e->status, c, NULL);
    char *j = serve_err_json(e);
    if (!j)
        return MHD_NO;
    return send_buf(mc, e->status, "application/json", j, strlen(j), e->status == 503 ? "1" : NULL);
}

static enum MHD_Result get_models(server *sv, struct MHD_Connection *mc)
{
    serve_mem m;
    if (!serve_mem_open(&m))
        return MHD_NO;
    fprintf(m.f, "{\"object\":\"list\",\"data\":[{\"id\":");
    serve_json_str(m.f, sv->model_name);
    fprintf(m.f, ",\"object\":\"model\",\"created\":%lld,\"owned_by\":\"flock\",\"flock\":{\"arch\":", sv->created);
    serve_json_str(m.f, flock_model_arch(sv->m));
    fprintf(m.f, ",\"n_ctx\":%d,\"keep_ratios\":[", sv->n_ctx);
    size_t nk = 0;
    const double *ks = flock_model_keep_ratios(sv->m, &nk);
    for (size_t i = 0; i < nk; i++) {
        if (i)
            fputc(',', m.f);
        flock_cli_json_double(m.f, ks[i]);
    }
    fprintf(m.f, "]}}]}\n");
    return send_json(mc, 200, serve_mem_close(&m));
}

static enum MHD_Result get_metrics(server *sv, struct MHD_Connection *mc)
{
    serve_metrics x;
    serve_engine_metrics(sv->eng, &x);
    serve_mem m;
    if (!serve_mem_open(&m))
        return MHD_NO;
#define COUNTER(name, help, v)                                                                                         \
    fprintf(m.f, "# HELP flock_" name " " help "\n# TYPE flock_" name " counter\nflock_" name " %llu\n", v)
#define GAUGE(name, help, fmt, v)                                                                                      \
    fprintf(m.f, "# HELP flock_" name " " help "\n# TYPE flock_" name " gauge\nflock_" name " " fmt "\n", v)
    COUNTER("requests_total", "Completion requests accepted into the queue.", x.requests);
    COUNTER("requests_failed_total", "Accepted requests that failed (bad prompt, context, errors).", x.failed);
    COUNTER("requests_cancelled_total", "Requests dropped because the client went away or the server stopped.",
            x.cancelled);
    COUNTER("requests_rejected_total", "Requests refused with 503 (queue full or stopping).", x.rejected);
    COUNTER("prompt_tokens_total", "Prompt tokens prefilled.", x.prompt_tokens);
    COUNTER("generated_tokens_total", "Tokens generated.", x.generated_tokens);
    GAUGE("prefill_seconds_total", "Seconds spent prefilling.", "%.6f", x.prefill_s);
    GAUGE("decode_seconds_total", "Seconds of decoding, summed over sequences.", "%.6f", x.decode_s);
    GAUGE("prefill_tokens_per_second", "Prompt tokens per second of prefill, since start.", "%.3f",
          x.prefill_s > 0 ? (double)x.prompt_tokens / x.prefill_s : 0.0);
    GAUGE("decode_tokens_per_second", "Generated tokens per second of one sequence's decoding, since start.",
          "%.3f", x.decode_s > 0 ? (double)x.generated_tokens / x.decode_s : 0.0);
    GAUGE("queue_length", "Requests waiting for a slot.", "%d", x.queued);
    GAUGE("slots_busy", "Slots generating.", "%d", x.busy);
    GAUGE("slots_total", "Slots (--parallel).", "%d", x.slots);
#undef COUNTER
#undef GAUGE
    char *s = serve_mem_close(&m);
    if (!s)
        return MHD_NO;
    return send_buf(mc, 200, "text/plain; version=0.0.4", s, strlen(s), NULL);
}

/* ---- streaming ------------------------------------------------------------- */

typedef struct stream {
    server *sv;
    serve_job *job;
    struct MHD_Connection *mc;
    serve_kind kind;
    bool include_usage;
    serve_result res;
    bool first;
    int phase;        /* 0 text, 1 usage chunk, 2 [DONE], 3 end */
    char *out;        /* bytes owed to the client */
    size_t out_n, out_off;
    conn c;
    char url[32];
} stream;

static bool stream_fill(stream *st)
{
    for (;;) {
        if (st->phase == 3)
            return false;
        if (client_gone(st->mc))
            return false;
        char *text = NULL;
        size_t n = 0;
        serve_err err;
        serve_result res;
        char *chunk = NULL;
        if (st->phase == 0) {
            serve_job_event ev = serve_job_wait(st->job, WAIT_MS, &text, &n, &res, &err);
            if (ev == SERVE_JOB_WAIT || ev == SERVE_JOB_STARTED)
                continue;
            if (ev == SERVE_JOB_TEXT) {
                chunk = serve_chunk_json(st->kind, &st->res, text, n, st->first, false, false);
                st->first = false;
                free(text);
            } else if (ev == SERVE_JOB_DONE) {
                st->res = res;
                chunk = serve_chunk_json(st->kind, &st->res, "", 0, st->first, true, false);
                st->phase = st->include_usage ? 1 : 2;
                log_line(st->sv, "POST", st->url, 200, &st->c, &st->res);
            } else { /* failed mid-stream: an error event, then the end */
                char *j = serve_err_json(&err);
                if (j && asprintf(&chunk, "data: %s\n\n", j) < 0)
                    chunk = NULL;
                free(j);
                st->phase = 2;
                log_line(st->sv, "POST", st->url, err.status, &st->c, NULL);
            }
        } else if (st->phase == 1) {
            chunk = serve_chunk_json(st->kind, &st->res, "", 0, false, false, true);
            st->phase = 2;
        } else {
            chunk = strdup("data: [DONE]\n\n");
            st->phase = 3;
        }
        if (!chunk)
            return false;
        free(st->out);
        st->out = chunk;
        st->out_n = strlen(chunk);
        st->out_off = 0;
        return true;
    }
}

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max)
{
    (void)pos;
    stream *st = cls;
    if (st->out_off == st->out_n && !stream_fill(st))
        return st->phase == 3 && st->out_off == st->out_n ? MHD_CONTENT_READER_END_OF_STREAM
                                                          : MHD_CONTENT_READER_END_WITH_ERROR;
    size_t k = st->out_n - st->out_off < max ? st->out_n - st->out_off : max;
    memcpy(buf, st->out + st->out_off, k);
    st->out_off += k;
    return (ssize_t)k;
}

static void stream_free(void *cls)
{
    stream *st = cls;
    serve_job_cancel(st->job); /* a no-op once it is done */
    serve_job_release(st->job);
    free(st->out);
    free(st);
}

/* ---- completions ----------------------------------------------------------- */

static enum MHD_Result post_completion(server *sv, struct MHD_Connection *mc, serve_kind kind, const char *url,
                                       conn *c)
{
    serve_req r;
    serve_err err;
    if (c->too_large) {
        serve_err_set(&err, 413, "invalid_request_error", NULL, "request_too_large",
                      "the request body is over %zu bytes (flock serve --max-body)", sv->max_body);
        return send_err(sv, mc, "POST", url, c, &err);
    }
    if (!serve_req_parse(kind, c->body ? c->body : "", c->n, &r, &err))
        return send_err(sv, mc, "POST", url, c, &err);
    serve_job *j = serve_engine_submit(sv->eng, &r, &err);
    serve_req_free(&r);
    if (!j)
        return send_err(sv, mc, "POST", url, c, &err);
    bool include_usage = false;
    bool streaming = serve_job_stream(j, &include_usage);
    serve_result res = {0};
    /* Until the prompt is in, the status is not known (the context check). */
    for (;;) {
        char *text = NULL;
        size_t n = 0;
        serve_job_event ev = serve_job_wait(j, WAIT_MS, &text, &n, &res, &err);
        if (ev == SERVE_JOB_FAILED) {
            serve_job_release(j);
            return send_err(sv, mc, "POST", url, c, &err);
        }
        if (ev == SERVE_JOB_STARTED)
            break;
        if (client_gone(mc)) {
            serve_job_cancel(j);
            serve_job_release(j);
            return MHD_NO;
        }
    }
    if (streaming) {
        stream *st = calloc(1, sizeof *st);
        if (!st) {
            serve_job_cancel(j);
            serve_job_release(j);
            return MHD_NO;
        }
        st->sv = sv;
        st->job = j;
        st->mc = mc;
        st->kind = kind;
        st->include_usage = include_usage;
        st->res = res;
        st->first = true;
        st->c.t0 = c->t0;
        snprintf(st->url, sizeof st->url, "%s", url);
        struct MHD_Response *resp =
            MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, stream_read, st, stream_free);
        if (!resp) {
            stream_free(st);
            return MHD_NO;
        }
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream");
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
        enum MHD_Result ret = MHD_queue_response(mc, MHD_HTTP_OK, resp);
        MHD_destroy_response(resp);
        return ret;
    }
    /* One body: gather the text, then write it. */
    char *all = NULL;
    size_t all_n = 0;
    for (;;) {
        char *text = NULL;
        size_t n = 0;
        serve_job_event ev = serve_job_wait(j, WAIT_MS, &text, &n, &res, &err);
        if (ev == SERVE_JOB_TEXT) {
            char *b = realloc(all, all_n + n + 1);
            if (!b) {
                free(text);
                free(all);
                serve_job_cancel(j);
                serve_job_release(j);
                return MHD_NO;
            }
            all = b;
            memcpy(all + all_n, text, n);
            all_n += n;
            free(text);
        } else if (ev == SERVE_JOB_DONE) {
            break;
        } else if (ev == SERVE_JOB_FAILED) {
            free(all);
            serve_job_release(j);
            return send_err(sv, mc, "POST", url, c, &err);
        } else if (client_gone(mc)) {
            free(all);
            serve_job_cancel(j);
            serve_job_release(j);
            return MHD_NO;
        }
    }
    char *json = serve_completion_json(kind, &res, all ? all : "", all_n);
    free(all);
    log_line(sv, "POST", url, 200, c, &res);
    serve_job_release(j);
    return send_json(mc, 200, json);
}

/* ---- routing ------------------------------------------------------------------- */

/* Compares in time that does not depend on where the strings differ. */
static bool key_ok(const char *given, const char *key)
{
    size_t a = strlen(given), b = strlen(key);
    unsigned char d = (unsigned char)(a != b);
    for (size_t i = 0; i < b; i++)
        d |= (unsigned char)(given[i < a ? i : 0] ^ key[i]);
    return d == 0;
}

static bool authorized(server *sv, struct MHD_Connection *mc)
{
    if (!sv->api_key)
        return true;
    const char *h = MHD_lookup_connection_value(mc, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    if (!h || strncasecmp(h, "Bearer ", 7) != 0)
        return false;
    h += 7;
    while (*h == ' ')
        h++;
    return key_ok(h, sv->api_key);
}

typedef struct route {
    const char *path;
    const char *method;
} route;

static const route routes[] = {
    {"/v1/chat/completions", "POST"}, {"/v1/completions", "POST"}, {"/v1/models", "GET"},
    {"/health", "GET"},               {"/metrics", "GET"},
};

static enum MHD_Result handle(void *cls, struct MHD_Connection *mc, const char *url, const char *method,
                              const char *version, const char *upload, size_t *upload_n, void **state)
{
    (void)version;
    server *sv = cls;
    conn *c = *state;
    if (!c) {
        c = calloc(1, sizeof *c);
        if (!c)
            return MHD_NO;
        c->t0 = now_s();
        *state = c;
        pthread_mutex_lock(&sv->log_mu);
        sv->active++;
        pthread_mutex_unlock(&sv->log_mu);
        /* A declared length over the bound is refused before any byte of it is read. */
        const char *cl = MHD_lookup_connection_value(mc, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (cl && strtoull(cl, NULL, 10) > sv->max_body)
            c->too_large = true;
        else
            return MHD_YES;
    }
    if (*upload_n > 0) {
        if (!c->too_large && c->n + *upload_n > sv->max_body)
            c->too_large = true;
        if (!c->too_large) {
            if (c->n + *upload_n + 1 > c->cap) {
                size_t cap = (c->n + *upload_n) * 2 + 1;
                if (cap > sv->max_body + 1)
                    cap = sv->max_body + 1;
                char *b = realloc(c->body, cap);
                if (!b)
                    return MHD_NO;
                c->body = b;
                c->cap = cap;
            }
            memcpy(c->body + c->n, upload, *upload_n);
            c->n += *upload_n;
        }
        *upload_n = 0;
        return MHD_YES;
    }
    serve_err err;
    const route *rt = NULL;
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++)
        if (strcmp(url, routes[i].path) == 0)
            rt = &routes[i];
    if (!rt) {
        serve_err_set(&err, 404, "invalid_request_error", NULL, "unknown_url",
                      "no such endpoint: %s %s (flock serve has POST /v1/chat/completions, POST /v1/completions, "
                      "GET /v1/models, GET /health, GET /metrics)",
                      method, url);
        return send_err(sv, mc, method, url, c, &err);
    }
    if (strcmp(rt->path, "/health") != 0 && !authorized(sv, mc)) {
        serve_err_set(&err, 401, "invalid_request_error", NULL, "invalid_api_key",
                      "a valid API key is needed: send 'Authorization: Bearer KEY' (flock serve --api-key)");
        return send_err(sv, mc, method, url, c, &err);
    }
    if (strcmp(method, rt->method) != 0) {
        serve_err_set(&err, 405, "invalid_request_error", NULL, "method_not_allowed", "%s takes %s, not %s", url,
                      rt->method, method);
        log_line(sv, method, url, 405, c, NULL);
        char *j = serve_err_json(&err);
        if (!j)
            return MHD_NO;
        struct MHD_Response *r = MHD_create_response_from_buffer(strlen(j), j, MHD_RESPMEM_MUST_FREE);
        if (!r) {
            free(j);
            return MHD_NO;
        }
        MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
        MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, rt->method);
        enum MHD_Result ret = MHD_queue_response(mc, 405, r);
        MHD_destroy_response(r);
        return ret;
    }
    if (strcmp(rt->path, "/health") == 0)
        return send_json(mc, 200, strdup("{\"status\":\"ok\"}\n"));
    if (strcmp(rt->path, "/v1/models") == 0)
        return get_models(sv, mc);
    if (strcmp(rt->path, "/metrics") == 0)
        return get_metrics(sv, mc);
    return post_completion(sv, mc, strcmp(rt->path, "/v1/chat/completions") == 0 ? SERVE_CHAT : SERVE_COMPLETION,
                           url, c);
}

static void completed(void *cls, struct MHD_Connection *mc, void **state, enum MHD_RequestTerminationCode why)
{
    (void)mc;
    (void)why;
    server *sv = cls;
    conn *c = *state;
    if (c) {
        pthread_mutex_lock(&sv->log_mu);
        sv->active--;
        pthread_mutex_unlock(&sv->log_mu);
        free(c->body);
        free(c);
        *state = NULL;
    }
}

/* ---- the command ------------------------------------------------------------- */

static void help(FILE *f)
{
    fprintf(f,
            "usage: flock serve BUNDLE [options]\n\n"
            "An OpenAI-compatible HTTP server: POST /v1/chat/completions, POST /v1/completions\n"
            "(\"stream\": true gives server-sent events), GET /v1/models, GET /health and\n"
            "GET /metrics (Prometheus). Each of --parallel slots is a sequence with its own KV\n"
            "cache and its own GRIFFIN experts, chosen from its prompt; a request may ask for\n"
            "\"keep\" (a compiled ratio or 1) and \"select\". Requests beyond the slots wait in a\n"
            "bounded queue; a full queue answers 503 with Retry-After. SIGINT/SIGTERM stop\n"
            "accepting, let running requests finish (--grace) and exit 0.\n\n"
            "options:\n"
            "  --host ADDR         address to bind (default 127.0.0.1; 0.0.0.0 or :: for all)\n"
            "  --port N            TCP port (default 8080; 0 picks a free one, printed on start)\n"
            "  --parallel N        slots: sequences generated at once (default 4)\n"
            "  --queue N           requests that may wait for a slot (default 64)\n"
            "  --max-tokens N      a request's max_tokens cap and default (default 1024)\n"
            "  --api-key KEY       every endpoint but /health needs 'Authorization: Bearer KEY'\n"
            "                      (or set FLOCK_API_KEY)\n"
            "  --max-body BYTES    largest request body (default 1048576; more: 413)\n"
            "  --max-connections N open connections at most (default 64)\n"
            "  --timeout S         close a connection idle for S seconds (default 60)\n"
            "  --grace S           on SIGINT/SIGTERM, seconds running requests may finish (default 10)\n"
            "  --quiet             no log line per request\n"
            "  --no-batch          decode the busy slots one after another, not as one batched\n"
            "                      step (the same tokens; for measuring the batched step)\n"
            "  --ctx N             each slot's context in tokens (default 2048, at most the trained one)\n"
            "  --keep K            the default keep ratio (default 1.0)\n"
            "  --select MODE       the default selection: griffin, magnitude or random\n"
            "  --threads N         CPU threads (default: the busy cores)\n"
            "  --device D          cpu, cuda or auto (default auto)\n"
            "  --kernels K         auto, generated or portable\n"
            "  --pack-rows on|off  copy a slot's kept FF rows into one block after its prompt, so a\n"
            "                      lone sequence's decode streams them: keep x the FF weights more\n"
            "                      memory per slot (default on with --parallel 1, else off: the\n"
            "                      batched step reads the rows in place)\n"
            "  --kv-type T         the KV cache's elements: f16 (the default) or f32\n");
}

static int parse_size(const char *v, long long lo, long long hi, long long *out, const char *what)
{
    if (!flock_cli_parse_int(v, lo, hi, out))
        return flock_cli_usage_error(CMD, "bad value '%s' for %s", v, what);
    return 0;
}

/* The listening address from --host and --port. */
static int bind_addr(const char *host, int port, struct sockaddr_storage *ss, bool *v6)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE}, *ai;
    int rc = getaddrinfo(host, NULL, &hints, &ai);
    if (rc != 0) {
        fprintf(stderr, "flock serve: cannot use --host '%s': %s\n", host, gai_strerror(rc));
        return FLOCK_EXIT_USAGE;
    }
    memset(ss, 0, sizeof *ss);
    memcpy(ss, ai->ai_addr, ai->ai_addrlen);
    *v6 = ai->ai_family == AF_INET6;
    if (*v6)
        ((struct sockaddr_in6 *)ss)->sin6_port = htons((uint16_t)port);
    else
        ((struct sockaddr_in *)ss)->sin_port = htons((uint16_t)port);
    freeaddrinfo(ai);
    return 0;
}

static const char *model_name_of(const char *path, char *buf, size_t n)
{
    const char *b = strrchr(path, '/');
    b = b ? b + 1 : path;
    snprintf(buf, n, "%s", b);
    size_t len = strlen(buf);
    if (len > 6 && strcmp(buf + len - 6, ".flock") == 0)
        buf[len - 6] = 0;
    return buf;
}

int flock_cmd_serve(int argc, char **argv)
{
    run_args a;
    run_args_init(&a);
    a.so.n_ctx = 2048;
    const char *host = "127.0.0.1", *api_key = getenv("FLOCK_API_KEY");
    long long port = 8080, parallel = 4, queue = 64, max_tokens = 1024, max_body = 1 << 20, max_conn = 64;
    long long timeout = 60, grace = 10;
    bool quiet = false, ctx_given = false, no_batch = false;
    for (int i = 1; i < argc; i++) {
        const char *v = NULL;
        int r;
        if (flock_cli_is_help(argv[i])) {
            help(stdout);
            return FLOCK_EXIT_OK;
        }
#define OPT(name) ((r = flock_cli_opt_value(CMD, argc, argv, &i, name, &v)) != 0)
#define SIZE(name, lo, hi, var)                                                                                        \
    if (OPT(name)) {                                                                                                   \
        if (r < 0 || parse_size(v, lo, hi, &var, name))                                                                \
            return FLOCK_EXIT_USAGE;                                                                                   \
        continue;                                                                                                      \
    }
        if (OPT("--host")) {
            if (r < 0)
                return FLOCK_EXIT_USAGE;
            host = v;
            continue;
        }
        if (OPT("--api-key")) {
            if (r < 0)
                return FLOCK_EXIT_USAGE;
            api_key = v;
            continue;
        }
        SIZE("--port", 0, 65535, port)
        SIZE("--parallel", 1, 256, parallel)
        SIZE("--queue", 0, 1 << 20, queue)
        SIZE("--max-tokens", 1, 1 << 24, max_tokens)
        SIZE("--max-body", 256, 1LL << 30, max_body)
        SIZE("--max-connections", 1, 1 << 16, max_conn)
        SIZE("--timeout", 1, 86400, timeout)
        SIZE("--grace", 0, 86400, grace)
#undef SIZE
#undef OPT
        if (strcmp(argv[i], "--quiet") == 0) {
            quiet = true;
            continue;
        }
        if (strcmp(argv[i], "--no-batch") == 0) {
            no_batch = true;
            continue;
        }
        /* Of the shared options, only those that set up a session. */
        static const char *const shared[] = {"--ctx", "--keep", "--select", "--threads", "--device", "--kernels",
                                             "--pack-rows", "--kv-type"};
        bool is_shared = false;
        for (size_t k = 0; k < sizeof shared / sizeof shared[0]; k++) {
            size_t len = strlen(shared[k]);
            if (strncmp(argv[i], shared[k], len) == 0 && (argv[i][len] == 0 || argv[i][len] == '='))
                is_shared = true;
        }
        if (is_shared) {
            ctx_given = ctx_given || strncmp(argv[i], "--ctx", 5) == 0;
            if (run_args_parse_one(CMD, argc, argv, &i, &a) < 0)
                return FLOCK_EXIT_USAGE;
            continue;
        }
        if (argv[i][0] == '-' || a.bundle)
            return flock_cli_usage_error(CMD, "unexpected argument '%s'", argv[i]);
        a.bundle = argv[i];
    }
    if (!a.bundle)
        return flock_cli_usage_error(CMD, "missing BUNDLE");
    /* each slot would hold its own copy, and the batched step does not read it */
    if (!a.pack_rows_given)
        a.so.pack_rows = parallel == 1;
    if (api_key && !*api_key)
        return flock_cli_usage_error(CMD, "--api-key is empty");
    struct sockaddr_storage ss;
    bool v6 = false;
    int rc = bind_addr(host, (int)port, &ss, &v6);
    if (rc)
        return rc;
    if (mhd_load() != 0)
        return FLOCK_EXIT_FAIL;

    flock_model *m = NULL;
    if (run_open_model(CMD, &a, &m) != FLOCK_EXIT_OK)
        return FLOCK_EXIT_FAIL;
    /* The default context is a bound, not a demand: a smaller trained one wins. */
    if (!ctx_given && flock_model_n_ctx(m) > 0 && flock_model_n_ctx(m) < a.so.n_ctx)
        a.so.n_ctx = flock_model_n_ctx(m);
    char name[256];
    server sv = {.m = m,
                 .model_name = model_name_of(a.bundle, name, sizeof name),
                 .api_key = api_key,
                 .max_body = (size_t)max_body,
                 .created = (long long)time(NULL),
                 .n_ctx = a.so.n_ctx,
                 .quiet = quiet};
    pthread_mutex_init(&sv.log_mu, NULL);
    serve_engine_opts eo = {.parallel = (int)parallel,
                            .queue = (int)queue,
                            .max_tokens = max_tokens,
                            .so = a.so,
                            .model_name = sv.model_name,
                            .no_batch = no_batch};
    char err[512];
    /* Signals go to the main thread alone: block them before any thread starts. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);
    sv.eng = serve_engine_create(m, &eo, err, sizeof err);
    if (!sv.eng) {
        fprintf(stderr, "flock serve: %s\n", err);
        flock_model_free(m);
        return FLOCK_EXIT_FAIL;
    }
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ITC |
                     MHD_USE_ERROR_LOG | (v6 ? MHD_USE_IPv6 : 0);
    struct MHD_Daemon *d = MHD_start_daemon(
        flags, (uint16_t)port, NULL, NULL, handle, &sv, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)max_conn, MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)timeout,
        MHD_OPTION_NOTIFY_COMPLETED, completed, &sv, MHD_OPTION_END);
    if (!d) {
        fprintf(stderr, "flock serve: cannot listen on %s port %lld: %s\n", host, port,
                errno ? strerror(errno) : "libmicrohttpd failed to start");
        serve_engine_free(sv.eng);
        flock_model_free(m);
        return FLOCK_EXIT_FAIL;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(d, MHD_DAEMON_INFO_BIND_PORT);
    int bound = di ? (int)di->port : (int)port;
    size_t nk = 0;
    flock_model_keep_ratios(m, &nk);
    fprintf(stderr,
            "flock serve: listening on http://%s%s%s:%d/v1 (model '%s', %lld slots of %d tokens, keep %g, "
            "select %s%s)\n",
            v6 ? "[" : "", host, v6 ? "]" : "", bound, sv.model_name, parallel, a.so.n_ctx, a.so.keep,
            flock_select_mode_name(a.so.select), api_key ? ", API key required" : "");
    fflush(stderr);

    int sig = 0;
    sigwait(&sigs, &sig);
    fprintf(stderr, "flock serve: %s: no new requests; running ones get %llds to finish\n",
            sig == SIGINT ? "SIGINT" : "SIGTERM", grace);
    MHD_socket listen_fd = MHD_quiesce_daemon(d);
    serve_engine_stop(sv.eng, (double)grace);
    /* Every job has ended; let the responses still being written reach
     * their clients (a few seconds at most) before the connections close. */
    for (int i = 0; i < 500; i++) {
        pthread_mutex_lock(&sv.log_mu);
        int active = sv.active;
        pthread_mutex_unlock(&sv.log_mu);
        if (active == 0)
            break;
        nanosleep(&(struct timespec){.tv_nsec = 10000000}, NULL);
    }
    MHD_stop_daemon(d);
    if (listen_fd != MHD_INVALID_SOCKET)
        close(listen_fd);
    serve_engine_free(sv.eng);
    flock_model_free(m);
    pthread_mutex_destroy(&sv.log_mu);
    fprintf(stderr, "flock serve: stopped\n");
    return FLOCK_EXIT_OK;
}
