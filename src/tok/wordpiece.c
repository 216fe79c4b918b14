/*
 * wordpiece.c: BERT WordPiece tokenization, matching Hugging Face's fast
 * tokenizer (tokenizers 0.23, tokenizer.json of all-MiniLM-L6-v2) id for id and
 * offset for offset. The fixture tests/fixtures/wordpiece_ids.json (made by
 * scripts/fixtures/make_wordpiece_fixtures.py) is the judge.
 *
 * Vocabulary
 *   One blob holds every token in vocab.txt form ("##" + piece for a
 *   continuation), NUL-terminated; tok_off/tok_len index it by id. An open-
 *   addressing hash table (linear probing, power-of-two size >= 2n, so load
 *   <= 1/2) maps bytes -> id; each slot packs the upper 32 hash bits with
 *   id + 1 so most mismatches never touch the blob. The hash is FNV-1a, which
 *   streams: hashing "##" and then a piece equals hashing "##piece", so a
 *   continuation is looked up without building the string.
 *   Load checks: 1..NR_WORDPIECE_MAX_TOKENS tokens, each 1..1024 bytes of
 *   valid UTF-8 without NUL, no duplicates, and [UNK] [CLS] [SEP] present.
 *   GGUF vocabularies (llama.cpp's "phantom space" form) are mapped back to
 *   vocab.txt form first, then pass the same checks.
 *
 * Pipeline (one pass over the bytes, char by char, no allocation). HF runs
 * these as whole-string passes; each step here is the same function applied
 * per character, which is exact because every step is local (the one
 * exception, canonical reordering, is local to a run of combining marks).
 *   0. Added tokens: the exact bytes [PAD] [UNK] [CLS] [SEP] [MASK] (those in
 *      the vocab) become their ids before any normalization: HF splits the raw
 *      text on these non-normalized added tokens first and normalizes the
 *      pieces between them separately.
 *   1. Decode UTF-8; an invalid byte is skipped (HF: a lossy decode gives
 *      U+FFFD, which step 2 removes; neither splits the word around it).
 *   2. Clean: drop U+0000, U+FFFD and "other" chars (Cc, Cf, Co, Cs, but not
 *      Cn) except \t \n \r; whitespace (\t \n \r and Rust's White_Space
 *      that is not Cc: Zs, U+2028, U+2029) ends the word.
 *   3. CJK ideographs (HF's ranges) become words of their own.
 *   4. strip_accents: canonical decomposition (NFD) with canonical ordering of
 *      each run of non-starters, then Mn marks dropped.
 *   5. lowercase: Rust's char::to_lowercase, i.e. the simple mapping except
 *      U+0130 -> "i" U+0307 (no final-sigma rule). HF strips, then lowercases.
 *   6. Pre-tokenize: punctuation (ASCII 33-47 58-64 91-96 123-126, which
 *      includes symbols like = and `, or Unicode P*) is a word of its own.
 *   7. WordPiece: a word of more than max_chars_per_word chars (counted after
 *      normalization) is [UNK]; otherwise greedy longest-match-first from the
 *      left, continuations prefixed "##", each try at most the longest
 *      token's length; if some position has no match the word is one [UNK].
 *   Offsets: a normalized char carries the byte range of a source char; a
 *   token spans its first char's start to its last char's end ("cafe" +
 *   U+0301 gives "cafe" over 4 bytes, the dropped mark excluded, as in HF).
 *   HF's alignments are positional: in a reordered run, a char that begins
 *   its source's decomposition takes the next source char in arrival order,
 *   any other the last source taken. run_end() replays exactly that, for runs
 *   of up to RUN_CAP marks.
 *
 * Unicode data
 *   utf8proc gives categories, decompositions, combining classes and simple
 *   lowercase. HF's data is older in places (control/punctuation/Mn tables
 *   from the unicode_categories crate, NFD and combining classes from
 *   unicode-normalization-alignments) and newer in others (Rust std's
 *   lowercase is Unicode 16). The small exception tables below bridge the
 *   two; `make_wordpiece_fixtures.py --probe` made them by comparing every
 *   code point, against utf8proc 2.8.0 (Unicode 15.0), and the fixture has a
 *   text over the ends of every range. An older utf8proc is fine (what it
 *   lacks is unassigned there, as in HF's old tables; the Unicode 16 lowercase
 *   pairs come from the table either way); a newer one needs a new probe, and
 *   test_wordpiece checks the version.
 *
 * Invariants
 *   - encode writes at most max_ids ids; ids[0] = [CLS], ids[n - 1] = [SEP];
 *     every id is in [0, vocab size); every range lies in [0, len], is
 *     non-empty, and starts do not decrease.
 *   - the per-call state is one struct on the stack (about 10 KiB); the
 *     tokenizer is never written after construction, so calls may run in
 *     parallel on one object.
 *   - work is linear in len: a word is cut at max_chars_per_word chars, a run
 *     buffer at RUN_CAP marks, a match at the longest token.
 *
 * Not handled
 *   - pairs of sequences (token_type_ids 1), stride/overflowing tokens, padding.
 *   - in a run of more than RUN_CAP (32) combining marks, marks that are not
 *     stripped (a few Mc, marks newer than HF's tables) keep their own source
 *     range instead of HF's positional one; ids are still exact.
 *   - never_split / user-added tokens beyond the five BERT specials.
 */
#include "nr_wordpiece.h"

#include <string.h>
#include <utf8proc.h>

#include "nr_err.h"
#include "nr_file.h"
#include "nr_mem.h"

#define WORD_CAP  (NR_WORDPIECE_MAX_WORD_CHARS + 1) /* chars stored per word */
#define RUN_CAP   32 /* combining characters buffered per run for exact offsets */
#define N_SPECIAL 5

struct cp_range {
    int32_t lo, hi;
};
struct cp_delta {
    int32_t lo, hi, delta;
};

/* Generated by scripts/fixtures/make_wordpiece_fixtures.py --probe:
 * tokenizers 0.23.3 against utf8proc 2.8.0 (Unicode 15.0.0). */
