/*
 * Fuzz entry point for nr_tok. The first byte picks what is fuzzed:
 *
 *   byte0 % 8 in 0..3  byte-level BPE with pre-tokenizer gpt2 / smollm /
 *                      llama-bpe / qwen2 over a small built-in vocabulary;
 *   byte0 % 8 in 4..5  SentencePiece BPE over a small built-in vocabulary,
 *                      add_space_prefix off / on;
 *   byte0 % 8 == 6     vocabulary: the rest, split on '\n', is a token list
 *                      (types from each line's first byte) written to a GGUF
 *                      in memory; if nr_tok accepts it, the input is encoded
 *                      with it;
 *   byte0 % 8 == 7     GGUF: the rest is parsed as a GGUF file and, if the
 *                      reader accepts it, given to nr_tok_open_gguf.
 * byte1 gives the flags and the id cap; the rest is the text.
 *
 * Checked on every encode (a violation aborts): status OK; the count does
 * not depend on the cap and at most cap ids are written (a guard after the
 * buffer stays intact); every id is in range; the ids with a small cap are a
 * prefix of the full ones; without special-token parsing the pieces give the
 * text back (bytes without a token dropped for BPE; SPM: exact unless the text
 * has a literal U+2581 or the prefix space was added); the stream decoder never
 * fails and emits only valid UTF-8.
 * Self-contained (vocabularies are built with our GGUF writer), so the
 * corpus replays anywhere.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nr_gguf.h"
#include "nr_mem.h"
#include "nr_tok.h"

#define MAX_IDS 4096
#define GUARD   0x5a5a5a5a

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

static struct nr_tok *open_mem(void *buf, size_t len)
{
    struct nr_gguf *g = NULL;
    struct nr_tok *t = NULL;
    if (nr_gguf_open_mem(buf, len, &g) != 0)
        return NULL;
    if (nr_tok_open_gguf(g, &t) != 0)
        t = NULL;
    nr_gguf_close(g);
    return t;
}

static struct nr_tok *build_bpe(const char *pre)
{
    static char store[256][4];
    const char *toks[300];
    int32_t types[300];
    int n = 0;
    struct nr_gguf_writer *w = NULL;
    void *buf = NULL;
    size_t len = 0;
    for (unsigned b = 0; b < 256; b++) {
        if (b == 0xff)
            continue; /* one byte without a token: it must be dropped */
        store[b][gpt2_char(b, store[b])] = 0;
        toks[n] = store[b];
        types[n++] = 1;
    }
    static const char *const extra[] = {"th",         "the", "\xc4\xa0t",        "\xc4\xa0the",
                                        "in",         "ing", "\xc4\xa0\xc4\xa0", "12",
                                        "<|im_end|>", "<u>"};
    for (int i = 0; i < 10; i++) {
        toks[n] = extra[i];
        types[n++] = i == 8 ? 3 : i == 9 ? 4 : 1;
    }
    static const char *const merges[] = {"t h",  "th e", "\xc4\xa0 t",        "i n",
                                         "in g", "1 2",  "\xc4\xa0 \xc4\xa0", "\xc4\xa0t he"};
    if (nr_gguf_writer_new(&w, 0) != 0)
        abort();
    nr_gguf_writer_add_str(w, "tokenizer.ggml.model", "gpt2");
    nr_gguf_writer_add_str(w, "tokenizer.ggml.pre", pre);
    nr_gguf_writer_add_arr_str(w, "tokenizer.ggml.tokens", toks, (uint64_t)n);
    nr_gguf_writer_add_arr_i32(w, "tokenizer.ggml.token_type", types, (uint64_t)n);
    /* The last merge names "he", which is not a token: it is left out. */
    nr_gguf_writer_add_arr_str(w, "tokenizer.ggml.merges", merges, 7);
    nr_gguf_writer_add_u32(w, "tokenizer.ggml.eos_token_id", (uint32_t)(n - 2));
    if (nr_gguf_writer_write_to_mem(w, &buf, &len) != 0)
        abort();
    nr_gguf_writer_free(w);
    struct nr_tok *t = open_mem(buf, len);
    if (!t)
        abort();
    nr_free(buf); /* the tokenizer copies what it needs */
    return t;
}

