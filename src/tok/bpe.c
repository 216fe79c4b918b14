/*
 * bpe.c: byte-level BPE (GPT-2 style: SmolLM2, Llama 3, Qwen2), equal to
 * Hugging Face tokenizers' ByteLevel + BPE on the same vocabulary.
 *
 * Pipeline for one fragment of text (special tokens are already cut out
 * by tok.c):
 *   1. smollm only: every \p{N} character is a piece of its own (HF's
 *      Digits(individual_digits) runs before ByteLevel in SmolLM2's
 *      tokenizer.json); the text between digits goes on to step 2.
 *   2. Split with the pre-tokenizer's regex (PCRE2, UTF + UCP, JIT). Each
 *      match is a word, and so is each gap between matches (HF's "isolated"
 *      split keeps both). The regex sees only its segment, so a lookahead
 *      such as \s+(?!\S) stops at the segment end as in HF.
 *        gpt2 / default / smollm (HF ByteLevel's own regex):
 *          's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 *        llama-bpe / llama3 / llama-v3 (Llama 3's tokenizer.json):
 *          (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
 *          ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
 *        qwen2: as llama3 with \p{N} instead of \p{N}{1,3}
 *      Invalid UTF-8 (PCRE2_MATCH_INVALID_UTF) never matches, so invalid
 *      bytes end up in gap words and are encoded byte by byte like others.
 *   3. Each byte of a word is the token of its GPT-2 alphabet character
 *      (bytes_to_unicode: printable Latin-1 maps to itself, the other 68
 *      bytes to U+0100..U+0143 in order). Llama 3's tokenizer.json has
 *      ignore_merges off, so a word that is a whole token still goes
 *      through the merges (tiktoken agrees on the fixture).
 *   4. Merge: repeatedly merge the adjacent pair with the lowest rank (its
 *      line in tokenizer.ggml.merges), leftmost first among equal ranks.
 *      Pairs live in an open-addressing table (left id, right id) -> (rank,
 *      merged id); candidates in a heap (tok_internal.h) with stale entries
 *      skipped on pop: O(n log n) per word, no quadratic case on long words.
 *
 * Scratch (symbol lists, heap) is allocated per encode call and grown to the
 * longest word; nothing is cached across calls, so calls run in parallel.
 */
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stdlib.h>
#include <string.h>

#include "nr_err.h"
#include "nr_gguf.h"
#include "nr_mem.h"
#include "tok_internal.h"

#define KEY_MERGES "tokenizer.ggml.merges"

static const char re_gpt2[] =
    "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";
static const char re_llama3[] = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|"
                                "\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|"
                                "\\s+(?!\\S)|\\s+";
static const char re_qwen2[] = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|"
                               "\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|"
                               "\\s+(?!\\S)|\\s+";

/* GPT-2 alphabet code point of byte b. */
static uint32_t byte_cp(unsigned b)
{
    if ((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255))
        return b;
    if (b <= 32)
        return 256 + b;
    if (b >= 127 && b <= 160)
        return b + 162;
    return 323; /* 173 */
}

int tok_bpe_unmap(uint32_t cp)
{
    if ((cp >= 33 && cp <= 126) || (cp >= 161 && cp <= 172) || (cp >= 174 && cp <= 255))
        return (int)cp;
    if (cp >= 256 && cp <= 288)
        return (int)(cp - 256);
    if (cp >= 289 && cp <= 322)
        return (int)(cp - 162);
    if (cp == 323)
        return 173;
    return -1;
}

static int put_utf8(uint32_t cp, char *o)
{
    if (cp < 0x80) {
        o[0] = (char)cp;
        return 1;
    }
    o[0] = (char)(0xc0 | (cp >> 6));
    o[1] = (char)(0x80 | (cp & 0x3f));
    return 2; /* GPT-2 alphabet code points are all < 0x800 */
}

static uint32_t pair_hash(uint64_t k)
{
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdull;
    k ^= k >> 33;
    return (uint32_t)k;
}

