/*
 * Embeddings against sentence-transformers (tests/fixtures/embed_ref.json,
 * made by scripts/fixtures/make_embed_fixtures.py from the same weights), and
 * the loader's behaviour on real and broken model files.
 */
#include "nr_test.h"

#include "embed_fixture.h"

#include "nr_embed.h"
#include "nr_err.h"
#include "nr_file.h"
#include "nr_mem.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define DIM   384
#define MODEL "all-MiniLM-L6-v2"

static struct nr_embedder *open_model(const char *rel, int max_seq, int budget)
{
    struct nr_embed_opts o;
    struct nr_embedder *e = NULL;
    nr_embed_opts_default(&o);
    o.max_seq = max_seq;
    if (budget)
        o.max_batch_tokens = budget;
    if (nr_embedder_open(nr_test_model_path(rel), &o, &e))
        nr_test_fail(__FILE__, __LINE__, "open %s: %s", rel, nr_err_msg());
    return e;
}

static void check_against_reference(const float *v, double min_cos, double max_diff,
                                    const char *what)
{
    double worst_cos = 1.0, worst_diff = 0.0;
    for (int i = 0; i < n_texts; i++) {
        double c = cosine(v + (size_t)i * DIM, ref + (size_t)i * DIM, DIM);
        double d = max_abs_diff(v + (size_t)i * DIM, ref + (size_t)i * DIM, DIM);
        if (c < worst_cos)
            worst_cos = c;
        if (d > worst_diff)
            worst_diff = d;
        NR_CHECK_MSG(c >= min_cos, "%s text %d: cosine %.7f < %.5f", what, i, c, min_cos);
        NR_CHECK_MSG(d <= max_diff, "%s text %d: max abs diff %.3g > %.1g", what, i, d, max_diff);
    }
    printf("  %s: %d texts, worst cosine %.8f, worst max-abs-diff %.3g\n", what, n_texts, worst_cos,
           worst_diff);
}

static void test_safetensors_matches_sentence_transformers(void)
{
    struct nr_embedder *e;
    struct nr_embedder_info info;
    float *v;
    if (!load_fixture())
        return;
    e = open_model(MODEL, 0, 0);
    if (!e)
        return;
    nr_embedder_info(e, &info);
    NR_CHECK_INT(info.dim, DIM);
    NR_CHECK_INT(info.max_seq, 256); /* from sentence_bert_config.json */
    NR_CHECK_INT(info.normalize, 1); /* from modules.json */
    v = embed_one_by_one(e);
    /* RELIABILITY E14 / issue bound: fp32 path cosine >= 0.9999, |diff| <= 1e-4 */
    check_against_reference(v, 0.9999, 1e-4, "safetensors fp32");
    {
        json_t *nt = json_object_get(fixture, "n_tokens");
        for (int i = 0; i < n_texts; i++) {
            int want = (int)json_integer_value(json_array_get(nt, (size_t)i));
            int got = nr_embedder_count_tokens(e, texts[i], strlen(texts[i]));
            NR_CHECK_MSG((got > 256 ? 256 : got) == want, "text %d: %d tokens, reference %d", i,
                         got, want);
        }
    }
    free(v);
    nr_embedder_close(e);
}

static void test_mixed_batch_equals_one_at_a_time(void)
{
    struct nr_embedder *e, *small;
    float *one, *all, *split;
    if (!load_fixture())
        return;
    e = open_model(MODEL, 0, 0);
    small = open_model(MODEL, 0, 512); /* forces many forward passes */
    if (!e || !small)
        return;
    one = embed_one_by_one(e);
    all = calloc((size_t)n_texts * DIM, sizeof *all);
    split = calloc((size_t)n_texts * DIM, sizeof *split);
    NR_CHECK_INT(nr_embedder_embed(e, texts, NULL, n_texts, all), NR_OK);
    NR_CHECK_INT(nr_embedder_embed(small, texts, NULL, n_texts, split), NR_OK);
    NR_CHECK_MSG(max_abs_diff(one, all, (size_t)n_texts * DIM) <= 1e-6,
                 "batched differs from one-at-a-time by %.3g",
                 max_abs_diff(one, all, (size_t)n_texts * DIM));
    NR_CHECK_MSG(max_abs_diff(one, split, (size_t)n_texts * DIM) <= 1e-6,
                 "512-token batches differ from one-at-a-time by %.3g",
                 max_abs_diff(one, split, (size_t)n_texts * DIM));
    /* n = 0 is a no-op, not an error */
    NR_CHECK_INT(nr_embedder_embed(e, texts, NULL, 0, all), NR_OK);
    free(one);
    free(all);
    free(split);
    nr_embedder_close(e);
    nr_embedder_close(small);
}

