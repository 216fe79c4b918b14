/*
 * nr_tok against Hugging Face. tests/fixtures/tok_<name>.json (made by
 * scripts/fixtures/make_tok_fixtures.py) holds, for 260 texts per
 * vocabulary, the reference ids without special-token parsing, the ids with
 * BOS and special tokens parsed, and the reference decode. Vocabularies:
 *   smollm2  byte-level BPE, pre "smollm" (models/smollm2-135m-instruct)
 *   gemma3   SentencePiece BPE, byte fallback, no space prefix (models/gemma-3-270m)
 *   llama3   byte-level BPE, pre "llama-bpe" (models/llama3-tokenizer, setup --test)
 *   mistral  SentencePiece BPE with add_space_prefix (models/mistral-tokenizer, setup --test)
 * tok_variants.json covers the other byte-level pre-tokenizers on real
 * vocabularies: SmolLM2's written with pre "gpt2", Llama 3's with "qwen2".
 * A missing model file fails the test (setup.sh [--test] provides them all).
 *
 * Besides the ids: the caller's cap (prefix + full count), decode round trips
 * (pieces concatenated give the text back; the stream gives HF's decode),
 * invalid UTF-8 (encoded as bytes, decoded back byte for byte), the stream's
 * hold-back of split characters, malformed vocabularies written with our GGUF
 * writer (each gives its own error), allocation failure at every step of
 * construction and encode, and threads sharing one tokenizer.
 */
#include "nr_test.h"

#include "nr_err.h"
#include "nr_gguf.h"
#include "nr_mem.h"
#include "nr_tok.h"

#include <jansson.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_IDS 8192

static struct nr_tok *open_tok(const char *rel)
{
    struct nr_gguf *g = NULL;
    struct nr_tok *t = NULL;
    const char *path = nr_test_model_path(rel);
    int rc = nr_gguf_open(path, &g);
    NR_CHECK_MSG(rc == NR_OK, "open %s: %s (run scripts/setup.sh --test)", path, nr_err_msg());
    if (rc != NR_OK)
        return NULL;
    rc = nr_tok_open_gguf(g, &t);
    NR_CHECK_MSG(rc == NR_OK, "tokenizer of %s: %s", path, nr_err_msg());
    nr_gguf_close(g);
    return rc == NR_OK ? t : NULL;
}

static json_t *load_fixture(const char *name)
{
    char rel[128];
    json_error_t je;
    snprintf(rel, sizeof rel, "tests/fixtures/tok_%s.json", name);
    json_t *j = json_load_file(nr_test_src_path(rel), 0, &je);
    NR_CHECK_MSG(j != NULL, "fixture %s: %s", rel, je.text);
    return j;
}

static int ids_equal(const int32_t *a, int na, json_t *arr)
{
    if ((size_t)na != json_array_size(arr))
        return 0;
    for (int i = 0; i < na; i++)
        if (a[i] != (int32_t)json_integer_value(json_array_get(arr, (size_t)i)))
            return 0;
    return 1;
}

static void print_ids(const char *what, const int32_t *a, int n, json_t *arr)
{
    printf("    %s ours:", what);
    for (int i = 0; i < n && i < 40; i++)
        printf(" %d", a[i]);
    printf("\n    %s want:", what);
    for (size_t i = 0; i < json_array_size(arr) && i < 40; i++)
        printf(" %lld", (long long)json_integer_value(json_array_get(arr, i)));
    printf("\n");
}

/* Stream-decode ids into out (cap bytes); returns the length. */
static size_t stream_all(const struct nr_tok *t, const int32_t *ids, int n, char *out, size_t cap)
{
    struct nr_tok_stream s;
    char buf[NR_TOK_STREAM_CAP];
    size_t o = 0;
    nr_tok_stream_init(&s, t);
    for (int i = 0; i <= n; i++) {
        int k = i < n ? nr_tok_stream_feed(&s, ids[i], buf, (int)sizeof buf)
                      : nr_tok_stream_flush(&s, buf, (int)sizeof buf);
        if (k < 0 || o + (size_t)k > cap)
            return (size_t)-1;
        memcpy(out + o, buf, (size_t)k);
        o += (size_t)k;
    }
    return o;
}