/* Cf for utf8proc, kept (not a control) by HF */
static const struct cp_range cf_keep[] = {
    {0x890, 0x891},
    {0x8E2, 0x8E2},
    {0x110CD, 0x110CD},
    {0x13430, 0x1343F},
};

/* P* for utf8proc, not punctuation for HF */
static const struct cp_range punct_not[] = {
    {0x61D, 0x61D},     {0x9FD, 0x9FD},     {0xA76, 0xA76},     {0xC77, 0xC77},
    {0xC84, 0xC84},     {0x1B7D, 0x1B7E},   {0x2E43, 0x2E4F},   {0x2E52, 0x2E5D},
    {0x10EAD, 0x10EAD}, {0x10F55, 0x10F59}, {0x10F86, 0x10F89}, {0x1144B, 0x1144F},
    {0x1145A, 0x1145B}, {0x1145D, 0x1145D}, {0x11660, 0x1166C}, {0x116B9, 0x116B9},
    {0x1183B, 0x1183B}, {0x11944, 0x11946}, {0x119E2, 0x119E2}, {0x11A3F, 0x11A46},
    {0x11A9A, 0x11A9C}, {0x11A9E, 0x11AA2}, {0x11B00, 0x11B09}, {0x11C41, 0x11C45},
    {0x11C70, 0x11C71}, {0x11EF7, 0x11EF8}, {0x11F43, 0x11F4F}, {0x11FFF, 0x11FFF},
    {0x12FF1, 0x12FF2}, {0x16E97, 0x16E9A}, {0x16FE2, 0x16FE2}, {0x1E95E, 0x1E95F},
};

/* punctuation for HF, not P* for utf8proc */
static const struct cp_range punct_extra[] = {
    {0x166D, 0x166D},
    {0x111C9, 0x111C9},
};

/* Mn for utf8proc, not stripped by HF */
static const struct cp_range mn_keep[] = {
    {0x7FD, 0x7FD},     {0x898, 0x89F},     {0x8CA, 0x8E1},     {0x9FE, 0x9FE},
    {0xAFA, 0xAFF},     {0xB55, 0xB55},     {0xC04, 0xC04},     {0xC3C, 0xC3C},
    {0xD00, 0xD00},     {0xD3B, 0xD3C},     {0xD81, 0xD81},     {0xEBA, 0xEBA},
    {0xECE, 0xECE},     {0x180F, 0x180F},   {0x1885, 0x1886},   {0x1ABF, 0x1ACE},
    {0x1DF6, 0x1DFB},   {0xA82C, 0xA82C},   {0xA8C5, 0xA8C5},   {0xA8FF, 0xA8FF},
    {0xA9BD, 0xA9BD},   {0x10D24, 0x10D27}, {0x10EAB, 0x10EAC}, {0x10EFD, 0x10EFF},
    {0x10F46, 0x10F50}, {0x10F82, 0x10F85}, {0x11070, 0x11070}, {0x11073, 0x11074},
    {0x110C2, 0x110C2}, {0x111C9, 0x111C9}, {0x111CF, 0x111CF}, {0x1123E, 0x1123E},
    {0x11241, 0x11241}, {0x1133B, 0x1133B}, {0x11438, 0x1143F}, {0x11442, 0x11444},
    {0x11446, 0x11446}, {0x1145E, 0x1145E}, {0x1182F, 0x11837}, {0x11839, 0x1183A},
    {0x1193B, 0x1193C}, {0x1193E, 0x1193E}, {0x11943, 0x11943}, {0x119D4, 0x119D7},
    {0x119DA, 0x119DB}, {0x119E0, 0x119E0}, {0x11A01, 0x11A0A}, {0x11A33, 0x11A38},
    {0x11A3B, 0x11A3E}, {0x11A47, 0x11A47}, {0x11A51, 0x11A56}, {0x11A59, 0x11A5B},
    {0x11A8A, 0x11A96}, {0x11A98, 0x11A99}, {0x11C30, 0x11C36}, {0x11C38, 0x11C3D},
    {0x11C3F, 0x11C3F}, {0x11C92, 0x11CA7}, {0x11CAA, 0x11CB0}, {0x11CB2, 0x11CB3},
    {0x11CB5, 0x11CB6}, {0x11D31, 0x11D36}, {0x11D3A, 0x11D3A}, {0x11D3C, 0x11D3D},
    {0x11D3F, 0x11D45}, {0x11D47, 0x11D47}, {0x11D90, 0x11D91}, {0x11D95, 0x11D95},
    {0x11D97, 0x11D97}, {0x11EF3, 0x11EF4}, {0x11F00, 0x11F01}, {0x11F36, 0x11F3A},
    {0x11F40, 0x11F40}, {0x11F42, 0x11F42}, {0x13440, 0x13440}, {0x13447, 0x13455},
    {0x16F4F, 0x16F4F}, {0x16FE4, 0x16FE4}, {0x1CF00, 0x1CF2D}, {0x1CF30, 0x1CF46},
    {0x1E000, 0x1E006}, {0x1E008, 0x1E018}, {0x1E01B, 0x1E021}, {0x1E023, 0x1E024},
    {0x1E026, 0x1E02A}, {0x1E08F, 0x1E08F}, {0x1E130, 0x1E136}, {0x1E2AE, 0x1E2AE},
    {0x1E2EC, 0x1E2EF}, {0x1E4EC, 0x1E4EF}, {0x1E944, 0x1E94A},
};

/* stripped by HF (Mn there), not Mn for utf8proc */
static const struct cp_range mn_extra[] = {
    {0x1734, 0x1734},
};

/* decomposed by utf8proc, not by HF's NFD */
static const struct cp_range nfd_keep[] = {
    {0x11938, 0x11938},
};

