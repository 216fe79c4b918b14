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
int cli_ingest(int argc, char **argv);
int cli_search(int argc, char **argv);
int cli_docs(int argc, char **argv);
int cli_serve(int argc, char **argv);
int cli_generate(int argc, char **argv);
int cli_chat(int argc, char **argv);
int cli_ask(int argc, char **argv);

struct nr_store;
/* Open the store in data dir `data` (empty: $NANORAG_DATA, else ./data;
 * the chosen dir is written back), creating the dir if needed. */
int cli_open_store(char *data, size_t cap, struct nr_store **s);

/* The default embedding model directory (see cli_common.c); 0 or an NR error. */
int cli_default_embed_model(char *buf, size_t cap);
/* Write s as a JSON string literal (quoted, escaped). */
void cli_json_string(FILE *f, const char *s);
/* Print "nanorag: <what>: <last error message>" to stderr; returns 1. */
int cli_fail(const char *what);

#endif