/* Every fixture case: ids, ids with specials, round trip, stream decode, caps. */
static void run_fixture(const char *name)
{
    json_t *fix = load_fixture(name);
    if (!fix)
        return;
    struct nr_tok *t = open_tok(json_string_value(json_object_get(fix, "model")));
    if (!t) {
        json_decref(fix);
        return;
    }
    int32_t *ids = malloc(MAX_IDS * sizeof *ids);
    char *dec = malloc(1 << 20);
    json_t *cases = json_object_get(fix, "cases");
    int bad = 0, bad_sp = 0, bad_dec = 0, bad_rt = 0;
    NR_CHECK(json_array_size(cases) >= 200);
    for (size_t c = 0; c < json_array_size(cases); c++) {
        json_t *e = json_array_get(cases, c);
        const char *text = json_string_value(json_object_get(e, "text"));
        size_t len = json_string_length(json_object_get(e, "text"));
        int n = -1, n2 = -1;

        NR_CHECK_INT(nr_tok_encode(t, text, len, 0, ids, MAX_IDS, &n), NR_OK);
        if (!ids_equal(ids, n, json_object_get(e, "ids"))) {
            if (bad++ < 5) {
                printf("  [%s] ids differ for case %zu %.60s\n", name, c, text);
                print_ids("plain", ids, n, json_object_get(e, "ids"));
            }
            continue;
        }
        /* Pieces give the text back (no special tokens were parsed). Mistral's
         * prefix space is the one known difference: checked via the stream. */
        size_t o = 0;
        for (int i = 0; i < n; i++) {
            int k = nr_tok_piece(t, ids[i], 0, dec + o, NR_TOK_MAX_PIECE);
            NR_CHECK(k >= 0);
            o += (size_t)(k > 0 ? k : 0);
        }
        int has_prefix = strcmp(name, "mistral") == 0 && len > 0 && text[0] != ' ' &&
                         strncmp(text, "\xe2\x96\x81", 3) != 0;
        /* SPM: a "▁" in the text itself decodes as a space, as in HF. */
        int lossy = nr_tok_kind(t) == NR_TOK_SPM && strstr(text, "\xe2\x96\x81") != NULL;
        if (!lossy && !(o == len + (size_t)has_prefix && memcmp(dec + has_prefix, text, len) == 0 &&
                        (!has_prefix || dec[0] == ' '))) {
            if (bad_rt++ < 5)
                printf("  [%s] round trip differs for case %zu %.60s\n", name, c, text);
        }
        const char *want = json_string_value(json_object_get(e, "decoded"));
        size_t sl = stream_all(t, ids, n, dec, 1 << 20);
        if (sl != strlen(want) || memcmp(dec, want, sl) != 0) {
            if (bad_dec++ < 5)
                printf("  [%s] stream decode differs for case %zu %.60s: got %.60s\n", name, c,
                       text, sl == (size_t)-1 ? "(error)" : dec);
        }
        /* A smaller cap gives the same prefix and the full count. */
        if (n > 1) {
            int32_t part[4] = {-1, -1, -1, -1};
            NR_CHECK_INT(nr_tok_encode(t, text, len, 0, part, 1, &n2), NR_OK);
            NR_CHECK_INT(n2, n);
            NR_CHECK_INT(part[0], ids[0]);
            NR_CHECK_INT(part[1], -1);
            NR_CHECK_INT(nr_tok_encode(t, text, len, 0, NULL, 0, &n2), NR_OK);
            NR_CHECK_INT(n2, n);
        }
        NR_CHECK_INT(
            nr_tok_encode(t, text, len, NR_TOK_ADD_BOS | NR_TOK_PARSE_SPECIAL, ids, MAX_IDS, &n),
            NR_OK);
        if (!ids_equal(ids, n, json_object_get(e, "ids_special"))) {
            if (bad_sp++ < 5) {
                printf("  [%s] special ids differ for case %zu %.60s\n", name, c, text);
                print_ids("special", ids, n, json_object_get(e, "ids_special"));
            }
        }
    }
    NR_CHECK_MSG(bad == 0, "[%s] %d texts with different ids", name, bad);
    NR_CHECK_MSG(bad_sp == 0, "[%s] %d texts with different ids (special tokens parsed)", name,
                 bad_sp);
    NR_CHECK_MSG(bad_rt == 0, "[%s] %d texts whose pieces do not give the text back", name, bad_rt);
    NR_CHECK_MSG(bad_dec == 0, "[%s] %d texts whose stream decode differs from HF", name, bad_dec);
    free(ids);
    free(dec);
    nr_tok_free(t);
    json_decref(fix);
}

static void test_smollm2_fixture(void)
{
    run_fixture("smollm2");
}
static void test_gemma3_fixture(void)
{
    run_fixture("gemma3");
}
static void test_llama3_fixture(void)
{
    run_fixture("llama3");
}
static void test_mistral_fixture(void)
{
    run_fixture("mistral");
}