/* combining class 0 (a starter) for HF's NFD, not for utf8proc */
static const struct cp_range ccc_zero[] = {
    {0x7FD, 0x7FD},     {0x898, 0x89F},     {0x8CA, 0x8D3},     {0x9FE, 0x9FE},
    {0xC3C, 0xC3C},     {0xD3B, 0xD3C},     {0xEBA, 0xEBA},     {0x1715, 0x1715},
    {0x1ABF, 0x1ACE},   {0x1DF6, 0x1DFA},   {0xA82C, 0xA82C},   {0x10D24, 0x10D27},
    {0x10EAB, 0x10EAC}, {0x10EFD, 0x10EFF}, {0x10F46, 0x10F50}, {0x10F82, 0x10F85},
    {0x11070, 0x11070}, {0x1133B, 0x1133B}, {0x1145E, 0x1145E}, {0x11839, 0x1183A},
    {0x1193D, 0x1193E}, {0x11943, 0x11943}, {0x119E0, 0x119E0}, {0x11A34, 0x11A34},
    {0x11A47, 0x11A47}, {0x11A99, 0x11A99}, {0x11D42, 0x11D42}, {0x11D44, 0x11D45},
    {0x11D97, 0x11D97}, {0x11F41, 0x11F42}, {0x16FF0, 0x16FF1}, {0x1E08F, 0x1E08F},
    {0x1E130, 0x1E136}, {0x1E2AE, 0x1E2AE}, {0x1E2EC, 0x1E2EF}, {0x1E4EC, 0x1E4EF},
};

/* lowercase mappings HF (Rust std) has and utf8proc lacks: {lo, hi, delta} */
static const struct cp_delta lower_extra[] = {
    {0x1C89, 0x1C89, 1},    {0xA7CB, 0xA7CB, -42343}, {0xA7CC, 0xA7CC, 1}, {0xA7CE, 0xA7CE, 1},
    {0xA7D2, 0xA7D2, 1},    {0xA7D4, 0xA7D4, 1},      {0xA7DA, 0xA7DA, 1}, {0xA7DC, 0xA7DC, -42561},
    {0x10D50, 0x10D65, 32}, {0x16EA0, 0x16EB8, 27},
};

/* HF's "Chinese character" ranges (tokenizers' BertNormalizer; note 0x2B920,
 * where the slow Python tokenizer has 0x2B820). */
static const struct cp_range cjk[] = {
    {0x3400, 0x4DBF},   {0x4E00, 0x9FFF},   {0xF900, 0xFAFF},   {0x20000, 0x2A6DF},
    {0x2A700, 0x2B73F}, {0x2B740, 0x2B81F}, {0x2B920, 0x2CEAF}, {0x2F800, 0x2FA1F},
};

#define N_OF(a) ((int)(sizeof(a) / sizeof((a)[0])))

static int in_ranges(const struct cp_range *r, int n, int32_t c)
{
    int lo = 0, hi = n - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (c < r[mid].lo)
            hi = mid - 1;
        else if (c > r[mid].hi)
            lo = mid + 1;
        else
            return 1;
    }
    return 0;
}

/* Canonical combining class as HF's NFD has it. */
static int hf_ccc(int32_t c, int ccc)
{
    return ccc && in_ranges(ccc_zero, N_OF(ccc_zero), c) ? 0 : ccc;
}

static const char *const special_names[N_SPECIAL] = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"};

struct nr_wordpiece {
    int n_tokens;
    char *blob;         /* every token, vocab.txt form, NUL-terminated */
    uint32_t *tok_off;  /* (n_tokens) byte offset of token id in blob */
    uint32_t *tok_len;  /* (n_tokens) bytes, NUL excluded */
    uint64_t *slots;    /* (slot_mask + 1) hash table: (hash >> 32) << 32 | (id + 1); 0 empty */
    uint32_t slot_mask; /* table size - 1; size a power of two >= 2 * n_tokens */
    int max_head;       /* longest word-initial token, bytes */
    int max_tail;       /* longest continuation token, bytes after "##" */
    int cls_id, sep_id, unk_id, pad_id;
    int n_special;                  /* added tokens matched in raw text */
    int special_id[N_SPECIAL];      /* (n_special) their ids */
    uint8_t special_len[N_SPECIAL]; /* (n_special) their byte lengths */
    const char *special_str[N_SPECIAL];
    int lowercase, strip, chinese; /* resolved options, 0/1 */
    int max_chars;                 /* max_chars_per_word */
};

/* ---------------------------------------------------------------- UTF-8 */

/* Decode one code point at s (n >= 1 bytes): its length, or 0 if the bytes
 * there are not a valid UTF-8 sequence (overlong, surrogate, > U+10FFFF,
 * truncated, stray continuation). */
static int utf8_next(const unsigned char *s, size_t n, int32_t *cp)
{
    unsigned c = s[0];
    if (c < 0x80) {
        *cp = (int32_t)c;
        return 1;
    }
    if (c < 0xC2)
        return 0;
    if (c < 0xE0) {
        if (n < 2 || (s[1] & 0xC0) != 0x80)
            return 0;
        *cp = (int32_t)(((c & 0x1F) << 6) | (s[1] & 0x3F));
        return 2;
    }
    if (c < 0xF0) {
        if (n < 3 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80)
            return 0;
        if ((c == 0xE0 && s[1] < 0xA0) || (c == 0xED && s[1] >= 0xA0))
            return 0;
        *cp = (int32_t)(((c & 0x0F) << 12) | ((s[1] & 0x3Fu) << 6) | (s[2] & 0x3F));
        return 3;
    }
    if (c < 0xF5) {
        if (n < 4 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80 || (s[3] & 0xC0) != 0x80)
            return 0;
        if ((c == 0xF0 && s[1] < 0x90) || (c == 0xF4 && s[1] >= 0x90))
            return 0;
        *cp = (int32_t)(((c & 0x07) << 18) | ((s[1] & 0x3Fu) << 12) | ((s[2] & 0x3Fu) << 6) |
                        (s[3] & 0x3F));
        return 4;
    }
    return 0;
}

