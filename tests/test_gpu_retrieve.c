/*
 * Retrieval with the GPU mirror of the vector index (nr_retrieve.h) against
 * the CPU index, on a real store filled through the real ingest pipeline
 * and queried through the real embedder:
 *
 * - device "cuda" (mirror from the first vector) gives the same hits as
 *   device "cpu" for vector and hybrid searches, unfiltered, by
 *   collection, over a minimum score, as int8 searches, with a document
 *   filter (answered by the CPU index), and with more candidates than the
 *   mirror takes (CPU);
 * - again after documents are added (the mirror grows past its first
 *   capacity), replaced and removed;
 * - a mirror asked for above a threshold is built when updates cross it;
 * - every search is counted where it ran.
 *
 * Without a GPU (CI) the same calls must fall back: "cuda" and "auto" open,
 * say why the GPU is not used, and answer exactly as "cpu" does.
 */
#include "nr_test.h"

#include "nr_embed.h"
#include "nr_err.h"
#include "nr_gpu.h"
#include "nr_gpu_index.h"
#include "nr_ingest.h"
#include "nr_pool.h"
#include "nr_retrieve.h"
#include "nr_store.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[256], db[300];
static struct nr_embedder *emb;
static struct nr_store *store;
static uint64_t rng = 0x2545f4914f6cdd1dull;

static unsigned rnd(unsigned n)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (unsigned)(rng >> 33) % n;
}

static const char *const topics[] = {"router", "risotto",  "planet",    "violin", "glacier",
                                     "tax",    "bicycle",  "compiler",  "orchid", "volcano",
                                     "sonnet", "espresso", "satellite", "harbor", "vaccine"};
static const char *const verbs[] = {"needs",    "explains", "changes", "protects",
                                    "measures", "follows",  "repairs", "describes"};
static const char *const things[] = {"the firmware update", "a slow simmer",     "its orbit",
                                     "the bow pressure",    "winter snowfall",   "the filing date",
                                     "the chain tension",   "register pressure", "humid air",
                                     "the magma chamber",   "the final couplet", "fine grounds",
                                     "the ground station",  "the tide table",    "a booster dose"};

/* A document of n paragraphs of sentences about mostly one topic. */
static char *make_doc(int n, int topic)
{
    size_t cap = 4096, len = 0;
    char *t = malloc(cap);
    for (int p = 0; t && p < n; p++) {
        for (int s = 0; s < 4; s++) {
            int tp = rnd(4) ? topic : (int)rnd(15);
            char sent[256];
            int m = snprintf(sent, sizeof sent, "The %s %s %s near item %u. ", topics[tp],
                             verbs[rnd(8)], things[rnd(15)], rnd(1000));
            if (len + (size_t)m + 3 > cap) {
                char *u = realloc(t, cap *= 2);
                if (!u) {
                    free(t);
                    return NULL;
                }
                t = u;
            }
            memcpy(t + len, sent, (size_t)m);
            len += (size_t)m;
        }
        t[len++] = '\n';
        t[len++] = '\n';
    }
    if (t)
        t[len] = '\0';
    return t;
}

static int64_t doc_ids[1024];
static int n_docs;

/* Ingest docs [from, to) named d<i> into collections c0..c2 (replacing any
 * earlier version) and refresh every retriever given. */