/* Metadata the generation code relies on. */
static void test_smollm2_meta(void)
{
    struct nr_tok *t = open_tok("smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf");
    char buf[NR_TOK_MAX_PIECE];
    if (!t)
        return;
    NR_CHECK_INT(nr_tok_kind(t), NR_TOK_BPE);
    NR_CHECK(strcmp(nr_tok_pre(t), "smollm") == 0);
    NR_CHECK_INT(nr_tok_n_vocab(t), 49152);
    NR_CHECK_INT(nr_tok_bos(t), 1);
    NR_CHECK_INT(nr_tok_eos(t), 2);
    NR_CHECK_INT(nr_tok_adds_bos(t), 0);
    NR_CHECK_INT(nr_tok_find(t, "<|im_start|>"), 1);
    NR_CHECK_INT(nr_tok_find(t, "<|im_end|>"), 2);
    NR_CHECK_INT(nr_tok_find(t, "no such token"), -1);
    NR_CHECK(nr_tok_is_eog(t, 2));
    NR_CHECK(nr_tok_is_eog(t, 0)); /* <|endoftext|> */
    NR_CHECK(!nr_tok_is_eog(t, 1));
    NR_CHECK(!nr_tok_is_eog(t, 100));
    NR_CHECK(!nr_tok_is_eog(t, -1));
    NR_CHECK(!nr_tok_is_eog(t, 49152));
    NR_CHECK(strcmp(nr_tok_text(t, 1), "<|im_start|>") == 0);
    NR_CHECK(nr_tok_text(t, 49152) == NULL);
    /* "Ġthe" decodes to " the"; specials give their text unless skipped. */
    int the = nr_tok_find(t, "\xc4\xa0the");
    NR_CHECK(the > 0);
    NR_CHECK_INT(nr_tok_piece(t, the, 0, buf, sizeof buf), 4);
    NR_CHECK(memcmp(buf, " the", 4) == 0);
    NR_CHECK_INT(nr_tok_piece(t, 2, 0, buf, sizeof buf), 10);
    NR_CHECK(memcmp(buf, "<|im_end|>", 10) == 0);
    NR_CHECK_INT(nr_tok_piece(t, 2, 1, buf, sizeof buf), 0);
    NR_CHECK_INT(nr_tok_piece(t, 2, 0, buf, 3), NR_ELIMIT);
    NR_CHECK_INT(nr_tok_piece(t, -1, 0, buf, sizeof buf), NR_EINVAL);
    NR_CHECK_INT(nr_tok_piece(t, 49152, 0, buf, sizeof buf), NR_EINVAL);
    nr_tok_free(t);
}

static void test_llama3_meta(void)
{
    struct nr_tok *t = open_tok("llama3-tokenizer/llama3-vocab.gguf");
    if (!t)
        return;
    NR_CHECK_INT(nr_tok_kind(t), NR_TOK_BPE);
    NR_CHECK(strcmp(nr_tok_pre(t), "llama-bpe") == 0);
    NR_CHECK_INT(nr_tok_n_vocab(t), 128257);
    NR_CHECK_INT(nr_tok_bos(t), 128000);
    NR_CHECK_INT(nr_tok_eos(t), 128001);
    NR_CHECK_INT(nr_tok_adds_bos(t), 1);
    NR_CHECK_INT(nr_tok_find(t, "<|eot_id|>"), 128009);
    NR_CHECK(nr_tok_is_eog(t, 128001));
    NR_CHECK(nr_tok_is_eog(t, 128009));
    NR_CHECK(nr_tok_is_eog(t, 128008)); /* <|eom_id|> */
    NR_CHECK(!nr_tok_is_eog(t, 128000));
    NR_CHECK(!nr_tok_is_eog(t, 128006)); /* <|start_header_id|> */
    nr_tok_free(t);
}

static void test_mistral_meta(void)
{
    struct nr_tok *t = open_tok("mistral-tokenizer/mistral-vocab.gguf");
    int32_t ids[16];
    int n = 0;
    char out[64];
    if (!t)
        return;
    NR_CHECK_INT(nr_tok_kind(t), NR_TOK_SPM);
    NR_CHECK_INT(nr_tok_n_vocab(t), 32000);
    NR_CHECK_INT(nr_tok_bos(t), 1);
    NR_CHECK_INT(nr_tok_eos(t), 2);
    NR_CHECK_INT(nr_tok_adds_bos(t), 1);
    NR_CHECK(nr_tok_is_eog(t, 2));
    /* The prefix space goes to the first fragment only, and the stream drops it. */
    NR_CHECK_INT(nr_tok_encode(t, "Hi<s>Hi", 7, NR_TOK_ADD_BOS | NR_TOK_PARSE_SPECIAL, ids, 16, &n),
                 NR_OK);
    NR_CHECK_INT(n, 4);
    NR_CHECK_INT(ids[0], 1);
    NR_CHECK_INT(ids[2], 1);
    NR_CHECK(ids[1] == nr_tok_find(t, "\xe2\x96\x81Hi"));
    NR_CHECK(ids[3] == nr_tok_find(t, "Hi"));
    NR_CHECK_INT(stream_all(t, ids, n, out, sizeof out), 4);
    NR_CHECK(memcmp(out, "HiHi", 4) == 0);
    nr_tok_free(t);
}