static int utf8_put(char *out, int32_t c)
{
    unsigned char *o = (unsigned char *)out;
    if (c < 0x80) {
        o[0] = (unsigned char)c;
        return 1;
    }
    if (c < 0x800) {
        o[0] = (unsigned char)(0xC0 | (c >> 6));
        o[1] = (unsigned char)(0x80 | (c & 0x3F));
        return 2;
    }
    if (c < 0x10000) {
        o[0] = (unsigned char)(0xE0 | (c >> 12));
        o[1] = (unsigned char)(0x80 | ((c >> 6) & 0x3F));
        o[2] = (unsigned char)(0x80 | (c & 0x3F));
        return 3;
    }
    o[0] = (unsigned char)(0xF0 | (c >> 18));
    o[1] = (unsigned char)(0x80 | ((c >> 12) & 0x3F));
    o[2] = (unsigned char)(0x80 | ((c >> 6) & 0x3F));
    o[3] = (unsigned char)(0x80 | (c & 0x3F));
    return 4;
}

/* ---------------------------------------------------------------- hash table */

#define FNV_BASIS 0xcbf29ce484222325ULL
#define FNV_PRIME 0x100000001b3ULL

static uint64_t fnv(uint64_t h, const char *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)p[i];
        h *= FNV_PRIME;
    }
    return h;
}

/* FNV's low bits are weak for short keys: mix before using them as an index. */
static uint64_t hash_final(uint64_t h)
{
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    return h;
}

/* Id of `prefix` ("" or "##", plen bytes) followed by p[0..n), or -1. */
static int lookup(const struct nr_wordpiece *wp, const char *prefix, size_t plen, const char *p,
                  size_t n)
{
    uint64_t h = hash_final(fnv(fnv(FNV_BASIS, prefix, plen), p, n));
    uint32_t tag = (uint32_t)(h >> 32);
    uint32_t i = (uint32_t)h & wp->slot_mask;
    for (;;) {
        uint64_t s = wp->slots[i];
        if (!s)
            return -1;
        if ((uint32_t)(s >> 32) == tag) {
            uint32_t id = (uint32_t)s - 1;
            const char *t = wp->blob + wp->tok_off[id];
            if (wp->tok_len[id] == plen + n && memcmp(t, prefix, plen) == 0 &&
                memcmp(t + plen, p, n) == 0)
                return (int)id;
        }
        i = (i + 1) & wp->slot_mask;
    }
}

/* ---------------------------------------------------------------- construction */

void nr_wordpiece_opts_default(struct nr_wordpiece_opts *o)
{
    o->lowercase = 1;
    o->strip_accents = -1;
    o->chinese_chars = 1;
    o->max_chars_per_word = 100;
}

void nr_wordpiece_free(struct nr_wordpiece *wp)
{
    if (!wp)
        return;
    nr_free(wp->blob);
    nr_free(wp->tok_off);
    nr_free(wp->tok_len);
    nr_free(wp->slots);
    nr_free(wp);
}

/* How a GGUF token maps to vocab.txt form: bytes to skip at the front and
 * whether "##" goes in front. */
static void gguf_map(const char *t, size_t n, size_t *skip, int *cont)
{
    *skip = 0;
    *cont = 0;
    if (n >= 3 && memcmp(t, "\xE2\x96\x81", 3) == 0) /* U+2581: word-initial */
        *skip = 3;
    else if (n >= 2 && t[0] == '[' && t[n - 1] == ']') /* special, kept */
        ;
    else
        *cont = 1;
}

/* The first `max` bytes of t, cut back to a character boundary, for messages. */
static int shown_len(const char *t, size_t n, size_t max)
{
    if (n <= max)
        return (int)n;
    while (max > 0 && ((unsigned char)t[max] & 0xC0) == 0x80)
        max--;
    return (int)max;
}

/*
 * Build from n tokens. `where` names the unit in messages ("vocab line" or
 * "token") and `first` is the number of token 0 (1 for lines, 0 for ids).
 */
static int build(const char *const *toks, const size_t *lens, int n, int gguf,
                 const struct nr_wordpiece_opts *opts, const char *where, int first,
                 struct nr_wordpiece **out)
{
    struct nr_wordpiece_opts def;
    struct nr_wordpiece *wp = NULL;
    size_t blob_size = 0, nslots = 2;
    int rc;

    *out = NULL;
    if (!opts) {
        nr_wordpiece_opts_default(&def);
        opts = &def;
    }
    if (opts->strip_accents < -1 || opts->strip_accents > 1)
        return nr_err_set(NR_EINVAL, "wordpiece: strip_accents must be -1, 0 or 1 (got %d)",
                          opts->strip_accents);
    if (opts->max_chars_per_word < 1 || opts->max_chars_per_word > NR_WORDPIECE_MAX_WORD_CHARS)
        return nr_err_set(NR_EINVAL, "wordpiece: max_chars_per_word must be in 1..%d (got %d)",
                          NR_WORDPIECE_MAX_WORD_CHARS, opts->max_chars_per_word);
    if (n < 1)
        return nr_err_set(NR_EFORMAT, "wordpiece: empty vocabulary");
    if (n > NR_WORDPIECE_MAX_TOKENS)
        return nr_err_set(NR_EFORMAT, "wordpiece: more than %d tokens", NR_WORDPIECE_MAX_TOKENS);

    /* Pass 1: check every token and size the blob. */
    for (int i = 0; i < n; i++) {
        const char *t = toks[i];
        size_t len = lens ? lens[i] : (t ? strlen(t) : 0), skip = 0, k = 0;
        int cont = 0;
        if (!t && len)
            return nr_err_set(NR_EINVAL, "wordpiece: %s %d: NULL token", where, i + first);
        if (len > NR_WORDPIECE_MAX_TOKEN_LEN + 3)
            return nr_err_set(NR_EFORMAT, "wordpiece: %s %d: token longer than %d bytes", where,
                              i + first, NR_WORDPIECE_MAX_TOKEN_LEN);
        while (k < len) {
            int32_t cp;
            int m = utf8_next((const unsigned char *)t + k, len - k, &cp);
            if (!m)
                return nr_err_set(NR_EFORMAT, "wordpiece: %s %d: invalid UTF-8 at byte %zu", where,
                                  i + first, k);
            if (cp == 0)
                return nr_err_set(NR_EFORMAT, "wordpiece: %s %d: NUL byte in token", where,
                                  i + first);
            k += (size_t)m;
        }
        if (gguf)
            gguf_map(t, len, &skip, &cont);
        len = len - skip + (cont ? 2 : 0);
        if (len == 0)
            return nr_err_set(NR_EFORMAT, "wordpiece: %s %d: empty token", where, i + first);
        if (len > NR_WORDPIECE_MAX_TOKEN_LEN)
            return nr_err_set(NR_EFORMAT, "wordpiece: %s %d: token longer than %d bytes", where,
                              i + first, NR_WORDPIECE_MAX_TOKEN_LEN);
        blob_size += len + 1; /* <= 2^22 * 1025: no overflow */
    }
    while (nslots < 2 * (size_t)n)
        nslots *= 2;