static void test_gguf_equals_safetensors(void)
{
    struct nr_embedder *st, *g32, *g16;
    struct nr_embedder_info info;
    float *a, *b, *c;
    if (!load_fixture())
        return;
    st = open_model(MODEL, 0, 0);
    /* GGUF carries no max_seq_length: 256 is what sentence-transformers uses. */
    g32 = open_model(MODEL "/model-f32.gguf", 256, 0);
    g16 = open_model(MODEL "/model-f16.gguf", 256, 0);
    if (!st || !g32 || !g16)
        return;
    nr_embedder_info(g32, &info);
    NR_CHECK(strcmp(info.source, "gguf") == 0);
    NR_CHECK_INT(info.max_seq, 256);
    nr_embedder_info(g16, &info);
    NR_CHECK(strcmp(info.stored, "f16") == 0);
    a = embed_one_by_one(st);
    b = embed_one_by_one(g32);
    c = embed_one_by_one(g16);
    NR_CHECK_MSG(max_abs_diff(a, b, (size_t)n_texts * DIM) <= 1e-6,
                 "GGUF f32 differs from safetensors by %.3g",
                 max_abs_diff(a, b, (size_t)n_texts * DIM));
    /* f16 weights: the fp16 bound of RELIABILITY E14 */
    check_against_reference(c, 0.999, 2e-2, "gguf f16 weights");
    free(a);
    free(b);
    free(c);
    nr_embedder_close(st);
    nr_embedder_close(g32);
    nr_embedder_close(g16);
}

/* ------------------------------------------------------------ bad files */

static char tmpdir[256];

static void copy_prefix(const char *from, const char *to, size_t n)
{
    struct nr_map m;
    FILE *f;
    if (nr_file_map(from, &m) != NR_OK) {
        nr_test_fail(__FILE__, __LINE__, "cannot map %s", from);
        return;
    }
    f = fopen(to, "wb");
    if (f) {
        if (n > m.size)
            n = m.size;
        if (n)
            fwrite(m.data, 1, n, f);
        fclose(f);
    }
    nr_file_unmap(&m);
}

static void write_text(const char *path, const char *s)
{
    FILE *f = fopen(path, "wb");
    if (f) {
        fputs(s, f);
        fclose(f);
    }
}

static const char *tmp(const char *name)
{
    static char b[4][512];
    static int k;
    char *p = b[k++ & 3];
    snprintf(p, sizeof b[0], "%s/%s", tmpdir, name);
    return p;
}

/* A model directory in tmpdir: every file linked from the real one. */
static void make_model_dir(void)
{
    static const char *files[] = {"config.json",           "vocab.txt",
                                  "tokenizer_config.json", "model.safetensors",
                                  "modules.json",          "sentence_bert_config.json",
                                  "1_Pooling/config.json"};
    mkdir(tmp("1_Pooling"), 0755);
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char src[1024];
        snprintf(src, sizeof src, "%s", nr_test_model_path(MODEL));
        strncat(src, "/", sizeof src - strlen(src) - 1);
        strncat(src, files[i], sizeof src - strlen(src) - 1);
        unlink(tmp(files[i]));
        NR_CHECK(symlink(src, tmp(files[i])) == 0);
    }
}

static int open_fails(const char *path, int max_seq, const char *what)
{
    struct nr_embedder *e = NULL;
    size_t held = nr_mem_held();
    int rc = nr_embedder_open(path, NULL, &e);
    (void)max_seq;
    if (rc == NR_OK) {
        nr_test_fail(__FILE__, __LINE__, "%s: opened a broken model", what);
        nr_embedder_close(e);
        return 0;
    }
    NR_CHECK_MSG(nr_err_msg()[0] != '\0', "%s: error without a message", what);
    NR_CHECK_MSG(nr_mem_held() == held, "%s: leaked %zu bytes", what, nr_mem_held() - held);
    printf("  %-34s -> %s\n", what, nr_err_msg());
    return 1;
}

