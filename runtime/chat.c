/* Chat templates: the few formats flock's models use, written out in C
 * rather than interpreting the model's Jinja source. The style is chosen by
 * the markers the Jinja text contains. */
#include "tokenizer.h"
#include "wbuf.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const style_names[] = {
    [FLOCK_CHAT_CHATML] = "chatml",
    [FLOCK_CHAT_GEMMA] = "gemma",
    [FLOCK_CHAT_LLAMA3] = "llama3",
};
_Static_assert(sizeof style_names / sizeof style_names[0] == FLOCK_CHAT_STYLE_COUNT,
               "style_names must name every style");

const char *flock_chat_style_name(flock_chat_style s)
{
    return (unsigned)s < FLOCK_CHAT_STYLE_COUNT ? style_names[s] : "?";
}

/* ChatML templates that add a system turn when the conversation has none
 * spell it as a literal: '<|im_start|>system\n<text><|im_end|>'. Returns
 * the literal text when it holds no Jinja, else NULL. */
static char *default_system(const char *tmpl)
{
    static const char head[] = "<|im_start|>system\n";
    const char *p = strstr(tmpl, head);
    if (!p)
        return NULL;
    p += sizeof head - 1;
    const char *e = strstr(p, "<|im_end|>");
    if (!e || e == p)
        return NULL;
    for (const char *c = p; c < e; c++)
        if (*c == '{' || *c == '}' || *c == '\'' || *c == '"')
            return NULL; /* an expression, not a literal */
    size_t n = (size_t)(e - p);
    char *s = malloc(n + 1);
    if (s) {
        memcpy(s, p, n);
        s[n] = '\0';
    }
    return s;
}

flock_status flock_chat_init(const char *tmpl, const char *arch, flock_chat_template *out, flock_error *err)
{
    if (!out)
        return flock_error_set(err, FLOCK_E_INVALID_ARG, "chat_init: NULL argument");
    flock_chat_template ct = {FLOCK_CHAT_CHATML, NULL};
    if (tmpl && strstr(tmpl, "<|im_start|>")) {
        ct.style = FLOCK_CHAT_CHATML;
        ct.default_system = default_system(tmpl);
    } else if (tmpl && strstr(tmpl, "<start_of_turn>")) {
        ct.style = FLOCK_CHAT_GEMMA;
    } else if (tmpl && strstr(tmpl, "<|start_header_id|>")) {
        ct.style = FLOCK_CHAT_LLAMA3;
    } else if (tmpl && *tmpl) {
        return flock_error_set(err, FLOCK_E_UNSUPPORTED, "chat template with none of the markers "
                               "flock knows (<|im_start|>, <start_of_turn>, <|start_header_id|>)");
    } else if (arch && strncmp(arch, "gemma", 5) == 0) {
        ct.style = FLOCK_CHAT_GEMMA;
    }
    *out = ct;
    return FLOCK_OK;
}

void flock_chat_template_free(flock_chat_template *ct)
{
    if (!ct)
        return;
    free(ct->default_system);
    ct->default_system = NULL;
}

typedef flock_wbuf sbuf;

static void sb_add(sbuf *b, const char *s, size_t n) { flock_wbuf_text(b, s, n); }

static void sb_str(sbuf *b, const char *s)
{
    sb_add(b, s, strlen(s));
}

/* Llama 3's template trims each message. */
static void sb_trimmed(sbuf *b, const char *s)
{
    const char *e = s + strlen(s);
    while (s < e && (*s == ' ' || *s == '\n' || *s == '\t' || *s == '\r'))
        s++;
    while (e > s && (e[-1] == ' ' || e[-1] == '\n' || e[-1] == '\t' || e[-1] == '\r'))
        e--;
    sb_add(b, s, (size_t)(e - s));
}

static void chatml_turn(sbuf *b, const char *role, const char *content)
{
    sb_str(b, "<|im_start|>");
    sb_str(b, role);
    sb_str(b, "\n");
    sb_str(b, content);
    sb_str(b, "<|im_end|>\n");
}

flock_status flock_chat_apply(const flock_chat_template *ct, const flock_chat_msg *msgs, size_t n,
                              bool add_generation_prompt, char **out, flock_error *err)
{
    if (!ct || (!msgs && n) || !out || (unsigned)ct->style >= FLOCK_CHAT_STYLE_COUNT)
        return flock_error_set(err, FLOCK_E_INVALID_ARG, "chat_apply: bad argument");
    for (size_t i = 0; i < n; i++) {
        const char *r = msgs[i].role;
        if (!r || !msgs[i].content ||
            (strcmp(r, "system") != 0 && strcmp(r, "user") != 0 && strcmp(r, "assistant") != 0))
            return flock_error_set(err, FLOCK_E_INVALID_ARG, "chat_apply: message %zu has role '%.32s' "
                                   "(expected system, user or assistant)", i, r ? r : "(null)");
    }
    sbuf b = {0};
    sb_add(&b, "", 0);
    size_t i = 0;
    switch (ct->style) {
    case FLOCK_CHAT_CHATML:
        /* SmolLM2's template adds it inside its loop over messages: not for n == 0. */
        if (ct->default_system && n > 0 && strcmp(msgs[0].role, "system") != 0)
            chatml_turn(&b, "system", ct->default_system);
        for (; i < n; i++)
            chatml_turn(&b, msgs[i].role, msgs[i].content);
        if (add_generation_prompt)
            sb_str(&b, "<|im_start|>assistant\n");
        break;
    case FLOCK_CHAT_GEMMA: {
        /* Gemma has no system turn: its text opens the first user turn. */
        const char *sys = NULL;
        if (n > 0 && strcmp(msgs[0].role, "system") == 0)
            sys = msgs[i++].content;
        for (; i < n; i++) {
            bool user = strcmp(msgs[i].role, "user") == 0;
            if (strcmp(msgs[i].role, "system") == 0)
                return flock_error_set(err, FLOCK_E_INVALID_ARG, "chat_apply: Gemma allows a system "
                                       "message only first (message %zu)", i);
            sb_str(&b, "<start_of_turn>");
            sb_str(&b, user ? "user\n" : "model\n");
            if (sys && user) {
                sb_str(&b, sys);
                sb_str(&b, "\n\n");
                sys = NULL;
            }
            sb_trimmed(&b, msgs[i].content);
            sb_str(&b, "<end_of_turn>\n");
        }
        if (add_generation_prompt)
            sb_str(&b, "<start_of_turn>model\n");
        break;
    }
    case FLOCK_CHAT_LLAMA3:
        for (; i < n; i++) {
            sb_str(&b, "<|start_header_id|>");
            sb_str(&b, msgs[i].role);
            sb_str(&b, "<|end_header_id|>\n\n");
            sb_trimmed(&b, msgs[i].content);
            sb_str(&b, "<|eot_id|>");
        }
        if (add_generation_prompt)
            sb_str(&b, "<|start_header_id|>assistant<|end_header_id|>\n\n");
        break;
    default:
        break;
    }
    if (b.oom) {
        free(b.p);
        return flock_error_set(err, FLOCK_E_NOMEM, "chat_apply: out of memory");
    }
    *out = (char *)b.p;
    return FLOCK_OK;
}