    wp = nr_calloc(1, sizeof *wp);
    if (!wp)
        return nr_err_set(NR_ENOMEM, "wordpiece: out of memory");
    wp->n_tokens = n;
    wp->blob = nr_malloc(blob_size);
    wp->tok_off = nr_malloc((size_t)n * sizeof *wp->tok_off);
    wp->tok_len = nr_malloc((size_t)n * sizeof *wp->tok_len);
    wp->slots = nr_calloc(nslots, sizeof *wp->slots);
    if (!wp->blob || !wp->tok_off || !wp->tok_len || !wp->slots) {
        rc = nr_err_set(NR_ENOMEM, "wordpiece: out of memory for %d tokens", n);
        goto fail;
    }
    wp->slot_mask = (uint32_t)(nslots - 1);

    /* Pass 2: copy into the blob and insert, rejecting duplicates. */
    size_t at = 0;
    for (int i = 0; i < n; i++) {
        const char *t = toks[i];
        size_t len = lens ? lens[i] : (t ? strlen(t) : 0), skip = 0;
        int cont = 0;
        char *dst = wp->blob + at;
        if (gguf)
            gguf_map(t, len, &skip, &cont);
        if (cont)
            memcpy(dst, "##", 2);
        if (len > skip)
            memcpy(dst + (cont ? 2 : 0), t + skip, len - skip);
        len = len - skip + (cont ? 2 : 0);
        dst[len] = '\0';
        wp->tok_off[i] = (uint32_t)at;
        wp->tok_len[i] = (uint32_t)len;
        at += len + 1;

        int dup = lookup(wp, "", 0, dst, len);
        if (dup >= 0) {
            rc = nr_err_set(NR_EFORMAT, "wordpiece: %s %d: duplicate token '%.*s' (first at %s %d)",
                            where, i + first, shown_len(dst, len, 64), dst, where, dup + first);
            goto fail;
        }
        uint64_t h = hash_final(fnv(FNV_BASIS, dst, len));
        uint32_t j = (uint32_t)h & wp->slot_mask;
        while (wp->slots[j])
            j = (j + 1) & wp->slot_mask;
        wp->slots[j] = (h >> 32 << 32) | (uint64_t)(i + 1);

        if (len >= 2 && dst[0] == '#' && dst[1] == '#') {
            if ((int)len - 2 > wp->max_tail)
                wp->max_tail = (int)len - 2;
        } else if ((int)len > wp->max_head) {
            wp->max_head = (int)len;
        }
    }

    wp->unk_id = lookup(wp, "", 0, "[UNK]", 5);
    wp->cls_id = lookup(wp, "", 0, "[CLS]", 5);
    wp->sep_id = lookup(wp, "", 0, "[SEP]", 5);
    wp->pad_id = lookup(wp, "", 0, "[PAD]", 5);
    if (wp->unk_id < 0 || wp->cls_id < 0 || wp->sep_id < 0) {
        rc = nr_err_set(NR_EFORMAT, "wordpiece: vocabulary has no %s token",
                        wp->unk_id < 0   ? "[UNK]"
                        : wp->cls_id < 0 ? "[CLS]"
                                         : "[SEP]");
        goto fail;
    }
    for (int k = 0; k < N_SPECIAL; k++) {
        size_t sl = strlen(special_names[k]);
        int id = lookup(wp, "", 0, special_names[k], sl);
        if (id >= 0) {
            wp->special_id[wp->n_special] = id;
            wp->special_len[wp->n_special] = (uint8_t)sl;
            wp->special_str[wp->n_special] = special_names[k];
            wp->n_special++;
        }
    }
    wp->lowercase = opts->lowercase != 0;
    wp->strip = opts->strip_accents < 0 ? wp->lowercase : opts->strip_accents;
    wp->chinese = opts->chinese_chars != 0;
    wp->max_chars = opts->max_chars_per_word;
    *out = wp;
    return NR_OK;

fail:
    nr_wordpiece_free(wp);
    return rc;
}

int nr_wordpiece_from_tokens(const char *const *tokens, const size_t *lens, int n, int gguf_style,
                             const struct nr_wordpiece_opts *opts, struct nr_wordpiece **out)
{
    if (!out || (n > 0 && !tokens))
        return nr_err_set(NR_EINVAL, "wordpiece: NULL argument");
    return build(tokens, lens, n, gguf_style, opts, "token", 0, out);
}

int nr_wordpiece_load(const char *vocab_path, const struct nr_wordpiece_opts *opts,
                      struct nr_wordpiece **out)
{
    char *buf = NULL;
    size_t len = 0, nlines = 0;
    const char **toks = NULL;
    size_t *lens = NULL;
    int rc;

