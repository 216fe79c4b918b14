/*
 * spm.c: SentencePiece BPE with byte fallback (tokenizer.ggml.model
 * "llama": Llama 2, TinyLlama, Mistral, Gemma), equal to the Hugging Face
 * BPE tokenizer transformers builds from the same GGUF.
 *
 * One fragment (special tokens already cut out by tok.c):
 *   1. Normalize: every ' ' becomes "▁" (U+2581); with add_space_prefix,
 *      the fragment that starts the text gets a leading "▁" unless it
 *      already starts with a space or "▁" (HF Metaspace, prepend_scheme
 *      "first"; fragments after a special token get none).
 *   2. Symbols: one per UTF-8 character (an invalid byte is a one-byte
 *      symbol), each the token of that character or unknown.
 *   3. Merge. The reference merges the whole fragment as one word (it
 *      splits nothing after normalizing), which costs memory in proportion
 *      to the fragment. We cut it into words before each run of spaces
 *      instead, which gives the same tokens as long as no token spans the
 *      cut: at load, every character that some token joins to a following
 *      "▁" (Gemma has one such token, ">▁</") goes into a small set, and no
 *      cut is made after one of those, nor inside a run of "▁" (more than
 *      32 such characters: no cuts at all). Scratch then grows only to the
 *      longest word. Within a word, a pair of adjacent known symbols can merge when
 *      their concatenation is a token. The reference turns the vocabulary
 *      into a merge list sorted by (score of the merged token descending,
 *      left length descending, right length descending, token order), so
 *      the priority key packs exactly that:
 *         srank(merged) : 20 | 4095 - cp(left) : 12 | 4095 - cp(right) : 12 | merged id : 20
 *      srank is the dense rank of the score, best first; Gemma's scores do
 *      not follow its merge order, and for Gemma the reference ranks by the
 *      token's position instead (srank = id). The concatenation of two
 *      adjacent symbols is a contiguous span of the normalized text, so a
 *      candidate costs one hash lookup and no copy. Heap as in bpe.c.
 *   4. Output: each symbol's token; an unknown character becomes its bytes'
 *      <0xNN> tokens when all exist (byte fallback), else one unknown token
 *      for a run of such characters (fuse_unk).
 *
 * Not handled: a "llama" GGUF that carries its own merges list (the
 * reference would use it instead of the scores); the SentencePiece
 * normalizer (precompiled_charsmap) of Unigram models.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nr_err.h"
#include "nr_gguf.h"
#include "nr_mem.h"
#include "tok_internal.h"

static int64_t char_before(const char *text, size_t i);

struct score_ix {
    float s;
    int32_t i;
};

static int cmp_score(const void *a, const void *b)
{
    const struct score_ix *x = a, *y = b;
    if (x->s != y->s)
        return x->s > y->s ? -1 : 1;
    return (x->i > y->i) - (x->i < y->i);
}

int tok_spm_init(struct nr_tok *t, const struct nr_gguf *g, const float *scores, int by_index)
{
    char buf[16];
    (void)g;
    t->srank = nr_malloc((size_t)t->n_vocab * sizeof *t->srank);
    t->ncp = nr_malloc((size_t)t->n_vocab * sizeof *t->ncp);
    if (!t->srank || !t->ncp)
        return nr_err_set(NR_ENOMEM, "tok: out of memory for merge ranks");
    if (by_index) {
        for (int i = 0; i < t->n_vocab; i++)
            t->srank[i] = (uint32_t)i;
    } else {
        struct score_ix *v = nr_malloc((size_t)t->n_vocab * sizeof *v);
        if (!v)
            return nr_err_set(NR_ENOMEM, "tok: out of memory for merge ranks");
        for (int i = 0; i < t->n_vocab; i++) {
            v[i].s = scores[i] == scores[i] ? scores[i] : -3.4e38f; /* NaN sorts last */
            v[i].i = i;
        }
        qsort(v, (size_t)t->n_vocab, sizeof *v, cmp_score);
        uint32_t r = 0;
        for (int k = 0; k < t->n_vocab; k++) {
            if (k > 0 && v[k].s != v[k - 1].s)
                r++;
            t->srank[v[k].i] = r;
        }
        nr_free(v);
    }
    for (int i = 0; i < t->n_vocab; i++) {
        const unsigned char *s = (const unsigned char *)t->blob + t->off[i];
        int n = 0;
        for (size_t k = 0; k < t->len[i]; k++)
            n += (s[k] & 0xc0) != 0x80;
        t->ncp[i] = (uint16_t)n;
    }
    /* Characters some token joins to a following "▁" (Gemma: '>' in ">▁</"):
     * a word may not end before a space that follows one of them. */
    for (int i = 0; i < t->n_vocab && !t->spm_nosplit; i++) {
        const char *s = t->blob + t->off[i];
        size_t n = t->len[i];
        for (size_t k = 1; k + 3 <= n; k++) {
            if (memcmp(s + k, "\xe2\x96\x81", 3) != 0)
                continue;
            int64_t cp = char_before(s, k);
            if (cp == 0x2581)
                continue;
            int seen = 0;
            for (int j = 0; j < t->n_bridge; j++)
                seen |= t->bridge[j] == cp;
            if (seen)
                continue;
            if (t->n_bridge == (int)(sizeof t->bridge / sizeof t->bridge[0])) {
                t->spm_nosplit = 1; /* too many: keep each fragment whole */
                break;
            }
            t->bridge[t->n_bridge++] = cp;
        }
    }
    for (int b = 0; b < 256; b++) {
        snprintf(buf, sizeof buf, "<0x%02X>", b);
        t->byte_id[b] = tok_map_get(t, buf, 6);
    }
    return NR_OK;
}

