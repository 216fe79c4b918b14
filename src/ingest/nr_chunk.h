/*
 * nr_chunk: split a loaded document (nr_load.h) into chunks sized in the
 * embedding model's tokens, for embedding and retrieval.
 *
 *     struct nr_chunk_opts co;
 *     struct nr_chunk_list *cl;
 *     nr_chunk_opts_default(&co);
 *     if (nr_chunk_split(wp, doc, &co, &cl) != NR_OK) fail(nr_err_msg());
 *     for (int i = 0; i < cl->n; i++) {
 *         const struct nr_chunk *c = &cl->chunks[i];
 *         embed(doc->text + c->start, c->end - c->start);   // page c->page, c->heading
 *     }
 *     nr_chunk_list_free(cl);
 *
 * What a chunk is (nr_chunk_list_check verifies all of it):
 *   - a byte range [start, end) of doc->text: text[start:end] is exactly the
 *     chunk's text; it neither starts nor ends with whitespace, and never
 *     splits a UTF-8 sequence. Chunks come in text order (start increases,
 *     end increases).
 *   - n_tokens = what nr_wordpiece_encode gives for text[start:end], [CLS]
 *     and [SEP] included; never more than max_tokens, and the range is never
 *     more than max_bytes long.
 *   - inside one region: a chunk never crosses a page start, nor a heading's
 *     start or its section's end. Pages, because a chunk must cite one page;
 *     headings of every level, because then the heading path is exact for
 *     every byte of the chunk ("Install > Requirements" is true of all of it),
 *     at the price of small chunks for short sections.
 *   - page: 1-based page of the chunk (0 when the document has no pages).
 *   - heading: the titles of the sections containing the chunk, outermost
 *     first, joined by " > " ("" outside any section). At most 8 levels (the
 *     innermost), each title cut at 200 bytes.
 *   - coverage: no text that gives a token is left out. What no chunk covers
 *     (cut at region edges) gives no token when tokenized on its own:
 *     whitespace, and runs of control or format characters (U+200B ...)
 *     longer than 128 bytes at a chunk's edge; a region holding nothing else
 *     gives no chunk.
 *   - overlap: within a region, a chunk starts about overlap_tokens before
 *     the previous one ended (at most that many tokens back, snapped forward
 *     to a sentence start within the first half of that window, else to a
 *     word start, else no overlap; and none when the byte cap leaves no room
 *     to move past the previous end). Re-tokenized on its own, the overlap
 *     may count two tokens more when the previous chunk ended inside a word.
 *
 * Where a chunk ends: after target_tokens at most (counting [CLS]/[SEP]),
 * and not before half of it, at the best boundary there: a paragraph break
 * (blank line), else a sentence end (. ! ? followed by whitespace, also after
 * a closing quote or bracket; 。！？ anywhere: CJK puts no space after them;
 * abbreviations like "e.g. this" count as ends, which is acceptable), else a
 * line break, else whitespace, else a token that starts a new word (CJK
 * characters, punctuation), else any token (a giant word). When the rest of a
 * region fits in max_tokens, it is one chunk: no small tail chunks.
 *
 * Tokenizing: each region is tokenized once, front to back, in windows of at
 * most 8 KiB cut at whitespace (a window without whitespace is cut at a word
 * start inside it, or in the middle of a giant word as a last resort). A
 * chunk whose both ends are whitespace boundaries has exactly the tokens the
 * stream gave it (BERT splits words at whitespace; nothing crosses it); the
 * few others (cut inside a word or a whitespace-free run) are re-tokenized and
 * shrunk if needed. So a document is tokenized about once in total.
 *
 * If the caller prepends context (the heading path, the title) to a chunk
 * before embedding it, those tokens come on top: lower max_tokens by as many.
 *
 * Threads: nr_chunk_split only reads wp and doc; any number may run at once.
 * Memory: the list and its strings are owned by the list
 * (nr_chunk_list_free); allocations go through nr_malloc (fault injection
 * reaches them). Working memory is bounded by the options, not the text:
 * about 40 bytes x (max_tokens + 8192), some 330 KiB by default, plus a few
 * words per heading and page, plus the result.
 */
#ifndef NR_CHUNK_H
#define NR_CHUNK_H

#include "nr_load.h"
#include "nr_wordpiece.h"

#include <stddef.h>

#define NR_CHUNK_MIN_TOKENS 32         /* smallest max_tokens accepted */
#define NR_CHUNK_MAX_TOKENS 8192       /* largest max_tokens accepted */
#define NR_CHUNK_MIN_BYTES  1024       /* smallest max_bytes accepted */
#define NR_CHUNK_MAX_TEXT   (1u << 30) /* largest document (bytes) */

struct nr_chunk_opts {
    int target_tokens;  /* preferred size, [CLS]/[SEP] included (default 200) */
    int max_tokens;     /* hard cap, [CLS]/[SEP] included (default 256: the embedder's
                           max_seq, past which it truncates) */
    int overlap_tokens; /* tokens repeated from the end of the previous chunk (default 40);
                           0 .. target_tokens / 2 */
    size_t max_bytes;   /* hard cap on a chunk's bytes (default 16384) */
};

struct nr_chunk {
    size_t start;        /* byte offset in doc->text, inclusive */
    size_t end;          /* exclusive */
    int page;            /* 1-based page; 0 when the document has none */
    int n_tokens;        /* tokens of text[start:end] incl. [CLS]/[SEP] */
    const char *heading; /* "Install > Requirements", "" if none; owned by the list */
};

struct nr_chunk_list {
    struct nr_chunk *chunks; /* [n] */
    int n;
    char *pool_; /* private: heading path strings */
};

void nr_chunk_opts_default(struct nr_chunk_opts *o);

/*
 * Chunk doc with tokenizer wp. doc needs valid UTF-8 text (NULs and control
 * characters are allowed: a loader never gives them, but callers may chunk
 * other text), len <= NR_CHUNK_MAX_TEXT, headings and pages as nr_load.h
 * describes them (sorted and nested headings, ordered pages, offsets on
 * character boundaries); anything else is NR_EINVAL. opts may be NULL
 * (defaults); out of range options are NR_EINVAL (target_tokens in
 * 8 .. max_tokens, max_tokens in NR_CHUNK_MIN_TOKENS .. NR_CHUNK_MAX_TOKENS,
 * overlap_tokens in 0 .. target_tokens / 2, max_bytes in
 * NR_CHUNK_MIN_BYTES .. 64 MiB). An empty or all-whitespace text gives
 * zero chunks. On success *out is a new list owned by the caller.
 */
int nr_chunk_split(const struct nr_wordpiece *wp, const struct nr_load_doc *doc,
                   const struct nr_chunk_opts *opts, struct nr_chunk_list **out);

void nr_chunk_list_free(struct nr_chunk_list *l);

/*
 * Verify every promise above for list l made from doc with opts: ranges,
 * trimming, character boundaries, order, token counts (each chunk re-
 * tokenized), byte cap, pages, heading boundaries and paths, overlap and
 * coverage. NR_OK, or NR_EINTERNAL naming the first broken rule. For tests
 * and fuzzers: it tokenizes the whole text about three times.
 */
int nr_chunk_list_check(const struct nr_wordpiece *wp, const struct nr_load_doc *doc,
                        const struct nr_chunk_opts *opts, const struct nr_chunk_list *l);

#endif
