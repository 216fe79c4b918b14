/*
 * nr_load: document loaders. The bytes of a file (plain text, Markdown, HTML
 * or PDF) in; clean UTF-8 text and its structure (headings, pages) out, ready
 * for the chunker (nr_chunk.h).
 *
 *     struct nr_load_opts o;
 *     struct nr_load_doc *doc;
 *     nr_load_opts_default(&o);
 *     if (nr_load_file("docs/install.md", NR_LOAD_AUTO, &o, &doc) != NR_OK)
 *         report(name, nr_err_msg());        // "binary file (NUL byte at offset 1234)"
 *     ... doc->text, doc->headings, doc->pages ...
 *     nr_load_doc_free(doc);
 *
 * Output contract (every loader; nr_load_doc_check verifies it):
 *   - text holds len bytes of valid UTF-8 plus a terminating NUL, and no NUL
 *     before it; no CR, and no control character other than \t and \n.
 *     It starts and ends with a non-whitespace character: len >= 1 always
 *     (a document without text is an error, see below).
 *   - Blocks (paragraphs, list items, table cells, code blocks, headings) are
 *     separated by one blank line ("\n\n"); lines inside a block by "\n";
 *     there is never more than one blank line in a row.
 *   - headings[i]: level 1..6; start = offset of the heading's first byte in
 *     text; end = end of the section it heads: the start of the next heading
 *     of the same or a higher level (a smaller number), or len. text is the
 *     heading as it reads in the document (newlines turned into spaces, cut
 *     at NR_LOAD_MAX_HEADING bytes). Sorted by start, so sections nest: a
 *     later heading's section is inside an earlier one's or after it.
 *   - pages (PDF, and plain text with form feeds): n_pages >= 1, pages[0] = 0,
 *     non-decreasing, each <= len; page k (1-based) is the byte range
 *     [pages[k-1], pages[k]) and the last one ends at len. A page without text
 *     has an empty range. n_pages = 0 and pages = NULL for formats without
 *     pages.
 *   - every offset lies on a UTF-8 character boundary.
 *
 * Encodings (plain text and Markdown; HTML through libxml2, see below):
 *   UTF-8 (a BOM is dropped); UTF-16 LE/BE when the file starts with its BOM
 *   (converted); UTF-32 -> NR_EUNSUPPORTED. Without a BOM: a NUL byte, or more
 *   than 5 % control bytes, means a binary file (NR_EFORMAT "binary file");
 *   valid UTF-8 is UTF-8; anything else is decoded as Windows-1252 (opts.
 *   legacy_8bit, the default), unless more than 30 % of its bytes are >= 0x80
 *   (then it is binary or an encoding we cannot guess: NR_EFORMAT). UTF-16
 *   without a BOM is taken for binary. CRLF and lone CR become LF everywhere.
 *   A form feed in plain text starts a new page (as in RFCs and printer
 *   output); a file without one has no pages.
 *
 * Formats:
 *   text      as above, lines kept, runs of blank lines squeezed to one.
 *   markdown  cmark (CommonMark). Headings (ATX and setext) become structure,
 *             code blocks stay as text, link and emphasis text stays (URLs
 *             do not), images and raw HTML are dropped; tight list items are
 *             one line each, soft line breaks stay line breaks (so pipe tables
 *             keep their rows). YAML front matter ("---" ... "---" at the top)
 *             is dropped, its "title:" becoming the title.
 *   html      libxml2's HTML parser with recovery, no network, default entities.
 *             Dropped: script style noscript template svg nav aside form iframe
 *             object embed canvas button select textarea, comments, elements
 *             with the hidden attribute or aria-hidden="true", and header/footer
 *             (unless inside article or main, where they carry the article's own
 *             title). <title> is the title; h1-h6 are headings; p, li, pre,
 *             div, blockquote, table rows ... are blocks, a row's cells its
 *             lines; whitespace is collapsed except in pre. Charset: a BOM;
 *             else UTF-8 and the Latin-1 family (a "charset=" label of utf-8,
 *             windows-1252, iso-8859-1, ascii ..., or none) are decoded here:
 *             UTF-8 if the bytes are valid UTF-8, else Windows-1252; any other
 *             label (shift_jis, koi8-r ...) is left to libxml2 (iconv).
 *             libxml2's default depth limit (256 nested elements) applies:
 *             deeper content is lost.
 *   pdf       the pdftotext program (poppler-utils) in its default reading-
 *             order mode, run as a child process: see load_pdf.c. Pages are
 *             the form feeds it writes.
 *   The title (when there is one) is not part of text; without a <title> or
 *   front-matter title, the first level-1 heading's text is used.
 *
 * Errors (the status, and nr_err_msg(); a message names the problem and never
 * a filesystem path, so it can go into an ingest summary or an HTTP answer):
 *   NR_EFORMAT       binary file, malformed or unreadable PDF, invalid UTF-8
 *                    with legacy_8bit off, and "empty document ..." when there
 *                    is no text at all: a 0-byte file, only whitespace, HTML
 *                    with nothing outside dropped markup, a PDF without a text
 *                    layer. An empty document is an error, not an empty result,
 *                    so that a summary lists it and no document without chunks
 *                    is ever stored.
 *   NR_ELIMIT        file larger than max_file_bytes, text larger than
 *                    max_text_bytes, a PDF that took longer than pdf_timeout_ms.
 *   NR_EUNSUPPORTED  UTF-32; a PDF when pdftotext is not installed.
 *   NR_ENOTFOUND / NR_EIO / NR_EINVAL   nr_load_file: missing file, read error,
 *                    not a regular file.
 *   NR_ENOMEM        allocation failed.
 *
 * Threads: every function may run on several threads at once (libxml2 is
 * initialized once, inside). Memory: the document and everything it points to
 * are owned by it and freed by nr_load_doc_free. Our own allocations go
 * through nr_malloc (fault injection reaches them); libxml2's and cmark's do
 * not.
 */