static int add_docs(int from, int to, struct nr_retriever **rs, int nr)
{
    static const char *const cols[] = {"c0", "c1", "c2"};
    for (int i = from; i < to; i++) {
        struct nr_ingest_opts o;
        struct nr_ingest_file f;
        char name[32], *text = make_doc(2 + (int)rnd(4), i % 15);
        int rc;
        if (!text)
            return 0;
        nr_ingest_opts_default(&o);
        o.collection = cols[i % 3];
        o.chunk.target_tokens = 40;
        o.chunk.max_tokens = 64;
        o.chunk.overlap_tokens = 0;
        snprintf(name, sizeof name, "d%d", i);
        rc = nr_ingest_mem(store, emb, name, text, strlen(text), NR_LOAD_TEXT, &o, &f, NULL);
        free(text);
        if (rc || f.status == NR_INGEST_FAILED) {
            nr_test_fail(__FILE__, __LINE__, "ingest %s: %s", name, nr_err_msg());
            return 0;
        }
        if (i < (int)(sizeof doc_ids / sizeof doc_ids[0])) {
            doc_ids[i] = f.doc_id;
            if (i >= n_docs)
                n_docs = i + 1;
        }
        for (int k = 0; k < nr; k++)
            if (nr_retriever_update_doc(rs[k], f.doc_id) != NR_OK) {
                nr_test_fail(__FILE__, __LINE__, "update: %s", nr_err_msg());
                return 0;
            }
    }
    return 1;
}

/* The same hits: ids in order (a swap only inside a near tie, as fp32 sums
 * in another order may flip it), cosines within 1e-5. */
static void same_hits(const struct nr_search_hit *a, int na, const struct nr_search_hit *b, int nb,
                      const char *what)
{
    NR_CHECK_MSG(na == nb, "%s: %d hits vs %d", what, na, nb);
    for (int j = 0; j < na && j < nb; j++) {
        NR_CHECK_MSG(fabsf(a[j].vec_score - b[j].vec_score) <= 1e-5f,
                     "%s rank %d: cosine %.7f vs %.7f", what, j, a[j].vec_score, b[j].vec_score);
        if (a[j].chunk_id != b[j].chunk_id) {
            int near = (j > 0 && fabsf(a[j].vec_score - a[j - 1].vec_score) <= 2e-6f) ||
                       (j + 1 < na && fabsf(a[j].vec_score - a[j + 1].vec_score) <= 2e-6f);
            NR_CHECK_MSG(near, "%s rank %d: chunk %lld vs %lld", what, j, (long long)a[j].chunk_id,
                         (long long)b[j].chunk_id);
        }
    }
}

enum { F_NONE, F_COLL, F_MIN, F_INT8, F_DOC, F_BIGK, F_HYBRID, F_COUNT };
static const char *const fnames[] = {"none",     "collection", "min-score", "int8",
                                     "document", "k=20",       "hybrid"};

/* Every query x filter on both retrievers; *gpu_runs gets the searches the
 * filters send to the mirror when b has one. */
static void compare(struct nr_retriever *a, struct nr_retriever *b, const char *stage)
{
    static const char *const queries[] = {"how do I update router firmware",
                                          "risotto simmer",
                                          "which planet orbit",
                                          "violin bow",
                                          "glacier snowfall",
                                          "tax filing date",
                                          "bicycle chain",
                                          "compiler registers",
                                          "orchid humidity",
                                          "volcano magma",
                                          "harbor tides",
                                          "vaccine booster dose"};
    struct nr_search_hit ha[20], hb[20];
    for (size_t q = 0; q < sizeof queries / sizeof queries[0]; q++) {
        for (int f = 0; f < F_COUNT; f++) {
            struct nr_search_opts o;
            int na = 0, nb = 0;
            char what[160];
            nr_search_opts_default(&o);
            o.mode = f == F_HYBRID ? NR_SEARCH_HYBRID : NR_SEARCH_VECTOR;
            o.k = f == F_BIGK ? 20 : 8;
            if (f == F_COLL)
                o.collection = "c1";
            if (f == F_MIN)
                o.min_score = 0.45f;
            o.int8 = f == F_INT8;
            if (f == F_DOC)
                o.doc_id = doc_ids[q % n_docs];
            snprintf(what, sizeof what, "%s, query %zu, filter %s", stage, q, fnames[f]);
            NR_CHECK_INT(nr_retrieve(a, queries[q], &o, ha, &na), NR_OK);
            NR_CHECK_INT(nr_retrieve(b, queries[q], &o, hb, &nb), NR_OK);
            if (f == F_INT8) /* int8 on the CPU re-scores in fp32: same as exact here */
                NR_CHECK_MSG(na > 0, "%s: no hits", what);
            if (f == F_HYBRID) {
                NR_CHECK_INT(na, nb);
                for (int j = 0; j < na && j < nb; j++)
                    NR_CHECK_MSG(ha[j].vec_rank == hb[j].vec_rank &&
                                     ha[j].bm25_rank == hb[j].bm25_rank,
                                 "%s rank %d: ranks differ", what, j);
            } else {
                same_hits(ha, na, hb, nb, what);
            }
            if (f == F_MIN)
                for (int j = 0; j < nb; j++)
                    NR_CHECK(hb[j].vec_score >= 0.45f);
            nr_search_hits_free(ha, na);
            nr_search_hits_free(hb, nb);
        }
    }
}