static void test_broken_model_files_give_errors(void)
{
    const char *st = NULL;
    struct stat sb;
    char real[1024];

    snprintf(tmpdir, sizeof tmpdir, "/tmp/nr_test_embed_%d", (int)getpid());
    mkdir(tmpdir, 0755);
    make_model_dir();
    snprintf(real, sizeof real, "%s", nr_test_model_path(MODEL "/model.safetensors"));
    if (stat(real, &sb) != 0) {
        nr_test_fail(__FILE__, __LINE__, "model files missing: run scripts/fetch_models.sh");
        return;
    }
    /* the linked copy opens */
    {
        struct nr_embedder *e = NULL;
        NR_CHECK_INT(nr_embedder_open(tmpdir, NULL, &e), NR_OK);
        nr_embedder_close(e);
    }
    /* truncated safetensors at several points */
    st = tmp("model.safetensors");
    {
        size_t cuts[] = {0, 5, 8, 100, 1000, (size_t)sb.st_size / 2, (size_t)sb.st_size - 1};
        for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
            char what[64];
            unlink(st);
            copy_prefix(real, st, cuts[i]);
            snprintf(what, sizeof what, "safetensors cut at %zu", cuts[i]);
            open_fails(tmpdir, 0, what);
        }
    }
    /* garbled header: flip bytes inside the JSON header */
    {
        struct nr_map m;
        FILE *f;
        unlink(st);
        if (nr_file_map(real, &m) == NR_OK) {
            unsigned char *copy = malloc(4096);
            memcpy(copy, m.data, 4096);
            for (int i = 20; i < 4096; i += 97)
                copy[i] ^= 0x5a;
            f = fopen(st, "wb");
            fwrite(copy, 1, 4096, f);
            fwrite(m.data + 4096, 1, m.size - 4096, f);
            fclose(f);
            free(copy);
            nr_file_unmap(&m);
            open_fails(tmpdir, 0, "safetensors garbled header");
        }
    }
    unlink(st);
    NR_CHECK(symlink(real, st) == 0);

    /* config that does not match the weights, and garbage config */
    unlink(tmp("config.json"));
    write_text(tmp("config.json"), "{\"model_type\":\"bert\",\"vocab_size\":30522,"
                                   "\"hidden_size\":512,\"num_hidden_layers\":6,"
                                   "\"num_attention_heads\":8,\"intermediate_size\":1536}");
    open_fails(tmpdir, 0, "config hidden_size mismatch");
    write_text(tmp("config.json"), "{\"hidden_size\": 384,,}");
    open_fails(tmpdir, 0, "config invalid JSON");
    write_text(tmp("config.json"), "{\"vocab_size\":30522,\"hidden_size\":384,"
                                   "\"num_hidden_layers\":6,\"num_attention_heads\":7,"
                                   "\"intermediate_size\":1536}");
    open_fails(tmpdir, 0, "config heads do not divide");
    write_text(tmp("config.json"), "{\"vocab_size\":30522,\"hidden_size\":384,"
                                   "\"num_hidden_layers\":-1,\"num_attention_heads\":12,"
                                   "\"intermediate_size\":1536}");
    open_fails(tmpdir, 0, "config negative layers");
    unlink(tmp("config.json"));
    {
        char src[1024];
        snprintf(src, sizeof src, "%s", nr_test_model_path(MODEL "/config.json"));
        NR_CHECK(symlink(src, tmp("config.json")) == 0);
    }

    /* vocab: truncated (size mismatch) and garbage */
    unlink(tmp("vocab.txt"));
    copy_prefix(nr_test_model_path(MODEL "/vocab.txt"), tmp("vocab.txt"), 5000);
    open_fails(tmpdir, 0, "vocab truncated");
    unlink(tmp("vocab.txt"));
    write_text(tmp("vocab.txt"), "\xff\xfe garbage\n[UNK]\n");
    open_fails(tmpdir, 0, "vocab garbage");
    unlink(tmp("vocab.txt"));
    open_fails(tmpdir, 0, "vocab missing");

    /* GGUF truncated at several points */
    {
        const char *g = nr_test_model_path(MODEL "/model-f16.gguf");
        size_t cuts[] = {0, 4, 24, 1000, 100000, 20000000};
        for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
            char what[64];
            unlink(tmp("m.gguf"));
            copy_prefix(g, tmp("m.gguf"), cuts[i]);
            snprintf(what, sizeof what, "gguf cut at %zu", cuts[i]);
            open_fails(tmp("m.gguf"), 0, what);
        }
        unlink(tmp("m.gguf"));
    }
    open_fails(tmp("does-not-exist"), 0, "missing path");
}

/* The pooling set-up comes from 1_Pooling/config.json and modules.json
 * (bge-small: CLS + Normalize; others: max, mean_sqrt_len without Normalize),
 * checked against sentence-transformers built with those modules. */