/* Slot of pair (a, b), or -1. */
static int64_t pair_find(const struct nr_tok *t, int32_t a, int32_t b)
{
    uint64_t key = (((uint64_t)(uint32_t)a << 32) | (uint32_t)b) + 1;
    uint32_t i = pair_hash(key) & t->pair_mask;
    for (;;) {
        uint64_t k = t->pair_key[i];
        if (k == key)
            return i;
        if (k == 0)
            return -1;
        i = (i + 1) & t->pair_mask;
    }
}

static int compile_re(const char *pat, void **out)
{
    int err;
    PCRE2_SIZE eoff;
    pcre2_code *re =
        pcre2_compile((PCRE2_SPTR)pat, PCRE2_ZERO_TERMINATED,
                      PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &err, &eoff, NULL);
    if (!re) {
        PCRE2_UCHAR msg[128];
        pcre2_get_error_message(err, msg, sizeof msg);
        return nr_err_set(NR_EINTERNAL, "tok: pre-tokenizer regex at %zu: %s", (size_t)eoff,
                          (const char *)msg);
    }
    /* Without JIT (an arch PCRE2 cannot JIT for) the interpreter gives the same matches. */
    pcre2_jit_compile(re, PCRE2_JIT_COMPLETE);
    *out = re;
    return NR_OK;
}

int tok_bpe_init(struct nr_tok *t, const struct nr_gguf *g)
{
    const char *pat;
    int et, rc;
    uint64_t m;
    char buf[2 * TOK_MAX_TOKEN_BYTES];

    if (!strcmp(t->pre, "gpt2") || !strcmp(t->pre, "default") || !strcmp(t->pre, "smollm")) {
        pat = re_gpt2;
    } else if (!strcmp(t->pre, "llama-bpe") || !strcmp(t->pre, "llama3") ||
               !strcmp(t->pre, "llama-v3")) {
        pat = re_llama3;
    } else if (!strcmp(t->pre, "qwen2")) {
        pat = re_qwen2;
    } else {
        return nr_err_set(NR_EUNSUPPORTED, "tok: pre-tokenizer '%s' is not handled", t->pre);
    }
    if ((rc = compile_re(pat, &t->re)) != NR_OK)
        return rc;
    if (!strcmp(t->pre, "smollm") && (rc = compile_re("\\p{N}", &t->re_digit)) != NR_OK)
        return rc;

    /* A byte without a token (SmolLM2 has none for bytes that never occur in
     * UTF-8, like 0xc0 and 0xf5..0xff) is dropped from the word, as HF's
     * BPE drops a character it cannot map when there is no unknown token. */
    int n_bytes = 0;
    for (unsigned b = 0; b < 256; b++) {
        int n = put_utf8(byte_cp(b), buf);
        t->byte_id[b] = tok_map_get(t, buf, (size_t)n);
        n_bytes += t->byte_id[b] >= 0;
    }
    if (n_bytes < 128)
        return nr_err_set(NR_EFORMAT, "tok: byte-level vocabulary has tokens for only %d bytes",
                          n_bytes);

    rc = nr_gguf_get_arr(g, KEY_MERGES, &et, &m);
    if (rc != NR_OK)
        return nr_err_wrap(rc, "tok");
    if (et != NR_GGUF_STRING || m > NR_TOK_MAX_VOCAB * 4ull)
        return nr_err_set(NR_EFORMAT, "tok: %s must be at most %d strings", KEY_MERGES,
                          NR_TOK_MAX_VOCAB * 4);
    uint32_t size = 2;
    while (size < 2 * (uint32_t)m + 2)
        size <<= 1;
    t->pair_mask = size - 1;
    t->pair_key = nr_calloc(size, sizeof *t->pair_key);
    t->pair_rank = nr_malloc((size_t)size * sizeof *t->pair_rank);
    t->pair_id = nr_malloc((size_t)size * sizeof *t->pair_id);
    if (!t->pair_key || !t->pair_rank || !t->pair_id)
        return nr_err_set(NR_ENOMEM, "tok: out of memory for %llu merges", (unsigned long long)m);
    for (uint64_t r = 0; r < m; r++) {
        const char *s, *sp;
        size_t l;
        if ((rc = nr_gguf_get_arr_str(g, KEY_MERGES, r, &s, &l)) != NR_OK)
            return nr_err_wrap(rc, "tok");
        sp = memchr(s, ' ', l);
        if (!sp || sp == s || sp + 1 == s + l || memchr(sp + 1, ' ', (size_t)(s + l - sp - 1)) ||
            l - 1 > sizeof buf)
            return nr_err_set(NR_EFORMAT, "tok: merge %llu is not 'left right'",
                              (unsigned long long)r);
        size_t ll = (size_t)(sp - s), rl = l - ll - 1;
        int a = tok_map_get(t, s, ll), b = tok_map_get(t, sp + 1, rl);
        memcpy(buf, s, ll);
        memcpy(buf + ll, sp + 1, rl);
        int c = tok_map_get(t, buf, ll + rl);
        if (a < 0 || b < 0 || c < 0)
            return nr_err_set(NR_EFORMAT, "tok: merge %llu names a token not in the vocabulary",
                              (unsigned long long)r);
        if (pair_find(t, a, b) >= 0)
            continue; /* a repeated pair keeps its first (best) rank */
        uint64_t key = (((uint64_t)(uint32_t)a << 32) | (uint32_t)b) + 1;
        uint32_t i = pair_hash(key) & t->pair_mask;
        while (t->pair_key[i])
            i = (i + 1) & t->pair_mask;
        t->pair_key[i] = key;
        t->pair_rank[i] = (uint32_t)r;
        t->pair_id[i] = c;
    }
    return NR_OK;
}

