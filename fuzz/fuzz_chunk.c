/*
 * Fuzz entry point for nr_chunk. Input layout:
 *
 *   byte 0..3   options: max_tokens = 32 + b1 % 225, target_tokens = 8 +
 *               b0 % (max_tokens - 7), overlap_tokens = b2 % (target / 2 + 1),
 *               max_bytes = 1024 + 256 * b3
 *   byte 4      pages (b4 % 4) and headings ((b4 >> 2) % 8)
 *   then        2 bytes per page start, 3 per heading (2 offset, 1 level);
 *               offsets are taken modulo the text length and moved back to a
 *               character boundary; sections end where the next heading of
 *               the same or a higher level starts, as loaders make them
 *   rest        the text
 *
 * Text that is not valid UTF-8 must be refused with NR_EINVAL; it is then
 * chunked again with each invalid byte replaced by '?'. Every list must pass
 * nr_chunk_list_check (ranges, trimming, token counts re-tokenized, byte cap,
 * pages, heading edges and paths, overlap, coverage); a violation aborts.
 * The tokenizer is a small built-in vocabulary (letters, "##" letters, a few
 * words, punctuation, CJK), so the corpus replays without model files and
 * words split into many pieces.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nr_chunk.h"
#include "nr_err.h"

static const char *const vocab[] = {
    "[PAD]",
    "[UNK]",
    "[CLS]",
    "[SEP]",
    "[MASK]",
    "a",
    "b",
    "c",
    "d",
    "e",
    "f",
    "g",
    "h",
    "i",
    "j",
    "k",
    "l",
    "m",
    "n",
    "o",
    "p",
    "q",
    "r",
    "s",
    "t",
    "u",
    "v",
    "w",
    "x",
    "y",
    "z",
    "##a",
    "##b",
    "##c",
    "##d",
    "##e",
    "##f",
    "##g",
    "##h",
    "##i",
    "##j",
    "##k",
    "##l",
    "##m",
    "##n",
    "##o",
    "##p",
    "##q",
    "##r",
    "##s",
    "##t",
    "##u",
    "##v",
    "##w",
    "##x",
    "##y",
    "##z",
    "the",
    "and",
    "##ing",
    "##ed",
    ".",
    ",",
    "!",
    "?",
    ";",
    ":",
    "'",
    "\"",
    "(",
    ")",
    "-",
    "/",
    "0",
    "1",
    "2",
    "##0",
    "##1",
    "\xE3\x80\x82",
    "\xE4\xB8\xAD",
    "\xE6\x96\x87",
    "\xC3\xA9",
    "##\xC3\xA9",
};

static struct nr_wordpiece *tokenizer(void)
{
    static struct nr_wordpiece *wp;
    if (!wp &&
        nr_wordpiece_from_tokens(vocab, NULL, (int)(sizeof vocab / sizeof vocab[0]), 0, NULL, &wp))
        abort();
    return wp;
}

static size_t snap(const char *s, size_t n, size_t off)
{
    if (off > n)
        off = n;
    while (off > 0 && off < n && ((unsigned char)s[off] & 0xC0) == 0x80)
        off--;
    return off;
}

static int cmp_size(const void *a, const void *b)
{
    size_t x = *(const size_t *)a, y = *(const size_t *)b;
    return x < y ? -1 : x > y;
}

struct hstart {
    size_t start;
    int level;
};

static int cmp_start(const void *a, const void *b)
{
    const struct hstart *x = a, *y = b;
    return x->start < y->start ? -1 : x->start > y->start;
}

/* Same UTF-8 rules as the chunker's check (strict: no overlongs, surrogates). */
static size_t valid_len(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    size_t m = c < 0x80                 ? 1
               : c >= 0xC2 && c <= 0xDF ? 2
               : c >= 0xE0 && c <= 0xEF ? 3
               : c >= 0xF0 && c <= 0xF4 ? 4
                                        : 0;
    if (!m || m > n)
        return 0;
    for (size_t k = 1; k < m; k++)
        if ((s[k] & 0xC0) != 0x80)
            return 0;
    if ((c == 0xE0 && s[1] < 0xA0) || (c == 0xED && s[1] >= 0xA0) || (c == 0xF0 && s[1] < 0x90) ||
        (c == 0xF4 && s[1] >= 0x90))
        return 0;
    return m;
}

