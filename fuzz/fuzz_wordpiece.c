/*
 * Fuzz entry point for nr_wordpiece. The first byte picks what is fuzzed:
 *
 *   byte0 % 4 != 3   encode: the rest of the input is the text, tokenized by a
 *                    small built-in vocabulary under options taken from byte1
 *                    (lowercase, strip_accents, chinese_chars,
 *                    max_chars_per_word) and max_ids from byte2;
 *   byte0 % 4 == 3   vocabulary: the rest, split on '\n', is a token list
 *                    (GGUF form if byte1 is odd); if it is accepted, the input
 *                    itself is encoded with it.
 *
 * Every encode is checked against the contract in nr_wordpiece.h (count
 * bounds, [CLS] first and [SEP] last, ids in range, offsets inside the text
 * and non-decreasing, truncation keeps a prefix); a violation aborts.
 * Self-contained (no model files), so the corpus replays anywhere.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "nr_wordpiece.h"

#define MAX_IDS 300

static const char *const builtin[] = {
    "[PAD]",
    "[UNK]",
    "[CLS]",
    "[SEP]",
    "[MASK]",
    "a",
    "b",
    "c",
    "e",
    "h",
    "i",
    "l",
    "n",
    "o",
    "s",
    "t",
    "x",
    "the",
    "hello",
    "un",
    "token",
    "##s",
    "##a",
    "##e",
    "##l",
    "##o",
    "##n",
    "##ing",
    "##able",
    "##ize",
    "##ation",
    "!",
    ".",
    ",",
    "[",
    "]",
    "#",
    "0",
    "1",
    "##1",
    "##0",
    "\xc3\xa9",
    "caf\xc3\xa9",
    "\xe4\xb8\xad",
    "\xe6\x96\x87",
    "\xe1\x84\x8b",
    "##\xe1\x85\xa1",
    "##\xe1\x86\xab",
    "\xcf\x83",
    "##\xcf\x83",
    "\xce\xbf",
    "i\xcc\x87",
    "##\xcc\x87",
    "\xe2\x80\x94",
};

static void check(const struct nr_wordpiece *wp, const char *text, size_t len, int max_ids)
{
    int32_t ids[MAX_IDS], st[MAX_IDS], en[MAX_IDS], full[MAX_IDS];
    int n = 0, total = 0, nf = 0, tf = 0;

    if (nr_wordpiece_encode(wp, text, len, ids, st, en, max_ids, &n, &total) != 0)
        abort();
    if (n < 2 || n > max_ids || total < n || (total <= max_ids && n != total) ||
        (total > max_ids && n != max_ids))
        abort();
    if (ids[0] != nr_wordpiece_cls_id(wp) || ids[n - 1] != nr_wordpiece_sep_id(wp))
        abort();
    if (st[0] != 0 || en[0] != 0 || st[n - 1] != 0 || en[n - 1] != 0)
        abort();
    for (int i = 1, prev = 0; i < n - 1; i++) {
        if (ids[i] < 0 || ids[i] >= nr_wordpiece_vocab_size(wp))
            abort();
        if (st[i] < prev || st[i] >= en[i] || (size_t)en[i] > len)
            abort();
        prev = st[i];
    }
    /* A larger limit gives the same prefix and the same total. */
    if (nr_wordpiece_encode(wp, text, len, full, NULL, NULL, MAX_IDS, &nf, &tf) != 0)
        abort();
    if (tf != total || memcmp(full, ids, (size_t)(n - 1) * sizeof *ids) != 0)
        abort();
}

static void fuzz_encode(const uint8_t *data, size_t size)
{
    struct nr_wordpiece_opts o;
    struct nr_wordpiece *wp = NULL;
    static const int max_chars[4] = {100, 1, 5, NR_WORDPIECE_MAX_WORD_CHARS};
    uint8_t b1 = size > 1 ? data[1] : 0, b2 = size > 2 ? data[2] : 0;
    size_t skip = size > 3 ? 3 : size;

    nr_wordpiece_opts_default(&o);
    o.lowercase = !(b1 & 1);
    o.strip_accents = (int)((b1 >> 1) % 3) - 1;
    o.chinese_chars = !(b1 & 8);
    o.max_chars_per_word = max_chars[(b1 >> 4) & 3];
    if (nr_wordpiece_from_tokens(builtin, NULL, (int)(sizeof builtin / sizeof builtin[0]), 0, &o,
                                 &wp) != 0)
        abort();
    check(wp, (const char *)data + skip, size - skip, 2 + b2 % (MAX_IDS - 2));
    nr_wordpiece_free(wp);
}

static void fuzz_vocab(const uint8_t *data, size_t size)
{
    const char *toks[512];
    size_t lens[512];
    int n = 0;
    struct nr_wordpiece *wp = NULL;
    int gguf = size > 1 && (data[1] & 1);
    size_t start = size > 2 ? 2 : size;

    for (size_t i = start; i <= size && n < 512; i++) {
        if (i == size || data[i] == '\n') {
            toks[n] = (const char *)data + start;
            lens[n] = i - start;
            n++;
            start = i + 1;
        }
    }
    if (nr_wordpiece_from_tokens(toks, lens, n, gguf, NULL, &wp) != 0)
        return;
    for (int i = 0; i < nr_wordpiece_vocab_size(wp); i++) {
        const char *t = nr_wordpiece_token(wp, i);
        if (!t || nr_wordpiece_token_id(wp, t) != i)
            abort();
    }
    check(wp, (const char *)data, size, MAX_IDS);
    nr_wordpiece_free(wp);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0 || data[0] % 4 != 3)
        fuzz_encode(data, size);
    else
        fuzz_vocab(data, size);
    return 0;
}
