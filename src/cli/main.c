/*
 * nanorag — retrieval-augmented generation for edge GPUs, in one process.
 * This file only dispatches to the subcommands in cli_*.c.
 */
#include "nr_cli.h"

#include <stdio.h>
#include <string.h>

static void usage(FILE *f)
{
    fprintf(f,
            "nanorag %s — RAG engine for edge GPUs\n"
            "\n"
            "usage: nanorag <command> [options]\n"
            "\n"
            "commands:\n"
            "  embed TEXT...     sentence embeddings (texts, stdin lines or --file)\n"
            "  serve             HTTP server: Ollama, OpenAI and RAG APIs\n"
            "  generate PROMPT   generate text with a local GGUF model (streamed)\n"
            "  chat              interactive multi-turn chat with a local GGUF model\n"
            "  ask QUESTION      answer from the documents, with cited sources\n"
            "  status            what runs where: CPU, GPU, memory, embedder\n"
            "  version           print the version\n"
            "\n"
            "`nanorag <command> --help` describes each command's options.\n",
            NR_VERSION);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "embed"))
        return cli_embed(argc - 1, argv + 1);
    if (!strcmp(argv[1], "ingest"))
        return cli_ingest(argc - 1, argv + 1);
    if (!strcmp(argv[1], "search"))
        return cli_search(argc - 1, argv + 1);
    if (!strcmp(argv[1], "docs"))
        return cli_docs(argc - 1, argv + 1);
    if (!strcmp(argv[1], "serve"))
        return cli_serve(argc - 1, argv + 1);
    if (!strcmp(argv[1], "generate"))
        return cli_generate(argc - 1, argv + 1);
    if (!strcmp(argv[1], "chat"))
        return cli_chat(argc - 1, argv + 1);
    if (!strcmp(argv[1], "ask"))
        return cli_ask(argc - 1, argv + 1);
    if (!strcmp(argv[1], "status"))
        return cli_status(argc - 1, argv + 1);
    if (!strcmp(argv[1], "version") || !strcmp(argv[1], "--version")) {
        printf("nanorag %s\n", NR_VERSION);
        return 0;
    }
    if (!strcmp(argv[1], "help") || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        usage(stdout);
        return 0;
    }
    fprintf(stderr, "nanorag: unknown command \"%s\"\n\n", argv[1]);
    usage(stderr);
    return 2;
}