static void test_gemma3_meta(void)
{
    struct nr_tok *t = open_tok("gemma-3-270m/gemma-3-270m-q4_k_m.gguf");
    char buf[NR_TOK_MAX_PIECE];
    int32_t ids[8];
    int n;
    if (!t)
        return;
    NR_CHECK_INT(nr_tok_kind(t), NR_TOK_SPM);
    NR_CHECK_INT(nr_tok_n_vocab(t), 262144);
    NR_CHECK_INT(nr_tok_bos(t), 2);
    NR_CHECK_INT(nr_tok_eos(t), 1);
    NR_CHECK_INT(nr_tok_adds_bos(t), 1);
    NR_CHECK_INT(nr_tok_find(t, "<start_of_turn>"), 105);
    NR_CHECK_INT(nr_tok_find(t, "<end_of_turn>"), 106);
    NR_CHECK(nr_tok_is_eog(t, 106));
    NR_CHECK(nr_tok_is_eog(t, 1));
    NR_CHECK(!nr_tok_is_eog(t, 105));
    /* <0x41> decodes to "A"; "▁▁" (stored as two spaces) to two spaces. */
    NR_CHECK_INT(nr_tok_piece(t, nr_tok_find(t, "<0x41>"), 0, buf, sizeof buf), 1);
    NR_CHECK(buf[0] == 'A');
    NR_CHECK_INT(nr_tok_piece(t, 138, 0, buf, sizeof buf), 2);
    NR_CHECK(memcmp(buf, "  ", 2) == 0);
    /* BOS only when asked for. */
    NR_CHECK_INT(nr_tok_encode(t, "hi", 2, NR_TOK_ADD_BOS, ids, 8, &n), NR_OK);
    NR_CHECK(n >= 2 && ids[0] == 2);
    NR_CHECK_INT(nr_tok_encode(t, "hi", 2, 0, ids, 8, &n), NR_OK);
    NR_CHECK(n >= 1 && ids[0] != 2);
    nr_tok_free(t);
}

static int gpt2_char(unsigned b, char *o);

/* Random bytes (mostly invalid UTF-8) come back byte for byte. */
static void roundtrip_bytes(const char *rel, int skip_prefix)
{
    struct nr_tok *t = open_tok(rel);
    if (!t)
        return;
    int32_t *ids = malloc(MAX_IDS * sizeof *ids);
    char *txt = malloc(4096), *dec = malloc(4096 * 4);
    uint64_t x = 88172645463325252ull;
    int bad = 0;
    for (int round = 0; round < 300; round++) {
        size_t len = 1 + (size_t)(round * 7 % 400);
        for (size_t i = 0; i < len; i++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            /* a mix of ASCII, UTF-8 lead/continuation bytes and 0xff */
            unsigned v = (unsigned)(x >> 24);
            txt[i] = (char)(round % 3 == 0 ? v : (v & 1) ? 'a' + v % 26 : 0x80 | (v & 0x7f));
        }
        if (skip_prefix)
            txt[0] = ' ';
        int n = 0;
        NR_CHECK_INT(nr_tok_encode(t, txt, len, 0, ids, MAX_IDS, &n), NR_OK);
        size_t o = 0;
        for (int i = 0; i < n; i++) {
            NR_CHECK(ids[i] >= 0 && ids[i] < nr_tok_n_vocab(t));
            int k = nr_tok_piece(t, ids[i], 0, dec + o, NR_TOK_MAX_PIECE);
            if (k < 0) {
                bad++;
                break;
            }
            o += (size_t)k;
        }
        /* Byte-level vocabularies may lack tokens for bytes that never occur
         * in UTF-8 (SmolLM2: 0xc0, 0xc1, 0xf5..0xff, a few controls); those
         * are dropped, as HF drops them. */
        size_t kept = 0;
        for (size_t i = 0; i < len; i++) {
            char ch[3];
            unsigned b = (unsigned char)txt[i];
            int k = nr_tok_kind(t) == NR_TOK_BPE ? gpt2_char(b, ch) : 0;
            ch[k] = 0;
            if (nr_tok_kind(t) != NR_TOK_BPE || nr_tok_find(t, ch) >= 0)
                txt[kept++] = txt[i];
        }
        if (o != kept || memcmp(dec, txt, kept) != 0)
            bad++;
    }
    NR_CHECK_MSG(bad == 0, "%s: %d random byte strings did not round-trip", rel, bad);
    free(ids);
    free(txt);
    free(dec);
    nr_tok_free(t);
}

static void test_invalid_utf8_roundtrip(void)
{
    roundtrip_bytes("smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf", 0);
    roundtrip_bytes("gemma-3-270m/gemma-3-270m-q4_k_m.gguf", 0);
    roundtrip_bytes("llama3-tokenizer/llama3-vocab.gguf", 0);
    roundtrip_bytes("mistral-tokenizer/mistral-vocab.gguf", 1);
}

