/*
 * load_internal.h: what the format loaders (load.c, load_md.c, load_html.c,
 * load_pdf.c) share. Not a public header.
 *
 * The text builder (nr_tb) is the one place where output text is written, so
 * the output contract of nr_load.h is kept in one place:
 *   - nr_tb_put() takes any bytes: invalid UTF-8 becomes U+FFFD, CRLF and CR
 *     become LF, NUL, C0 controls other than \t \n, DEL, C1 controls and
 *     U+FEFF are dropped; U+2028/U+2029 are line breaks.
 *   - whitespace is never written eagerly: spaces and newlines are owed
 *     (pend_sp, pend_nl) and paid just before the next visible character, so
 *     the text never starts or ends with whitespace and never holds more than
 *     one blank line in a row. In collapse mode (HTML, Markdown inline text)
 *     any whitespace run is one space; in verbatim mode (plain text, code,
 *     pre, PDF) spaces and tabs are kept, and trailing ones before a newline
 *     dropped.
 *   - headings and pages are recorded at the first visible character after
 *     they are opened, so their offsets always point at text.
 * Every append checks the max_text cap; the first error sticks in b->err and
 * later calls do nothing, so walkers check once at the end.
 */
#ifndef NR_LOAD_INTERNAL_H
#define NR_LOAD_INTERNAL_H

#include "nr_load.h"

#include <stddef.h>

struct nr_tb_heading {
    int level;
    size_t start;    /* first byte of the heading text */
    size_t text_end; /* end of the heading text */
};

struct nr_tb {
    char *buf; /* cap bytes */
    size_t len, cap;
    size_t max;     /* max_text_bytes */
    int err;        /* first error, sticky (NR_OK while fine) */
    int pend_nl;    /* newlines owed before the next visible char (0..2) */
    int pend_sp;    /* a space owed (collapse mode) */
    int pend_pages; /* page starts owed */
    int after_cr;   /* the last byte seen was a CR (so a following LF is dropped) */
    int heading;    /* level of the open heading, 0 if none */
    int heading_on; /* the open heading has had a visible char */
    struct nr_tb_heading *h;
    int nh, hcap;
    size_t *pages;
    int np, pcap;
    int paged;   /* the format has pages */
    char *title; /* nr_malloc'ed, or NULL */
};

void nr_tb_init(struct nr_tb *b, size_t max_text);
void nr_tb_free(struct nr_tb *b);
/* Append n bytes; verbatim = 1 keeps line structure and indentation. */
void nr_tb_put(struct nr_tb *b, const char *s, size_t n, int verbatim);
/* Owe a line break (1) or a blank line (2) before the next text. */
void nr_tb_break(struct nr_tb *b, int nl);
/* Pages: nr_tb_paged() once at the start (page 1 at offset 0), then
 * nr_tb_page() for each later page start. */
void nr_tb_paged(struct nr_tb *b);
void nr_tb_page(struct nr_tb *b);
void nr_tb_heading_begin(struct nr_tb *b, int level);
void nr_tb_heading_end(struct nr_tb *b);
/* Set the title from n bytes (whitespace collapsed, cut at NR_LOAD_MAX_HEADING);
 * the first call wins. */
void nr_tb_set_title(struct nr_tb *b, const char *s, size_t n);

/*
 * Finish: move the text into a new document of type t (and free nothing the
 * caller must free: b is reset either way). `empty_why` completes the message
 * "empty document (...)" when there is no text.
 */
int nr_tb_finish(struct nr_tb *b, enum nr_load_type t, const char *encoding, const char *empty_why,
                 struct nr_load_doc **out);

/*
 * Decode text bytes (BOM, UTF-16, binary check, UTF-8 or Windows-1252) to
 * UTF-8. *out is data itself (*owned = 0) when no conversion is needed, else
 * a new nr_malloc'ed buffer (*owned = 1). enc gets the encoding's name.
 */
int nr_load_decode(const unsigned char *data, size_t n, const struct nr_load_opts *o,
                   const char **out, size_t *out_len, int *owned, char enc[24]);

/* Windows-1252 bytes to UTF-8 (its five undefined bytes dropped); *out is a
 * new nr_malloc'ed buffer. */
int nr_load_decode_1252(const unsigned char *d, size_t n, char **out, size_t *out_len);

/* The binary / control-character test of nr_load_decode on raw bytes. */
int nr_load_binary_check(const unsigned char *data, size_t n);

/* 1 if [s, s+n) is valid UTF-8. */
int nr_load_utf8_valid(const unsigned char *s, size_t n);

int nr_load_markdown(const unsigned char *data, size_t n, const struct nr_load_opts *o,
                     struct nr_load_doc **out);
int nr_load_html(const unsigned char *data, size_t n, const struct nr_load_opts *o,
                 struct nr_load_doc **out);
int nr_load_pdf(const unsigned char *data, size_t n, const struct nr_load_opts *o,
                struct nr_load_doc **out);

#endif
