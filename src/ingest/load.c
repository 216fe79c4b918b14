/*
 * load.c: the loader entry points (nr_load.h), format detection, the plain-
 * text loader, text decoding and the text builder every loader writes through
 * (load_internal.h).
 *
 * Decoding (nr_load_decode), in this order:
 *   1. BOM: FF FE 00 00 / 00 00 FE FF (UTF-32) -> NR_EUNSUPPORTED;
 *      EF BB BF -> UTF-8 (dropped; invalid sequences become U+FFFD later, no
 *      8-bit fallback: the BOM says what the file is);
 *      FF FE / FE FF -> UTF-16 LE / BE, converted here (surrogate pairs
 *      joined, a lone surrogate -> U+FFFD, an odd last byte dropped, a NUL
 *      character -> binary).
 *   2. No BOM: a NUL byte -> binary; more than 5 % control bytes (C0 other
 *      than \t \n \r \f \v, and DEL) -> binary. Why 5 %: text with ANSI colour
 *      codes stays under it, real binaries without NULs are far above.
 *   3. valid UTF-8 -> used in place (no copy);
 *   4. else, with legacy_8bit: Windows-1252 (a superset of Latin-1 for the
 *      printable range; its five undefined bytes are dropped), unless more
 *      than 30 % of the bytes are >= 0x80: Western text in an 8-bit code page
 *      has a few percent, so that much is binary or another code page (KOI8,
 *      CP1251, Shift-JIS ...) that we would only turn into mojibake.
 *
 * Binary files are named in the message when their signature is known (PNG,
 * ZIP/Office, ...); the signature is only looked at once the bytes already
 * failed the text test, so a text that starts with "GIF8" stays text.
 *
 * The builder (nr_tb_*) is described in load_internal.h. Offsets it records
 * always point at a visible character, and whitespace is only ever written in
 * front of one, so trimming trailing whitespace never moves a recorded offset.
 */
#include "load_internal.h"

#include "nr_err.h"
#include "nr_mem.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#define MIB (1024.0 * 1024.0)

void nr_load_opts_default(struct nr_load_opts *o)
{
    o->max_file_bytes = (size_t)64 << 20;
    o->max_text_bytes = (size_t)64 << 20;
    o->legacy_8bit = 1;
    o->pdftotext = "pdftotext";
    o->pdf_timeout_ms = 30000;
    o->pdf_max_memory = (size_t)1 << 30;
}

/* ------------------------------------------------------------------ UTF-8 */

/* Length of the valid UTF-8 sequence at s (1..4), storing the code point; 0
 * if the bytes there are not one (overlong, surrogate, > U+10FFFF, cut). */
static int utf8_dec(const unsigned char *s, size_t n, int32_t *cp)
{
    unsigned c = s[0];
    if (c < 0x80) {
        *cp = (int32_t)c;
        return 1;
    }
    if (c >= 0xC2 && c <= 0xDF) {
        if (n < 2 || (s[1] & 0xC0) != 0x80)
            return 0;
        *cp = (int32_t)(((c & 0x1F) << 6) | (s[1] & 0x3F));
        return 2;
    }
    if (c >= 0xE0 && c <= 0xEF) {
        if (n < 3 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80)
            return 0;
        if ((c == 0xE0 && s[1] < 0xA0) || (c == 0xED && s[1] >= 0xA0))
            return 0; /* overlong, surrogate */
        *cp = (int32_t)(((c & 0x0F) << 12) | ((s[1] & 0x3F) << 6) | (s[2] & 0x3F));
        return 3;
    }
    if (c >= 0xF0 && c <= 0xF4) {
        if (n < 4 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80 || (s[3] & 0xC0) != 0x80)
            return 0;
        if ((c == 0xF0 && s[1] < 0x90) || (c == 0xF4 && s[1] >= 0x90))
            return 0; /* overlong, > U+10FFFF */
        *cp = (int32_t)(((c & 0x07) << 18) | ((s[1] & 0x3F) << 12) | ((s[2] & 0x3F) << 6) |
                        (s[3] & 0x3F));
        return 4;
    }
    return 0;
}

