/*
 * nanorag search "query": hybrid (default), vector or BM25 retrieval over
 * the store; text or --json output with each hit's source, page, heading,
 * offsets, snippet and per-mode scores and ranks.
 * nanorag docs [list | show ID | remove ID]: the documents in the store.
 */
#include "nr_cli.h"

#include "nr_embed.h"
#include "nr_err.h"
#include "nr_pool.h"
#include "nr_retrieve.h"
#include "nr_store.h"
#include "nr_str.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void print_snippet(const char *s, int max)
{
    int n = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p && n < max; p++, n++)
        putchar(*p == '\n' || *p == '\t' ? ' ' : *p);
    /* finish a UTF-8 sequence cut by the limit */
    for (const unsigned char *p = (const unsigned char *)s + n; *p && (*p & 0xC0) == 0x80; p++)
        putchar(*p);
    if (s[n])
        fputs("...", stdout);
}

static void hit_json(const struct nr_search_hit *h, int rank, int last)
{
    const struct nr_store_chunk *c = h->chunk;
    printf("  {\"rank\":%d,\"score\":%.6g,\"chunk_id\":%lld,\"doc_id\":%lld,\"source\":", rank,
           h->score, (long long)h->chunk_id, (long long)h->doc_id);
    cli_json_string(stdout, c->source);
    printf(",\"title\":");
    if (c->title)
        cli_json_string(stdout, c->title);
    else
        fputs("null", stdout);
    printf(",\"page\":%d,\"start\":%lld,\"end\":%lld,\"heading\":", c->page, (long long)c->start,
           (long long)c->end);
    if (c->heading)
        cli_json_string(stdout, c->heading);
    else
        fputs("null", stdout);
    printf(",\"vector\":{\"rank\":%d,\"score\":%.6g},\"bm25\":{\"rank\":%d,\"score\":%.6g},"
           "\"text\":",
           h->vec_rank, (double)h->vec_score, h->bm25_rank, h->bm25_score);
    cli_json_string(stdout, c->text);
    printf("}%s\n", last ? "" : ",");
}

int cli_search(int argc, char **argv)
{
    static const struct option longopts[] = {{"data", required_argument, NULL, 'd'},
                                             {"k", required_argument, NULL, 'k'},
                                             {"mode", required_argument, NULL, 'M'},
                                             {"collection", required_argument, NULL, 'c'},
                                             {"doc", required_argument, NULL, 'D'},
                                             {"meta", required_argument, NULL, 'e'},
                                             {"min-score", required_argument, NULL, 's'},
                                             {"int8", no_argument, NULL, '8'},
                                             {"json", no_argument, NULL, 'j'},
                                             {"model", required_argument, NULL, 'm'},
                                             {"help", no_argument, NULL, 'h'},
                                             {NULL, 0, NULL, 0}};
    char model[4096] = "", data[4096] = "", meta[1024];
    struct nr_search_opts so;
    struct nr_embedder *e = NULL;
    struct nr_store *s = NULL;
    struct nr_pool *pool = NULL;
    struct nr_retriever *r = NULL;
    struct nr_search_hit hits[NR_RETRIEVE_MAX_K];
    int c, n = 0, as_json = 0, int8 = 0, rc;
    int64_t v;

    nr_search_opts_default(&so);
    while ((c = getopt_long(argc, argv, "d:k:M:c:D:e:s:8jm:h", longopts, NULL)) != -1) {
        switch (c) {
        case 'd':
            snprintf(data, sizeof data, "%s", optarg);
            break;
        case 'k':
            if (nr_parse_int(optarg, 1, NR_RETRIEVE_MAX_K, "-k", &so.k))
                return cli_fail("search");
            break;
        case 'M':
            if (!strcmp(optarg, "vector"))
                so.mode = NR_SEARCH_VECTOR;
            else if (!strcmp(optarg, "bm25"))
                so.mode = NR_SEARCH_BM25;
            else if (!strcmp(optarg, "hybrid"))
                so.mode = NR_SEARCH_HYBRID;
            else {
                fprintf(stderr, "nanorag: search: --mode is vector, bm25 or hybrid\n");
                return 2;
            }
            break;
        case 'c':
            so.collection = optarg;
            break;
        case 'D':
            if (nr_parse_i64(optarg, 1, INT64_MAX, "--doc", &v))
                return cli_fail("search");
            so.doc_id = v;
            break;
        case 'e': {
            char *eq;
            snprintf(meta, sizeof meta, "%s", optarg);
            eq = strchr(meta, '=');
            if (!eq || eq == meta) {
                fprintf(stderr, "nanorag: search: --meta takes KEY=VALUE\n");
                return 2;
            }
            *eq = '\0';
            so.meta_key = meta;
            so.meta_value = eq + 1;
            break;
        }
        case 's': {
            char *end;
            double d = strtod(optarg, &end);
            if (*end || end == optarg || !(d >= -1.0 && d <= 1.0)) {
                fprintf(stderr, "nanorag: search: --min-score takes a number in [-1, 1]\n");
                return 2;
            }
            so.min_score = (float)d;
            break;
        }
        case '8':
            int8 = so.int8 = 1;
            break;
        case 'j':
            as_json = 1;
            break;
        case 'm':
            snprintf(model, sizeof model, "%s", optarg);
            break;
        case 'h':
            printf("usage: nanorag search [--data DIR] [-k N] [--mode vector|bm25|hybrid]\n"
                   "       [--collection NAME] [--doc ID] [--meta KEY=VALUE] [--min-score S]\n"
                   "       [--int8] [--json] \"query\"\n");
            return 0;
        default:
            return 2;
        }
    }
    if (optind != argc - 1) {
        fprintf(stderr, "nanorag: search: give exactly one query\n");
        return 2;
    }
    if (!model[0] && cli_default_embed_model(model, sizeof model))
        return cli_fail("search");
    if (cli_open_store(data, sizeof data, &s))
        return cli_fail("search: opening the store");
    rc = nr_embedder_open(model, NULL, &e);
    if (rc == NR_OK)
        pool = nr_pool_new(0);
    if (rc == NR_OK && !pool)
        rc = NR_ENOMEM;
    if (rc == NR_OK) {
        struct nr_retriever_opts ro;
        nr_retriever_opts_default(&ro);
        ro.int8 = int8;
        rc = nr_retriever_open(s, e, pool, &ro, &r);
    }
    if (rc == NR_OK)
        rc = nr_retrieve(r, argv[optind], &so, hits, &n);
    if (rc == NR_OK) {
        if (as_json) {
            printf("{\"query\":");
            cli_json_string(stdout, argv[optind]);
            printf(",\"hits\":[\n");
            for (int i = 0; i < n; i++)
                hit_json(&hits[i], i + 1, i == n - 1);
            printf("]}\n");
        } else {
            if (n == 0)
                printf("no matches\n");
            for (int i = 0; i < n; i++) {
                const struct nr_store_chunk *ch = hits[i].chunk;
                printf("%2d. %.4f  %s", i + 1, hits[i].score, ch->source);
                if (ch->page)
                    printf(" p.%d", ch->page);
                if (ch->heading)
                    printf("  [%s]", ch->heading);
                printf("\n    vector #%d %.3f, bm25 #%d %.2f\n    ", hits[i].vec_rank,
                       (double)hits[i].vec_score, hits[i].bm25_rank, hits[i].bm25_score);
                print_snippet(ch->text, 200);
                printf("\n");
            }
        }
        nr_search_hits_free(hits, n);
    }
    nr_retriever_close(r);
    nr_pool_free(pool);
    nr_embedder_close(e);
    nr_store_close(s);
    return rc ? cli_fail("search") : 0;
}