static struct nr_retriever *open_r(const char *device, int64_t min_rows)
{
    struct nr_retriever_opts o;
    struct nr_retriever *r = NULL;
    nr_retriever_opts_default(&o);
    o.int8 = 1;
    o.device = device;
    o.gpu_min_rows = min_rows;
    if (nr_retriever_open(store, emb, NULL, &o, &r) != NR_OK)
        nr_test_fail(__FILE__, __LINE__, "retriever %s: %s", device, nr_err_msg());
    return r;
}

static int setup(void)
{
    struct nr_embed_opts o;
    snprintf(dir, sizeof dir, "/tmp/nr_test_gpu_retrieve_%d", (int)getpid());
    snprintf(db, sizeof db, "%s/store.db", dir);
    mkdir(dir, 0755);
    unlink(db);
    nr_embed_opts_default(&o);
    o.device = "auto";
    o.threads = 2;
    if (nr_embedder_open(nr_test_model_path("all-MiniLM-L6-v2/model-f16.gguf"), &o, &emb) ||
        nr_store_open(db, &store)) {
        nr_test_fail(__FILE__, __LINE__, "setup: %s", nr_err_msg());
        return 0;
    }
    return 1;
}

/* No GPU: "cuda" and "auto" fall back, with a reason, to the CPU's answers. */
static void test_fallback(void)
{
    const char *why = NULL;
    struct nr_retriever *c, *g, *a;
    struct nr_retriever_info in;
    if (nr_gpu_count(&why) > 0) {
        NR_SKIP("a GPU is present: the fallback is not taken here");
        return;
    }
    if (!add_docs(0, 24, NULL, 0))
        return;
    c = open_r("cpu", 0);
    g = open_r("cuda", 0);
    a = open_r("auto", 0);
    if (c && g && a) {
        nr_retriever_info(g, &in);
        NR_CHECK(strcmp(in.device, "cpu") == 0 && strcmp(in.asked, "cuda") == 0);
        NR_CHECK_MSG(strstr(in.note, "GPU") != NULL, "note: %s", in.note);
        NR_CHECK(in.gpu_bytes == 0);
        nr_retriever_info(a, &in);
        NR_CHECK(strcmp(in.device, "cpu") == 0 && in.note[0]);
        compare(c, g, "fallback cuda");
        compare(c, a, "fallback auto");
        nr_retriever_info(g, &in);
        NR_CHECK(in.gpu_searches == 0 && in.cpu_searches > 0);
    }
    nr_retriever_close(c);
    nr_retriever_close(g);
    nr_retriever_close(a);
}