void tok_spm_free(struct nr_tok *t)
{
    nr_free(t->srank);
    nr_free(t->ncp);
    t->srank = NULL;
    t->ncp = NULL;
}

struct spm_ctx {
    const struct nr_tok *t;
    char *s;               /* (cap * 3 + 3) the current word, normalized */
    int32_t *id;           /* (cap) token of each symbol, -1 unknown */
    int32_t *next, *prev;  /* (cap) list links, -1 at the ends */
    uint32_t *start, *len; /* (cap) bytes of each symbol in s; len 0 once merged away */
    struct tok_heap heap;  /* (3 * cap) */
    size_t cap;            /* raw bytes of the longest word so far */
};

static int ctx_reserve(struct spm_ctx *c, size_t n)
{
    size_t cap, sb;
    if (n <= c->cap)
        return NR_OK;
    cap = c->cap ? c->cap : 256;
    while (cap < n)
        cap *= 2;
    nr_free(c->s);
    nr_free(c->id);
    nr_free(c->next);
    nr_free(c->prev);
    nr_free(c->start);
    nr_free(c->len);
    nr_free(c->heap.e);
    c->cap = 0;
    /* A raw byte normalizes to at most 3 bytes ("▁"), plus the prefix; a
     * symbol is at least one normalized byte. */
    sb = 3 * cap + 3;
    c->s = nr_malloc(sb);
    c->id = nr_malloc(sb * sizeof *c->id);
    c->next = nr_malloc(sb * sizeof *c->next);
    c->prev = nr_malloc(sb * sizeof *c->prev);
    c->start = nr_malloc(sb * sizeof *c->start);
    c->len = nr_malloc(sb * sizeof *c->len);
    c->heap.e = nr_malloc(3 * sb * sizeof *c->heap.e);
    if (!c->s || !c->id || !c->next || !c->prev || !c->start || !c->len || !c->heap.e)
        return nr_err_set(NR_ENOMEM, "tok: out of memory for a word of %zu bytes", n);
    c->heap.cap = 3 * sb;
    c->cap = cap;
    return NR_OK;
}

/* Priority of merging l with its right neighbour; 0 if they cannot merge. */
static uint64_t pair_key(const struct spm_ctx *c, int32_t l, int32_t *merged)
{
    const struct nr_tok *t = c->t;
    int32_t r = c->next[l];
    if (r < 0 || c->id[l] < 0 || c->id[r] < 0)
        return 0;
    int m = tok_map_get(t, c->s + c->start[l], (size_t)c->len[l] + c->len[r]);
    if (m < 0)
        return 0;
    uint64_t cl = t->ncp[c->id[l]], cr = t->ncp[c->id[r]];
    cl = cl > 4095 ? 4095 : cl;
    cr = cr > 4095 ? 4095 : cr;
    *merged = m;
    /* +1 keeps every real key non-zero (0 means "no merge"). */
    return ((uint64_t)t->srank[m] << 44 | (4095 - cl) << 32 | (4095 - cr) << 20 | (uint64_t)m) + 1;
}

static void push_pair(struct spm_ctx *c, int32_t l)
{
    int32_t m;
    if (l < 0)
        return;
    uint64_t k = pair_key(c, l, &m);
    if (k)
        tok_heap_push(&c->heap, k, (uint32_t)l);
}