int cli_docs(int argc, char **argv)
{
    char data[4096] = "";
    struct nr_store *s = NULL;
    const char *what = argc > 1 ? argv[1] : "list";
    int argi = 2, rc = NR_OK;
    int64_t id = 0;

    if (argc > 2 && !strcmp(argv[argc - 2], "--data")) {
        snprintf(data, sizeof data, "%s", argv[argc - 1]);
        argc -= 2;
    }
    if (!strcmp(what, "--help") || !strcmp(what, "-h")) {
        printf("usage: nanorag docs [list | show ID | remove ID | check] [--data DIR]\n");
        return 0;
    }
    if ((!strcmp(what, "show") || !strcmp(what, "remove")) &&
        (argi >= argc || nr_parse_i64(argv[argi], 1, INT64_MAX, "document id", &id)))
        return argi >= argc ? (fprintf(stderr, "nanorag: docs: %s needs a document id\n", what), 2)
                            : cli_fail("docs");
    if (cli_open_store(data, sizeof data, &s))
        return cli_fail("docs: opening the store");
    if (!strcmp(what, "list")) {
        int64_t after = 0;
        for (;;) {
            struct nr_store_doc *docs = NULL;
            int got = 0;
            if ((rc = nr_store_doc_list(s, NULL, after, NR_STORE_MAX_LIST, &docs, &got)))
                break;
            for (int i = 0; i < got; i++)
                printf("%6lld  %-10s %4d chunks  %s\n", (long long)docs[i].id, docs[i].collection,
                       docs[i].n_chunks, docs[i].source);
            if (got > 0)
                after = docs[got - 1].id;
            nr_store_doc_list_free(docs, got);
            if (got < NR_STORE_MAX_LIST)
                break;
        }
    } else if (!strcmp(what, "show")) {
        struct nr_store_doc *d = NULL;
        if ((rc = nr_store_doc_get(s, id, &d)) == NR_OK) {
            printf("id          %lld\ncollection  %s\nsource      %s\ntitle       %s\n"
                   "media type  %s\nsha256      %s\nchunks      %d\ntext bytes  %lld\n",
                   (long long)d->id, d->collection, d->source, d->title ? d->title : "",
                   d->media_type ? d->media_type : "", d->content_hash, d->n_chunks,
                   (long long)d->text_len);
            nr_store_doc_free(d);
        }
    } else if (!strcmp(what, "check")) {
        if ((rc = nr_store_check(s)) == NR_OK)
            printf("store ok\n");
    } else if (!strcmp(what, "remove")) {
        if ((rc = nr_store_remove(s, id)) == NR_OK)
            printf("removed document %lld\n", (long long)id);
    } else {
        nr_store_close(s);
        fprintf(stderr, "nanorag: docs: unknown action \"%s\" (list, show, remove, check)\n", what);
        return 2;
    }
    nr_store_close(s);
    return rc ? cli_fail("docs") : 0;
}