/* Stream: a character split over byte tokens is held back until complete. */
static void test_stream_holds_back(void)
{
    struct nr_tok *t = open_tok("smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf");
    const char *text =
        "\xf0\x9f\x98\x80 \xe4\xb8\xad\xe6\x96\x87 ok \xf0\x9f\x91\x8d\xf0\x9f\x8f\xbd";
    int32_t ids[64];
    int n = 0;
    char out[1024], buf[3 * (NR_TOK_MAX_PIECE + 8)];
    size_t o = 0;
    struct nr_tok_stream s;
    if (!t)
        return;
    NR_CHECK_INT(nr_tok_encode(t, text, strlen(text), 0, ids, 64, &n), NR_OK);
    NR_CHECK(n > 6); /* the emoji is several byte tokens */
    nr_tok_stream_init(&s, t);
    int partial = 0;
    for (int i = 0; i < n; i++) {
        char p[NR_TOK_MAX_PIECE];
        int pl = nr_tok_piece(t, ids[i], 0, p, sizeof p);
        int k = nr_tok_stream_feed(&s, ids[i], buf, (int)sizeof buf);
        NR_CHECK(k >= 0);
        if (k != pl)
            partial = 1;
        /* What comes out is always whole UTF-8. */
        for (int j = 0; j < k; j++)
            if (((unsigned char)buf[j] & 0xc0) == 0x80 && j == 0)
                NR_CHECK_MSG(0, "stream emitted a continuation byte first");
        memcpy(out + o, buf, (size_t)k);
        o += (size_t)k;
    }
    NR_CHECK(partial);
    NR_CHECK_INT(nr_tok_stream_flush(&s, buf, (int)sizeof buf), 0);
    NR_CHECK_INT(o, strlen(text));
    NR_CHECK(memcmp(out, text, o) == 0);
    NR_CHECK_INT(s.n_fed, n);

    /* A truncated character at the end is flushed as U+FFFD; a stray
     * continuation byte in the middle becomes U+FFFD at once. */
    nr_tok_stream_init(&s, t);
    int e0 = nr_tok_find(t, "\xc3\xa4"); /* byte 0xe4 in the GPT-2 alphabet: "ä" */
    NR_CHECK(e0 >= 0);
    NR_CHECK_INT(nr_tok_stream_feed(&s, e0, buf, (int)sizeof buf), 0);
    NR_CHECK_INT(s.n_pend, 1);
    NR_CHECK_INT(nr_tok_stream_flush(&s, buf, (int)sizeof buf), 3);
    NR_CHECK(memcmp(buf, "\xef\xbf\xbd", 3) == 0);
    nr_tok_free(t);
}

/* ---- malformed vocabularies, written with our GGUF writer ---- */

enum vocab_fault {
    VF_NONE,
    VF_BAD_BYTE_TOKEN,
    VF_UNKNOWN_MODEL,
    VF_UNKNOWN_PRE,
    VF_MERGE_MISSING,
    VF_MERGE_SYNTAX,
    VF_BOS_RANGE,
    VF_TYPES_COUNT,
    VF_NO_TOKENS,
    VF_BYTE_MISSING,
    VF_BAD_TYPE,
};

/* GPT-2 alphabet code point of byte b, as UTF-8 into o; returns bytes. */
static int gpt2_char(unsigned b, char *o)
{
    unsigned cp = b;
    if (!((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255)))
        cp = b <= 32 ? 256 + b : b <= 160 ? b + 162 : 323;
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    o[0] = (char)(0xc0 | (cp >> 6));
    o[1] = (char)(0x80 | (cp & 0x3f));
    return 2;
}

/* A small byte-level vocabulary: 256 byte tokens, "he", "ll", "hell", "hello",
 * "Ġw", <|end|>, merges "h e", "l l", "he ll", "hell o", "Ġ w". */
static int make_bpe_vocab(enum vocab_fault f, void **buf, size_t *len)
{
    struct nr_gguf_writer *w = NULL;
    static char store[300][8];
    const char *toks[300];
    int32_t types[300];
    int n = 0, rc;
    for (unsigned b = 0; b < 256; b++) {
        int k = gpt2_char(b, store[n]);
        store[n][k] = 0;
        if (f == VF_BYTE_MISSING && b >= 64)
            snprintf(store[n], sizeof store[n], "x%u", b);
        toks[n] = store[n];
        types[n++] = 1;
    }
    const char *extra[] = {"he", "ll", "hell", "hello", "\xc4\xa0w", "<|end|>", "lo", "<0xZZ>"};
    for (int i = 0; i < 8; i++) {
        if (i == 7 && f != VF_BAD_BYTE_TOKEN)
            break;
        toks[n] = extra[i];
        types[n++] = i == 5 ? 3 : i == 7 ? 6 : 1;
    }
    if (f == VF_BAD_TYPE)
        types[10] = 9;
    const char *merges[] = {
        "h e",        "l l",
        "he ll",      "hell o",
        "\xc4\xa0 w", f == VF_MERGE_MISSING ? "x zz" : f == VF_MERGE_SYNTAX ? "h" : "l o"};
    if ((rc = nr_gguf_writer_new(&w, 0)) != NR_OK)
        return rc;
    nr_gguf_writer_add_str(w, "general.architecture", "llama");
    nr_gguf_writer_add_str(w, "tokenizer.ggml.model", f == VF_UNKNOWN_MODEL ? "wordpiece" : "gpt2");
    nr_gguf_writer_add_str(w, "tokenizer.ggml.pre", f == VF_UNKNOWN_PRE ? "mystery" : "gpt2");
    if (f != VF_NO_TOKENS)
        nr_gguf_writer_add_arr_str(w, "tokenizer.ggml.tokens", toks, (uint64_t)n);
    nr_gguf_writer_add_arr_i32(w, "tokenizer.ggml.token_type", types,
                               (uint64_t)(f == VF_TYPES_COUNT ? n - 1 : n));
    nr_gguf_writer_add_arr_str(w, "tokenizer.ggml.merges", merges, 6);
    nr_gguf_writer_add_u32(w, "tokenizer.ggml.bos_token_id", f == VF_BOS_RANGE ? 100000 : 261);
    nr_gguf_writer_add_u32(w, "tokenizer.ggml.eos_token_id", 261);
    rc = nr_gguf_writer_write_to_mem(w, buf, len);
    nr_gguf_writer_free(w);
    return rc;
}