static void test_pooling_modes_follow_config(void)
{
    static const char *modes[] = {"cls", "max", "mean_sqrt_len_tokens"};
    json_t *variants;
    if (!load_fixture())
        return;
    variants = json_object_get(fixture, "pooling_variants");
    snprintf(tmpdir, sizeof tmpdir, "/tmp/nr_test_pool_%d", (int)getpid());
    mkdir(tmpdir, 0755);
    make_model_dir();
    for (size_t m = 0; m < sizeof modes / sizeof modes[0]; m++) {
        json_t *v = json_object_get(variants, modes[m]);
        json_t *vecs = json_object_get(v, "vectors");
        int normalize = json_is_true(json_object_get(v, "normalize"));
        int n = (int)json_array_size(vecs);
        char cfg[512];
        struct nr_embedder *e = NULL;
        struct nr_embedder_info info;
        float out[DIM];
        double worst = 1.0;

        snprintf(cfg, sizeof cfg,
                 "{\"word_embedding_dimension\": 384, \"pooling_mode_cls_token\": %s, "
                 "\"pooling_mode_mean_tokens\": false, \"pooling_mode_max_tokens\": %s, "
                 "\"pooling_mode_mean_sqrt_len_tokens\": %s}",
                 m == 0 ? "true" : "false", m == 1 ? "true" : "false", m == 2 ? "true" : "false");
        unlink(tmp("1_Pooling/config.json"));
        write_text(tmp("1_Pooling/config.json"), cfg);
        unlink(tmp("modules.json"));
        write_text(tmp("modules.json"),
                   normalize ? "[{\"type\": \"sentence_transformers.models.Transformer\"},"
                               " {\"type\": \"sentence_transformers.models.Pooling\"},"
                               " {\"type\": \"sentence_transformers.models.Normalize\"}]"
                             : "[{\"type\": \"sentence_transformers.models.Transformer\"},"
                               " {\"type\": \"sentence_transformers.models.Pooling\"}]");
        if (nr_embedder_open(tmpdir, NULL, &e) != NR_OK) {
            nr_test_fail(__FILE__, __LINE__, "%s: %s", modes[m], nr_err_msg());
            continue;
        }
        nr_embedder_info(e, &info);
        NR_CHECK_INT(info.normalize, normalize);
        NR_CHECK_MSG(n >= 16, "%s: only %d reference vectors", modes[m], n);
        for (int i = 0; i < n; i++) {
            float want[DIM];
            double c, d;
            for (int j = 0; j < DIM; j++)
                want[j] = (float)json_number_value(
                    json_array_get(json_array_get(vecs, (size_t)i), (size_t)j));
            NR_CHECK_INT(nr_embedder_embed(e, &texts[i], NULL, 1, out), NR_OK);
            c = cosine(out, want, DIM);
            d = max_abs_diff(out, want, DIM);
            if (c < worst)
                worst = c;
            NR_CHECK_MSG(c >= 0.9999, "%s text %d: cosine %.7f", modes[m], i, c);
            /* unnormalized outputs are larger: relative bound */
            NR_CHECK_MSG(d <= 1e-4 * (normalize ? 1.0 : 10.0), "%s text %d: diff %.3g", modes[m], i,
                         d);
        }
        printf("  %-22s %d texts, worst cosine %.8f\n", modes[m], n, worst);
        nr_embedder_close(e);
    }
}

/* RELIABILITY D11: every allocation of a model load failing in turn gives
 * a clean error and no leak. Uses the f16 GGUF (most code paths: widening). */
static void test_allocation_failures_during_load(void)
{
    const char *path = nr_test_model_path(MODEL "/model-f16.gguf");
    struct nr_embed_opts o;
    int k, failures = 0;
    size_t held = nr_mem_held();

    nr_embed_opts_default(&o);
    o.threads = 2;
    o.max_batch_tokens = 512;
    for (k = 1; k < 2000; k++) {
        struct nr_embedder *e = NULL;
        int rc;
        nr_mem_fail_after(k);
        rc = nr_embedder_open(path, &o, &e);
        nr_mem_fail_after(0);
        if (rc == NR_OK) {
            nr_embedder_close(e);
            break;
        }
        failures++;
        NR_CHECK_MSG(nr_mem_held() == held, "allocation %d failing leaked %zu bytes", k,
                     nr_mem_held() - held);
    }
    printf("  load succeeded once %d allocations were allowed (%d failure points checked)\n", k,
           failures);
    NR_CHECK(failures > 10);
    NR_CHECK(k < 2000);
}

int main(void)
{
    NR_RUN(test_safetensors_matches_sentence_transformers);
    NR_RUN(test_mixed_batch_equals_one_at_a_time);
    NR_RUN(test_gguf_equals_safetensors);
    NR_RUN(test_broken_model_files_give_errors);
    NR_RUN(test_pooling_modes_follow_config);
    NR_RUN(test_allocation_failures_during_load);
    return nr_test_summary();
}
