/*
 * tok.c: the generative-model tokenizer built from GGUF metadata: the
 * vocabulary, special tokens, dispatch to byte-level BPE (bpe.c) or
 * SentencePiece BPE (spm.c), pieces and the streaming detokenizer.
 *
 * Metadata read (llama.cpp's layout; the reference is the Hugging Face
 * tokenizer transformers builds from the same GGUF, see
 * scripts/fixtures/make_tok_fixtures.py):
 *   tokenizer.ggml.model        "gpt2" | "llama"
 *   tokenizer.ggml.pre          pre-tokenizer name (BPE; "default" if absent)
 *   tokenizer.ggml.tokens       string[n], 1 <= n <= NR_TOK_MAX_VOCAB
 *   tokenizer.ggml.token_type   i32[n] (optional; NORMAL when absent)
 *   tokenizer.ggml.scores       f32[n] (SPM)
 *   tokenizer.ggml.merges       string[m] "left right" (BPE)
 *   tokenizer.ggml.{bos,eos,eot,eom,unknown}_token_id, add_bos_token,
 *   add_space_prefix            (optional)
 *
 * Vocabulary checks: each token 0..TOK_MAX_TOKEN_BYTES bytes without NUL,
 * a BYTE token is exactly "<0xNN>", types 1..6, special ids in range, the
 * piece a token decodes to at most NR_TOK_MAX_PIECE bytes. A duplicate text
 * keeps the first id. Gemma files store their space-run tokens with real
 * spaces ("  ") where the model means "▁▁"; as in the reference, those are
 * respelled at load (so nr_tok_text shows "▁▁") and are no longer matched as
 * raw text.
 *
 * Special tokens. Before the model runs, the text is cut at the leftmost-
 * longest occurrence of a token matched as raw text, as HF's added-token
 * pass does: USER_DEFINED tokens always (HF adds them as plain added
 * tokens: Gemma's "\n", "<table>", ...), CONTROL and UNKNOWN ones only with
 * NR_TOK_PARSE_SPECIAL (HF special tokens; user text must not forge a
 * turn marker). Matching probes the hash map once per distinct special-
 * token length at each byte that starts some special token (a 256-bit
 * first-byte filter keeps ordinary bytes to one test).
 *
 * Pieces (what a token decodes to) are computed once at load into their
 * own blob: byte-level tokens are mapped back from the GPT-2 alphabet, SPM
 * "▁" becomes a space and <0xNN> its byte, special tokens their text.
 *
 * Everything is immutable after nr_tok_open_gguf; encode allocates its
 * scratch per call, so calls run in parallel.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nr_err.h"
#include "nr_gguf.h"
#include "nr_mem.h"
#include "tok_internal.h"

#define KEY_TOKENS "tokenizer.ggml.tokens"
#define KEY_TYPES  "tokenizer.ggml.token_type"
#define KEY_SCORES "tokenizer.ggml.scores"

int tok_utf8_len(const unsigned char *s, size_t n, uint32_t *cp)
{
    uint32_t c;
    int k;
    if (n == 0)
        return 0;
    if (s[0] < 0x80) {
        *cp = s[0];
        return 1;
    }
    if (s[0] >= 0xc2 && s[0] <= 0xdf) {
        k = 2;
        c = s[0] & 0x1f;
    } else if (s[0] >= 0xe0 && s[0] <= 0xef) {
        k = 3;
        c = s[0] & 0x0f;
    } else if (s[0] >= 0xf0 && s[0] <= 0xf4) {
        k = 4;
        c = s[0] & 0x07;
    } else {
        return 0;
    }
    if (n < (size_t)k)
        return 0;
    for (int i = 1; i < k; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        c = (c << 6) | (s[i] & 0x3f);
    }
    if ((k == 3 && c < 0x800) || (k == 4 && (c < 0x10000 || c > 0x10ffff)) ||
        (c >= 0xd800 && c <= 0xdfff))
        return 0;
    *cp = c;
    return k;
}

uint64_t tok_hash(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 1099511628211ull;
    }
    return h ^ (h >> 29);
}

int tok_map_get(const struct nr_tok *t, const char *s, size_t n)
{
    uint32_t i = (uint32_t)tok_hash(s, n) & t->map.mask;
    for (;;) {
        uint32_t v = t->map.slot[i];
        if (v == 0)
            return -1;
        int id = (int)v - 1;
        if (t->len[id] == n && memcmp(t->blob + t->off[id], s, n) == 0)
            return id;
        i = (i + 1) & t->map.mask;
    }
}

/* Python's str.isspace() over ASCII, and at least one ' ': Gemma's space runs. */
static int all_space(const char *s, size_t n)
{
    int sp = 0;
    if (n == 0)
        return 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == ' ')
            sp = 1;
        else if (!strchr("\t\n\v\f\r\x1c\x1d\x1e\x1f", s[i]) || s[i] == 0)
            return 0;
    }
    return sp;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/* The byte of a "<0xNN>" token, -1 if s is not one. */
