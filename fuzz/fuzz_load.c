/*
 * Fuzz entry point for the document loaders, through to the chunker:
 * bytes -> nr_load_mem -> nr_chunk_split. Input layout:
 *
 *   byte 0   loader: % 4 = 0 text, 1 Markdown, 2 HTML, 3 detected from the
 *            bytes and a name picked by byte 1 (.md, .html, .txt or none);
 *            bit 7 of byte 0 turns legacy_8bit off
 *   byte 1   the name for detection; chunk sizes (target 8 + b1 % 120)
 *   rest     the document
 *
 * PDF is only fuzzed when NR_FUZZ_PDF is set in the environment: each PDF
 * starts a pdftotext process (milliseconds), which would slow the other
 * paths a hundredfold. Without it, input that would go to the PDF loader is
 * skipped.
 *
 * A document that loads must keep the output contract (nr_load_doc_check)
 * and chunk into a list that passes nr_chunk_list_check; a refusal must come
 * with a message and without a document. Anything else aborts. Caps are
 * small (1 MiB of text) so a run stays fast; the tokenizer is a built-in
 * vocabulary, so the corpus replays without model files.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nr_chunk.h"
#include "nr_err.h"
#include "nr_load.h"

static const char *const vocab[] = {
    "[PAD]",    "[UNK]",  "[CLS]",
    "[SEP]",    "[MASK]", "a",
    "b",        "c",      "d",
    "e",        "f",      "g",
    "h",        "i",      "j",
    "k",        "l",      "m",
    "n",        "o",      "p",
    "q",        "r",      "s",
    "t",        "u",      "v",
    "w",        "x",      "y",
    "z",        "##a",    "##e",
    "##i",      "##n",    "##o",
    "##s",      "##t",    "the",
    "and",      "##ing",  ".",
    ",",        "!",      "?",
    "(",        ")",      "-",
    "0",        "1",      "\xE3\x80\x82",
    "\xC3\xA9",
};

static struct nr_wordpiece *tokenizer(void)
{
    static struct nr_wordpiece *wp;
    if (!wp &&
        nr_wordpiece_from_tokens(vocab, NULL, (int)(sizeof vocab / sizeof vocab[0]), 0, NULL, &wp))
        abort();
    return wp;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const names[4] = {"doc.md", "page.html", "notes.txt", NULL};
    struct nr_load_opts o;
    struct nr_load_doc *doc = NULL;
    struct nr_chunk_opts co;
    struct nr_chunk_list *l = NULL;
    enum nr_load_type t;
    const char *name = NULL;
    int rc;

    if (size < 2)
        return 0;
    nr_load_opts_default(&o);
    o.max_text_bytes = 1 << 20;
    o.pdf_timeout_ms = 5000;
    o.legacy_8bit = !(data[0] & 0x80);
    switch (data[0] % 4) {
    case 0:
        t = NR_LOAD_TEXT;
        break;
    case 1:
        t = NR_LOAD_MARKDOWN;
        break;
    case 2:
        t = NR_LOAD_HTML;
        break;
    default:
        name = names[data[1] % 4];
        t = nr_load_detect(name, data + 2, size - 2);
        break;
    }
    if (t == NR_LOAD_PDF && !getenv("NR_FUZZ_PDF"))
        return 0;
    rc = nr_load_mem(data + 2, size - 2, t, name, &o, &doc);
    if (rc != NR_OK) {
        if (doc || rc >= 0 || !nr_err_msg()[0]) {
            fprintf(stderr, "bad refusal: %d '%s'\n", rc, nr_err_msg());
            abort();
        }
        return 0;
    }
    if (nr_load_doc_check(doc) != NR_OK) {
        fprintf(stderr, "doc check: %s\n", nr_err_msg());
        abort();
    }
    nr_chunk_opts_default(&co);
    co.target_tokens = 8 + data[1] % 120;
    co.max_tokens = co.target_tokens < 32 ? 32 : co.target_tokens;
    co.overlap_tokens = co.target_tokens / 4;
    co.max_bytes = 1024;
    if (nr_chunk_split(tokenizer(), doc, &co, &l) != NR_OK ||
        nr_chunk_list_check(tokenizer(), doc, &co, l) != NR_OK) {
        fprintf(stderr, "chunk: %s\n", nr_err_msg());
        abort();
    }
    nr_chunk_list_free(l);
    nr_load_doc_free(doc);
    return 0;
}
