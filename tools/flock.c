/* The `flock` program: a dispatcher over a table of subcommands. */
#include "flock_cli.h"

#include "flock/flock.h"
#include "flock/formats.h"

#include <string.h>

typedef struct flock_subcommand {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *summary;
} flock_subcommand;

#ifndef FLOCK_HAVE_SERVE
/* A flock configured with -DFLOCK_SERVE=OFF (no libmicrohttpd): the command
 * is listed and says how to get it. */
int flock_cmd_serve(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, "flock serve: this flock was built without the server; configure with "
                    "-DFLOCK_SERVE=ON (needs the Debian package libmicrohttpd-dev)\n");
    return 2;
}
#endif

static const flock_subcommand commands[] = {
    {"inspect", flock_cmd_inspect, "print a bundle's header, sections, manifest and tensors"},
    {"run", flock_cmd_run, "generate text from a prompt (GRIFFIN experts)"},
    {"chat", flock_cmd_chat, "interactive chat with the model's chat template"},
    {"experts", flock_cmd_experts, "print the FF neurons each layer selects for a prompt (JSON)"},
    {"logits", flock_cmd_logits, "write the logits of every position (raw f32)"},
    {"eval", flock_cmd_eval, "quality against the full model: perplexity, KL, agreement, ROUGE"},
    {"bench", flock_cmd_bench, "speed per keep ratio next to the measured memory bandwidth"},
    {"serve", flock_cmd_serve, "an OpenAI-compatible HTTP server, each sequence with its own experts"},
};
#define N_COMMANDS (sizeof commands / sizeof commands[0])

static void usage(FILE *f)
{
    fprintf(f, "usage: flock [--help | --version] COMMAND [ARGS...]\n\n"
               "flock runs LLMs compiled by flockc into a .flock bundle.\n\ncommands:\n");
    for (size_t i = 0; i < N_COMMANDS; i++)
        fprintf(f, "  %-12s %s\n", commands[i].name, commands[i].summary);
    fprintf(f, "\n'flock help COMMAND' or 'flock COMMAND --help' describes a command.\n");
}

static const flock_subcommand *find_command(const char *name)
{
    for (size_t i = 0; i < N_COMMANDS; i++)
        if (strcmp(commands[i].name, name) == 0)
            return &commands[i];
    return NULL;
}

static int unknown(const char *name)
{
    fprintf(stderr, "flock: unknown command '%s'. Run 'flock --help' for the list.\n", name);
    return FLOCK_EXIT_USAGE;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return FLOCK_EXIT_USAGE;
    }
    const char *cmd = argv[1];
    if (flock_cli_is_help(cmd)) {
        usage(stdout);
        return FLOCK_EXIT_OK;
    }
    if (strcmp(cmd, "--version") == 0) {
        printf("flock %s (bundle format %d.%d)\n", flock_version(), FLOCK_BUNDLE_MAJOR,
               FLOCK_BUNDLE_MINOR);
        return FLOCK_EXIT_OK;
    }
    if (strcmp(cmd, "help") == 0) {
        if (argc < 3) {
            usage(stdout);
            return FLOCK_EXIT_OK;
        }
        const flock_subcommand *c = find_command(argv[2]);
        if (!c)
            return unknown(argv[2]);
        char *help_argv[] = {argv[2], "--help", NULL};
        return c->run(2, help_argv);
    }
    if (cmd[0] == '-') {
        fprintf(stderr, "flock: unknown option '%s'. Run 'flock --help'.\n", cmd);
        return FLOCK_EXIT_USAGE;
    }
    const flock_subcommand *c = find_command(cmd);
    if (!c)
        return unknown(cmd);
    return c->run(argc - 1, argv + 1);
}
