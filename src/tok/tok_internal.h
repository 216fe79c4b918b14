/*
 * tok_internal.h: the tokenizer object shared by tok.c (construction,
 * special tokens, dispatch, decoding), bpe.c (byte-level BPE) and spm.c
 * (SentencePiece BPE). Not a public header.
 */
#ifndef NR_TOK_INTERNAL_H
#define NR_TOK_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "nr_tok.h"

/* tokenizer.ggml.token_type values (llama.cpp's numbering). */
enum {
    TOK_T_NORMAL = 1,
    TOK_T_UNKNOWN = 2,
    TOK_T_CONTROL = 3,
    TOK_T_USER = 4,
    TOK_T_UNUSED = 5,
    TOK_T_BYTE = 6,
};

#define TOK_MAX_TOKEN_BYTES 1024 /* bytes of one token's text in the file */

/* Bytes -> id, open addressing; slots hold id + 1 (0 = empty). */
struct tok_map {
    uint32_t *slot; /* (mask + 1) */
    uint32_t mask;  /* size - 1, size a power of two >= 2 * entries */
};

struct nr_tok {
    int kind;           /* enum nr_tok_kind */
    char pre[32];       /* tokenizer.ggml.pre ("default" when absent) */
    int n_vocab;        /* tokens */
    char *blob;         /* token texts (lookup form), each NUL-terminated */
    uint32_t *off;      /* (n_vocab) byte offset of each text in blob */
    uint16_t *len;      /* (n_vocab) bytes of each text */
    char *pblob;        /* decoded pieces (the bytes each token stands for) */
    uint32_t *poff;     /* (n_vocab) offset in pblob */
    uint16_t *plen;     /* (n_vocab) bytes, <= NR_TOK_MAX_PIECE */
    uint8_t *type;      /* (n_vocab) TOK_T_* */
    struct tok_map map; /* lookup text -> id */
    int bos, eos;       /* -1 when none */
    int unk;            /* SPM: id for an unknown char without byte fallback; -1 none */
    int add_bos;        /* tokenizer.ggml.add_bos_token */
    int add_space;      /* SPM: tokenizer.ggml.add_space_prefix */
    uint8_t *eog;       /* (n_vocab) 1 where generation ends */
    int byte_id[256];   /* BPE: id of each byte's GPT-2 char; SPM: <0xNN> id or -1 */

    /* Raw-text matches: CONTROL (PARSE_SPECIAL only) and USER_DEFINED tokens. */
    int32_t *spec; /* (n_spec) ids */
    int n_spec;
    uint8_t spec_first[32]; /* bitmap of first bytes of special texts */
    int *spec_lens;         /* (n_spec_lens) distinct special text lengths, longest first */
    int n_spec_lens;

    /* BPE: (left id, right id) -> rank, merged id. */
    uint64_t *pair_key;  /* (pair_mask + 1) (left << 32 | right) + 1, 0 = empty */
    uint32_t *pair_rank; /* (pair_mask + 1) merge rank (line in the merges list) */
    int32_t *pair_id;    /* (pair_mask + 1) id of the merged token */
    uint32_t pair_mask;
    void *re;       /* pcre2_code_8 * (JIT-compiled), the pre-tokenizer split */
    void *re_digit; /* smollm: \p{N}, each digit a piece of its own first; else NULL */

    /* SPM: merge order of each token: HF sorts merges by (score desc, ...). */
    uint32_t *srank;    /* (n_vocab) dense rank of score, best 0 */
    uint16_t *ncp;      /* (n_vocab) code points in the lookup text */
    int64_t bridge[32]; /* code points some token joins to a following "▁" */
    int n_bridge;
    int spm_nosplit; /* more bridge characters than fit: never cut a fragment */
};

uint64_t tok_hash(const char *s, size_t n);
/* Id of the token whose lookup text is s[0..n); -1 if none. */
int tok_map_get(const struct nr_tok *t, const char *s, size_t n);

/* A growable id list with the caller's cap (counts past the cap). */
struct tok_out {
    int32_t *ids;
    int cap;
    int n; /* total ids produced so far (may exceed cap) */
};
static inline void tok_out_push(struct tok_out *o, int32_t id)
{
    if (o->n < o->cap)
        o->ids[o->n] = id;
    o->n++;
}

/*
 * Merge queue of bpe.c and spm.c: a binary min-heap of (key, pos), pos the
 * left symbol of a candidate pair; equal keys pop leftmost first, as HF's
 * BPE word merge does. Entries go stale when a neighbour merges; the
 * merge loops check an entry against the current symbols when it pops.
 */
struct tok_heap_ent {
    uint64_t key; /* merge priority, lower first */
    uint32_t pos; /* left symbol index */
};
struct tok_heap {
    struct tok_heap_ent *e; /* (cap) */
    size_t n, cap;
};
static inline int tok_heap_less(const struct tok_heap_ent *a, const struct tok_heap_ent *b)
{
    return a->key < b->key || (a->key == b->key && a->pos < b->pos);
}
/* The caller sized cap for every push (3 per symbol suffices). */
static inline void tok_heap_push(struct tok_heap *h, uint64_t key, uint32_t pos)
{
    size_t i = h->n++;
    struct tok_heap_ent x = {key, pos};
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!tok_heap_less(&x, &h->e[p]))
            break;
        h->e[i] = h->e[p];
        i = p;
    }
    h->e[i] = x;
}
static inline struct tok_heap_ent tok_heap_pop(struct tok_heap *h)
{
    struct tok_heap_ent top = h->e[0], x = h->e[--h->n];
    size_t i = 0, n = h->n;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n)
            break;
        if (c + 1 < n && tok_heap_less(&h->e[c + 1], &h->e[c]))
            c++;
        if (!tok_heap_less(&h->e[c], &x))
            break;
        h->e[i] = h->e[c];
        i = c;
    }
    if (n > 0)
        h->e[i] = x;
    return top;
}

/* bpe.c */
int tok_bpe_init(struct nr_tok *t, const struct nr_gguf *g);
void tok_bpe_free(struct nr_tok *t);
int tok_bpe_encode(const struct nr_tok *t, const char *text, size_t len, struct tok_out *o);
/* Byte a GPT-2 alphabet code point stands for, -1 if none. */
int tok_bpe_unmap(uint32_t cp);

/* spm.c */
int tok_spm_init(struct nr_tok *t, const struct nr_gguf *g, const float *scores, int by_index);
void tok_spm_free(struct nr_tok *t);
/* first: this fragment starts the text (the space prefix goes only there). */
int tok_spm_encode(const struct nr_tok *t, const char *text, size_t len, int first,
                   struct tok_out *o);

/* UTF-8: length of a valid sequence at s (1..4), 0 if invalid or truncated. */
int tok_utf8_len(const unsigned char *s, size_t n, uint32_t *cp);

#endif