static int byte_token(const char *s, size_t n)
{
    if (n != 6 || memcmp(s, "<0x", 3) != 0 || s[5] != '>')
        return -1;
    int hi = hexval(s[3]), lo = hexval(s[4]);
    return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

static int is_control(int type)
{
    return type == TOK_T_CONTROL || type == TOK_T_UNKNOWN;
}

/* Piece of token id into dst (cap NR_TOK_MAX_PIECE); returns length or -1 if too long. */
static int make_piece(const struct nr_tok *t, int id, char *dst)
{
    const char *s = t->blob + t->off[id];
    size_t n = t->len[id], o = 0;
    int type = t->type[id];

    if (is_control(type) || type == TOK_T_USER) {
        if (n > NR_TOK_MAX_PIECE)
            return -1;
        /* Gemma's respelled space runs decode as spaces like any "▁". */
        if (!(t->kind == NR_TOK_SPM && type == TOK_T_USER)) {
            memcpy(dst, s, n);
            return (int)n;
        }
    }
    if (t->kind == NR_TOK_SPM && type == TOK_T_BYTE) {
        dst[0] = (char)byte_token(s, n);
        return 1;
    }
    for (size_t i = 0; i < n;) {
        uint32_t cp = 0;
        int k = tok_utf8_len((const unsigned char *)s + i, n - i, &cp);
        int b = -1;
        if (k == 0) { /* stored bytes that are not UTF-8: keep them */
            k = 1;
        } else if (t->kind == NR_TOK_BPE) {
            b = tok_bpe_unmap(cp);
        } else if (cp == 0x2581) {
            b = ' ';
        }
        if (b >= 0) {
            if (o + 1 > NR_TOK_MAX_PIECE)
                return -1;
            dst[o++] = (char)b;
        } else {
            if (o + (size_t)k > NR_TOK_MAX_PIECE)
                return -1;
            memcpy(dst + o, s + i, (size_t)k);
            o += (size_t)k;
        }
        i += (size_t)k;
    }
    return (int)o;
}

static int opt_id(const struct nr_gguf *g, const char *key, int n_vocab, int *out)
{
    uint32_t v;
    int rc = nr_gguf_get_u32(g, key, &v);
    *out = -1;
    if (rc == NR_ENOTFOUND)
        return NR_OK;
    if (rc != NR_OK)
        return nr_err_wrap(rc, "tok");
    if (v >= (uint32_t)n_vocab)
        return nr_err_set(NR_EFORMAT, "tok: %s %u out of range (vocabulary of %d)", key, v,
                          n_vocab);
    *out = (int)v;
    return NR_OK;
}

static int opt_bool(const struct nr_gguf *g, const char *key, int dflt, int *out)
{
    int rc = nr_gguf_get_bool(g, key, out);
    if (rc == NR_ENOTFOUND) {
        *out = dflt;
        return NR_OK;
    }
    return rc == NR_OK ? NR_OK : nr_err_wrap(rc, "tok");
}

static int cmp_int_desc(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return (x < y) - (x > y);
}

/* The raw-matched token list, the first-byte filter and the distinct lengths. */
static int build_specials(struct nr_tok *t)
{
    int n = 0, nl = 0;
    for (int i = 0; i < t->n_vocab; i++)
        if ((is_control(t->type[i]) || t->type[i] == TOK_T_USER) && t->len[i] > 0 &&
            tok_map_get(t, t->blob + t->off[i], t->len[i]) == i)
            n++;
    t->spec = nr_malloc(((size_t)n + 1) * sizeof *t->spec);
    t->spec_lens = nr_malloc(((size_t)n + 1) * sizeof *t->spec_lens);
    if (!t->spec || !t->spec_lens)
        return nr_err_set(NR_ENOMEM, "tok: out of memory for special tokens");
    for (int i = 0; i < t->n_vocab; i++) {
        if (!((is_control(t->type[i]) || t->type[i] == TOK_T_USER) && t->len[i] > 0 &&
              tok_map_get(t, t->blob + t->off[i], t->len[i]) == i))
            continue;
        unsigned char c = (unsigned char)t->blob[t->off[i]];
        t->spec[t->n_spec++] = i;
        t->spec_first[c >> 3] |= (uint8_t)(1u << (c & 7));
        int l = t->len[i], seen = 0;
        for (int k = 0; k < nl && !seen; k++)
            seen = t->spec_lens[k] == l;
        if (!seen)
            t->spec_lens[nl++] = l;
    }
    qsort(t->spec_lens, (size_t)nl, sizeof *t->spec_lens, cmp_int_desc);
    t->n_spec_lens = nl;
    return NR_OK;
}

static const char *const eog_texts[] = {
    "<|im_end|>", "<|eot_id|>", "<|eom_id|>", "<end_of_turn>",   "<|endoftext|>",
    "<|end|>",    "<|return|>", "<|call|>",   "<|end_of_text|>",
};

static int build_eog(struct nr_tok *t, const struct nr_gguf *g)
{
    int eot, eom, rc;
    t->eog = nr_calloc((size_t)t->n_vocab, 1);
    if (!t->eog)
        return nr_err_set(NR_ENOMEM, "tok: out of memory");
    if ((rc = opt_id(g, "tokenizer.ggml.eot_token_id", t->n_vocab, &eot)) != NR_OK ||
        (rc = opt_id(g, "tokenizer.ggml.eom_token_id", t->n_vocab, &eom)) != NR_OK)
        return rc;
    if (t->eos >= 0)
        t->eog[t->eos] = 1;
    if (eot >= 0)
        t->eog[eot] = 1;
    if (eom >= 0)
        t->eog[eom] = 1;
    for (size_t i = 0; i < sizeof eog_texts / sizeof eog_texts[0]; i++) {
        int id = tok_map_get(t, eog_texts[i], strlen(eog_texts[i]));
        if (id >= 0 && is_control(t->type[id]))
            t->eog[id] = 1;
    }
    return NR_OK;
}

/* Tokens, types, lookup map and pieces. respell: Gemma's space-run tokens become "▁"s. */
static int load_vocab(struct nr_tok *t, const struct nr_gguf *g, int respell)
{
    int et, has_types, rc;
    uint64_t n, nt = 0;
    size_t total = 0;

    rc = nr_gguf_get_arr(g, KEY_TOKENS, &et, &n);
    if (rc != NR_OK)
        return nr_err_wrap(rc, "tok");
    if (et != NR_GGUF_STRING || n < 1 || n > NR_TOK_MAX_VOCAB)
        return nr_err_set(NR_EFORMAT, "tok: %s must be 1..%d strings (got %llu of type %s)",
                          KEY_TOKENS, NR_TOK_MAX_VOCAB, (unsigned long long)n,
                          nr_gguf_vtype_name(et));
    rc = nr_gguf_get_arr(g, KEY_TYPES, &et, &nt);
    has_types = rc == NR_OK;
    if (rc != NR_OK && rc != NR_ENOTFOUND)
        return nr_err_wrap(rc, "tok");
    if (has_types && nt != n)
        return nr_err_set(NR_EFORMAT, "tok: %s has %llu entries for %llu tokens", KEY_TYPES,
                          (unsigned long long)nt, (unsigned long long)n);
    t->n_vocab = (int)n;
    t->off = nr_malloc(n * sizeof *t->off);
    t->len = nr_malloc(n * sizeof *t->len);
    t->poff = nr_malloc(n * sizeof *t->poff);
    t->plen = nr_malloc(n * sizeof *t->plen);
    t->type = nr_malloc(n);
    if (!t->off || !t->len || !t->poff || !t->plen || !t->type)
        return nr_err_set(NR_ENOMEM, "tok: out of memory for %llu tokens", (unsigned long long)n);

    /* Pass 1: sizes and checks. A respelled token has 3 bytes ("▁") per space. */
    for (uint64_t i = 0; i < n; i++) {
        const char *s;
        size_t l;
        int32_t ty = TOK_T_NORMAL;
        if ((rc = nr_gguf_get_arr_str(g, KEY_TOKENS, i, &s, &l)) != NR_OK)
            return nr_err_wrap(rc, "tok");
        if (has_types && (rc = nr_gguf_get_arr_i32(g, KEY_TYPES, i, &ty)) != NR_OK)
            return nr_err_wrap(rc, "tok");
        if (l > TOK_MAX_TOKEN_BYTES || memchr(s, 0, l))
            return nr_err_set(NR_EFORMAT, "tok: token %llu is longer than %d bytes or has a NUL",
                              (unsigned long long)i, TOK_MAX_TOKEN_BYTES);
        if (ty < TOK_T_NORMAL || ty > TOK_T_BYTE)
            return nr_err_set(NR_EFORMAT, "tok: token %llu has type %d (want 1..6)",
                              (unsigned long long)i, (int)ty);
        if (ty == TOK_T_BYTE && byte_token(s, l) < 0)
            return nr_err_set(NR_EFORMAT, "tok: byte token %llu is not <0xNN>",
                              (unsigned long long)i);
        t->type[i] = (uint8_t)ty;
        if (respell && all_space(s, l))
            l *= 3;
        total += l + 1;
    }
    if (total > UINT32_MAX)
        return nr_err_set(NR_ELIMIT, "tok: token texts exceed 4 GiB");
    t->blob = nr_malloc(total);
    if (!t->blob)
        return nr_err_set(NR_ENOMEM, "tok: out of memory for token texts");
    total = 0;
    for (uint64_t i = 0; i < n; i++) {
        const char *s;
        size_t l;
        nr_gguf_get_arr_str(g, KEY_TOKENS, i, &s, &l);
        t->off[i] = (uint32_t)total;
        if (respell && all_space(s, l)) {
            for (size_t k = 0; k < l; k++)
                memcpy(t->blob + total + 3 * k, "\xe2\x96\x81", 3);
            l *= 3;
            /* Not matched as raw text any more: HF adds it as a vocabulary entry only. */
            if (t->type[i] == TOK_T_USER)
                t->type[i] = TOK_T_NORMAL;
        } else {
            memcpy(t->blob + total, s, l);
        }
        if (l > UINT16_MAX)
            return nr_err_set(NR_EFORMAT, "tok: token %llu too long", (unsigned long long)i);
        t->len[i] = (uint16_t)l;
        t->blob[total + l] = 0;
        total += l + 1;
    }

    /* Lookup map. */
    uint32_t size = 2;
    while (size < 2 * (uint32_t)n)
        size <<= 1;
    t->map.slot = nr_calloc(size, sizeof *t->map.slot);
    if (!t->map.slot)
        return nr_err_set(NR_ENOMEM, "tok: out of memory for the token map");
    t->map.mask = size - 1;
    for (uint64_t i = 0; i < n; i++) {
        const char *s = t->blob + t->off[i];
        if (tok_map_get(t, s, t->len[i]) >= 0)
            continue; /* duplicate text: the first id wins */
        uint32_t h = (uint32_t)tok_hash(s, t->len[i]) & t->map.mask;
        while (t->map.slot[h])
            h = (h + 1) & t->map.mask;
        t->map.slot[h] = (uint32_t)i + 1;
    }
    return NR_OK;
}

static int build_pieces(struct nr_tok *t)
{
    char piece[NR_TOK_MAX_PIECE];
    size_t total = 0;
    for (int i = 0; i < t->n_vocab; i++) {
        int l = make_piece(t, i, piece);
        if (l < 0)
            return nr_err_set(NR_EFORMAT, "tok: token %d decodes to more than %d bytes", i,
                              NR_TOK_MAX_PIECE);
        t->plen[i] = (uint16_t)l;
        total += (size_t)l;
    }
    t->pblob = nr_malloc(total + 1);
    if (!t->pblob)
        return nr_err_set(NR_ENOMEM, "tok: out of memory for pieces");
    total = 0;
    for (int i = 0; i < t->n_vocab; i++) {
        t->poff[i] = (uint32_t)total;
        make_piece(t, i, t->pblob + total);
        total += t->plen[i];
    }
    return NR_OK;
}

int nr_tok_open_gguf(const struct nr_gguf *g, struct nr_tok **out)
{
    struct nr_tok *t = NULL;
    char model[32], arch[64] = "";
    float *scores = NULL;
    int rc, gemma;

    if (!g || !out)
        return nr_err_set(NR_EINVAL, "tok: NULL argument");
    *out = NULL;
    rc = nr_gguf_get_cstr(g, "tokenizer.ggml.model", model, sizeof model);
    if (rc != NR_OK)
        return nr_err_wrap(rc, "tok: tokenizer.ggml.model");
    rc = nr_gguf_get_cstr(g, "general.architecture", arch, sizeof arch);
    if (rc != NR_OK && rc != NR_ENOTFOUND)
        return nr_err_wrap(rc, "tok: general.architecture");
    gemma = strncmp(arch, "gemma", 5) == 0;

    t = nr_calloc(1, sizeof *t);
    if (!t)
        return nr_err_set(NR_ENOMEM, "tok: out of memory");
    snprintf(t->pre, sizeof t->pre, "default");
    rc = nr_gguf_get_cstr(g, "tokenizer.ggml.pre", t->pre, sizeof t->pre);
    if (rc != NR_OK && rc != NR_ENOTFOUND) {
        nr_err_wrap(rc, "tok: tokenizer.ggml.pre");
        goto fail;
    }
    if (rc == NR_ENOTFOUND)
        snprintf(t->pre, sizeof t->pre, "default");
    if (strcmp(model, "gpt2") == 0) {
        t->kind = NR_TOK_BPE;
    } else if (strcmp(model, "llama") == 0) {
        t->kind = NR_TOK_SPM;
    } else {
        rc = nr_err_set(NR_EUNSUPPORTED, "tok: tokenizer.ggml.model '%s' is not handled", model);
        goto fail;
    }
    if ((rc = load_vocab(t, g, t->kind == NR_TOK_SPM && gemma)) != NR_OK)
        goto fail;
    if ((rc = opt_id(g, "tokenizer.ggml.bos_token_id", t->n_vocab, &t->bos)) != NR_OK ||
        (rc = opt_id(g, "tokenizer.ggml.eos_token_id", t->n_vocab, &t->eos)) != NR_OK ||
        (rc = opt_id(g, "tokenizer.ggml.unknown_token_id", t->n_vocab, &t->unk)) != NR_OK ||
        (rc = opt_bool(g, "tokenizer.ggml.add_bos_token", t->kind == NR_TOK_SPM, &t->add_bos)) !=
            NR_OK ||
        (rc = opt_bool(g, "tokenizer.ggml.add_space_prefix", t->kind == NR_TOK_SPM,
                       &t->add_space)) != NR_OK)
        goto fail;
    if ((rc = build_pieces(t)) != NR_OK || (rc = build_specials(t)) != NR_OK ||
        (rc = build_eog(t, g)) != NR_OK)
        goto fail;
    if (t->kind == NR_TOK_BPE) {
        rc = tok_bpe_init(t, g);
    } else {
        int et;
        uint64_t ns;
        rc = nr_gguf_get_arr(g, KEY_SCORES, &et, &ns);
        if (rc == NR_OK && ns != (uint64_t)t->n_vocab) {
            rc = nr_err_set(NR_EFORMAT, "tok: %s has %llu entries for %d tokens", KEY_SCORES,
                            (unsigned long long)ns, t->n_vocab);
            goto fail;
        }
        if (rc == NR_OK) {
            scores = nr_malloc((size_t)t->n_vocab * sizeof *scores);
            if (!scores) {
                rc = nr_err_set(NR_ENOMEM, "tok: out of memory for scores");
                goto fail;
            }
            for (int i = 0; i < t->n_vocab && rc == NR_OK; i++)
                rc = nr_gguf_get_arr_f32(g, KEY_SCORES, (uint64_t)i, &scores[i]);
            if (rc != NR_OK) {
                nr_err_wrap(rc, "tok");
                goto fail;
            }
        } else if (rc != NR_ENOTFOUND) {
            nr_err_wrap(rc, "tok");
            goto fail;
        }
        /* Gemma's scores do not follow its merge order; the token order does. */
        rc = tok_spm_init(t, g, scores, gemma || !scores);
    }
    if (rc != NR_OK)
        goto fail;
    nr_free(scores);
    *out = t;
    return NR_OK;
fail:
    nr_free(scores);
    nr_tok_free(t);
    return rc;
}

void nr_tok_free(struct nr_tok *t)
{
    if (!t)
        return;
    tok_bpe_free(t);
    tok_spm_free(t);
    nr_free(t->blob);
    nr_free(t->off);
    nr_free(t->len);
    nr_free(t->pblob);
    nr_free(t->poff);
    nr_free(t->plen);
    nr_free(t->type);
    nr_free(t->map.slot);
    nr_free(t->eog);
    nr_free(t->spec);
    nr_free(t->spec_lens);
    nr_free(t);
}

int nr_tok_kind(const struct nr_tok *t)
{
    return t ? t->kind : 0;
}
const char *nr_tok_pre(const struct nr_tok *t)
{
    return t ? t->pre : NULL;
}
int nr_tok_n_vocab(const struct nr_tok *t)
{
    return t ? t->n_vocab : 0;
}
int nr_tok_bos(const struct nr_tok *t)
{
    return t ? t->bos : -1;
}
int nr_tok_eos(const struct nr_tok *t)
{
    return t ? t->eos : -1;
}
int nr_tok_adds_bos(const struct nr_tok *t)
{
    return t ? t->add_bos && t->bos >= 0 : 0;
}

int nr_tok_is_eog(const struct nr_tok *t, int id)
{
    return t && id >= 0 && id < t->n_vocab && t->eog[id];
}

int nr_tok_find(const struct nr_tok *t, const char *s)
{
    if (!t || !s)
        return -1;
    return tok_map_get(t, s, strlen(s));
}

const char *nr_tok_text(const struct nr_tok *t, int id)
{
    if (!t || id < 0 || id >= t->n_vocab)
        return NULL;
    return t->blob + t->off[id];
}

/* Id of a raw-matched token starting at text[pos], its length in *l; -1 if none. */
static int match_special(const struct nr_tok *t, const char *text, size_t len, size_t pos,
                         int parse_special, size_t *l)
{
    unsigned char c = (unsigned char)text[pos];
    if (!(t->spec_first[c >> 3] & (1u << (c & 7))))
        return -1;
    for (int k = 0; k < t->n_spec_lens; k++) {
        size_t sl = (size_t)t->spec_lens[k];
        if (sl > len - pos)
            continue;
        int id = tok_map_get(t, text + pos, sl);
        if (id < 0)
            continue;
        if (t->type[id] == TOK_T_USER || (parse_special && is_control(t->type[id]))) {
            *l = sl;
            return id;
        }
    }
    return -1;
}

static int encode_fragment(const struct nr_tok *t, const char *s, size_t n, int first,
                           struct tok_out *o)
{
    if (n == 0)
        return NR_OK;
    if (t->kind == NR_TOK_BPE)
        return tok_bpe_encode(t, s, n, o);
    return tok_spm_encode(t, s, n, first, o);
}

int nr_tok_encode(const struct nr_tok *t, const char *text, size_t len, int flags, int32_t *ids,
                  int cap, int *n_out)
{
    struct tok_out o = {ids, cap, 0};
    size_t start = 0, pos = 0;
    int parse = (flags & NR_TOK_PARSE_SPECIAL) != 0, rc;

    if (n_out)
        *n_out = 0;
    if (!t || (!text && len > 0) || (!ids && cap > 0) || cap < 0 || !n_out)
        return nr_err_set(NR_EINVAL, "tok: bad argument to encode");
    if (len > NR_TOK_MAX_TEXT)
        return nr_err_set(NR_ELIMIT, "tok: text of %zu bytes is over the %u-byte limit", len,
                          NR_TOK_MAX_TEXT);
    if ((flags & NR_TOK_ADD_BOS) && t->add_bos && t->bos >= 0)
        tok_out_push(&o, t->bos);
    while (pos < len) {
        size_t l = 0;
        int id = t->n_spec ? match_special(t, text, len, pos, parse, &l) : -1;
        if (id < 0) {
            pos++;
            continue;
        }
        if ((rc = encode_fragment(t, text + start, pos - start, start == 0, &o)) != NR_OK)
            return rc;
        tok_out_push(&o, id);
        pos += l;
        start = pos;
    }
    if ((rc = encode_fragment(t, text + start, len - start, start == 0, &o)) != NR_OK)
        return rc;
    if (o.n < 0)
        return nr_err_set(NR_ELIMIT, "tok: too many tokens");
    *n_out = o.n;
    return NR_OK;
}

int nr_tok_piece(const struct nr_tok *t, int id, int skip_special, char *buf, int cap)
{
    if (!t || id < 0 || id >= t->n_vocab || (!buf && cap > 0) || cap < 0)
        return nr_err_set(NR_EINVAL, "tok: bad argument to piece (id %d)", id);
    if (skip_special && (is_control(t->type[id]) || t->type[id] == TOK_T_UNUSED))
        return 0;
    int n = t->plen[id];
    if (n > cap)
        return nr_err_set(NR_ELIMIT, "tok: piece of token %d needs %d bytes, buffer has %d", id, n,
                          cap);
    memcpy(buf, t->pblob + t->poff[id], (size_t)n);
    return n;
}

/* ---- streaming detokenizer ---- */

void nr_tok_stream_init(struct nr_tok_stream *s, const struct nr_tok *t)
{
    memset(s, 0, sizeof *s);
    s->tok = t;
}

/* Bytes a UTF-8 lead byte announces (0 if it cannot start a sequence). */
static int utf8_need(unsigned char c)
{
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf)
        return 2;
    if (c >= 0xe0 && c <= 0xef)
        return 3;
    if (c >= 0xf0 && c <= 0xf4)
        return 4;
    return 0;
}