    if (!vocab_path || !out)
        return nr_err_set(NR_EINVAL, "wordpiece: NULL argument");
    *out = NULL;
    rc = nr_file_read(vocab_path, NR_WORDPIECE_MAX_FILE, &buf, &len);
    if (rc == NR_ELIMIT)
        return nr_err_set(NR_EFORMAT, "wordpiece: vocab file larger than %u bytes",
                          NR_WORDPIECE_MAX_FILE);
    if (rc)
        return nr_err_wrap(rc, "wordpiece vocab");
    if (len == 0) {
        rc = nr_err_set(NR_EFORMAT, "wordpiece: empty vocab file");
        goto done;
    }
    /* Lines: "\n"-terminated, the last one may lack it; a "\r" before "\n" is
     * dropped (HF's fast loader trims trailing whitespace). */
    for (size_t i = 0; i < len; i++) {
        if (buf[i] == '\n' || i + 1 == len) {
            if (++nlines > NR_WORDPIECE_MAX_TOKENS) {
                rc = nr_err_set(NR_EFORMAT, "wordpiece: vocab line %zu: more than %d lines", nlines,
                                NR_WORDPIECE_MAX_TOKENS);
                goto done;
            }
        }
    }
    toks = nr_malloc(nlines * sizeof *toks);
    lens = nr_malloc(nlines * sizeof *lens);
    if (!toks || !lens) {
        rc = nr_err_set(NR_ENOMEM, "wordpiece: out of memory for %zu lines", nlines);
        goto done;
    }
    size_t k = 0, start = 0;
    for (size_t i = 0; i <= len && k < nlines; i++) {
        if (i == len || buf[i] == '\n') {
            size_t e = i;
            if (e > start && buf[e - 1] == '\r')
                e--;
            toks[k] = buf + start;
            lens[k] = e - start;
            k++;
            start = i + 1;
        }
    }
    rc = build(toks, lens, (int)nlines, 0, opts, "vocab line", 1, out);
done:
    nr_free(toks);
    nr_free(lens);
    nr_free(buf);
    return rc;
}

int nr_wordpiece_vocab_size(const struct nr_wordpiece *wp)
{
    return wp->n_tokens;
}

int nr_wordpiece_token_id(const struct nr_wordpiece *wp, const char *tok)
{
    if (!tok)
        return -1;
    return lookup(wp, "", 0, tok, strlen(tok));
}

const char *nr_wordpiece_token(const struct nr_wordpiece *wp, int id)
{
    if (id < 0 || id >= wp->n_tokens)
        return NULL;
    return wp->blob + wp->tok_off[id];
}

int nr_wordpiece_cls_id(const struct nr_wordpiece *wp)
{
    return wp->cls_id;
}
int nr_wordpiece_sep_id(const struct nr_wordpiece *wp)
{
    return wp->sep_id;
}
int nr_wordpiece_unk_id(const struct nr_wordpiece *wp)
{
    return wp->unk_id;
}
int nr_wordpiece_pad_id(const struct nr_wordpiece *wp)
{
    return wp->pad_id;
}

/* ---------------------------------------------------------------- encoding */

/* Per-call state: lives on the caller's stack. */
struct enc {
    const struct nr_wordpiece *wp;
    int32_t *ids, *starts, *ends; /* caller's arrays; pieces go at [1, 1 + cap) */
    int cap;                      /* pieces that fit: max_ids - 2 */
    int n_out;                    /* pieces written, <= cap */
    int total;                    /* pieces counted, truncated or not */
    int wn;                       /* chars in the current word (only WORD_CAP stored) */
    int run;                      /* first index of the current run of non-starters */
    int32_t wend;                 /* byte end of the word's last char */
    int32_t cp[WORD_CAP];         /* (wn) normalized code points */
    int32_t st[WORD_CAP];         /* (wn) source byte start of the char at each position */
    int32_t en[WORD_CAP];         /* (wn) source byte end */
    char buf[4 * WORD_CAP];       /* the word in UTF-8 */
    uint16_t pos[WORD_CAP + 1];   /* byte offset of char i in buf */
    /* strip_accents: the current run of non-starters (NFD output), kept and
     * dropped, in arrival order, to give kept ones HF's positional offsets. */
    struct run_item {
        int32_t cp, s, t; /* code point, source bytes [s, t) */
        uint8_t ccc, cat; /* combining class, utf8proc category */
        uint8_t first;    /* first char of its source's decomposition (HF change 0) */
        uint8_t drop;     /* a mark strip_accents removes */
    } run_buf[RUN_CAP];
    int n_run;              /* items in run_buf */
    int run_kept;           /* run_buf holds a char that is not dropped */
    int run_overflow;       /* run longer than RUN_CAP: the rest passes through */
    int32_t last_s, last_t; /* source bytes of the last consumed source char */
};

static void put_char(struct enc *e, int32_t c, int cat, int ccc, int32_t s, int32_t t);
static void run_end(struct enc *e);

static void emit(struct enc *e, int id, int32_t s, int32_t t)
{
    if (e->n_out < e->cap) {
        e->ids[1 + e->n_out] = id;
        if (e->starts)
            e->starts[1 + e->n_out] = s;
        if (e->ends)
            e->ends[1 + e->n_out] = t;
        e->n_out++;
    }
    e->total++;
}

/* Run WordPiece over the word collected so far and reset it. */
static void word_end(struct enc *e)
{
    const struct nr_wordpiece *wp = e->wp;
    int wn = e->wn, save_out = e->n_out, save_total = e->total;

    if (e->n_run || e->run_overflow) {
        run_end(e); /* a word boundary is a starter: the run ends here */
        wn = e->wn;
        save_out = e->n_out;
        save_total = e->total;
    }
    if (wn == 0)
        return;
    e->wn = 0;
    e->run = 0;
    if (wn > wp->max_chars) {
        emit(e, wp->unk_id, e->st[0], e->wend);
        return;
    }
    int nb = 0;
    for (int i = 0; i < wn; i++) {
        e->pos[i] = (uint16_t)nb;
        nb += utf8_put(e->buf + nb, e->cp[i]);
    }
    e->pos[wn] = (uint16_t)nb;

    int s = 0;
    while (s < wn) {
        int lim = s ? wp->max_tail : wp->max_head, end = s + lim < wn ? s + lim : wn, id = -1;
        while (end > s && e->pos[end] - e->pos[s] > lim)
            end--;
        for (; end > s; end--) {
            id = lookup(wp, "##", s ? 2 : 0, e->buf + e->pos[s], (size_t)(e->pos[end] - e->pos[s]));
            if (id >= 0)
                break;
        }
        if (id < 0) { /* no piece fits here: the whole word is [UNK] */
            e->n_out = save_out;
            e->total = save_total;
            emit(e, wp->unk_id, e->st[0], e->wend);
            return;
        }
        emit(e, id, e->st[s], e->en[end - 1]);
        s = end;
    }
}

