/* Private to tools/: options shared by run, chat, experts and logits, and
 * the steps they share (open, tokenize, session). */
#ifndef FLOCK_TOOLS_RUN_COMMON_H
#define FLOCK_TOOLS_RUN_COMMON_H

#include "flock/flock.h"
#include "flock_cli.h"

#define RUN_MAX_STOPS 8

typedef struct run_args {
    const char *bundle;
    const char *prompt;    /* -p */
    const char *ids;       /* --ids 1,2,3 */
    long long n_predict;   /* -n */
    long long prompt_len;  /* --prompt-len (logits) */
    const char *out;       /* --out (logits) */
    bool chat, json;
    bool pack_rows_given; /* --pack-rows named (so.pack_rows holds it) */
    const char *stops[RUN_MAX_STOPS];
    int n_stops;
    flock_session_opts so;
    flock_sampler_opts sp;
} run_args;

void run_args_init(run_args *a);
/* Parses a whole command line of `cmd` (argv[0] is the command's name): the
 * shared options, --help (prints help(stdout)) and one BUNDLE operand.
 * Returns -1 when the command goes on, else the exit code to return. */
int run_args_parse(const char *cmd, int argc, char **argv, run_args *a, void (*help)(FILE *));
/* Tries the shared option at argv[*i] (advancing *i past its value): 1
 * consumed, 0 not a shared option, -1 error (printed). */
int run_args_parse_one(const char *cmd, int argc, char **argv, int *i, run_args *a);
/* The help text of the shared options. */
void run_args_help(FILE *f, bool sampling);
/* Parses "1,2,3" into a malloc'd array. */
int32_t *run_parse_ids(const char *s, size_t *n);
/* Tokenizes a->prompt (or parses a->ids) into a malloc'd array; prints errors. */
int32_t *run_prompt_ids(const char *cmd, flock_model *m, const run_args *a, const char *text, size_t *n);
/* Opens the bundle and a session; prints errors. */
int run_open(const char *cmd, const run_args *a, flock_model **m, flock_session **s);
/* The two steps of run_open. */
int run_open_model(const char *cmd, const run_args *a, flock_model **m);
int run_open_session(const char *cmd, const run_args *a, flock_model *m, flock_session **s);

/* One user turn in the model's chat template, ready for the assistant's
 * reply (malloc'd), or NULL with a message printed (cmd_chat.c). */
char *flock_cli_chat_prompt(flock_model *m, const char *user_text);

#endif