static int open_mem_tok(void *buf, size_t len, struct nr_tok **t)
{
    struct nr_gguf *g = NULL;
    int rc = nr_gguf_open_mem(buf, len, &g);
    if (rc != NR_OK)
        return rc;
    rc = nr_tok_open_gguf(g, t);
    nr_gguf_close(g);
    return rc;
}

static void test_small_vocab(void)
{
    void *buf = NULL;
    size_t len = 0;
    struct nr_tok *t = NULL;
    int32_t ids[16];
    int n = 0;
    NR_CHECK_INT(make_bpe_vocab(VF_NONE, &buf, &len), NR_OK);
    NR_CHECK_INT(open_mem_tok(buf, len, &t), NR_OK);
    if (t) {
        NR_CHECK_INT(nr_tok_n_vocab(t), 263);
        NR_CHECK_INT(nr_tok_encode(t, "hello world", 11, 0, ids, 16, &n), NR_OK);
        /* "hello" merges fully; " world" -> "Ġw" + o r l d */
        NR_CHECK_INT(n, 6);
        NR_CHECK_INT(ids[0], 259);
        NR_CHECK_INT(ids[1], 260);
        NR_CHECK_INT(ids[2], 'o');
        /* Specials: only with PARSE_SPECIAL. */
        NR_CHECK_INT(nr_tok_encode(t, "<|end|>", 7, 0, ids, 16, &n), NR_OK);
        NR_CHECK(n > 1);
        NR_CHECK_INT(nr_tok_encode(t, "<|end|>", 7, NR_TOK_PARSE_SPECIAL, ids, 16, &n), NR_OK);
        NR_CHECK_INT(n, 1);
        NR_CHECK_INT(ids[0], 261);
        NR_CHECK(nr_tok_is_eog(t, 261));
        /* Argument checks. */
        NR_CHECK_INT(nr_tok_encode(t, NULL, 3, 0, ids, 16, &n), NR_EINVAL);
        NR_CHECK_INT(nr_tok_encode(t, "x", 1, 0, NULL, 16, &n), NR_EINVAL);
        NR_CHECK_INT(nr_tok_encode(t, "x", 1, 0, ids, -1, &n), NR_EINVAL);
        NR_CHECK_INT(nr_tok_encode(t, "x", 1, 0, ids, 16, NULL), NR_EINVAL);
        NR_CHECK_INT(nr_tok_encode(t, "x", (size_t)NR_TOK_MAX_TEXT + 1, 0, ids, 16, &n), NR_ELIMIT);
        NR_CHECK_INT(nr_tok_encode(t, "", 0, 0, ids, 16, &n), NR_OK);
        NR_CHECK_INT(n, 0);
    }
    nr_tok_free(t);
    nr_free(buf);
}