/* Could s[0..n) (n < need) still become a valid sequence? */
static int utf8_prefix_ok(const unsigned char *s, size_t n)
{
    for (size_t i = 1; i < n; i++)
        if ((s[i] & 0xc0) != 0x80)
            return 0;
    if (n >= 2) {
        if ((s[0] == 0xe0 && s[1] < 0xa0) || (s[0] == 0xed && s[1] > 0x9f) ||
            (s[0] == 0xf0 && s[1] < 0x90) || (s[0] == 0xf4 && s[1] > 0x8f))
            return 0;
    }
    return 1;
}

/* Emit the complete part of in[0..n) to out; keep an incomplete tail in s->pend. */
static int stream_emit(struct nr_tok_stream *s, const unsigned char *in, size_t n, char *out,
                       int cap, int final)
{
    size_t i = 0;
    int o = 0;
    s->n_pend = 0;
    while (i < n) {
        uint32_t cp;
        int k = tok_utf8_len(in + i, n - i, &cp);
        if (k > 0) {
            if (o + k > cap)
                return nr_err_set(NR_ELIMIT, "tok: stream output buffer of %d bytes is full", cap);
            memcpy(out + o, in + i, (size_t)k);
            o += k;
            i += (size_t)k;
            continue;
        }
        int need = utf8_need(in[i]);
        if (!final && need > 1 && n - i < (size_t)need && utf8_prefix_ok(in + i, n - i)) {
            memcpy(s->pend, in + i, n - i);
            s->n_pend = (int)(n - i);
            break;
        }
        if (o + 3 > cap)
            return nr_err_set(NR_ELIMIT, "tok: stream output buffer of %d bytes is full", cap);
        memcpy(out + o, "\xef\xbf\xbd", 3);
        o += 3;
        i++;
    }
    return o;
}