#ifndef NR_LOAD_H
#define NR_LOAD_H

#include <stddef.h>

#define NR_LOAD_MAX_HEADING 1024 /* bytes kept of one heading's or the title's text */

enum nr_load_type {
    NR_LOAD_AUTO = 0, /* detect from the name and the bytes (nr_load_detect) */
    NR_LOAD_TEXT,
    NR_LOAD_MARKDOWN,
    NR_LOAD_HTML,
    NR_LOAD_PDF,
};

struct nr_load_opts {
    size_t max_file_bytes; /* input larger than this: NR_ELIMIT (default 64 MiB) */
    size_t max_text_bytes; /* extracted text larger than this: NR_ELIMIT (default 64 MiB) */
    int legacy_8bit;       /* 1: non-UTF-8 text is Windows-1252 (default); 0: NR_EFORMAT */
    const char *pdftotext; /* program name (looked up in PATH) or path; default "pdftotext" */
    int pdf_timeout_ms;    /* wall-clock limit for one PDF (default 30000) */
    size_t
        pdf_max_memory; /* address-space cap of the pdftotext process (default 1 GiB; 0 = none) */
};

struct nr_load_heading {
    int level;        /* 1..6 */
    const char *text; /* NUL-terminated UTF-8, owned by the document */
    size_t start;     /* offset of the heading's first byte in doc->text */
    size_t end;       /* end of its section (exclusive) */
};

struct nr_load_doc {
    char *text;             /* len bytes + NUL */
    size_t len;             /* bytes */
    const char *title;      /* NULL if none */
    enum nr_load_type type; /* the format it was loaded as */
    char encoding[24];      /* source encoding: "utf-8", "utf-16le", "windows-1252", ... */
    struct nr_load_heading *headings; /* [n_headings] */
    int n_headings;
    size_t *pages; /* [n_pages] page start offsets; NULL if the format has no pages */
    int n_pages;
    char *pool_; /* private: heading and title strings */
};

void nr_load_opts_default(struct nr_load_opts *o);

/*
 * Guess the format from a file name (may be NULL; only its extension is used)
 * and the first bytes. A PDF signature (%PDF- in the first 1024 bytes) wins
 * over the name; then the extensions .md .markdown .mdown .mkd -> Markdown,
 * .html .htm .xhtml -> HTML, .pdf -> PDF, .txt .text and others -> text; with
 * no known extension, content starting (after a BOM and whitespace) with
 * <!doctype html, <html, <head or <body is HTML, anything else text.
 */
enum nr_load_type nr_load_detect(const char *name, const void *data, size_t n);

/* "text/plain", "text/markdown", "text/html", "application/pdf" ("" for AUTO). */
const char *nr_load_type_media(enum nr_load_type t);

/* The type of a media type string such as "text/html; charset=utf-8" (the
 * parameters are ignored; so is the charset: the bytes decide), or NR_LOAD_AUTO
 * when it is not one we read (application/octet-stream included). */
enum nr_load_type nr_load_type_from_media(const char *media_type);

/*
 * Load n bytes of a document of type t (NR_LOAD_AUTO: nr_load_detect(name,
 * ...); name may be NULL and is never put into messages). opts may be NULL
 * (defaults). The caller keeps data. On success *out is a new document owned
 * by the caller; on failure *out is NULL and nr_err_msg() says why.
 */
int nr_load_mem(const void *data, size_t n, enum nr_load_type t, const char *name,
                const struct nr_load_opts *opts, struct nr_load_doc **out);

/*
 * nr_load_mem on the contents of the regular file at path, which is checked
 * against max_file_bytes before it is read (a 100 GB file costs nothing).
 */
int nr_load_file(const char *path, enum nr_load_type t, const struct nr_load_opts *opts,
                 struct nr_load_doc **out);

void nr_load_doc_free(struct nr_load_doc *doc);

/* NR_OK if doc keeps the output contract above, else NR_EINTERNAL with a
 * message naming the broken rule. For tests and fuzzers; O(len). */
int nr_load_doc_check(const struct nr_load_doc *doc);

#endif