/* Append a normalized char (canonical combining class ccc) to the word. With
 * strip_accents the text is in NFD, so a non-starter is sorted into the run of
 * non-starters before it by combining class (stable); its source range stays
 * at the position it arrived at, as HF's alignments do. */
static void add_char(struct enc *e, int32_t c, int ccc, int32_t s, int32_t t)
{
    if (e->wn < WORD_CAP) {
        int i = e->wn;
        if (ccc && e->wp->strip) {
            while (i > e->run &&
                   hf_ccc(e->cp[i - 1], utf8proc_get_property(e->cp[i - 1])->combining_class) >
                       ccc) {
                e->cp[i] = e->cp[i - 1];
                i--;
            }
        }
        e->cp[i] = c;
        e->st[e->wn] = s;
        e->en[e->wn] = t;
    }
    e->wn++;
    e->wend = t;
    if (!ccc)
        e->run = e->wn;
}

/*
 * End the run of non-starters: sort it by combining class (stable, as NFD's
 * canonical ordering does) and hand the kept chars on. HF maps normalized
 * chars back to the source by position: walking the sorted run, a char that
 * begins its source's decomposition takes the next source char in arrival
 * order, any other char the last one taken (or the one before the run). So a
 * kept mark that sorts ahead of a dropped one gets the dropped one's source.
 */
static void run_end(struct enc *e)
{
    struct run_item items[RUN_CAP];
    uint8_t order[RUN_CAP], firsts[RUN_CAP];
    int n = e->n_run, nf = 0, z = 0, kept = e->run_kept;
    int32_t prev_s = e->last_s, prev_t = e->last_t;

    e->run_overflow = 0;
    if (n == 0)
        return;
    memcpy(items, e->run_buf, (size_t)n * sizeof items[0]);
    e->n_run = 0; /* emptied first: put_char may end the word, which ends the run */
    e->run_kept = 0;
    for (int i = 0; i < n; i++) {
        int j = i;
        while (j > 0 && items[order[j - 1]].ccc > items[i].ccc) {
            order[j] = order[j - 1];
            j--;
        }
        order[j] = (uint8_t)i;
        if (items[i].first)
            firsts[nf++] = (uint8_t)i;
    }
    if (nf) {
        e->last_s = items[firsts[nf - 1]].s;
        e->last_t = items[firsts[nf - 1]].t;
    }
    if (!kept)
        return;
    for (int k = 0; k < n; k++) {
        const struct run_item *it = &items[order[k]];
        int32_t s = prev_s, t = prev_t;
        if (it->first || z > 0) {
            const struct run_item *src = &items[firsts[it->first ? z : z - 1]];
            s = src->s;
            t = src->t;
        }
        z += it->first;
        if (!it->drop)
            put_char(e, it->cp, it->cat, it->ccc, s, t);
    }
}

/* A non-starter from NFD (ccc > 0): into the run, or straight through once
 * the run is longer than RUN_CAP (order stays exact through add_char's sort;
 * offsets are then each char's own). */
static void run_push(struct enc *e, int32_t c, int cat, int ccc, int first, int drop, int32_t s,
                     int32_t t)
{
    if (!e->run_overflow && e->n_run == RUN_CAP) {
        run_end(e);
        e->run_overflow = 1;
    }
    if (e->run_overflow) {
        if (first) {
            e->last_s = s;
            e->last_t = t;
        }
        if (!drop)
            put_char(e, c, cat, ccc, s, t);
        return;
    }
    struct run_item *it = &e->run_buf[e->n_run++];
    it->cp = c;
    it->s = s;
    it->t = t;
    it->ccc = (uint8_t)ccc;
    it->cat = (uint8_t)cat;
    it->first = (uint8_t)first;
    it->drop = (uint8_t)drop;
    e->run_kept |= !drop;
}

static int is_ascii_punct(int32_t c)
{
    return (c >= 33 && c <= 47) || (c >= 58 && c <= 64) || (c >= 91 && c <= 96) ||
           (c >= 123 && c <= 126);
}

/* HF's is_bert_punc: ASCII punctuation (which includes symbols such as = < `,
 * reachable here through NFD of U+2260, U+226E, U+1FEF) or Unicode P*. */
static int is_punct_cat(int32_t c, int cat)
{
    if (c < 0x80)
        return is_ascii_punct(c);
    if (cat >= UTF8PROC_CATEGORY_PC && cat <= UTF8PROC_CATEGORY_PO)
        return !in_ranges(punct_not, N_OF(punct_not), c);
    return in_ranges(punct_extra, N_OF(punct_extra), c);
}

static int32_t lower_cp(int32_t c, int cat)
{
    int32_t l = utf8proc_tolower(c);
    if (l == c && cat == UTF8PROC_CATEGORY_CN) {
        for (int k = 0; k < N_OF(lower_extra); k++)
            if (c >= lower_extra[k].lo && c <= lower_extra[k].hi)
                return c + lower_extra[k].delta;
    }
    return l;
}

/* Steps 5 and 6 for one char that survived cleaning and stripping. */
static void put_char(struct enc *e, int32_t c, int cat, int ccc, int32_t s, int32_t t)
{
    /* Case mappings stay within letters (and a few So/Nl symbols), so the
     * punctuation test may look at the char before lowercasing. */
    if (is_punct_cat(c, cat)) {
        word_end(e);
        add_char(e, c, 0, s, t);
        word_end(e);
        return;
    }
    if (e->wp->lowercase) {
        if (c == 0x130) { /* the one unconditional multi-char lowercase */
            add_char(e, 'i', 0, s, t);
            add_char(e, 0x307, 230, s, t);
            return;
        }
        c = lower_cp(c, cat);
    }
    add_char(e, c, ccc, s, t);
}

static int is_space_nonascii(int32_t c)
{
    return c == 0xA0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 ||
           c == 0x202F || c == 0x205F || c == 0x3000;
}

