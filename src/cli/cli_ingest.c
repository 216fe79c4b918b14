/*
 * nanorag ingest PATH...: files and directories into the store.
 * A progress bar on a terminal (files, chunks, chunks/s, ETA), a line per
 * failed file with its reason, and a summary; exit 1 if any file failed.
 */
#include "nr_cli.h"

#include "nr_embed.h"
#include "nr_err.h"
#include "nr_ingest.h"
#include "nr_store.h"
#include "nr_str.h"

#include <getopt.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#define MAX_GLOBS 64

struct ui {
    int tty;   /* progress bar on stderr */
    int quiet; /* no per-file lines */
    int drawn; /* a bar is on the current line */
};

static void clear_bar(struct ui *u)
{
    if (u->drawn) {
        fputs("\r\033[K", stderr);
        u->drawn = 0;
    }
}

static void on_file(void *ctx, const struct nr_ingest_file *f)
{
    struct ui *u = ctx;
    static const char *names[] = {"", "added", "unchanged", "replaced", "failed"};
    if (f->status == NR_INGEST_FAILED) {
        clear_bar(u);
        fprintf(stderr, "failed     %s: %s\n", f->source, f->error ? f->error : "error");
    } else if (!u->quiet) {
        clear_bar(u);
        printf("%-10s %s (%d chunks)\n", names[f->status], f->source, f->n_chunks);
        fflush(stdout);
    }
}

static void on_progress(void *ctx, const struct nr_ingest_progress *p)
{
    struct ui *u = ctx;
    int width = 24, fill;
    char bar[32];
    if (!u->tty)
        return;
    fill = p->files_total ? (int)((long long)width * p->files_done / p->files_total) : width;
    for (int i = 0; i < width; i++)
        bar[i] = i < fill ? '#' : '-';
    bar[width] = '\0';
    fprintf(stderr, "\r\033[K[%s] %d/%d files  %lld chunks  %.1f chunks/s  ETA %d:%02d", bar,
            p->files_done, p->files_total, (long long)p->chunks, p->chunks_per_s,
            (int)(p->eta_s / 60), (int)p->eta_s % 60);
    u->drawn = 1;
}

int cli_ingest(int argc, char **argv)
{
    static const struct option longopts[] = {{"data", required_argument, NULL, 'd'},
                                             {"collection", required_argument, NULL, 'c'},
                                             {"include", required_argument, NULL, 'i'},
                                             {"exclude", required_argument, NULL, 'x'},
                                             {"chunk-tokens", required_argument, NULL, 't'},
                                             {"overlap", required_argument, NULL, 'o'},
                                             {"model", required_argument, NULL, 'm'},
                                             {"threads", required_argument, NULL, 'j'},
                                             {"quiet", no_argument, NULL, 'q'},
                                             {"help", no_argument, NULL, 'h'},
                                             {NULL, 0, NULL, 0}};
    const char *include[MAX_GLOBS], *exclude[MAX_GLOBS];
    char model[4096] = "", data[4096] = "";
    struct nr_ingest_opts o;
    struct nr_embed_opts eo;
    struct nr_embedder *e = NULL;
    struct nr_store *s = NULL;
    struct nr_ingest_summary sum;
    struct ui u = {0};
    int c, rc;

    nr_ingest_opts_default(&o);
    nr_embed_opts_default(&eo);
    o.include = include;
    o.exclude = exclude;
    while ((c = getopt_long(argc, argv, "d:c:i:x:t:o:m:j:qh", longopts, NULL)) != -1) {
        switch (c) {
        case 'd':
            snprintf(data, sizeof data, "%s", optarg);
            break;
        case 'c':
            o.collection = optarg;
            break;
        case 'i':
        case 'x':
            if ((c == 'i' ? o.n_include : o.n_exclude) >= MAX_GLOBS) {
                fprintf(stderr, "nanorag: ingest: at most %d globs\n", MAX_GLOBS);
                return 2;
            }
            if (c == 'i')
                include[o.n_include++] = optarg;
            else
                exclude[o.n_exclude++] = optarg;
            break;
        case 't':
            if (nr_parse_int(optarg, 16, 512, "--chunk-tokens", &o.chunk.target_tokens))
                return cli_fail("ingest");
            break;
        case 'o':
            if (nr_parse_int(optarg, 0, 256, "--overlap", &o.chunk.overlap_tokens))
                return cli_fail("ingest");
            break;
        case 'm':
            snprintf(model, sizeof model, "%s", optarg);
            break;
        case 'j':
            if (nr_parse_int(optarg, 1, 256, "--threads", &eo.threads))
                return cli_fail("ingest");
            break;
        case 'q':
            u.quiet = 1;
            break;
        case 'h':
            printf("usage: nanorag ingest [--data DIR] [--collection NAME] [--include GLOB]...\n"
                   "                      [--exclude GLOB]... [--chunk-tokens N] [--overlap N]\n"
                   "                      [--model PATH] [--threads N] [--quiet] PATH...\n");
            return 0;
        default:
            return 2;
        }
    }
    if (optind >= argc) {
        fprintf(stderr, "nanorag: ingest: no files or directories given\n");
        return 2;
    }
    if (o.chunk.target_tokens > o.chunk.max_tokens)
        o.chunk.target_tokens = o.chunk.max_tokens;
    if (!model[0] && cli_default_embed_model(model, sizeof model))
        return cli_fail("ingest");
    if (cli_open_store(data, sizeof data, &s))
        return cli_fail("ingest: opening the store");
    if (nr_embedder_open(model, &eo, &e)) {
        nr_store_close(s);
        return cli_fail("ingest: loading model");
    }
    u.tty = isatty(STDERR_FILENO);
    rc = nr_ingest_paths(s, e, (const char *const *)argv + optind, argc - optind, &o, on_file,
                         on_progress, &u, &sum);
    clear_bar(&u);
    nr_embedder_close(e);
    nr_store_close(s);
    if (rc)
        return cli_fail("ingest");
    printf("added %d, unchanged %d, replaced %d, failed %d; %lld chunks in %.1f s (%.1f chunks/s, "
           "%.0f%% of the time embedding)\n",
           sum.added, sum.unchanged, sum.replaced, sum.failed, (long long)sum.chunks, sum.seconds,
           sum.seconds > 0 ? (double)sum.chunks / sum.seconds : 0.0,
           sum.seconds > 0 ? 100.0 * sum.embed_seconds / sum.seconds : 0.0);
    return sum.failed ? 1 : 0;
}