int nr_tok_stream_feed(struct nr_tok_stream *s, int id, char *out, int cap)
{
    const struct nr_tok *t;
    unsigned char buf[NR_TOK_MAX_PIECE + 8];
    int n, p;

    if (!s || !s->tok || !out || cap < 0)
        return nr_err_set(NR_EINVAL, "tok: bad argument to stream_feed");
    t = s->tok;
    p = nr_tok_piece(t, id, 1, (char *)buf + s->n_pend, NR_TOK_MAX_PIECE);
    if (p < 0)
        return p;
    s->n_fed++;
    if (p == 0)
        return 0;
    memmove(buf, s->pend, (size_t)s->n_pend);
    n = s->n_pend + p;
    /* HF's Metaspace decoder drops the space the encoder prepended. */
    if (s->n_text == 0 && t->kind == NR_TOK_SPM && t->add_space && buf[0] == ' ') {
        memmove(buf, buf + 1, (size_t)n - 1);
        n--;
    }
    s->n_text++;
    return stream_emit(s, buf, (size_t)n, out, cap, 0);
}

int nr_tok_stream_flush(struct nr_tok_stream *s, char *out, int cap)
{
    unsigned char buf[8];
    if (!s || !out || cap < 0)
        return nr_err_set(NR_EINVAL, "tok: bad argument to stream_flush");
    if (s->n_pend == 0)
        return 0;
    memcpy(buf, s->pend, (size_t)s->n_pend);
    return stream_emit(s, buf, (size_t)s->n_pend, out, cap, 1);
}