static void test_bad_vocab(void)
{
    static const struct {
        enum vocab_fault f;
        int rc;
        const char *msg;
    } cases[] = {
        {VF_BAD_BYTE_TOKEN, NR_EFORMAT, "not <0xNN>"},
        {VF_UNKNOWN_MODEL, NR_EUNSUPPORTED, "wordpiece"},
        {VF_UNKNOWN_PRE, NR_EUNSUPPORTED, "mystery"},
        {VF_MERGE_MISSING, NR_EFORMAT, "not in the vocabulary"},
        {VF_MERGE_SYNTAX, NR_EFORMAT, "not 'left right'"},
        {VF_BOS_RANGE, NR_EFORMAT, "bos_token_id"},
        {VF_TYPES_COUNT, NR_EFORMAT, "token_type"},
        {VF_NO_TOKENS, NR_ENOTFOUND, "tokens"},
        {VF_BYTE_MISSING, NR_EFORMAT, "only 64 bytes"},
        {VF_BAD_TYPE, NR_EFORMAT, "type 9"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        void *buf = NULL;
        size_t len = 0;
        struct nr_tok *t = NULL;
        NR_CHECK_INT(make_bpe_vocab(cases[i].f, &buf, &len), NR_OK);
        int rc = open_mem_tok(buf, len, &t);
        NR_CHECK_MSG(rc == cases[i].rc && strstr(nr_err_msg(), cases[i].msg),
                     "fault %d: rc %d msg '%s'", (int)cases[i].f, rc, nr_err_msg());
        NR_CHECK(t == NULL);
        nr_tok_free(t);
        nr_free(buf);
    }
}

/* Allocation failure at each step of construction and of encode. */
static void test_alloc_failures(void)
{
    void *buf = NULL;
    size_t len = 0;
    NR_CHECK_INT(make_bpe_vocab(VF_NONE, &buf, &len), NR_OK);
    struct nr_gguf *g = NULL;
    NR_CHECK_INT(nr_gguf_open_mem(buf, len, &g), NR_OK);
    size_t before = nr_mem_held();
    int done = 0;
    for (long k = 1; k < 200 && !done; k++) {
        struct nr_tok *t = NULL;
        nr_mem_fail_after(k);
        int rc = nr_tok_open_gguf(g, &t);
        nr_mem_fail_after(0);
        if (rc == NR_OK) {
            done = 1;
            /* and now encode under failure */
            int32_t ids[64];
            int n;
            int enc_done = 0;
            for (long j = 1; j < 50 && !enc_done; j++) {
                nr_mem_fail_after(j);
                rc = nr_tok_encode(t, "hello world hello", 17, 0, ids, 64, &n);
                nr_mem_fail_after(0);
                if (rc == NR_OK)
                    enc_done = 1;
                else
                    NR_CHECK_INT(rc, NR_ENOMEM);
            }
            NR_CHECK(enc_done);
            nr_tok_free(t);
        } else {
            NR_CHECK_MSG(rc == NR_ENOMEM, "failure at allocation %ld: rc %d (%s)", k, rc,
                         nr_err_msg());
            NR_CHECK(t == NULL);
        }
        NR_CHECK_INT(nr_mem_held(), before);
    }
    NR_CHECK(done);
    nr_gguf_close(g);
    nr_free(buf);
}

/* ---- the other pre-tokenizers, on real vocabularies ---- */

/* Copy a string array KV from g into w (NR_OK if absent). */
static int copy_arr_str(const struct nr_gguf *g, struct nr_gguf_writer *w, const char *key)
{
    int et, rc;
    uint64_t n;
    if (nr_gguf_get_arr(g, key, &et, &n) != NR_OK)
        return NR_OK;
    const char **v = malloc((size_t)n * sizeof *v);
    char **own = malloc((size_t)n * sizeof *own);
    for (uint64_t i = 0; i < n; i++) {
        const char *s;
        size_t l;
        nr_gguf_get_arr_str(g, key, i, &s, &l);
        own[i] = malloc(l + 1);
        memcpy(own[i], s, l);
        own[i][l] = 0;
        v[i] = own[i];
    }
    rc = nr_gguf_writer_add_arr_str(w, key, v, n);
    for (uint64_t i = 0; i < n; i++)
        free(own[i]);
    free(own);
    free(v);
    return rc;
}

/* The tokenizer of model rel with tokenizer.ggml.pre replaced by pre. */
static struct nr_tok *open_with_pre(const char *rel, const char *pre)
{
    struct nr_gguf *g = NULL;
    struct nr_gguf_writer *w = NULL;
    struct nr_tok *t = NULL;
    void *buf = NULL;
    size_t len = 0;
    uint64_t n;
    int et;
    if (nr_gguf_open(nr_test_model_path(rel), &g) != NR_OK)
        return NULL;
    nr_gguf_writer_new(&w, 0);
    nr_gguf_writer_add_str(w, "tokenizer.ggml.model", "gpt2");
    nr_gguf_writer_add_str(w, "tokenizer.ggml.pre", pre);
    copy_arr_str(g, w, "tokenizer.ggml.tokens");
    copy_arr_str(g, w, "tokenizer.ggml.merges");
    if (nr_gguf_get_arr(g, "tokenizer.ggml.token_type", &et, &n) == NR_OK) {
        int32_t *ty = malloc((size_t)n * sizeof *ty);
        for (uint64_t i = 0; i < n; i++)
            nr_gguf_get_arr_i32(g, "tokenizer.ggml.token_type", i, &ty[i]);
        nr_gguf_writer_add_arr_i32(w, "tokenizer.ggml.token_type", ty, n);
        free(ty);
    }
    int rc = nr_gguf_writer_write_to_mem(w, &buf, &len);
    nr_gguf_writer_free(w);
    nr_gguf_close(g);
    NR_CHECK_INT(rc, NR_OK);
    if (rc == NR_OK)
        NR_CHECK_INT(open_mem_tok(buf, len, &t), NR_OK);
    nr_free(buf);
    return t;
}

static void run_variant(json_t *fix, const char *name)
{
    json_t *v = json_object_get(fix, name);
    const char *rel = json_string_value(json_object_get(v, "model"));
    struct nr_tok *t = open_with_pre(rel, json_string_value(json_object_get(v, "pre")));
    struct nr_tok *base = open_tok(rel);
    json_t *cases = json_object_get(v, "cases");
    int32_t *ids = malloc(MAX_IDS * sizeof *ids), *bids = malloc(MAX_IDS * sizeof *bids);
    int bad = 0, differ = 0;
    if (!t || !base)
        goto out;
    NR_CHECK(json_array_size(cases) >= 100);
    for (size_t c = 0; c < json_array_size(cases); c++) {
        json_t *e = json_array_get(cases, c);
        const char *text = json_string_value(json_object_get(e, "text"));
        size_t len = json_string_length(json_object_get(e, "text"));
        int n = 0, nb = 0;
        NR_CHECK_INT(nr_tok_encode(t, text, len, 0, ids, MAX_IDS, &n), NR_OK);
        NR_CHECK_INT(nr_tok_encode(base, text, len, 0, bids, MAX_IDS, &nb), NR_OK);
        differ += n != nb || memcmp(ids, bids, (size_t)n * sizeof *ids) != 0;
        if (!ids_equal(ids, n, json_object_get(e, "ids")) && bad++ < 5) {
            printf("  [%s] ids differ for case %zu %.60s\n", name, c, text);
            print_ids("plain", ids, n, json_object_get(e, "ids"));
        }
    }
    NR_CHECK_MSG(bad == 0, "[%s] %d texts with different ids", name, bad);
    /* The pre-tokenizer must matter somewhere (digit runs), or this tests nothing. */
    NR_CHECK_MSG(differ > 0, "[%s] same ids as the model's own pre-tokenizer everywhere", name);
out:
    free(ids);
    free(bids);
    nr_tok_free(t);
    nr_tok_free(base);
}

static void test_pre_variants(void)
{
    json_t *fix = load_fixture("variants");
    if (!fix)
        return;
    run_variant(fix, "smollm2_gpt2");
    run_variant(fix, "llama3_qwen2");
    json_decref(fix);
}

/* ---- threads share one tokenizer ---- */

struct thr {
    const struct nr_tok *t;
    json_t *cases;
    int bad;
};

static void *thr_main(void *p)
{
    struct thr *a = p;
    int32_t *ids = malloc(MAX_IDS * sizeof *ids);
    for (int r = 0; r < 2; r++)
        for (size_t c = 0; c < json_array_size(a->cases); c++) {
            json_t *e = json_array_get(a->cases, c);
            int n = 0;
            if (nr_tok_encode(a->t, json_string_value(json_object_get(e, "text")),
                              json_string_length(json_object_get(e, "text")), 0, ids, MAX_IDS,
                              &n) != NR_OK ||
                !ids_equal(ids, n, json_object_get(e, "ids")))
                a->bad++;
        }
    free(ids);
    return NULL;
}

static void test_threads(void)
{
    json_t *fix = load_fixture("smollm2");
    struct nr_tok *t = open_tok("smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf");
    pthread_t th[4];
    struct thr a[4];
    if (!fix || !t)
        goto out;
    for (int i = 0; i < 4; i++) {
        a[i] = (struct thr){t, json_object_get(fix, "cases"), 0};
        pthread_create(&th[i], NULL, thr_main, &a[i]);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(th[i], NULL);
        NR_CHECK_INT(a[i].bad, 0);
    }
out:
    nr_tok_free(t);
    json_decref(fix);
}

/* ---- long inputs: no quadratic case, and the speed figure ---- */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void time_encode(const char *rel, const char *label)
{
    double t_open = now_s();
    struct nr_tok *t = open_tok(rel);
    if (!t)
        return;
    printf("  %s: tokenizer built from the GGUF in %.3f s (file open included)\n", label,
           now_s() - t_open);
    const char *para = "Retrieval-augmented generation combines a search index with a language "
                       "model. The index returns passages that are relevant to the question, "
                       "and the model writes an answer that cites them (in 2024, 3.5x faster).\n";
    size_t pl = strlen(para), len = 1 << 20;
    char *txt = malloc(len);
    for (size_t i = 0; i < len; i++)
        txt[i] = para[i % pl];
    int n = 0;
    double t0 = now_s();
    NR_CHECK_INT(nr_tok_encode(t, txt, len, 0, NULL, 0, &n), NR_OK);
    double dt = now_s() - t0;
    printf("  %s: 1 MiB of English in %.3f s (%d tokens, %.1f MB/s)\n", label, dt, n, 1.0 / dt);
    NR_CHECK(n > 100000);
    /* One 256 KiB word of a single letter and one of spaces: heap merges, not O(n^2). */
    memset(txt, 'a', 256 << 10);
    t0 = now_s();
    NR_CHECK_INT(nr_tok_encode(t, txt, 256 << 10, 0, NULL, 0, &n), NR_OK);
    memset(txt, ' ', 256 << 10);
    NR_CHECK_INT(nr_tok_encode(t, txt, 256 << 10, 0, NULL, 0, &n), NR_OK);
    dt = now_s() - t0;
    printf("  %s: two 256 KiB single-character runs in %.3f s\n", label, dt);
    NR_CHECK(dt < 10.0);
    free(txt);
    nr_tok_free(t);
}

static void test_speed(void)
{
    time_encode("smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf", "smollm2");
    time_encode("gemma-3-270m/gemma-3-270m-q4_k_m.gguf", "gemma3");
    time_encode("llama3-tokenizer/llama3-vocab.gguf", "llama3");
}

int main(void)
{
    NR_RUN(test_small_vocab);
    NR_RUN(test_bad_vocab);
    NR_RUN(test_alloc_failures);
    NR_RUN(test_smollm2_meta);
    NR_RUN(test_gemma3_meta);
    NR_RUN(test_llama3_meta);
    NR_RUN(test_mistral_meta);
    NR_RUN(test_smollm2_fixture);
    NR_RUN(test_gemma3_fixture);
    NR_RUN(test_llama3_fixture);
    NR_RUN(test_mistral_fixture);
    NR_RUN(test_pre_variants);
    NR_RUN(test_invalid_utf8_roundtrip);
    NR_RUN(test_stream_holds_back);
    NR_RUN(test_threads);
    NR_RUN(test_speed);
    return nr_test_summary();
}