void tok_bpe_free(struct nr_tok *t)
{
    pcre2_code_free((pcre2_code *)t->re);
    pcre2_code_free((pcre2_code *)t->re_digit);
    nr_free(t->pair_key);
    nr_free(t->pair_rank);
    nr_free(t->pair_id);
    t->re = t->re_digit = NULL;
    t->pair_key = NULL;
    t->pair_rank = NULL;
    t->pair_id = NULL;
}

struct bpe_ctx {
    const struct nr_tok *t;
    struct tok_out *o;
    pcre2_match_data *md;
    int32_t *id, *next, *prev; /* (cap) symbols of the current word; id -1 once merged away */
    struct tok_heap heap;      /* (3 * cap) */
    size_t cap;                /* symbols */
};

static int ctx_reserve(struct bpe_ctx *c, size_t n)
{
    size_t cap, hc;
    if (n <= c->cap)
        return NR_OK;
    cap = c->cap ? c->cap : 64;
    while (cap < n)
        cap *= 2;
    nr_free(c->id);
    nr_free(c->next);
    nr_free(c->prev);
    nr_free(c->heap.e);
    c->cap = 0;
    c->id = nr_malloc(cap * sizeof *c->id);
    c->next = nr_malloc(cap * sizeof *c->next);
    c->prev = nr_malloc(cap * sizeof *c->prev);
    c->heap.e = nr_malloc(3 * cap * sizeof *c->heap.e);
    hc = 3 * cap;
    if (!c->id || !c->next || !c->prev || !c->heap.e)
        return nr_err_set(NR_ENOMEM, "tok: out of memory for a word of %zu bytes", n);
    c->heap.cap = hc;
    c->cap = cap;
    return NR_OK;
}

static void push_pair(struct bpe_ctx *c, int32_t l)
{
    int32_t r = c->next[l];
    if (l < 0 || r < 0)
        return;
    int64_t s = pair_find(c->t, c->id[l], c->id[r]);
    if (s >= 0)
        tok_heap_push(&c->heap, c->t->pair_rank[s], (uint32_t)l);
}

