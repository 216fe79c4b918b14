/*
 * The ingest pipeline and hybrid retrieval end to end: real files, the real
 * embedder, a real SQLite store in a temp directory.
 */
#include "nr_test.h"

#include "nr_embed.h"
#include "nr_err.h"
#include "nr_ingest.h"
#include "nr_pool.h"
#include "nr_retrieve.h"
#include "nr_store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[256], corpus[300], db[300];
static struct nr_embedder *emb;

static void write_file(const char *name, const char *text)
{
    char p[512];
    FILE *f;
    snprintf(p, sizeof p, "%s/%s", corpus, name);
    f = fopen(p, "wb");
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

static int setup(void)
{
    struct nr_embed_opts o;
    if (emb)
        return 1;
    snprintf(dir, sizeof dir, "/tmp/nr_test_rag_%d", (int)getpid());
    snprintf(corpus, sizeof corpus, "%s/corpus", dir);
    snprintf(db, sizeof db, "%s/store.db", dir);
    mkdir(dir, 0755);
    mkdir(corpus, 0755);
    write_file("routers.md", "# Routers\n\nTo reset the admin password of a home router, hold the "
                             "reset button for ten seconds, then log in with the default "
                             "credentials printed on the label.\n\n## Firmware\n\nFirmware "
                             "updates are downloaded from the vendor's support page.\n");
    write_file("cooking.txt", "A good risotto needs arborio rice, warm stock added one ladle at a "
                              "time, and constant stirring for about eighteen minutes.\n");
    write_file("space.html",
               "<html><head><title>Mars</title><script>var x = 'rover';</script></head><body>"
               "<nav>menu</nav><h1>Mars</h1><p>Mars is the fourth planet from the Sun; its red "
               "colour comes from iron oxide dust.</p></body></html>");
    write_file("broken.pdf", "%PDF-1.4 this is not really a pdf");
    write_file("empty.txt", "");
    nr_embed_opts_default(&o);
    o.threads = 2;
    if (nr_embedder_open(nr_test_model_path("all-MiniLM-L6-v2"), &o, &emb)) {
        nr_test_fail(__FILE__, __LINE__, "embedder: %s", nr_err_msg());
        return 0;
    }
    return 1;
}

struct counts {
    int added, unchanged, replaced, failed;
};

static void count_file(void *ctx, const struct nr_ingest_file *f)
{
    struct counts *c = ctx;
    if (f->status == NR_INGEST_ADDED)
        c->added++;
    else if (f->status == NR_INGEST_UNCHANGED)
        c->unchanged++;
    else if (f->status == NR_INGEST_REPLACED)
        c->replaced++;
    else {
        c->failed++;
        NR_CHECK_MSG(f->error && f->error[0], "failed file without a reason");
        NR_CHECK_MSG(strstr(f->error, dir) == NULL, "error message carries a path: %s", f->error);
    }
}

static int ingest(struct nr_store *s, struct counts *c, struct nr_ingest_summary *sum)
{
    const char *paths[] = {corpus};
    memset(c, 0, sizeof *c);
    return nr_ingest_paths(s, emb, paths, 1, NULL, count_file, NULL, c, sum);
}

static int top_source_is(struct nr_retriever *r, const char *query, int mode, const char *name)
{
    struct nr_search_opts o;
    struct nr_search_hit hits[5];
    int n = 0, ok;
    nr_search_opts_default(&o);
    o.mode = mode;
    o.k = 3;
    if (nr_retrieve(r, query, &o, hits, &n) != NR_OK) {
        nr_test_fail(__FILE__, __LINE__, "retrieve: %s", nr_err_msg());
        return 0;
    }
    ok = n > 0 && strstr(hits[0].chunk->source, name) != NULL;
    if (!ok)
        printf("  query \"%s\" mode %d: top is %s\n", query, mode,
               n ? hits[0].chunk->source : "(none)");
    if (n > 0) {
        const struct nr_store_chunk *c = hits[0].chunk;
        NR_CHECK(c->start >= 0 && c->end >= c->start);
        NR_CHECK((int64_t)strlen(c->text) == c->end - c->start);
    }
    nr_search_hits_free(hits, n);
    return ok;
}

static void test_ingest_then_search(void)
{
    struct nr_store *s = NULL;
    struct nr_pool *pool = NULL;
    struct nr_retriever *r = NULL;
    struct counts c;
    struct nr_ingest_summary sum;

    if (!setup())
        return;
    unlink(db);
    NR_CHECK_INT(nr_store_open(db, &s), NR_OK);
    if (!s)
        return;
    NR_CHECK_INT(ingest(s, &c, &sum), NR_OK);
    NR_CHECK_INT(c.added, 3);  /* md, txt, html */
    NR_CHECK_INT(c.failed, 2); /* broken pdf, empty file: the batch went on */
    NR_CHECK_INT(sum.added, 3);
    NR_CHECK(sum.chunks >= 3);

    pool = nr_pool_new(2);
    {
        struct nr_retriever_opts ro;
        nr_retriever_opts_default(&ro);
        ro.int8 = 1;
        NR_CHECK_INT(nr_retriever_open(s, emb, pool, &ro, &r), NR_OK);
    }
    if (r) {
        NR_CHECK_INT(nr_retriever_count(r), sum.chunks);
        for (int mode = NR_SEARCH_VECTOR; mode <= NR_SEARCH_HYBRID; mode++) {
            NR_CHECK(top_source_is(r, "how do I reset my router password", mode, "routers.md"));
            NR_CHECK(top_source_is(r, "risotto rice stock", mode, "cooking.txt"));
        }
        /* semantic only: no shared words with the text */
        NR_CHECK(top_source_is(r, "which planet looks red", NR_SEARCH_VECTOR, "space.html"));
        /* script and nav text are not indexed */
        {
            struct nr_search_opts o;
            struct nr_search_hit hits[5];
            int n = 0;
            nr_search_opts_default(&o);
            o.mode = NR_SEARCH_BM25;
            NR_CHECK_INT(nr_retrieve(r, "rover", &o, hits, &n), NR_OK);
            NR_CHECK_INT(n, 0);
            /* filters: an unknown collection matches nothing in every mode */
            o.mode = NR_SEARCH_HYBRID;
            o.collection = "nope";
            NR_CHECK_INT(nr_retrieve(r, "router", &o, hits, &n), NR_OK);
            NR_CHECK_INT(n, 0);
            o.collection = NULL;
            o.k = 0;
            NR_CHECK_INT(nr_retrieve(r, "router", &o, hits, &n), NR_EINVAL);
        }
    }

    /* again: every good file is unchanged, nothing re-embedded */
    NR_CHECK_INT(ingest(s, &c, &sum), NR_OK);
    NR_CHECK_INT(c.unchanged, 3);
    NR_CHECK_INT(sum.chunks, 0);

    /* a changed file replaces its old version */
    write_file("cooking.txt", "Bread needs flour, water, salt and yeast, and a long slow rise.\n");
    NR_CHECK_INT(ingest(s, &c, &sum), NR_OK);
    NR_CHECK_INT(c.replaced, 1);
    if (r) {
        struct nr_store_doc *docs = NULL;
        int n = 0;
        NR_CHECK_INT(nr_store_doc_list(s, NULL, 0, 100, &docs, &n), NR_OK);
        for (int i = 0; i < n; i++)
            NR_CHECK_INT(nr_retriever_update_doc(r, docs[i].id), NR_OK);
        nr_store_doc_list_free(docs, n);
        NR_CHECK(top_source_is(r, "yeast and flour", NR_SEARCH_HYBRID, "cooking.txt"));
        NR_CHECK(!top_source_is(r, "risotto arborio", NR_SEARCH_BM25, "cooking.txt"));
    }
    NR_CHECK_INT(nr_store_check(s), NR_OK);
    nr_retriever_close(r);
    nr_pool_free(pool);
    nr_store_close(s);
}

/* include/exclude globs, and a 100 MB file in the batch: refused by size
 * before it is read, while the rest of the batch goes in. */
static void test_globs_and_huge_file(void)
{
    char sub[400], big[420], p[420];
    struct nr_store *s = NULL;
    struct nr_ingest_opts o;
    struct counts c = {0};
    struct nr_ingest_summary sum;
    const char *paths[1];
    const char *inc[] = {"*.md", "*.txt"}, *exc[] = {"skip*"};
    FILE *f;

    if (!setup())
        return;
    snprintf(sub, sizeof sub, "%s/globs", dir);
    mkdir(sub, 0755);
    snprintf(p, sizeof p, "%s/a.md", sub);
    f = fopen(p, "wb");
    fputs("# Alpha\n\nThe alpha document talks about lighthouses.\n", f);
    fclose(f);
    snprintf(p, sizeof p, "%s/skip_me.md", sub);
    f = fopen(p, "wb");
    fputs("excluded by the glob\n", f);
    fclose(f);
    snprintf(p, sizeof p, "%s/b.html", sub);
    f = fopen(p, "wb");
    fputs("<p>not included</p>", f);
    fclose(f);
    snprintf(big, sizeof big, "%s/huge.txt", sub);
    f = fopen(big, "wb");
    NR_CHECK(f && ftruncate(fileno(f), 100L << 20) == 0); /* 100 MB, sparse */
    fclose(f);

    unlink(db);
    NR_CHECK_INT(nr_store_open(db, &s), NR_OK);
    if (!s)
        return;
    nr_ingest_opts_default(&o);
    o.include = inc;
    o.n_include = 2;
    o.exclude = exc;
    o.n_exclude = 1;
    paths[0] = sub;
    NR_CHECK_INT(nr_ingest_paths(s, emb, paths, 1, &o, count_file, NULL, &c, &sum), NR_OK);
    NR_CHECK_INT(c.added, 1);  /* a.md */
    NR_CHECK_INT(c.failed, 1); /* huge.txt: over the size limit */
    NR_CHECK_INT(sum.added + sum.failed + sum.unchanged + sum.replaced, 2); /* b.html, skip_me.md
                                                                              never walked */
    NR_CHECK_INT(nr_store_check(s), NR_OK);
    nr_store_close(s);
    unlink(big);
}

int main(void)
{
    NR_RUN(test_ingest_then_search);
    NR_RUN(test_globs_and_huge_file);
    nr_embedder_close(emb);
    return nr_test_summary();
}