static struct nr_tok *build_spm(int add_space)
{
    static char store[256][8];
    const char *toks[300];
    int32_t types[300];
    float scores[300];
    int n = 0;
    struct nr_gguf_writer *w = NULL;
    void *buf = NULL;
    size_t len = 0;
    static const char *const head[] = {"<unk>", "<s>", "</s>"};
    for (int i = 0; i < 3; i++) {
        toks[n] = head[i];
        scores[n] = 0;
        types[n++] = i == 0 ? 2 : 3;
    }
    for (unsigned b = 0; b < 256; b++) {
        snprintf(store[b], sizeof store[b], "<0x%02X>", b);
        toks[n] = store[b];
        scores[n] = 0;
        types[n++] = 6;
    }
    static const char *const pieces[] = {"\xe2\x96\x81",
                                         "\xe2\x96\x81t",
                                         "h",
                                         "e",
                                         "t",
                                         "he",
                                         "\xe2\x96\x81the",
                                         "a",
                                         "n",
                                         "an",
                                         "\xe2\x96\x81\x61n",
                                         "\xe4\xb8\xad",
                                         "\xe2\x96\x81\xe2\x96\x81",
                                         "the",
                                         "<u>"};
    for (int i = 0; i < 15; i++) {
        toks[n] = pieces[i];
        scores[n] = -(float)i;
        types[n++] = i == 14 ? 4 : 1;
    }
    if (nr_gguf_writer_new(&w, 0) != 0)
        abort();
    nr_gguf_writer_add_str(w, "tokenizer.ggml.model", "llama");
    nr_gguf_writer_add_arr_str(w, "tokenizer.ggml.tokens", toks, (uint64_t)n);
    nr_gguf_writer_add_arr_i32(w, "tokenizer.ggml.token_type", types, (uint64_t)n);
    nr_gguf_writer_add_arr_f32(w, "tokenizer.ggml.scores", scores, (uint64_t)n);
    nr_gguf_writer_add_u32(w, "tokenizer.ggml.bos_token_id", 1);
    nr_gguf_writer_add_u32(w, "tokenizer.ggml.eos_token_id", 2);
    nr_gguf_writer_add_u32(w, "tokenizer.ggml.unknown_token_id", 0);
    nr_gguf_writer_add_bool(w, "tokenizer.ggml.add_space_prefix", add_space);
    if (nr_gguf_writer_write_to_mem(w, &buf, &len) != 0)
        abort();
    nr_gguf_writer_free(w);
    struct nr_tok *t = open_mem(buf, len);
    if (!t)
        abort();
    nr_free(buf);
    return t;
}

static int valid_utf8(const unsigned char *s, int n)
{
    for (int i = 0; i < n;) {
        int k = s[i] < 0x80                    ? 1
                : s[i] >= 0xc2 && s[i] <= 0xdf ? 2
                : s[i] >= 0xe0 && s[i] <= 0xef ? 3
                : s[i] >= 0xf0 && s[i] <= 0xf4 ? 4
                                               : 0;
        if (k == 0 || i + k > n)
            return 0;
        for (int j = 1; j < k; j++)
            if ((s[i + j] & 0xc0) != 0x80)
                return 0;
        i += k;
    }
    return 1;
}

/* Does the text hold U+2581 ("▁"), which SPM decodes as a space? */
static int has_lower_block(const char *s, size_t n)
{
    for (size_t i = 0; i + 3 <= n; i++)
        if (memcmp(s + i, "\xe2\x96\x81", 3) == 0)
            return 1;
    return 0;
}