static void feed_ascii(struct enc *e, int c, int32_t s)
{
    if (c < 0x20 && c != '\t' && c != '\n' && c != '\r')
        return; /* control: removed before NFD, so it does not end a run */
    if (c == 0x7F)
        return;
    if (e->n_run || e->run_overflow)
        run_end(e);
    e->last_s = s;
    e->last_t = s + 1;
    if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
        word_end(e);
    } else if (is_ascii_punct(c)) {
        word_end(e);
        add_char(e, c, 0, s, s + 1);
        word_end(e);
    } else {
        if (e->wp->lowercase && c >= 'A' && c <= 'Z')
            c += 'a' - 'A';
        add_char(e, c, 0, s, s + 1);
    }
}

/* Steps 2-6 for one non-ASCII source char c at bytes [s, t). */
static void feed(struct enc *e, int32_t c, int32_t s, int32_t t)
{
    const struct nr_wordpiece *wp = e->wp;
    const utf8proc_property_t *p = utf8proc_get_property(c);
    int cat = p->category;

    if (c == 0xFFFD || cat == UTF8PROC_CATEGORY_CC || cat == UTF8PROC_CATEGORY_CO ||
        cat == UTF8PROC_CATEGORY_CS ||
        (cat == UTF8PROC_CATEGORY_CF && !in_ranges(cf_keep, N_OF(cf_keep), c)))
        return;
    if (is_space_nonascii(c)) {
        word_end(e);
        e->last_s = s;
        e->last_t = t;
        return;
    }
    int own_word = wp->chinese && in_ranges(cjk, N_OF(cjk), c);
    if (own_word)
        word_end(e);
    if (wp->strip) {
        utf8proc_int32_t d[8];
        int bound = 0;
        utf8proc_ssize_t nd = 1;
        d[0] = c;
        if (!in_ranges(nfd_keep, N_OF(nfd_keep), c))
            nd = utf8proc_decompose_char(c, d, 8, UTF8PROC_DECOMPOSE, &bound);
        if (nd < 1 || nd > 8) { /* not decomposed (or cannot be: keep as is) */
            nd = 1;
            d[0] = c;
        }
        for (int i = 0; i < (int)nd; i++) {
            const utf8proc_property_t *q = d[i] == c ? p : utf8proc_get_property(d[i]);
            int qcat = q->category, ccc = hf_ccc(d[i], q->combining_class);
            int mn = (qcat == UTF8PROC_CATEGORY_MN && !in_ranges(mn_keep, N_OF(mn_keep), d[i])) ||
                     in_ranges(mn_extra, N_OF(mn_extra), d[i]);
            if (ccc) {
                run_push(e, d[i], qcat, ccc, i == 0, mn, s, t);
                continue;
            }
            if (e->n_run || e->run_overflow)
                run_end(e);
            if (i == 0) {
                e->last_s = s;
                e->last_t = t;
            }
            if (mn) {
                e->run = e->wn; /* a dropped starter still ends the run in the word */
                continue;
            }
            put_char(e, d[i], qcat, 0, s, t);
        }
    } else {
        put_char(e, c, cat, p->combining_class, s, t);
    }
    if (own_word)
        word_end(e);
}

int nr_wordpiece_encode(const struct nr_wordpiece *wp, const char *text, size_t len, int32_t *ids,
                        int32_t *starts, int32_t *ends, int max_ids, int *n_ids, int *n_total)
{
    struct enc e;
    const unsigned char *u = (const unsigned char *)text;

    if (n_ids)
        *n_ids = 0;
    if (n_total)
        *n_total = 0;
    if (!wp || !ids || !n_ids || (!text && len))
        return nr_err_set(NR_EINVAL, "wordpiece: NULL argument");
    if (max_ids < 2)
        return nr_err_set(NR_EINVAL, "wordpiece: max_ids must be >= 2 (got %d)", max_ids);
    if (len > NR_WORDPIECE_MAX_TEXT)
        return nr_err_set(NR_ELIMIT, "wordpiece: text of %zu bytes is over the %u byte limit", len,
                          NR_WORDPIECE_MAX_TEXT);

    e.wp = wp;
    e.ids = ids;
    e.starts = starts;
    e.ends = ends;
    e.cap = max_ids - 2;
    e.n_out = 0;
    e.total = 0;
    e.wn = 0;
    e.run = 0;
    e.wend = 0;
    e.n_run = 0;
    e.run_kept = 0;
    e.run_overflow = 0;
    e.last_s = 0;
    e.last_t = 0;

    size_t i = 0;
    while (i < len) {
        unsigned char b = u[i];
        if (b < 0x80) {
            if (b == '[') {
                int k;
                for (k = 0; k < wp->n_special; k++) {
                    size_t sl = wp->special_len[k];
                    if (sl <= len - i && memcmp(text + i, wp->special_str[k], sl) == 0)
                        break;
                }
                if (k < wp->n_special) {
                    word_end(&e);
                    emit(&e, wp->special_id[k], (int32_t)i, (int32_t)(i + wp->special_len[k]));
                    i += wp->special_len[k];
                    e.last_s = 0; /* HF normalizes the text between added tokens apart */
                    e.last_t = 0;
                    continue;
                }
            }
            feed_ascii(&e, b, (int32_t)i);
            i++;
            continue;
        }
        int32_t c;
        int m = utf8_next(u + i, len - i, &c);
        if (!m) { /* invalid byte: dropped, like HF drops the U+FFFD for it */
            i++;
            continue;
        }
        feed(&e, c, (int32_t)i, (int32_t)(i + (size_t)m));
        i += (size_t)m;
    }
    word_end(&e);

    ids[0] = wp->cls_id;
    ids[e.n_out + 1] = wp->sep_id;
    if (starts) {
        starts[0] = 0;
        starts[e.n_out + 1] = 0;
    }
    if (ends) {
        ends[0] = 0;
        ends[e.n_out + 1] = 0;
    }
    *n_ids = e.n_out + 2;
    if (n_total)
        *n_total = e.total + 2;
    return NR_OK;
}