static int utf8_enc(char *out, int32_t c)
{
    if (c < 0x80) {
        out[0] = (char)c;
        return 1;
    }
    if (c < 0x800) {
        out[0] = (char)(0xC0 | (c >> 6));
        out[1] = (char)(0x80 | (c & 0x3F));
        return 2;
    }
    if (c < 0x10000) {
        out[0] = (char)(0xE0 | (c >> 12));
        out[1] = (char)(0x80 | ((c >> 6) & 0x3F));
        out[2] = (char)(0x80 | (c & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (c >> 18));
    out[1] = (char)(0x80 | ((c >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((c >> 6) & 0x3F));
    out[3] = (char)(0x80 | (c & 0x3F));
    return 4;
}

int nr_load_utf8_valid(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        int32_t cp;
        int m;
        if (s[i] < 0x80) {
            i++;
            continue;
        }
        m = utf8_dec(s + i, n - i, &cp);
        if (!m)
            return 0;
        i += (size_t)m;
    }
    return 1;
}

/* Largest m <= cap (and <= n) that does not cut a UTF-8 sequence of s. */
static size_t utf8_cut(const char *s, size_t n, size_t cap)
{
    size_t m = n < cap ? n : cap;
    while (m > 0 && m < n && ((unsigned char)s[m] & 0xC0) == 0x80)
        m--;
    return m;
}

/* ---------------------------------------------------------------- builder */

void nr_tb_init(struct nr_tb *b, size_t max_text)
{
    memset(b, 0, sizeof *b);
    b->max = max_text;
}

void nr_tb_free(struct nr_tb *b)
{
    nr_free(b->buf);
    nr_free(b->h);
    nr_free(b->pages);
    nr_free(b->title);
    memset(b, 0, sizeof *b);
}

static int tb_fail(struct nr_tb *b, int code)
{
    if (!b->err)
        b->err = code;
    return code;
}

static int tb_grow(struct nr_tb *b, size_t need)
{
    size_t want, ncap;
    char *nb;
    if (nr_add_size(b->len, need, &want) != 0 || want > b->max)
        return tb_fail(b, nr_err_set(NR_ELIMIT, "extracted text is larger than the %.1f MiB limit",
                                     (double)b->max / MIB));
    if (want + 1 <= b->cap)
        return NR_OK;
    ncap = b->cap ? b->cap : 4096;
    while (ncap < want + 1)
        ncap = ncap > SIZE_MAX / 2 ? want + 1 : ncap * 2;
    if (ncap > b->max + 1)
        ncap = b->max + 1;
    nb = nr_realloc(b->buf, ncap);
    if (!nb)
        return tb_fail(b, nr_err_set(NR_ENOMEM, "out of memory building the text"));
    b->buf = nb;
    b->cap = ncap;
    return NR_OK;
}

static void tb_append(struct nr_tb *b, const char *s, size_t n)
{
    if (b->err || tb_grow(b, n) != NR_OK)
        return;
    memcpy(b->buf + b->len, s, n);
    b->len += n;
}

static int is_hspace(char c)
{
    return c == ' ' || c == '\t';
}

/* Record the page starts owed, at the current end. */
static void tb_pages_owed(struct nr_tb *b)
{
    while (b->pend_pages > 0 && !b->err) {
        if (b->np == b->pcap) {
            int ncap = b->pcap ? b->pcap * 2 : 16;
            size_t *np = nr_realloc(b->pages, (size_t)ncap * sizeof *np);
            if (!np) {
                tb_fail(b, nr_err_set(NR_ENOMEM, "out of memory recording pages"));
                return;
            }
            b->pages = np;
            b->pcap = ncap;
        }
        b->pages[b->np++] = b->len;
        b->pend_pages--;
    }
}

/* Pay what is owed before the next character; `visible` also records the
 * heading and page starts waiting for it. */
static void tb_flush(struct nr_tb *b, int visible)
{
    if (b->len > 0) {
        if (b->pend_nl) {
            /* Newlines already at the end (before a line of spaces, now
             * trimmed) count: a whitespace-only line is a blank line. */
            int have = 0, want;
            while (b->len > 0 && is_hspace(b->buf[b->len - 1]))
                b->len--;
            while (have < 2 && b->len > (size_t)have && b->buf[b->len - 1 - have] == '\n')
                have++;
            want = have + b->pend_nl < 2 ? have + b->pend_nl : 2;
            for (; have < want; have++)
                tb_append(b, "\n", 1);
        } else if (b->pend_sp && !is_hspace(b->buf[b->len - 1]) && b->buf[b->len - 1] != '\n') {
            tb_append(b, " ", 1);
        }
    }
    b->pend_nl = 0;
    b->pend_sp = 0;
    if (!visible || b->err)
        return;
    tb_pages_owed(b);
    if (b->heading && !b->heading_on) {
        if (b->nh == b->hcap) {
            int ncap = b->hcap ? b->hcap * 2 : 16;
            struct nr_tb_heading *nh = nr_realloc(b->h, (size_t)ncap * sizeof *nh);
            if (!nh) {
                tb_fail(b, nr_err_set(NR_ENOMEM, "out of memory recording headings"));
                return;
            }
            b->h = nh;
            b->hcap = ncap;
        }
        b->h[b->nh].level = b->heading;
        b->h[b->nh].start = b->len;
        b->h[b->nh].text_end = b->len;
        b->nh++;
        b->heading_on = 1;
    }
}

static void tb_visible(struct nr_tb *b, const char *s, size_t n)
{
    tb_flush(b, 1);
    tb_append(b, s, n);
}

static void tb_newline(struct nr_tb *b, int verbatim)
{
    if (!verbatim) {
        b->pend_sp = 1;
        return;
    }
    if (b->len == 0)
        return;
    if (b->pend_nl < 2)
        b->pend_nl++;
    b->pend_sp = 0;
}

static void tb_space(struct nr_tb *b, int verbatim, char c)
{
    if (!verbatim) {
        b->pend_sp = 1;
        return;
    }
    if (b->len == 0)
        return; /* no leading whitespace */
    tb_flush(b, 0);
    tb_append(b, &c, 1);
}

void nr_tb_put(struct nr_tb *b, const char *s, size_t n, int verbatim)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;

    while (i < n && !b->err) {
        unsigned c = u[i];
        if (c > 0x20 && c < 0x7F) { /* a run of printable ASCII */
            size_t j = i + 1;
            while (j < n && u[j] > 0x20 && u[j] < 0x7F)
                j++;
            tb_visible(b, s + i, j - i);
            b->after_cr = 0;
            i = j;
            continue;
        }
        if (c < 0x80) {
            i++;
            if (c == '\n' && b->after_cr) {
                b->after_cr = 0;
                continue;
            }
            b->after_cr = c == '\r';
            if (c == '\n' || c == '\r')
                tb_newline(b, verbatim);
            else if (c == ' ' || c == '\t' || c == '\f' || c == '\v')
                tb_space(b, verbatim, c == '\t' ? '\t' : ' ');
            /* other C0 controls and DEL: dropped */
            continue;
        }
        b->after_cr = 0;
        int32_t cp;
        int m = utf8_dec(u + i, n - i, &cp);
        if (!m) {
            tb_visible(b, "\xEF\xBF\xBD", 3);
            i++;
            continue;
        }
        i += (size_t)m;
        if (cp < 0xA0 || cp == 0xFEFF)
            continue; /* C1 controls, stray BOM */
        if (cp == 0xA0 && !verbatim)
            tb_space(b, 0, ' ');
        else if (cp == 0x2028 || cp == 0x2029)
            tb_newline(b, verbatim);
        else
            tb_visible(b, s + i - (size_t)m, (size_t)m);
    }
}

void nr_tb_break(struct nr_tb *b, int nl)
{
    if (b->len > 0 && nl > b->pend_nl)
        b->pend_nl = nl > 2 ? 2 : nl;
    b->pend_sp = 0;
}

void nr_tb_paged(struct nr_tb *b)
{
    if (b->paged)
        return;
    b->paged = 1;
    b->pend_pages++; /* page 1 starts at the first character */
}

void nr_tb_page(struct nr_tb *b)
{
    b->pend_pages++;
    nr_tb_break(b, 2);
}

void nr_tb_heading_end(struct nr_tb *b)
{
    if (b->heading_on && b->nh > 0)
        b->h[b->nh - 1].text_end = b->len;
    if (b->heading)
        nr_tb_break(b, 2);
    b->heading = 0;
    b->heading_on = 0;
}

void nr_tb_heading_begin(struct nr_tb *b, int level)
{
    nr_tb_heading_end(b);
    nr_tb_break(b, 2);
    b->heading = level < 1 ? 1 : level > 6 ? 6 : level;
    b->heading_on = 0;
}

void nr_tb_set_title(struct nr_tb *b, const char *s, size_t n)
{
    struct nr_tb t;
    if (b->title || b->err)
        return;
    nr_tb_init(&t, NR_LOAD_MAX_HEADING * 4 + 8);
    /* Feed at most what can survive the cut, so a huge <title> costs nothing. */
    nr_tb_put(&t, s, n < NR_LOAD_MAX_HEADING * 4 ? n : NR_LOAD_MAX_HEADING * 4, 0);
    if (t.err == NR_ENOMEM) {
        tb_fail(b, NR_ENOMEM);
    } else if (t.len > 0) {
        size_t m = utf8_cut(t.buf, t.len, NR_LOAD_MAX_HEADING);
        t.buf[m] = '\0';
        b->title = t.buf;
        t.buf = NULL;
    }
    nr_tb_free(&t);
}

/* Copy heading/title text into dst (newlines and tabs become spaces, trailing
 * whitespace dropped, cut at NR_LOAD_MAX_HEADING bytes); returns bytes used
 * including the NUL. */
static size_t copy_label(char *dst, const char *src, size_t n)
{
    size_t m;
    while (n > 0 && (src[n - 1] == ' ' || src[n - 1] == '\t' || src[n - 1] == '\n'))
        n--;
    m = utf8_cut(src, n, NR_LOAD_MAX_HEADING);
    for (size_t i = 0; i < m; i++)
        dst[i] = src[i] == '\n' || src[i] == '\t' ? ' ' : src[i];
    dst[m] = '\0';
    return m + 1;
}

int nr_tb_finish(struct nr_tb *b, enum nr_load_type t, const char *encoding, const char *empty_why,
                 struct nr_load_doc **out)
{
    struct nr_load_doc *doc = NULL;
    size_t pool = 0, used = 0;
    int rc;

    *out = NULL;
    nr_tb_heading_end(b);
    /* Trailing whitespace goes; recorded offsets all point at visible
     * characters, so none passes the new end. Empty trailing pages start at it. */
    while (b->len > 0 && (is_hspace(b->buf[b->len - 1]) || b->buf[b->len - 1] == '\n'))
        b->len--;
    if (b->len > 0)
        tb_pages_owed(b);
    if (b->err) {
        rc = b->err;
        goto fail;
    }
    if (b->len == 0) {
        rc = nr_err_set(NR_EFORMAT, "empty document (%s)", empty_why);
        goto fail;
    }
    doc = nr_calloc(1, sizeof *doc);
    if (!doc)
        goto oom;
    /* Room for the NUL was kept by tb_grow (cap >= len + 1). */
    b->buf[b->len] = '\0';
    for (int i = 0; i < b->nh; i++) {
        struct nr_tb_heading *h = &b->h[i];
        if (h->text_end > b->len)
            h->text_end = b->len;
        pool += (h->text_end - h->start < NR_LOAD_MAX_HEADING ? h->text_end - h->start
                                                              : NR_LOAD_MAX_HEADING) +
                1;
    }
    if (b->title)
        pool += strlen(b->title) + 1;
    if (pool) {
        doc->pool_ = nr_malloc(pool);
        if (!doc->pool_)
            goto oom;
    }
    if (b->nh) {
        int *stack = nr_malloc((size_t)b->nh * sizeof *stack);
        int top = 0;
        doc->headings = nr_calloc((size_t)b->nh, sizeof *doc->headings);
        if (!stack || !doc->headings) {
            nr_free(stack);
            goto oom;
        }
        for (int i = 0; i < b->nh; i++) {
            struct nr_load_heading *h = &doc->headings[i];
            h->level = b->h[i].level;
            h->start = b->h[i].start;
            h->text = doc->pool_ + used;
            used += copy_label(doc->pool_ + used, b->buf + h->start, b->h[i].text_end - h->start);
            /* a heading closes the sections of every open heading at its level or deeper */
            while (top > 0 && doc->headings[stack[top - 1]].level >= h->level)
                doc->headings[stack[--top]].end = h->start;
            stack[top++] = i;
        }
        while (top > 0)
            doc->headings[stack[--top]].end = b->len;
        nr_free(stack);
        doc->n_headings = b->nh;
    }
    if (b->title) {
        doc->title = doc->pool_ + used;
        used += copy_label(doc->pool_ + used, b->title, strlen(b->title));
    } else {
        for (int i = 0; i < doc->n_headings; i++) {
            if (doc->headings[i].level == 1) {
                doc->title = doc->headings[i].text;
                break;
            }
        }
    }
    if (b->paged) {
        doc->pages = b->pages;
        doc->n_pages = b->np;
        b->pages = NULL;
    }
    doc->text = b->buf;
    doc->len = b->len;
    b->buf = NULL;
    doc->type = t;
    snprintf(doc->encoding, sizeof doc->encoding, "%s", encoding ? encoding : "");
    nr_tb_free(b);
    *out = doc;
    return NR_OK;
oom:
    rc = nr_err_set(NR_ENOMEM, "out of memory finishing the document");
fail:
    nr_load_doc_free(doc);
    nr_tb_free(b);
    return rc;
}

/* --------------------------------------------------------------- decoding */

static const char *binary_kind(const unsigned char *d, size_t n)
{
    static const struct {
        const char *magic;
        size_t len;
        const char *what;
    } sig[] = {
        {"\x89PNG\r\n\x1a\n", 8, "PNG image"},
        {"\xFF\xD8\xFF", 3, "JPEG image"},
        {"GIF8", 4, "GIF image"},
        {"PK\x03\x04", 4, "ZIP archive: .docx, .xlsx, .odt and .epub are not read"},
        {"\xD0\xCF\x11\xE0\xA1\xB1\x1A\xE1", 8, "old Microsoft Office file: not read"},
        {"\x1F\x8B", 2, "gzip data"},
        {"BZh", 3, "bzip2 data"},
        {"\xFD"
         "7zXZ",
         5, "xz data"},
        {"7z\xBC\xAF", 4, "7-zip archive"},
        {"\x7F"
         "ELF",
         4, "ELF executable"},
        {"SQLite format 3", 16, "SQLite database"},
        {"RIFF", 4, "RIFF media file"},
        {"OggS", 4, "Ogg media file"},
    };
    for (size_t i = 0; i < sizeof sig / sizeof sig[0]; i++)
        if (n >= sig[i].len && memcmp(d, sig[i].magic, sig[i].len) == 0)
            return sig[i].what;
    return NULL;
}

static int is_control_byte(unsigned c)
{
    return (c < 0x20 && c != '\t' && c != '\n' && c != '\r' && c != '\f' && c != '\v') || c == 0x7F;
}

int nr_load_binary_check(const unsigned char *d, size_t n)
{
    const unsigned char *z = memchr(d, 0, n);
    const char *kind;
    size_t ctl = 0;

    if (z) {
        kind = binary_kind(d, n);
        if (kind)
            return nr_err_set(NR_EFORMAT, "binary file (%s)", kind);
        return nr_err_set(NR_EFORMAT, "binary file (NUL byte at offset %zu)", (size_t)(z - d));
    }
    for (size_t i = 0; i < n; i++)
        ctl += (size_t)is_control_byte(d[i]);
    if (ctl > 0 && ctl * 20 > n) {
        kind = binary_kind(d, n);
        if (kind)
            return nr_err_set(NR_EFORMAT, "binary file (%s)", kind);
        return nr_err_set(NR_EFORMAT, "binary file (%.1f %% control bytes)",
                          100.0 * (double)ctl / (double)n);
    }
    return NR_OK;
}

/* Windows-1252 0x80..0x9F; 0 = undefined (dropped). */
static const uint16_t cp1252_hi[32] = {
    0x20AC, 0,      0x201A, 0x0192, 0x201E, 0x2026, 0x2020, 0x2021, 0x02C6, 0x2030, 0x0160,
    0x2039, 0x0152, 0,      0x017D, 0,      0,      0x2018, 0x2019, 0x201C, 0x201D, 0x2022,
    0x2013, 0x2014, 0x02DC, 0x2122, 0x0161, 0x203A, 0x0153, 0,      0x017E, 0x0178,
};

int nr_load_decode_1252(const unsigned char *d, size_t n, char **out, size_t *out_len)
{
    size_t cap, k = 0;
    char *buf;
    if (nr_mul_size(n, 3, &cap) != 0 || nr_add_size(cap, 1, &cap) != 0 || !(buf = nr_malloc(cap)))
        return nr_err_set(NR_ENOMEM, "out of memory decoding Windows-1252 text");
    for (size_t i = 0; i < n; i++) {
        unsigned c = d[i];
        if (c < 0x80)
            buf[k++] = (char)c;
        else if (c < 0xA0) {
            if (cp1252_hi[c - 0x80])
                k += (size_t)utf8_enc(buf + k, cp1252_hi[c - 0x80]);
        } else
            k += (size_t)utf8_enc(buf + k, (int32_t)c);
    }
    *out = buf;
    *out_len = k;
    return NR_OK;
}

static int decode_utf16(const unsigned char *d, size_t n, int be, char **out, size_t *out_len)
{
    size_t units = n / 2, cap, k = 0, ctl = 0;
    char *buf;

    if (nr_mul_size(units, 3, &cap) != 0 || nr_add_size(cap, 1, &cap) != 0 ||
        !(buf = nr_malloc(cap)))
        return nr_err_set(NR_ENOMEM, "out of memory decoding UTF-16 text");
    for (size_t i = 0; i < units; i++) {
        uint32_t u = be ? (uint32_t)(d[2 * i] << 8 | d[2 * i + 1])
                        : (uint32_t)(d[2 * i + 1] << 8 | d[2 * i]);
        if (u == 0) {
            nr_free(buf);
            return nr_err_set(NR_EFORMAT,
                              "binary file (NUL character in UTF-16 text at offset %zu)", 2 * i);
        }
        ctl += (size_t)(u < 0x80 && is_control_byte(u));
        if (u >= 0xD800 && u <= 0xDBFF && i + 1 < units) {
            uint32_t v = be ? (uint32_t)(d[2 * i + 2] << 8 | d[2 * i + 3])
                            : (uint32_t)(d[2 * i + 3] << 8 | d[2 * i + 2]);
            if (v >= 0xDC00 && v <= 0xDFFF) {
                u = 0x10000 + ((u - 0xD800) << 10) + (v - 0xDC00);
                i++;
            } else {
                u = 0xFFFD;
            }
        } else if (u >= 0xD800 && u <= 0xDFFF) {
            u = 0xFFFD;
        }
        k += (size_t)utf8_enc(buf + k, (int32_t)u);
    }
    if (ctl > 0 && ctl * 20 > units) {
        nr_free(buf);
        return nr_err_set(NR_EFORMAT, "binary file (%.1f %% control characters in UTF-16 text)",
                          100.0 * (double)ctl / (double)units);
    }
    *out = buf;
    *out_len = k;
    return NR_OK;
}

int nr_load_decode(const unsigned char *d, size_t n, const struct nr_load_opts *o, const char **out,
                   size_t *out_len, int *owned, char enc[24])
{
    char *buf = NULL;
    size_t blen = 0, high = 0;
    int rc;

    *out = NULL;
    *out_len = 0;
    *owned = 0;
    if (n >= 4 && ((d[0] == 0xFF && d[1] == 0xFE && d[2] == 0 && d[3] == 0) ||
                   (d[0] == 0 && d[1] == 0 && d[2] == 0xFE && d[3] == 0xFF)))
        return nr_err_set(NR_EUNSUPPORTED, "UTF-32 text is not supported");
    if (n >= 2 && ((d[0] == 0xFF && d[1] == 0xFE) || (d[0] == 0xFE && d[1] == 0xFF))) {
        int be = d[0] == 0xFE;
        rc = decode_utf16(d + 2, n - 2, be, &buf, &blen);
        if (rc != NR_OK)
            return rc;
        snprintf(enc, 24, "%s", be ? "utf-16be" : "utf-16le");
        *out = buf;
        *out_len = blen;
        *owned = 1;
        return NR_OK;
    }
    if (n >= 3 && d[0] == 0xEF && d[1] == 0xBB && d[2] == 0xBF) {
        rc = nr_load_binary_check(d + 3, n - 3);
        if (rc != NR_OK)
            return rc;
        snprintf(enc, 24, "utf-8");
        *out = (const char *)d + 3;
        *out_len = n - 3;
        return NR_OK;
    }
    rc = nr_load_binary_check(d, n);
    if (rc != NR_OK)
        return rc;
    if (nr_load_utf8_valid(d, n)) {
        snprintf(enc, 24, "utf-8");
        *out = (const char *)d;
        *out_len = n;
        return NR_OK;
    }
    if (!o->legacy_8bit) {
        size_t i = 0;
        int32_t cp;
        int m;
        while (i < n && (m = d[i] < 0x80 ? 1 : utf8_dec(d + i, n - i, &cp)) > 0)
            i += (size_t)m;
        return nr_err_set(NR_EFORMAT, "not valid UTF-8 (byte 0x%02X at offset %zu)",
                          i < n ? d[i] : 0, i);
    }
    for (size_t i = 0; i < n; i++)
        high += d[i] >= 0x80;
    if (high * 10 > n * 3)
        return nr_err_set(NR_EFORMAT,
                          "binary file or unknown 8-bit encoding (not UTF-8, and %.0f %% of the "
                          "bytes are >= 0x80: too many for Windows-1252 text)",
                          100.0 * (double)high / (double)n);
    rc = nr_load_decode_1252(d, n, &buf, &blen);
    if (rc != NR_OK)
        return rc;
    snprintf(enc, 24, "windows-1252");
    *out = buf;
    *out_len = blen;
    *owned = 1;
    return NR_OK;
}

/* ------------------------------------------------------------- plain text */

static int load_text(const unsigned char *d, size_t n, const struct nr_load_opts *o,
                     struct nr_load_doc **out)
{
    const char *s;
    size_t len, end;
    int owned, rc;
    char enc[24];
    struct nr_tb b;

    rc = nr_load_decode(d, n, o, &s, &len, &owned, enc);
    if (rc != NR_OK)
        return rc;
    nr_tb_init(&b, o->max_text_bytes);
    /* Form feeds before the last visible character make pages; trailing ones
     * (printer output ends with one) do not add an empty page. */
    end = len;
    while (end > 0 && (s[end - 1] == '\f' || s[end - 1] == ' ' || s[end - 1] == '\n' ||
                       s[end - 1] == '\r' || s[end - 1] == '\t'))
        end--;
    if (memchr(s, '\f', end)) {
        size_t p = 0;
        nr_tb_paged(&b);
        while (p < end) {
            const char *ff = memchr(s + p, '\f', end - p);
            size_t q = ff ? (size_t)(ff - s) : end;
            nr_tb_put(&b, s + p, q - p, 1);
            if (ff)
                nr_tb_page(&b);
            p = q + (ff ? 1 : 0);
        }
    } else {
        nr_tb_put(&b, s, end, 1);
    }
    if (owned)
        nr_free((char *)s);
    return nr_tb_finish(&b, NR_LOAD_TEXT, enc, "no text in the file", out);
}

/* -------------------------------------------------------------- detection */

static int ext_is(const char *ext, const char *const *list)
{
    for (; *list; list++)
        if (strcasecmp(ext, *list) == 0)
            return 1;
    return 0;
}

static int prefix_ci(const unsigned char *p, size_t n, const char *lit)
{
    size_t k = strlen(lit);
    return n >= k && strncasecmp((const char *)p, lit, k) == 0;
}

enum nr_load_type nr_load_detect(const char *name, const void *data, size_t n)
{
    static const char *const md[] = {"md", "markdown", "mdown", "mkd", "mkdn", NULL};
    static const char *const html[] = {"html", "htm", "xhtml", NULL};
    static const char *const txt[] = {"txt", "text", NULL};
    const unsigned char *d = data;
    unsigned char pre[256];
    size_t np = 0;

    if (d && n >= 5) {
        size_t lim = n < 1024 + 5 ? n : 1024 + 5;
        for (size_t i = 0; i + 5 <= lim; i++)
            if (d[i] == '%' && memcmp(d + i, "%PDF-", 5) == 0)
                return NR_LOAD_PDF;
    }
    if (name) {
        const char *slash = strrchr(name, '/');
        const char *dot = strrchr(slash ? slash + 1 : name, '.');
        if (dot && dot[1]) {
            if (ext_is(dot + 1, md))
                return NR_LOAD_MARKDOWN;
            if (ext_is(dot + 1, html))
                return NR_LOAD_HTML;
            if (strcasecmp(dot + 1, "pdf") == 0)
                return NR_LOAD_PDF;
            if (ext_is(dot + 1, txt))
                return NR_LOAD_TEXT;
        }
    }
    if (!d)
        return NR_LOAD_TEXT;
    /* An ASCII preview of the start: UTF-16 is read one unit per char. */
    if (n >= 2 && ((d[0] == 0xFF && d[1] == 0xFE) || (d[0] == 0xFE && d[1] == 0xFF))) {
        int be = d[0] == 0xFE;
        for (size_t i = 2; i + 1 < n && np < sizeof pre; i += 2)
            pre[np++] = be ? (d[i] ? 0xFF : d[i + 1]) : (d[i + 1] ? 0xFF : d[i]);
    } else {
        size_t i = n >= 3 && d[0] == 0xEF && d[1] == 0xBB && d[2] == 0xBF ? 3 : 0;
        for (; i < n && np < sizeof pre; i++)
            pre[np++] = d[i];
    }
    size_t i = 0;
    while (i < np && (pre[i] == ' ' || pre[i] == '\t' || pre[i] == '\n' || pre[i] == '\r'))
        i++;
    if (prefix_ci(pre + i, np - i, "<?xml")) {
        while (i + 1 < np && !(pre[i] == '?' && pre[i + 1] == '>'))
            i++;
        i += 2;
        while (i < np && (pre[i] == ' ' || pre[i] == '\t' || pre[i] == '\n' || pre[i] == '\r'))
            i++;
    }
    if (i < np &&
        (prefix_ci(pre + i, np - i, "<!doctype html") || prefix_ci(pre + i, np - i, "<html") ||
         prefix_ci(pre + i, np - i, "<head") || prefix_ci(pre + i, np - i, "<body")))
        return NR_LOAD_HTML;
    return NR_LOAD_TEXT;
}

const char *nr_load_type_media(enum nr_load_type t)
{
    switch (t) {
    case NR_LOAD_TEXT:
        return "text/plain";
    case NR_LOAD_MARKDOWN:
        return "text/markdown";
    case NR_LOAD_HTML:
        return "text/html";
    case NR_LOAD_PDF:
        return "application/pdf";
    default:
        return "";
    }
}

enum nr_load_type nr_load_type_from_media(const char *m)
{
    static const struct {
        const char *name;
        enum nr_load_type t;
    } map[] = {
        {"text/plain", NR_LOAD_TEXT},
        {"text/markdown", NR_LOAD_MARKDOWN},
        {"text/x-markdown", NR_LOAD_MARKDOWN},
        {"text/html", NR_LOAD_HTML},
        {"application/xhtml+xml", NR_LOAD_HTML},
        {"application/pdf", NR_LOAD_PDF},
        {"application/x-pdf", NR_LOAD_PDF},
    };
    size_t n;
    if (!m)
        return NR_LOAD_AUTO;
    while (*m == ' ' || *m == '\t')
        m++;
    n = strcspn(m, "; \t");
    for (size_t i = 0; i < sizeof map / sizeof map[0]; i++)
        if (strlen(map[i].name) == n && strncasecmp(m, map[i].name, n) == 0)
            return map[i].t;
    return NR_LOAD_AUTO;
}

/* ------------------------------------------------------------ entry points */

int nr_load_mem(const void *data, size_t n, enum nr_load_type t, const char *name,
                const struct nr_load_opts *opts, struct nr_load_doc **out)
{
    struct nr_load_opts def;
    const unsigned char *d = data;
    int rc;

    if (!out)
        return nr_err_set(NR_EINVAL, "load: NULL output");
    *out = NULL;
    if (!d && n)
        return nr_err_set(NR_EINVAL, "load: NULL data");
    if (!opts) {
        nr_load_opts_default(&def);
        opts = &def;
    }
    if (opts->max_file_bytes == 0 || opts->max_text_bytes == 0)
        return nr_err_set(NR_EINVAL, "load: max_file_bytes and max_text_bytes must be > 0");
    if (n == 0)
        return nr_err_set(NR_EFORMAT, "empty document (0 bytes)");
    if (n > opts->max_file_bytes)
        return nr_err_set(NR_ELIMIT, "file is %.1f MiB, over the %.1f MiB limit", (double)n / MIB,
                          (double)opts->max_file_bytes / MIB);
    if (t == NR_LOAD_AUTO)
        t = nr_load_detect(name, d, n);
    switch (t) {
    case NR_LOAD_TEXT:
        rc = load_text(d, n, opts, out);
        break;
    case NR_LOAD_MARKDOWN:
        rc = nr_load_markdown(d, n, opts, out);
        break;
    case NR_LOAD_HTML:
        rc = nr_load_html(d, n, opts, out);
        break;
    case NR_LOAD_PDF:
        rc = nr_load_pdf(d, n, opts, out);
        break;
    default:
        return nr_err_set(NR_EINVAL, "load: unknown document type %d", (int)t);
    }
    if (rc == NR_OK)
        (*out)->type = t;
    return rc;
}

int nr_load_file(const char *path, enum nr_load_type t, const struct nr_load_opts *opts,
                 struct nr_load_doc **out)
{
    struct nr_load_opts def;
    struct stat st;
    unsigned char *buf = NULL;
    size_t n = 0, want;
    int fd, rc;

    if (!out)
        return nr_err_set(NR_EINVAL, "load: NULL output");
    *out = NULL;
    if (!path)
        return nr_err_set(NR_EINVAL, "load: NULL path");
    if (!opts) {
        nr_load_opts_default(&def);
        opts = &def;
    }
    /* O_NONBLOCK: opening a FIFO must not hang; it is refused below. */
    fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    if (fd < 0)
        return nr_err_set(errno == ENOENT ? NR_ENOTFOUND : NR_EIO, "cannot open the file: %s",
                          strerror(errno));
    if (fstat(fd, &st) != 0) {
        rc = nr_err_set(NR_EIO, "cannot stat the file: %s", strerror(errno));
        goto done;
    }
    if (!S_ISREG(st.st_mode)) {
        rc = nr_err_set(NR_EINVAL, "not a regular file");
        goto done;
    }
    if (st.st_size == 0) {
        rc = nr_err_set(NR_EFORMAT, "empty document (0 bytes)");
        goto done;
    }
    if ((uint64_t)st.st_size > (uint64_t)opts->max_file_bytes) {
        rc = nr_err_set(NR_ELIMIT, "file is %.1f MiB, over the %.1f MiB limit",
                        (double)st.st_size / MIB, (double)opts->max_file_bytes / MIB);
        goto done;
    }
    /* One byte more than the size, to notice a file that grew meanwhile. */
    want = (size_t)st.st_size + 1;
    buf = nr_malloc(want);
    if (!buf) {
        rc = nr_err_set(NR_ENOMEM, "out of memory reading the file");
        goto done;
    }
    while (n < want) {
        ssize_t got = read(fd, buf + n, want - n);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0) {
            rc = nr_err_set(NR_EIO, "read error: %s", strerror(errno));
            goto done;
        }
        if (got == 0)
            break;
        n += (size_t)got;
    }
    if (n > opts->max_file_bytes) {
        rc = nr_err_set(NR_ELIMIT, "file grew past the %.1f MiB limit while being read",
                        (double)opts->max_file_bytes / MIB);
        goto done;
    }
    rc = nr_load_mem(buf, n, t, path, opts, out);
done:
    nr_free(buf);
    close(fd);
    return rc;
}

void nr_load_doc_free(struct nr_load_doc *doc)
{
    if (!doc)
        return;
    nr_free(doc->text);
    nr_free(doc->headings);
    nr_free(doc->pages);
    nr_free(doc->pool_);
    nr_free(doc);
}

static int is_ws_byte(char c)
{
    return c == ' ' || c == '\t' || c == '\n';
}

int nr_load_doc_check(const struct nr_load_doc *doc)
{
    const unsigned char *u;
    if (!doc || !doc->text)
        return nr_err_set(NR_EINTERNAL, "doc check: no text");
    u = (const unsigned char *)doc->text;
    if (doc->len == 0 || doc->text[doc->len] != '\0')
        return nr_err_set(NR_EINTERNAL, "doc check: empty or not NUL-terminated");
    if (!nr_load_utf8_valid(u, doc->len))
        return nr_err_set(NR_EINTERNAL, "doc check: text is not valid UTF-8");
    for (size_t i = 0; i < doc->len; i++)
        if ((u[i] < 0x20 && u[i] != '\t' && u[i] != '\n') || u[i] == 0x7F)
            return nr_err_set(NR_EINTERNAL, "doc check: control byte 0x%02X at offset %zu", u[i],
                              i);
    if (is_ws_byte(doc->text[0]) || is_ws_byte(doc->text[doc->len - 1]))
        return nr_err_set(NR_EINTERNAL, "doc check: text starts or ends with whitespace");
    if (strstr(doc->text, "\n\n\n"))
        return nr_err_set(NR_EINTERNAL, "doc check: more than one blank line in a row");
    /* Nesting: every earlier section either contains this one or ended
     * before it. Open sections form a stack (innermost on top): pop those
     * that ended, and the top must then contain the new one. The section
     * rule (end = next heading of the same or a higher level) is checked on
     * the way: a section ends exactly where such a heading starts. */
    {
        int *stack = doc->n_headings ? nr_malloc((size_t)doc->n_headings * sizeof *stack) : NULL;
        int top = 0, rc = NR_OK;
        if (doc->n_headings && !stack)
            return nr_err_set(NR_ENOMEM, "doc check: out of memory");
        for (int i = 0; i < doc->n_headings && rc == NR_OK; i++) {
            const struct nr_load_heading *h = &doc->headings[i];
            if (h->level < 1 || h->level > 6 || !h->text || h->start >= h->end || h->end > doc->len)
                rc = nr_err_set(NR_EINTERNAL, "doc check: heading %d out of range", i);
            else if ((u[h->start] & 0xC0) == 0x80 ||
                     (h->end < doc->len && (u[h->end] & 0xC0) == 0x80))
                rc = nr_err_set(NR_EINTERNAL, "doc check: heading %d splits a character", i);
            else if (i > 0 && h->start <= doc->headings[i - 1].start)
                rc = nr_err_set(NR_EINTERNAL, "doc check: headings not sorted at %d", i);
            if (rc != NR_OK)
                break;
            while (top > 0 && doc->headings[stack[top - 1]].level >= h->level) {
                if (doc->headings[stack[top - 1]].end != h->start)
                    rc = nr_err_set(NR_EINTERNAL, "doc check: section %d does not end at %d",
                                    stack[top - 1], i);
                top--;
            }
            if (rc == NR_OK && top > 0 && h->end > doc->headings[stack[top - 1]].end)
                rc = nr_err_set(NR_EINTERNAL, "doc check: heading %d overlaps %d", i,
                                stack[top - 1]);
            stack[top++] = i;
        }
        while (rc == NR_OK && top > 0)
            if (doc->headings[stack[--top]].end != doc->len)
                rc = nr_err_set(NR_EINTERNAL, "doc check: last section %d does not end at the end",
                                stack[top]);
        nr_free(stack);
        if (rc != NR_OK)
            return rc;
    }
    if ((doc->n_pages == 0) != (doc->pages == NULL))
        return nr_err_set(NR_EINTERNAL, "doc check: pages and n_pages disagree");
    for (int i = 0; i < doc->n_pages; i++) {
        size_t p = doc->pages[i];
        if ((i == 0 && p != 0) || (i > 0 && p < doc->pages[i - 1]) || p > doc->len)
            return nr_err_set(NR_EINTERNAL, "doc check: page %d starts out of order", i + 1);
        if (p < doc->len && (u[p] & 0xC0) == 0x80)
            return nr_err_set(NR_EINTERNAL, "doc check: page %d splits a character", i + 1);
    }
    return NR_OK;
}