static void check(const struct nr_tok *t, const char *text, size_t len, uint8_t b1, int exact)
{
    static int32_t ids[MAX_IDS + 1], part[MAX_IDS + 1];
    static char dec[MAX_IDS * NR_TOK_MAX_PIECE / 16 + 4096];
    int flags = b1 & 3, cap = 1 + (b1 >> 2), n = 0, np = 0;
    int nv = nr_tok_n_vocab(t);

    if (len > 2048)
        len = 2048; /* at most 2 ids per byte + BOS stay under MAX_IDS */
    ids[MAX_IDS] = GUARD;
    if (nr_tok_encode(t, text, len, flags, ids, MAX_IDS, &n) != 0 || n > MAX_IDS ||
        ids[MAX_IDS] != GUARD)
        abort();
    for (int i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= nv)
            abort();
    part[cap] = GUARD;
    if (nr_tok_encode(t, text, len, flags, part, cap, &np) != 0 || np != n || part[cap] != GUARD ||
        memcmp(part, ids, (size_t)(n < cap ? n : cap) * sizeof *ids) != 0)
        abort();

    /* Stream decode: never an error, always valid UTF-8. */
    struct nr_tok_stream s;
    char buf[NR_TOK_STREAM_CAP];
    nr_tok_stream_init(&s, t);
    for (int i = 0; i <= n; i++) {
        int k = i < n ? nr_tok_stream_feed(&s, ids[i], buf, (int)sizeof buf)
                      : nr_tok_stream_flush(&s, buf, (int)sizeof buf);
        if (k < 0 || !valid_utf8((const unsigned char *)buf, k))
            abort();
    }

    /* Round trip without special-token parsing and without BOS. */
    if (flags != 0 || !exact)
        return;
    size_t o = 0;
    for (int i = 0; i < n; i++) {
        int k = nr_tok_piece(t, ids[i], 0, dec + o, NR_TOK_MAX_PIECE);
        if (k < 0)
            abort();
        o += (size_t)k;
    }
    if (nr_tok_kind(t) == NR_TOK_BPE) {
        size_t m = 0;
        for (size_t i = 0; i < len; i++) {
            if ((unsigned char)text[i] == 0xff)
                continue;
            if (m >= o || dec[m] != text[i])
                abort();
            m++;
        }
        if (m != o)
            abort();
    } else if (!has_lower_block(text, len)) {
        if (o != len || memcmp(dec, text, len) != 0)
            abort();
    }
}

static void fuzz_vocab(const uint8_t *data, size_t size)
{
    const char *toks[512];
    char *copies[512];
    int32_t types[512];
    int n = 0;
    size_t start = 2;
    struct nr_gguf_writer *w = NULL;
    void *buf = NULL;
    size_t len = 0;
    int spm = size > 1 && (data[1] & 1);
    for (size_t i = start; i <= size && n < 512; i++) {
        if (i == size || data[i] == '\n') {
            copies[n] = nr_strndup((const char *)data + start, i - start);
            if (!copies[n])
                abort();
            toks[n] = copies[n];
            types[n] = i > start ? 1 + (uint8_t)data[start] % 7 : 1;
            n++;
            start = i + 1;
        }
    }
    if (nr_gguf_writer_new(&w, 0) != 0)
        abort();
    nr_gguf_writer_add_str(w, "tokenizer.ggml.model", spm ? "llama" : "gpt2");
    if (n > 0)
        nr_gguf_writer_add_arr_str(w, "tokenizer.ggml.tokens", toks, (uint64_t)n);
    nr_gguf_writer_add_arr_i32(w, "tokenizer.ggml.token_type", types, (uint64_t)n);
    if (!spm)
        nr_gguf_writer_add_arr_str(w, "tokenizer.ggml.merges", toks, (uint64_t)(n / 2));
    if (nr_gguf_writer_write_to_mem(w, &buf, &len) == 0) {
        struct nr_tok *t = open_mem(buf, len);
        if (t) {
            check(t, (const char *)data, size, size > 1 ? data[1] : 0, 0);
            nr_tok_free(t);
        }
    }
    nr_gguf_writer_free(w);
    nr_free(buf);
    for (int i = 0; i < n; i++)
        nr_free(copies[i]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct nr_tok *bpe[4], *spm[2];
    static const char *const pres[4] = {"gpt2", "smollm", "llama-bpe", "qwen2"};
    int sel = size ? data[0] % 8 : 0;
    uint8_t b1 = size > 1 ? data[1] : 0;
    const char *text = size > 2 ? (const char *)data + 2 : "";
    size_t len = size > 2 ? size - 2 : 0;

    if (sel < 4) {
        if (!bpe[sel])
            bpe[sel] = build_bpe(pres[sel]);
        check(bpe[sel], text, len, b1, 1);
    } else if (sel < 6) {
        if (!spm[sel - 4])
            spm[sel - 4] = build_spm(sel - 4);
        /* With the prefix space the pieces start with one extra space. */
        check(spm[sel - 4], text, len, b1, sel == 4);
    } else if (sel == 6) {
        fuzz_vocab(data, size);
    } else {
        struct nr_gguf *g = NULL;
        struct nr_tok *t = NULL;
        if (nr_gguf_open_mem(text, len, &g) == 0) {
            if (nr_tok_open_gguf(g, &t) == 0) {
                check(t, "hello <s> world 123", 19, b1, 0);
                nr_tok_free(t);
            }
            nr_gguf_close(g);
        }
    }
    return 0;
}