/* Normalize, merge and emit one word: raw text[0..len), "▁" first if prefix. */
static int spm_word(struct spm_ctx *c, const char *text, size_t len, int prefix, struct tok_out *o)
{
    const struct nr_tok *t = c->t;
    size_t n = 0, ns = 0;
    int rc;

    if ((rc = ctx_reserve(c, len)) != NR_OK)
        return rc;
    char *s = c->s;
    if (prefix) {
        memcpy(s, "\xe2\x96\x81", 3);
        n = 3;
    }
    for (size_t i = 0; i < len; i++) {
        if (text[i] == ' ') {
            memcpy(s + n, "\xe2\x96\x81", 3);
            n += 3;
        } else {
            s[n++] = text[i];
        }
    }
    if (n == 0)
        return NR_OK;
    for (size_t i = 0; i < n;) {
        uint32_t cp;
        int k = tok_utf8_len((const unsigned char *)s + i, n - i, &cp);
        c->start[ns] = (uint32_t)i;
        c->len[ns] = k > 0 ? (uint32_t)k : 1;
        c->id[ns] = k > 0 ? tok_map_get(t, s + i, (size_t)k) : -1;
        c->prev[ns] = (int32_t)ns - 1;
        c->next[ns] = (int32_t)ns + 1;
        i += c->len[ns];
        ns++;
    }
    c->next[ns - 1] = -1;
    c->heap.n = 0;
    for (size_t i = 0; i + 1 < ns; i++)
        push_pair(c, (int32_t)i);
    while (c->heap.n > 0) {
        struct tok_heap_ent e = tok_heap_pop(&c->heap);
        int32_t l = (int32_t)e.pos, r, m = -1;
        if (c->len[l] == 0 || (r = c->next[l]) < 0)
            continue;
        if (pair_key(c, l, &m) != e.key)
            continue; /* stale */
        c->id[l] = m;
        c->len[l] += c->len[r];
        c->len[r] = 0;
        c->next[l] = c->next[r];
        if (c->next[r] >= 0)
            c->prev[c->next[r]] = l;
        push_pair(c, c->prev[l]);
        push_pair(c, l);
    }
    int prev_unk = 0;
    for (int32_t i = 0; i >= 0; i = c->next[i]) {
        if (c->id[i] >= 0) {
            tok_out_push(o, c->id[i]);
            prev_unk = 0;
            continue;
        }
        int all = 1;
        for (uint32_t k = 0; k < c->len[i]; k++)
            all &= t->byte_id[(unsigned char)s[c->start[i] + k]] >= 0;
        if (all) {
            for (uint32_t k = 0; k < c->len[i]; k++)
                tok_out_push(o, t->byte_id[(unsigned char)s[c->start[i] + k]]);
            prev_unk = 0;
        } else if (!prev_unk && t->unk >= 0) {
            tok_out_push(o, t->unk);
            prev_unk = 1;
        }
    }
    return NR_OK;
}

/* The code point of the character that ends at text[i] (exclusive); -1 if invalid. */
static int64_t char_before(const char *text, size_t i)
{
    for (size_t k = 1; k <= 4 && k <= i; k++) {
        uint32_t cp;
        if ((((unsigned char)text[i - k]) & 0xc0) == 0x80 && k < 4)
            continue;
        int l = tok_utf8_len((const unsigned char *)text + i - k, k, &cp);
        return l == (int)k ? (int64_t)cp : -1;
    }
    return -1;
}

/* May a word end before the space at text[i]? Not inside a run of "▁", and
 * not after a character that some token joins to a following "▁". */
static int can_split(const struct nr_tok *t, const char *text, size_t i)
{
    int64_t cp = char_before(text, i);
    if (t->spm_nosplit || cp == ' ' || cp == 0x2581)
        return 0;
    for (int k = 0; k < t->n_bridge; k++)
        if (t->bridge[k] == cp)
            return 0;
    return 1;
}

int tok_spm_encode(const struct nr_tok *t, const char *text, size_t len, int first,
                   struct tok_out *o)
{
    struct spm_ctx c;
    size_t w = 0;
    int rc = NR_OK;
    /* HF's Metaspace: no prefix when the text already starts with one (a
     * space, or a literal "▁", which is the same after normalizing). */
    int prefix = first && t->add_space && text[0] != ' ' &&
                 !(len >= 3 && memcmp(text, "\xe2\x96\x81", 3) == 0);

    memset(&c, 0, sizeof c);
    c.t = t;
    for (size_t i = 1; i <= len && rc == NR_OK; i++) {
        if (i < len && !(text[i] == ' ' && can_split(t, text, i)))
            continue;
        rc = spm_word(&c, text + w, i - w, prefix && w == 0, o);
        w = i;
    }
    nr_free(c.s);
    nr_free(c.id);
    nr_free(c.next);
    nr_free(c.prev);
    nr_free(c.start);
    nr_free(c.len);
    nr_free(c.heap.e);
    return rc;
}