static void test_gpu_equals_cpu(void)
{
    const char *why = NULL;
    struct nr_retriever *c = NULL, *g = NULL, *t = NULL;
    struct nr_retriever_info in;
    int64_t first;
    uint64_t before;
    if (nr_gpu_count(&why) < 1) {
        NR_SKIP("no CUDA device (%s)", why ? why : "unknown");
        return;
    }
    if (!add_docs(0, 150, NULL, 0))
        return;
    c = open_r("cpu", 0);
    g = open_r("cuda", 0);
    if (!c || !g)
        goto out;
    nr_retriever_info(g, &in);
    first = in.vectors;
    printf("  %lld vectors, mirror %.1f MiB\n", (long long)in.vectors, in.gpu_bytes / 1048576.0);
    NR_CHECK_MSG(strcmp(in.device, "cuda") == 0, "device %s: %s", in.device, in.note);
    NR_CHECK(in.gpu_bytes > 0 && in.vectors > 300);
    /* a threshold above the count: no mirror yet */
    t = open_r("cuda", first + 400);
    if (t) {
        nr_retriever_info(t, &in);
        NR_CHECK(strcmp(in.device, "cpu") == 0 && strstr(in.note, "fewer than"));
    }
    compare(c, g, "loaded");
    nr_retriever_info(g, &in);
    /* 12 queries: none, collection, min-score, int8, hybrid on the GPU;
     * document and k=20 (80 candidates > 64) on the CPU */
    NR_CHECK_INT((int)in.gpu_searches, 12 * 5);
    NR_CHECK_INT((int)in.cpu_searches, 12 * 2);

    /* more documents than the first capacity (count * 1.25 + 1024) holds,
     * a few replaced, a few removed */
    {
        struct nr_retriever *rs[3] = {c, g, t};
        if (!add_docs(150, 600, rs, t ? 3 : 2) || !add_docs(10, 20, rs, t ? 3 : 2))
            goto out;
    }
    for (int i = 30; i < 60; i += 3) {
        NR_CHECK_INT(nr_store_remove(store, doc_ids[i]), NR_OK);
        NR_CHECK_INT(nr_retriever_remove_doc(c, doc_ids[i]), NR_OK);
        NR_CHECK_INT(nr_retriever_remove_doc(g, doc_ids[i]), NR_OK);
        if (t)
            NR_CHECK_INT(nr_retriever_remove_doc(t, doc_ids[i]), NR_OK);
    }
    nr_retriever_info(g, &in);
    printf("  after updates: %lld vectors, mirror %.1f MiB\n", (long long)in.vectors,
           in.gpu_bytes / 1048576.0);
    NR_CHECK(strcmp(in.device, "cuda") == 0);
    NR_CHECK_MSG(in.vectors > first + first / 4 + 1024, "%lld vectors: the mirror did not grow",
                 (long long)in.vectors);
    NR_CHECK_INT(in.vectors, nr_retriever_count(c));
    before = in.gpu_searches;
    compare(c, g, "updated");
    nr_retriever_info(g, &in);
    NR_CHECK_INT((int)(in.gpu_searches - before), 12 * 5);
    if (t) {
        nr_retriever_info(t, &in);
        NR_CHECK_MSG(strcmp(in.device, "cuda") == 0, "threshold crossed, device %s: %s", in.device,
                     in.note);
        compare(c, t, "mirrored after the threshold");
    }
    NR_CHECK_INT(nr_store_check(store), NR_OK);
out:
    nr_retriever_close(c);
    nr_retriever_close(g);
    nr_retriever_close(t);
}

static void test_bad_options(void)
{
    struct nr_retriever_opts o;
    struct nr_retriever *r = NULL;
    nr_retriever_opts_default(&o);
    o.device = "tpu";
    NR_CHECK_INT(nr_retriever_open(store, emb, NULL, &o, &r), NR_EINVAL);
    NR_CHECK(r == NULL && strstr(nr_err_msg(), "tpu"));
    o.device = "cpu";
    o.gpu_min_rows = -1;
    NR_CHECK_INT(nr_retriever_open(store, emb, NULL, &o, &r), NR_EINVAL);
}

int main(void)
{
    if (!setup())
        return nr_test_summary();
    NR_RUN(test_bad_options);
    NR_RUN(test_fallback);
    NR_RUN(test_gpu_equals_cpu);
    nr_store_close(store);
    nr_embedder_close(emb);
    unlink(db);
    rmdir(dir);
    return nr_test_summary();
}