static void run(const struct nr_load_doc *doc, const struct nr_chunk_opts *o)
{
    struct nr_chunk_list *l = NULL;
    if (nr_chunk_split(tokenizer(), doc, o, &l) != NR_OK) {
        fprintf(stderr, "chunk failed: %s\n", nr_err_msg());
        abort();
    }
    if (nr_chunk_list_check(tokenizer(), doc, o, l) != NR_OK) {
        fprintf(stderr, "chunk check: %s\n", nr_err_msg());
        abort();
    }
    nr_chunk_list_free(l);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct nr_chunk_opts o;
    struct nr_load_doc doc;
    struct nr_load_heading h[8];
    struct hstart hs[8];
    size_t pages[4], starts[8], p = 5, len, bad = 0;
    int levels[8], np, nh, k = 0;
    char *text;

    if (size < 5)
        return 0;
    o.max_tokens = 32 + data[1] % 225;
    o.target_tokens = 8 + data[0] % (o.max_tokens - 7);
    o.overlap_tokens = data[2] % (o.target_tokens / 2 + 1);
    o.max_bytes = 1024 + 256 * (size_t)data[3];
    np = data[4] % 4;
    nh = (data[4] >> 2) % 8;
    if (p + 2 * (size_t)np + 3 * (size_t)nh > size)
        return 0;
    const uint8_t *sp = data + p;
    p += 2 * (size_t)np + 3 * (size_t)nh;
    len = size - p;
    text = malloc(len + 1);
    if (!text)
        return 0;
    memcpy(text, data + p, len);
    text[len] = '\0';

    memset(&doc, 0, sizeof doc);
    doc.text = text;
    doc.len = len;
    for (size_t i = 0; i < len;) { /* invalid text is refused, then repaired */
        size_t m = valid_len((const unsigned char *)text + i, len - i);
        if (!m) {
            bad = 1;
            break;
        }
        i += m;
    }
    if (bad) {
        struct nr_chunk_list *l = NULL;
        if (nr_chunk_split(tokenizer(), &doc, &o, &l) != NR_EINVAL || l)
            abort();
        for (size_t i = 0; i < len;) {
            size_t m = valid_len((const unsigned char *)text + i, len - i);
            if (!m) {
                text[i++] = '?';
                continue;
            }
            i += m;
        }
    }
    if (np > 0 && len > 0) {
        pages[0] = 0;
        for (int i = 1; i < np; i++)
            pages[i] = snap(text, len, (size_t)(sp[2 * i] | sp[2 * i + 1] << 8) % (len + 1));
        qsort(pages, (size_t)np, sizeof pages[0], cmp_size);
        doc.pages = pages;
        doc.n_pages = np;
    }
    sp += 2 * (size_t)np;
    for (int i = 0; i < nh && len > 0; i++) {
        hs[i].start = snap(text, len, (size_t)(sp[3 * i] | sp[3 * i + 1] << 8) % len);
        hs[i].level = 1 + sp[3 * i + 2] % 6;
    }
    if (len > 0 && nh > 0) {
        qsort(hs, (size_t)nh, sizeof hs[0], cmp_start);
        for (int i = 0; i < nh; i++) /* one heading per offset */
            if (k == 0 || hs[i].start != starts[k - 1]) {
                starts[k] = hs[i].start;
                levels[k++] = hs[i].level;
            }
    }
    for (int i = 0; i < k; i++) {
        h[i].level = levels[i];
        h[i].start = starts[i];
        h[i].end = len;
        h[i].text = "Heading";
        for (int j = i + 1; j < k; j++)
            if (levels[j] <= levels[i]) {
                h[i].end = starts[j];
                break;
            }
    }
    doc.headings = k ? h : NULL;
    doc.n_headings = k;
    run(&doc, &o);
    free(text);
    return 0;
}
