/*
 * nanorag embed: texts → vectors.
 *
 * Input: the TEXT arguments; else the lines of --file F; else the lines of
 * standard input. Lines are streamed in groups of GROUP texts, so the input
 * can be arbitrarily long while memory stays fixed. Output: JSON (default)
 *     {"model":"...","dim":384,"embeddings":[[...],...]}
 * or --raw: little-endian float32, n × dim, nothing else (refused on a TTY).
 */
#define _GNU_SOURCE
#include "nr_cli.h"

#include "nr_embed.h"
#include "nr_err.h"
#include "nr_mem.h"
#include "nr_str.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define GROUP    64
#define MAX_LINE (1 << 20)

struct out_state {
    int raw;
    long count; /* vectors written so far */
    int dim;
};

static void embed_usage(FILE *f)
{
    fprintf(f, "usage: nanorag embed [options] [TEXT...]\n"
               "  --model PATH      model directory (sentence-transformers) or .gguf file\n"
               "  --file F          embed each line of F (default: the TEXT arguments,\n"
               "                    else the lines of standard input)\n"
               "  --raw             write float32 little-endian vectors instead of JSON\n"
               "  --threads N       worker threads (default: one per CPU)\n"
               "  --max-seq N       tokens per text before truncation (default: the model's)\n"
               "  --int8            int8 linear layers (faster; cosine ~0.997 mean to fp32)\n");
}

static int write_vectors(struct out_state *o, const float *v, int n)
{
    if (o->raw) {
        if (fwrite(v, sizeof(float) * (size_t)o->dim, (size_t)n, stdout) != (size_t)n)
            return nr_err_set(NR_EIO, "cannot write to standard output");
        o->count += n;
        return NR_OK;
    }
    for (int i = 0; i < n; i++) {
        const float *x = v + (size_t)i * o->dim;
        fputs(o->count++ ? ",\n[" : "\n[", stdout);
        for (int j = 0; j < o->dim; j++)
            printf(j ? ",%.9g" : "%.9g", (double)x[j]);
        fputc(']', stdout);
    }
    return ferror(stdout) ? nr_err_set(NR_EIO, "cannot write to standard output") : NR_OK;
}

static int embed_group(struct nr_embedder *e, struct out_state *o, char **texts, size_t *lens,
                       int n, float *vecs)
{
    int rc = nr_embedder_embed(e, (const char *const *)texts, lens, n, vecs);
    if (rc)
        return rc;
    return write_vectors(o, vecs, n);
}

static int embed_stream(struct nr_embedder *e, struct out_state *o, FILE *in, const char *name,
                        float *vecs)
{
    char *texts[GROUP];
    size_t lens[GROUP];
    char *line = NULL;
    size_t cap = 0;
    ssize_t got;
    long lineno = 0;
    int n = 0, rc = NR_OK;

    while ((got = getline(&line, &cap, in)) >= 0) {
        lineno++;
        if (got > MAX_LINE) {
            rc = nr_err_set(NR_ELIMIT, "%s line %ld is longer than %d bytes", name, lineno,
                            MAX_LINE);
            break;
        }
        while (got > 0 && (line[got - 1] == '\n' || line[got - 1] == '\r'))
            got--;
        texts[n] = nr_strndup(line, (size_t)got);
        if (!texts[n]) {
            rc = nr_err_set(NR_ENOMEM, "out of memory reading %s", name);
            break;
        }
        lens[n++] = (size_t)got;
        if (n == GROUP) {
            rc = embed_group(e, o, texts, lens, n, vecs);
            while (n > 0)
                nr_free(texts[--n]);
            if (rc)
                break;
        }
    }
    if (rc == NR_OK && ferror(in))
        rc = nr_err_set(NR_EIO, "read error on %s", name);
    if (rc == NR_OK && n > 0)
        rc = embed_group(e, o, texts, lens, n, vecs);
    while (n > 0)
        nr_free(texts[--n]);
    free(line); /* allocated by getline */
    return rc;
}

int cli_embed(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"model", required_argument, NULL, 'm'},   {"file", required_argument, NULL, 'f'},
        {"raw", no_argument, NULL, 'r'},           {"threads", required_argument, NULL, 't'},
        {"max-seq", required_argument, NULL, 's'}, {"int8", no_argument, NULL, '8'},
        {"help", no_argument, NULL, 'h'},          {NULL, 0, NULL, 0}};
    char model[4096] = "";
    const char *file = NULL;
    struct nr_embed_opts opts;
    struct nr_embedder *e = NULL;
    struct nr_embedder_info info;
    struct out_state o = {0};
    float *vecs = NULL;
    int c, rc = NR_OK;

    nr_embed_opts_default(&opts);
    while ((c = getopt_long(argc, argv, "m:f:rt:s:8h", longopts, NULL)) != -1) {
        switch (c) {
        case 'm':
            snprintf(model, sizeof model, "%s", optarg);
            break;
        case 'f':
            file = optarg;
            break;
        case 'r':
            o.raw = 1;
            break;
        case 't':
            if (nr_parse_int(optarg, 1, 256, "--threads", &opts.threads))
                return cli_fail("embed");
            break;
        case 's':
            if (nr_parse_int(optarg, 2, 65536, "--max-seq", &opts.max_seq))
                return cli_fail("embed");
            break;
        case '8':
            opts.precision = NR_PREC_INT8;
            break;
        case 'h':
            embed_usage(stdout);
            return 0;
        default:
            embed_usage(stderr);
            return 2;
        }
    }
    if (o.raw && isatty(STDOUT_FILENO)) {
        fprintf(stderr, "nanorag: embed: --raw writes binary; redirect standard output\n");
        return 2;
    }
    if (!model[0] && cli_default_embed_model(model, sizeof model))
        return cli_fail("embed");
    if (nr_embedder_open(model, &opts, &e))
        return cli_fail("embed: loading model");
    nr_embedder_info(e, &info);
    o.dim = info.dim;
    vecs = nr_malloc(sizeof(float) * (size_t)GROUP * (size_t)o.dim);
    if (!vecs) {
        nr_embedder_close(e);
        nr_err_set(NR_ENOMEM, "out of memory");
        return cli_fail("embed");
    }
    if (!o.raw) {
        fputs("{\"model\":", stdout);
        cli_json_string(stdout, info.model);
        printf(",\"dim\":%d,\"normalized\":%s,\"embeddings\":[", info.dim,
               info.normalize ? "true" : "false");
    }

    if (optind < argc) {
        for (int i = optind; i < argc && rc == NR_OK; i += GROUP) {
            int n = argc - i < GROUP ? argc - i : GROUP;
            rc = embed_group(e, &o, argv + i, NULL, n, vecs);
        }
    } else if (file) {
        FILE *in = fopen(file, "rb");
        if (!in) {
            rc = nr_err_set(NR_ENOTFOUND, "cannot open %s", file);
        } else {
            rc = embed_stream(e, &o, in, file, vecs);
            fclose(in);
        }
    } else {
        rc = embed_stream(e, &o, stdin, "standard input", vecs);
    }
    if (!o.raw)
        printf("\n]}\n");
    fflush(stdout);
    nr_free(vecs);
    nr_embedder_close(e);
    if (rc)
        return cli_fail("embed");
    return 0;
}
