/*
 * The `nanorag` command: one function per subcommand, each parsing its own
 * options (argv[0] is the subcommand name) and returning a process exit code.
 */
#ifndef NR_CLI_H
#define NR_CLI_H

#include <stddef.h>
#include <stdio.h>

int cli_embed(int argc, char **argv);
int cli_status(int argc, char **argv);

/* The default embedding model directory (see cli_common.c); 0 or an NR error. */
int cli_default_embed_model(char *buf, size_t cap);
/* Write s as a JSON string literal (quoted, escaped). */
void cli_json_string(FILE *f, const char *s);
/* Print "nanorag: <what>: <last error message>" to stderr; returns 1. */
int cli_fail(const char *what);

#endif
