/* Private to tools/: the subcommands of the `flock` program and small helpers
 * they share (option parsing, JSON output). Exit codes: 0 success, 1 the
 * operation failed, 2 bad usage. */
#ifndef FLOCK_TOOLS_CLI_H
#define FLOCK_TOOLS_CLI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#define FLOCK_EXIT_OK 0
#define FLOCK_EXIT_FAIL 1
#define FLOCK_EXIT_USAGE 2

/* Subcommands: argv[0] is the subcommand's name. */
int flock_cmd_inspect(int argc, char **argv);
int flock_cmd_run(int argc, char **argv);
int flock_cmd_chat(int argc, char **argv);
int flock_cmd_experts(int argc, char **argv);
int flock_cmd_logits(int argc, char **argv);
int flock_cmd_eval(int argc, char **argv);
int flock_cmd_bench(int argc, char **argv);
int flock_cmd_serve(int argc, char **argv);

/* True for "-h" and "--help". */
bool flock_cli_is_help(const char *arg);

/* Option with a value, given as "--name VALUE" or "--name=VALUE", at argv[*i].
 * Returns 1 and sets *value (advancing *i past a separate value) when it
 * matches, 0 when argv[*i] is another option, and -1 (after printing an error
 * naming `cmd`) when the value is missing. */
int flock_cli_opt_value(const char *cmd, int argc, char **argv, int *i, const char *name,
                        const char **value);

/* Parse a whole string as an integer / a number in [min, max]; false otherwise. */
bool flock_cli_parse_int(const char *s, long long min, long long max, long long *out);
bool flock_cli_parse_double(const char *s, double min, double max, double *out);
/* A comma-separated list into out[cap] through parse_one(item, index, out);
 * false when an item does not parse, there are too many, or none (then
 * *n == 0). */
bool flock_cli_parse_list(const char *v, int cap, int *n, bool (*parse_one)(const char *, int, void *), void *out);

/* Prints "flock CMD: message" and a hint to stderr; returns FLOCK_EXIT_USAGE. */
int flock_cli_usage_error(const char *cmd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Writes `s` (`n` bytes, or up to the NUL for the first form) as a quoted,
 * escaped JSON string. Bytes that are not valid UTF-8 are written as U+FFFD. */
void flock_cli_json_str(FILE *f, const char *s);
void flock_cli_json_strn(FILE *f, const char *s, size_t n);
/* A number as JSON: non-finite values become null. */
void flock_cli_json_double(FILE *f, double v);

#endif