static int bpe_word(struct bpe_ctx *c, const unsigned char *w, size_t n)
{
    const struct nr_tok *t = c->t;
    int rc;
    if (n == 0)
        return NR_OK;
    if (n == 1) {
        if (t->byte_id[w[0]] >= 0)
            tok_out_push(c->o, t->byte_id[w[0]]);
        return NR_OK;
    }
    if ((rc = ctx_reserve(c, n)) != NR_OK)
        return rc;
    size_t ns = 0;
    for (size_t i = 0; i < n; i++) {
        if (t->byte_id[w[i]] < 0)
            continue;
        c->id[ns] = t->byte_id[w[i]];
        c->prev[ns] = (int32_t)ns - 1;
        c->next[ns] = (int32_t)ns + 1;
        ns++;
    }
    if (ns == 0)
        return NR_OK;
    c->next[ns - 1] = -1;
    c->heap.n = 0;
    for (size_t i = 0; i + 1 < ns; i++)
        push_pair(c, (int32_t)i);
    while (c->heap.n > 0) {
        struct tok_heap_ent e = tok_heap_pop(&c->heap);
        int32_t l = (int32_t)e.pos, r;
        if (c->id[l] < 0 || (r = c->next[l]) < 0)
            continue;
        int64_t s = pair_find(t, c->id[l], c->id[r]);
        if (s < 0 || t->pair_rank[s] != e.key)
            continue; /* stale: a neighbour changed since this entry was pushed */
        c->id[l] = t->pair_id[s];
        c->id[r] = -1;
        c->next[l] = c->next[r];
        if (c->next[r] >= 0)
            c->prev[c->next[r]] = l;
        push_pair(c, c->prev[l]);
        push_pair(c, l);
    }
    for (int32_t i = 0; i >= 0; i = c->next[i])
        tok_out_push(c->o, c->id[i]);
    return NR_OK;
}

/* Step 2 over s[0..n): regex words and the gaps between them. */
static int split_words(struct bpe_ctx *c, const char *s, size_t n)
{
    size_t off = 0;
    int rc;
    while (off < n) {
        int m = pcre2_match((const pcre2_code *)c->t->re, (PCRE2_SPTR)s, n, off, 0, c->md, NULL);
        if (m == PCRE2_ERROR_NOMATCH)
            return bpe_word(c, (const unsigned char *)s + off, n - off);
        if (m < 0)
            return nr_err_set(NR_ELIMIT, "tok: pre-tokenizer regex failed (pcre2 error %d)", m);
        PCRE2_SIZE *ov = pcre2_get_ovector_pointer(c->md);
        size_t ms = ov[0], me = ov[1];
        if (ms > off && (rc = bpe_word(c, (const unsigned char *)s + off, ms - off)) != NR_OK)
            return rc;
        if (me == ms)
            me = ms + 1; /* the patterns never match empty; guard the loop anyway */
        if ((rc = bpe_word(c, (const unsigned char *)s + ms, me - ms)) != NR_OK)
            return rc;
        off = me;
    }
    return NR_OK;
}

int tok_bpe_encode(const struct nr_tok *t, const char *text, size_t len, struct tok_out *o)
{
    struct bpe_ctx c;
    int rc = NR_OK;
    memset(&c, 0, sizeof c);
    c.t = t;
    c.o = o;
    c.md = pcre2_match_data_create(4, NULL);
    if (!c.md)
        return nr_err_set(NR_ENOMEM, "tok: out of memory for regex match data");
    if (!t->re_digit) {
        rc = split_words(&c, text, len);
    } else {
        size_t off = 0;
        while (off < len && rc == NR_OK) {
            int m = pcre2_match((const pcre2_code *)t->re_digit, (PCRE2_SPTR)text, len, off, 0,
                                c.md, NULL);
            if (m == PCRE2_ERROR_NOMATCH) {
                rc = split_words(&c, text + off, len - off);
                break;
            }
            if (m < 0) {
                rc = nr_err_set(NR_ELIMIT, "tok: digit split failed (pcre2 error %d)", m);
                break;
            }
            PCRE2_SIZE *ov = pcre2_get_ovector_pointer(c.md);
            size_t ms = ov[0], me = ov[1] > ov[0] ? ov[1] : ov[0] + 1;
            if (ms > off)
                rc = split_words(&c, text + off, ms - off);
            if (rc == NR_OK)
                rc = bpe_word(&c, (const unsigned char *)text + ms, me - ms);
            off = me;
        }
    }
    pcre2_match_data_free(c.md);
    nr_free(c.id);
    nr_free(c.next);
    nr_free(c.prev);
    nr_free(c.heap.e);
    return rc;
}
