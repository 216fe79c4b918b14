/*
 * nr_load on real documents: the hand-written fixtures in
 * tests/fixtures/docs (Markdown, HTML, plain text in UTF-8, UTF-16 and
 * Windows-1252, a paged text, broken and binary files), a two-page PDF
 * written by hand there and a three-page one built here byte by byte, and
 * generated inputs: encodings, junk, truncations, deep nesting, a 100 MB
 * file, failing allocations. pdftotext itself is swapped for small shell
 * scripts to drive the child-process code through timeouts, floods, crashes
 * and a child that never reads its input.
 *
 * Every document that loads passes nr_load_doc_check (the output contract);
 * every failure must carry a message that names the problem and holds no
 * path.
 */
#define _GNU_SOURCE /* memmem, mkdtemp */
#include "nr_test.h"

#include "nr_chunk.h"
#include "nr_err.h"
#include "nr_load.h"
#include "nr_mem.h"

#include <fcntl.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static char g_tmp[64]; /* scratch directory for generated files */

static const char *fixture(const char *name)
{
    static char rel[4][256];
    static int next;
    char *r = rel[next++ & 3];
    snprintf(r, sizeof rel[0], "tests/fixtures/docs/%s", name);
    return nr_test_src_path(r);
}

static const char *tmp_path(const char *name)
{
    static char p[4][256];
    static int next;
    char *r = p[next++ & 3];
    snprintf(r, sizeof p[0], "%s/%s", g_tmp, name);
    return r;
}

static void write_file(const char *path, const void *data, size_t n, int mode)
{
    FILE *f = fopen(path, "wb");
    NR_CHECK_MSG(f != NULL, "cannot write %s", path);
    if (!f)
        return;
    fwrite(data, 1, n, f);
    fclose(f);
    chmod(path, (mode_t)mode);
}

static void write_script(const char *path, const char *body)
{
    char text[512];
    snprintf(text, sizeof text, "#!/bin/sh\n%s\n", body);
    write_file(path, text, strlen(text), 0755);
}

/* Load a file; on success check the contract. Returns the status. */
static int load(const char *path, const struct nr_load_opts *o, struct nr_load_doc **doc)
{
    int rc = nr_load_file(path, NR_LOAD_AUTO, o, doc);
    if (rc == NR_OK) {
        int c = nr_load_doc_check(*doc);
        NR_CHECK_MSG(c == NR_OK, "%s: contract: %s", path, nr_err_msg());
    } else {
        NR_CHECK_MSG(*doc == NULL && nr_err_msg()[0] != '\0', "%s: error without a message", path);
        NR_CHECK_MSG(strstr(nr_err_msg(), "fixtures") == NULL &&
                         strstr(nr_err_msg(), g_tmp) == NULL,
                     "message holds a path: %s", nr_err_msg());
    }
    return rc;
}

static int load_mem(const void *data, size_t n, enum nr_load_type t, const struct nr_load_opts *o,
                    struct nr_load_doc **doc)
{
    int rc = nr_load_mem(data, n, t, NULL, o, doc);
    if (rc == NR_OK) {
        int c = nr_load_doc_check(*doc);
        NR_CHECK_MSG(c == NR_OK, "contract: %s", nr_err_msg());
    } else {
        NR_CHECK_MSG(*doc == NULL && nr_err_msg()[0] != '\0', "error without a message");
    }
    return rc;
}

#define OK(call) ok_((call), __FILE__, __LINE__)
static int ok_(int rc, const char *file, int line)
{
    if (rc != NR_OK)
        nr_test_fail(file, line, "load failed: %s", nr_err_msg());
    return rc == NR_OK;
}

static int load_str(const char *s, enum nr_load_type t, const struct nr_load_opts *o,
                    struct nr_load_doc **doc)
{
    return load_mem(s, strlen(s), t, o, doc);
}

static int has(const struct nr_load_doc *d, const char *s)
{
    return memmem(d->text, d->len, s, strlen(s)) != NULL;
}

/* The text of heading i's title as it stands in the document. */
static int heading_is(const struct nr_load_doc *d, int i, int level, const char *text)
{
    const struct nr_load_heading *h = &d->headings[i];
    size_t n = strlen(text);
    return i < d->n_headings && h->level == level && strcmp(h->text, text) == 0 &&
           h->start + n <= d->len && memcmp(d->text + h->start, text, n) == 0;
}

/* ------------------------------------------------------------------ text */

static void test_plain_text(void)
{
    struct nr_load_doc *d = NULL;
    if (load(fixture("notes.txt"), NULL, &d) != NR_OK)
        return;
    NR_CHECK_INT(d->type, NR_LOAD_TEXT);
    NR_CHECK(strcmp(d->encoding, "utf-8") == 0);
    NR_CHECK(d->title == NULL && d->n_headings == 0 && d->n_pages == 0 && d->pages == NULL);
    NR_CHECK(strncmp(d->text, "Field notes, spring.\n\nThe river was high on Monday.", 51) == 0);
    /* trailing spaces gone, three blank lines squeezed to one, tab indent kept */
    NR_CHECK(has(d, "dropped to 1.9 m.   Trailing spaces follow.\n\nThree blank lines"));
    NR_CHECK(has(d, "keeps one.\n\tA tab-indented line stays indented."));
    NR_CHECK(d->text[d->len - 1] == '.');
    nr_load_doc_free(d);
    /* lines of spaces are blank lines (regression: they vanished) */
    if (OK(load_str("a\n \n \nb\n\t\nc\n  x\n", NR_LOAD_TEXT, NULL, &d))) {
        NR_CHECK_MSG(strcmp(d->text, "a\n\nb\n\nc\n  x") == 0, "got '%s'", d->text);
        nr_load_doc_free(d);
    }
}

static void test_encodings(void)
{
    struct nr_load_doc *d = NULL;
    struct nr_load_opts o;
    const char *utf = "Gr\xC3\xBC\xC3\x9F"
                      "e aus K\xC3\xB6ln: \xE6\x9D\xB1\xE4\xBA\xAC and "
                      "\xF0\x9F\x99\x82 emoji.\nSecond line.";

    if (OK(load(fixture("latin1.txt"), NULL, &d))) {
        NR_CHECK(strcmp(d->encoding, "windows-1252") == 0);
        NR_CHECK_MSG(strcmp(d->text, "Caf\xC3\xA9 cr\xC3\xA8me \xE2\x80\x9Cquoted\xE2\x80\x9D "
                                     "\xE2\x80\x93 na\xC3\xAFve \xE2\x82\xAC 5\nSecond line "
                                     "\xC2\xBD price.") == 0,
                     "got '%s'", d->text);
        nr_load_doc_free(d);
    }
    if (OK(load(fixture("utf16le.txt"), NULL, &d))) {
        NR_CHECK(strcmp(d->encoding, "utf-16le") == 0);
        NR_CHECK_MSG(strcmp(d->text, utf) == 0, "got '%s'", d->text);
        nr_load_doc_free(d);
    }
    if (OK(load(fixture("utf16be.txt"), NULL, &d))) {
        NR_CHECK(strcmp(d->encoding, "utf-16be") == 0);
        NR_CHECK(strcmp(d->text, utf) == 0);
        nr_load_doc_free(d);
    }
    /* UTF-8 BOM dropped; CRLF and lone CR become LF */
    if (OK(load_mem("\xEF\xBB\xBFone\r\ntwo\rthree\n", 18, NR_LOAD_TEXT, NULL, &d))) {
        NR_CHECK(strcmp(d->text, "one\ntwo\nthree") == 0);
        nr_load_doc_free(d);
    }
    /* a lone surrogate and an odd trailing byte in UTF-16 */
    if (OK(load_mem("\xFF\xFE"
                    "a\0\x00\xD8"
                    "b\0c",
                    9, NR_LOAD_TEXT, NULL, &d))) {
        NR_CHECK_MSG(strcmp(d->text, "a\xEF\xBF\xBD"
                                     "b") == 0,
                     "got '%s'", d->text);
        nr_load_doc_free(d);
    }
    /* no 8-bit fallback: the error names the byte and where it is */
    nr_load_opts_default(&o);
    o.legacy_8bit = 0;
    NR_CHECK_INT(load(fixture("latin1.txt"), &o, &d), NR_EFORMAT);
    NR_CHECK_MSG(strstr(nr_err_msg(), "0xE9 at offset 3") != NULL, "%s", nr_err_msg());
    NR_CHECK_INT(load_mem("\xFF\xFE\0\0h\0\0\0", 8, NR_LOAD_TEXT, NULL, &d), NR_EUNSUPPORTED);
    NR_CHECK(strstr(nr_err_msg(), "UTF-32") != NULL);
}

static void test_pages_from_form_feeds(void)
{
    struct nr_load_doc *d = NULL;
    if (load(fixture("rfc.txt"), NULL, &d) != NR_OK)
        return;
    NR_CHECK_INT(d->n_pages, 4);
    if (d->n_pages == 4) {
        NR_CHECK(d->pages[0] == 0 && d->pages[1] > 0 && d->pages[2] == d->pages[3]);
        NR_CHECK(strncmp(d->text + d->pages[1], "RFC 0000", 8) == 0);
        NR_CHECK(strncmp(d->text + d->pages[3], "RFC 0000", 8) == 0);
        NR_CHECK(memmem(d->text + d->pages[1], d->pages[2] - d->pages[1], "page two", 8));
        NR_CHECK(memmem(d->text + d->pages[3], d->len - d->pages[3], "3. Last page", 12));
    }
    nr_load_doc_free(d);
}

static void test_binary_and_empty(void)
{
    struct nr_load_doc *d = NULL;
    unsigned char high[1000], ctl[400];
    NR_CHECK_INT(load(fixture("empty.txt"), NULL, &d), NR_EFORMAT);
    NR_CHECK(strstr(nr_err_msg(), "empty document") != NULL);
    NR_CHECK_INT(load(fixture("blank.md"), NULL, &d), NR_EFORMAT);
    NR_CHECK(strstr(nr_err_msg(), "empty document") != NULL);
    NR_CHECK_INT(load_str("<html><script>x()</script><!-- c --></html>", NR_LOAD_HTML, NULL, &d),
                 NR_EFORMAT);
    NR_CHECK(strstr(nr_err_msg(), "empty document") != NULL);
    NR_CHECK_INT(load(fixture("nul.txt"), NULL, &d), NR_EFORMAT);
    NR_CHECK(strcmp(nr_err_msg(), "binary file (NUL byte at offset 7)") == 0);
    NR_CHECK_INT(load(fixture("image.png.txt"), NULL, &d), NR_EFORMAT);
    NR_CHECK(strcmp(nr_err_msg(), "binary file (PNG image)") == 0);
    /* no NUL, but mostly bytes >= 0x80 and not UTF-8: not guessed as Windows-1252 */
    for (size_t i = 0; i < sizeof high; i++)
        high[i] = (unsigned char)(0x80 + (i * 7) % 0x7F);
    NR_CHECK_INT(load_mem(high, sizeof high, NR_LOAD_TEXT, NULL, &d), NR_EFORMAT);
    NR_CHECK(strstr(nr_err_msg(), "unknown 8-bit encoding") != NULL);
    /* 10 % control bytes */
    for (size_t i = 0; i < sizeof ctl; i++)
        ctl[i] = i % 10 ? 'a' : 0x01;
    NR_CHECK_INT(load_mem(ctl, sizeof ctl, NR_LOAD_MARKDOWN, NULL, &d), NR_EFORMAT);
    NR_CHECK(strstr(nr_err_msg(), "control bytes") != NULL);
    /* ANSI colours in a log stay text */
    if (OK(load_str("\x1b[31merror\x1b[0m: disk full on /dev/sda1 at 03:00, retrying in 5 s",
                    NR_LOAD_TEXT, NULL, &d))) {
        NR_CHECK(strncmp(d->text, "[31merror[0m: disk full", 23) == 0);
        nr_load_doc_free(d);
    }
}

/* -------------------------------------------------------------- markdown */

static void test_markdown(void)
{
    struct nr_load_doc *d = NULL;
    if (load(fixture("guide.md"), NULL, &d) != NR_OK)
        return;
    NR_CHECK_INT(d->type, NR_LOAD_MARKDOWN);
    NR_CHECK(d->title && strcmp(d->title, "The nanorag guide") == 0);
    NR_CHECK(strncmp(d->text, "Install\n\nnanorag is built with CMake.", 36) == 0);
    NR_CHECK(!has(d, "author:") && !has(d, "title:"));                    /* front matter */
    NR_CHECK(has(d, "You need gcc or clang, and CMake 3.22 or\nnewer.")); /* soft break kept */
    NR_CHECK(has(d, "Check with cmake --version."));
    NR_CHECK(!has(d, "https://") && !has(d, "cmake.org"));                           /* link URL */
    NR_CHECK(!has(d, "badge"));                                                      /* image */
    NR_CHECK(!has(d, "HTML block") && !has(d, "<div"));                              /* raw HTML */
    NR_CHECK(has(d, "libxml2 for HTML\ncmark for Markdown\npoppler-utils for PDF")); /* tight */
    NR_CHECK(has(d, "\n\ncmake -S . -B build\ncmake --build build -j2\n\n")); /* code block */
    NR_CHECK(has(d, "the caf\xC3\xA9 and na\xC3\xAFve users"));
    NR_CHECK(has(d, "| one | two |")); /* pipe table: a paragraph, rows kept */
    NR_CHECK_INT(d->n_headings, 4);
    if (d->n_headings == 4) {
        NR_CHECK(heading_is(d, 0, 1, "Install"));
        NR_CHECK(heading_is(d, 1, 2, "Requirements"));
        NR_CHECK(heading_is(d, 2, 2, "Build"));
        NR_CHECK(heading_is(d, 3, 1, "Setext heading"));
        NR_CHECK(d->headings[0].end == d->headings[3].start);
        NR_CHECK(d->headings[1].end == d->headings[2].start);
        NR_CHECK(d->headings[2].end == d->headings[3].start);
        NR_CHECK(d->headings[3].end == d->len);
    }
    nr_load_doc_free(d);

    /* no front matter title: the first h1 is the title; bad bytes -> Windows-1252 */
    if (OK(load(fixture("invalid_utf8.md"), NULL, &d))) {
        NR_CHECK(d->title && strcmp(d->title, "Heading") == 0);
        NR_CHECK(strcmp(d->encoding, "windows-1252") == 0);
        nr_load_doc_free(d);
    }
    /* an unclosed front matter is text */
    if (OK(load_str("---\nnot: closed\n\nbody text\n", NR_LOAD_MARKDOWN, NULL, &d))) {
        NR_CHECK(has(d, "not: closed") && d->title == NULL);
        nr_load_doc_free(d);
    }
}

/* ------------------------------------------------------------------ html */

static void test_html(void)
{
    static const char *const gone[] = {
        "must not appear", "secret",     "Home", "About us", "Subscribe", "Email",
        "Copyright",       "color: red", "<",    "&amp;",    "&nbsp;",
    };
    struct nr_load_doc *d = NULL;
    if (load(fixture("page.html"), NULL, &d) != NR_OK)
        return;
    NR_CHECK_INT(d->type, NR_LOAD_HTML);
    NR_CHECK(d->title && strcmp(d->title, "Solar panels & batteries") == 0);
    for (size_t i = 0; i < sizeof gone / sizeof gone[0]; i++)
        NR_CHECK_MSG(!has(d, gone[i]), "'%s' is in the text", gone[i]);
    NR_CHECK(strncmp(d->text,
                     "Choosing a battery\n\nLithium iron phosphate cells last > 3000 "
                     "cycles and cost \xE2\x82\xAC"
                     "400\xE2\x80\x93\xE2\x82\xAC"
                     "600.",
                     86) == 0);
    NR_CHECK(has(d, "Size the battery for two days of use.\nThen add 20 %."));
    NR_CHECK(has(d, "Fridge: 1.2 kWh\n\nLights: 0.3 kWh"));
    NR_CHECK(has(d, "Model\nkWh\n\nLFP-5\n5.1"));   /* a row per block, a cell per line */
    NR_CHECK(has(d, "+--[fuse]--+\n|  battery |")); /* pre keeps spaces, drops 1st newline */
    NR_CHECK_INT(d->n_headings, 3);
    if (d->n_headings == 3) {
        NR_CHECK(heading_is(d, 0, 1, "Choosing a battery")); /* article's header is kept */
        NR_CHECK(heading_is(d, 1, 2, "Capacity"));
        NR_CHECK(heading_is(d, 2, 2, "Wiring"));
        NR_CHECK(d->headings[0].start == 0 && d->headings[0].end == d->len);
        NR_CHECK(d->headings[1].end == d->headings[2].start);
    }
    nr_load_doc_free(d);

    if (OK(load(fixture("cp1252.html"), NULL, &d))) { /* <meta charset=windows-1252> */
        NR_CHECK(d->title && strcmp(d->title, "Caf\xC3\xA9") == 0);
        NR_CHECK(strcmp(d->text, "Na\xC3\xAFve \xE2\x80\x9Csmart\xE2\x80\x9D quotes") == 0);
        nr_load_doc_free(d);
    }
    /* no charset, not UTF-8: Windows-1252 */
    if (OK(load_str("<p>caf\xE9 \x93q\x94</p>", NR_LOAD_HTML, NULL, &d))) {
        NR_CHECK_MSG(strcmp(d->text, "caf\xC3\xA9 \xE2\x80\x9Cq\xE2\x80\x9D") == 0, "got '%s'",
                     d->text);
        nr_load_doc_free(d);
    }
    /* Windows-1252's undefined bytes, with and without a declared charset.
     * Regression: libxml2's iconv stopped at them and the rest was lost. */
    if (OK(load_str("<p>before \x81 after</p><p>second</p>", NR_LOAD_HTML, NULL, &d))) {
        NR_CHECK_MSG(strcmp(d->text, "before after\n\nsecond") == 0, "got '%s'", d->text);
        nr_load_doc_free(d);
    }
    if (OK(load_str("<meta charset='latin1'><p>x \x90 y \xE9</p><p>second</p>", NR_LOAD_HTML, NULL,
                    &d))) {
        NR_CHECK_MSG(strcmp(d->text, "x y \xC3\xA9\n\nsecond") == 0, "got '%s'", d->text);
        NR_CHECK(strcmp(d->encoding, "windows-1252") == 0);
        nr_load_doc_free(d);
    }
    /* declared Latin-1, but valid UTF-8: the bytes win */
    if (OK(load_str("<meta http-equiv=\"Content-Type\" content=\"text/html; charset=ISO-8859-1\">"
                    "<p>caf\xC3\xA9</p>",
                    NR_LOAD_HTML, NULL, &d))) {
        NR_CHECK(strcmp(d->text, "caf\xC3\xA9") == 0 && strcmp(d->encoding, "utf-8") == 0);
        nr_load_doc_free(d);
    }
    /* any other charset is libxml2's (iconv) */
    if (OK(load_str("<meta charset=\"shift_jis\"><p>\x93\xFA\x96\x7B\x8C\xEA text</p>",
                    NR_LOAD_HTML, NULL, &d))) {
        NR_CHECK_MSG(strcmp(d->text, "\xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E text") == 0, "got '%s'",
                     d->text);
        NR_CHECK(strcmp(d->encoding, "shift_jis") == 0);
        nr_load_doc_free(d);
    }
    /* UTF-16 with a BOM */
    {
        const char *src = "<html><body><h2>\xC3\x9C"
                          "berschrift</h2><p>Text &lt;1&gt;</p></body></html>";
        unsigned char u16[256];
        size_t n = 2;
        u16[0] = 0xFF;
        u16[1] = 0xFE;
        for (const unsigned char *p = (const unsigned char *)src; *p; p++) {
            unsigned c = *p;
            if (c == 0xC3) { /* the one non-ASCII char: U+00DC */
                c = 0xDC;
                p++;
            }
            u16[n++] = (unsigned char)c;
            u16[n++] = 0;
        }
        NR_CHECK_INT(nr_load_detect(NULL, u16, n), NR_LOAD_HTML);
        if (OK(load_mem(u16, n, NR_LOAD_AUTO, NULL, &d))) {
            NR_CHECK(strcmp(d->encoding, "utf-16le") == 0);
            NR_CHECK(strcmp(d->text, "\xC3\x9C"
                                     "berschrift\n\nText <1>") == 0);
            NR_CHECK(d->n_headings == 1 && d->headings[0].level == 2);
            nr_load_doc_free(d);
        }
    }
    /* truncated documents give what is there */
    if (OK(load(fixture("truncated.html"), NULL, &d))) {
        NR_CHECK(strcmp(d->text, "Truncated page\n\nThis paragraph is cut in the mid") == 0);
        nr_load_doc_free(d);
    }
    if (OK(load(fixture("truncated_tag.html"), NULL, &d))) {
        NR_CHECK(strcmp(d->text, "Still text before the cut") == 0);
        nr_load_doc_free(d);
    }
}

/* ------------------------------------------------------------------- pdf */

/* printf into buf at *k, bounded by cap: a test fixture that outgrows its
 * buffer fails the test instead of overflowing. */
static void appendf(char *buf, size_t cap, size_t *k, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void appendf(char *buf, size_t cap, size_t *k, const char *fmt, ...)
{
    va_list ap;
    int n;
    va_start(ap, fmt);
    n = *k < cap ? vsnprintf(buf + *k, cap - *k, fmt, ap) : -1;
    va_end(ap);
    if (n < 0 || (size_t)n >= cap - *k) {
        nr_test_fail(__FILE__, __LINE__, "test PDF buffer too small");
        return;
    }
    *k += (size_t)n;
}

/* A PDF of n pages (NULL or "" = a page without text), each line of a page
 * separated by '\n' in pages[i]; offsets of the cross-reference table are
 * computed as the file is written. Caller frees. */
static char *make_pdf(const char *const *pages, int n, size_t *len)
{
    char *out = malloc(65536);
    size_t k = 0, offs[64];
    int nobj = 0, font = 3 + 2 * n;
    appendf(out, 65536, &k, "%%PDF-1.4\n");
    offs[nobj++] = k;
    appendf(out, 65536, &k, "1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\nendobj\n");
    offs[nobj++] = k;
    appendf(out, 65536, &k, "2 0 obj\n<< /Type /Pages /Kids [");
    for (int i = 0; i < n; i++)
        appendf(out, 65536, &k, "%d 0 R ", 3 + 2 * i);
    appendf(out, 65536, &k, "] /Count %d >>\nendobj\n", n);
    for (int i = 0; i < n; i++) {
        char stream[4096];
        size_t s = 0;
        const char *p = pages[i] ? pages[i] : "";
        if (*p) {
            appendf(stream, sizeof stream, &s, "BT /F1 14 Tf 72 720 Td 16 TL ");
            while (*p) {
                size_t line = strcspn(p, "\n");
                appendf(stream, sizeof stream, &s, "(%.*s) ' ", (int)line, p);
                p += line + (p[line] == '\n');
            }
            appendf(stream, sizeof stream, &s, "ET");
        }
        offs[nobj++] = k;
        appendf(out, 65536, &k,
                "%d 0 obj\n<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
                "/Resources << /Font << /F1 %d 0 R >> >> /Contents %d 0 R >>\nendobj\n",
                3 + 2 * i, font, 4 + 2 * i);
        offs[nobj++] = k;
        appendf(out, 65536, &k, "%d 0 obj\n<< /Length %zu >>\nstream\n%.*s\nendstream\nendobj\n",
                4 + 2 * i, s, (int)s, stream);
    }
    offs[nobj++] = k;
    appendf(out, 65536, &k,
            "%d 0 obj\n<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>\nendobj\n", font);
    size_t xref = k;
    appendf(out, 65536, &k, "xref\n0 %d\n0000000000 65535 f \n", nobj + 1);
    for (int i = 0; i < nobj; i++)
        appendf(out, 65536, &k, "%010zu 00000 n \n", offs[i]);
    appendf(out, 65536, &k, "trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%zu\n%%%%EOF\n",
            nobj + 1, xref);
    *len = k;
    return out;
}

static int have_pdftotext(void)
{
    struct nr_load_doc *d = NULL;
    int rc = nr_load_file(fixture("two_pages.pdf"), NR_LOAD_AUTO, NULL, &d);
    nr_load_doc_free(d);
    return rc != NR_EUNSUPPORTED;
}

static void test_pdf(void)
{
    struct nr_load_doc *d = NULL;
    const char *pages[3] = {"Introduction\nThe first page.", NULL, "Results\nThe third page."};
    size_t n;
    char *pdf;

    if (!have_pdftotext()) {
        NR_SKIP("pdftotext (poppler-utils) is not installed");
        return;
    }
    if (OK(load(fixture("two_pages.pdf"), NULL, &d))) {
        NR_CHECK_INT(d->type, NR_LOAD_PDF);
        NR_CHECK_INT(d->n_pages, 2);
        NR_CHECK_MSG(strncmp(d->text,
                             "Solar panel maintenance\nClean the panels twice a year.\n"
                             "An efficient inverter matters.\n\nBattery storage",
                             101) == 0,
                     "got '%s'", d->text);
        if (d->n_pages == 2)
            NR_CHECK(strcmp(d->text + d->pages[1],
                            "Battery storage\nPage two talks about batteries.") == 0);
        nr_load_doc_free(d);
    }
    /* built here: three pages, the middle one blank */
    pdf = make_pdf(pages, 3, &n);
    if (OK(load_mem(pdf, n, NR_LOAD_AUTO, NULL, &d))) {
        NR_CHECK_INT(d->n_pages, 3);
        if (d->n_pages == 3) {
            NR_CHECK(d->pages[1] == d->pages[2]); /* page 2 is empty */
            NR_CHECK(strcmp(d->text + d->pages[2], "Results\nThe third page.") == 0);
            NR_CHECK(strncmp(d->text, "Introduction\nThe first page.\n\n", 30) == 0);
        }
        nr_load_doc_free(d);
    }
    /* cut inside the cross-reference table: poppler may rebuild it from the
     * objects (then the text is all there) or give up; either is a clear result */
    if (load_mem(pdf, n - 60, NR_LOAD_PDF, NULL, &d) == NR_OK) {
        NR_CHECK(strstr(d->text, "The third page.") != NULL);
        nr_load_doc_free(d);
    }
    NR_CHECK_INT(load(fixture("truncated.pdf"), NULL, &d), NR_EFORMAT);
    NR_CHECK_MSG(strstr(nr_err_msg(), "unreadable PDF (pdftotext: ") != NULL, "%s", nr_err_msg());
    NR_CHECK_INT(load(fixture("garbage.pdf"), NULL, &d), NR_EFORMAT);
    NR_CHECK_INT(load_str("not a pdf at all", NR_LOAD_PDF, NULL, &d), NR_EFORMAT);
    NR_CHECK(strstr(nr_err_msg(), "not a PDF") != NULL);
    /* a PDF whose pages hold no text */
    {
        const char *blank[2] = {NULL, NULL};
        free(pdf);
        pdf = make_pdf(blank, 2, &n);
        NR_CHECK_INT(load_mem(pdf, n, NR_LOAD_PDF, NULL, &d), NR_EFORMAT);
        NR_CHECK(strstr(nr_err_msg(), "empty document (the PDF has no text layer") != NULL);
    }
    free(pdf);
}

/* The child-process machinery, with shell scripts standing in for pdftotext. */
static void test_pdf_child_process(void)
{
    static const char pdf[] = "%PDF-1.4\nnot really, but the scripts do not care\n";
    struct nr_load_opts o;
    struct nr_load_doc *d = NULL;
    struct timespec t0, t1;
    char *big;

    nr_load_opts_default(&o);
    o.pdftotext = "/nonexistent/dir/pdftotext";
    NR_CHECK_INT(load_mem(pdf, sizeof pdf - 1, NR_LOAD_PDF, &o, &d), NR_EUNSUPPORTED);
    NR_CHECK(strstr(nr_err_msg(), "poppler-utils") != NULL);
    o.pdftotext = "nanorag-no-such-program";
    NR_CHECK_INT(load_mem(pdf, sizeof pdf - 1, NR_LOAD_PDF, &o, &d), NR_EUNSUPPORTED);

    write_script(tmp_path("slow.sh"), "exec sleep 20");
    o.pdftotext = tmp_path("slow.sh");
    o.pdf_timeout_ms = 300;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    NR_CHECK_INT(load_mem(pdf, sizeof pdf - 1, NR_LOAD_PDF, &o, &d), NR_ELIMIT);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    NR_CHECK(strstr(nr_err_msg(), "took longer than 0.3 s") != NULL);
    NR_CHECK((double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9 < 5.0);

    nr_load_opts_default(&o);
    write_script(tmp_path("flood.sh"), "exec yes 'many words'");
    o.pdftotext = tmp_path("flood.sh");
    o.max_text_bytes = 1 << 20;
    NR_CHECK_INT(load_mem(pdf, sizeof pdf - 1, NR_LOAD_PDF, &o, &d), NR_ELIMIT);
    NR_CHECK(strstr(nr_err_msg(), "larger than the 1.0 MiB limit") != NULL);

    nr_load_opts_default(&o);
    write_script(tmp_path("fail.sh"), "echo 'Syntax Warning: noise' >&2\n"
                                      "echo 'Syntax Error: bad /x/y' >&2\nexit 1");
    o.pdftotext = tmp_path("fail.sh");
    NR_CHECK_INT(load_mem(pdf, sizeof pdf - 1, NR_LOAD_PDF, &o, &d), NR_EFORMAT);
    NR_CHECK_MSG(strcmp(nr_err_msg(), "pdf: unreadable PDF (pdftotext: Syntax Error: bad /x/y)") ==
                     0,
                 "%s", nr_err_msg());

    write_script(tmp_path("crash.sh"), "kill -SEGV $$");
    o.pdftotext = tmp_path("crash.sh");
    NR_CHECK_INT(load_mem(pdf, sizeof pdf - 1, NR_LOAD_PDF, &o, &d), NR_EFORMAT);
    NR_CHECK(strstr(nr_err_msg(), "killed by signal 11") != NULL);

    /* a child that exits without reading 8 MB of input: no SIGPIPE for us */
    big = malloc(8u << 20);
    memset(big, 'x', 8u << 20);
    memcpy(big, "%PDF-1.4\n", 9);
    write_script(tmp_path("noread.sh"), "printf 'one\\fpage two\\f'");
    o.pdftotext = tmp_path("noread.sh");
    if (OK(load_mem(big, 8u << 20, NR_LOAD_PDF, &o, &d))) {
        NR_CHECK(strcmp(d->text, "one\n\npage two") == 0 && d->n_pages == 2);
        nr_load_doc_free(d);
    }
    /* a child that echoes all 8 MB as it reads them: both pipes busy at once */
    write_script(tmp_path("echo.sh"), "exec cat");
    o.pdftotext = tmp_path("echo.sh");
    o.max_text_bytes = 16u << 20;
    if (OK(load_mem(big, 8u << 20, NR_LOAD_PDF, &o, &d))) {
        NR_CHECK(d->len == (8u << 20) && memcmp(d->text, big, d->len) == 0);
        nr_load_doc_free(d);
    }
    free(big);
}

/* --------------------------------------------------------------- general */

static void test_detect(void)
{
    NR_CHECK_INT(nr_load_detect("notes.md", "hello", 5), NR_LOAD_MARKDOWN);
    NR_CHECK_INT(nr_load_detect("dir.v2/README.MARKDOWN", "x", 1), NR_LOAD_MARKDOWN);
    NR_CHECK_INT(nr_load_detect("a.txt", "%PDF-1.7 ...", 12), NR_LOAD_PDF);
    NR_CHECK_INT(nr_load_detect(NULL, "junk\n%PDF-1.5", 14), NR_LOAD_PDF);
    NR_CHECK_INT(nr_load_detect("x.HTM", "plain", 5), NR_LOAD_HTML);
    NR_CHECK_INT(nr_load_detect("report.pdf", "garbage", 7), NR_LOAD_PDF);
    NR_CHECK_INT(nr_load_detect(NULL, "  \n<!DOCTYPE html><p>", 21), NR_LOAD_HTML);
    NR_CHECK_INT(nr_load_detect("x.data", "<HTML>", 6), NR_LOAD_HTML);
    NR_CHECK_INT(nr_load_detect(NULL, "<?xml version=\"1.0\"?>\n<html>", 28), NR_LOAD_HTML);
    NR_CHECK_INT(nr_load_detect(NULL, "\xEF\xBB\xBF<body>", 9), NR_LOAD_HTML);
    NR_CHECK_INT(nr_load_detect("a.txt", "<html>", 6), NR_LOAD_TEXT); /* the name says text */
    NR_CHECK_INT(nr_load_detect(NULL, "# Title", 7), NR_LOAD_TEXT);
    NR_CHECK_INT(nr_load_detect(NULL, NULL, 0), NR_LOAD_TEXT);
    NR_CHECK_INT(nr_load_type_from_media("text/html; charset=utf-8"), NR_LOAD_HTML);
    NR_CHECK_INT(nr_load_type_from_media(" Application/PDF"), NR_LOAD_PDF);
    NR_CHECK_INT(nr_load_type_from_media("text/markdown"), NR_LOAD_MARKDOWN);
    NR_CHECK_INT(nr_load_type_from_media("text/plain;charset=latin1"), NR_LOAD_TEXT);
    NR_CHECK_INT(nr_load_type_from_media("application/octet-stream"), NR_LOAD_AUTO);
    NR_CHECK_INT(nr_load_type_from_media("text/htmlx"), NR_LOAD_AUTO);
    NR_CHECK(strcmp(nr_load_type_media(NR_LOAD_PDF), "application/pdf") == 0);
}

static void test_files_and_limits(void)
{
    struct nr_load_doc *d = NULL;
    struct nr_load_opts o;
    char secret[128];
    int fd;

    /* messages never carry the path */
    snprintf(secret, sizeof secret, "%s/secret-dir-xyz/missing.txt", g_tmp);
    NR_CHECK_INT(nr_load_file(secret, NR_LOAD_AUTO, NULL, &d), NR_ENOTFOUND);
    NR_CHECK(strstr(nr_err_msg(), "secret") == NULL && strstr(nr_err_msg(), "missing") == NULL);
    NR_CHECK_INT(nr_load_file(g_tmp, NR_LOAD_AUTO, NULL, &d), NR_EINVAL); /* a directory */
    NR_CHECK(strcmp(nr_err_msg(), "not a regular file") == 0);
    if (mkfifo(tmp_path("fifo"), 0600) == 0) { /* must not hang */
        NR_CHECK_INT(nr_load_file(tmp_path("fifo"), NR_LOAD_AUTO, NULL, &d), NR_EINVAL);
        unlink(tmp_path("fifo"));
    }

    /* 100 MB: refused before reading under the default 64 MiB cap */
    fd = open(tmp_path("huge.txt"), O_CREAT | O_TRUNC | O_WRONLY, 0600);
    NR_CHECK(fd >= 0 && ftruncate(fd, 100000000) == 0);
    close(fd);
    NR_CHECK_INT(load(tmp_path("huge.txt"), NULL, &d), NR_ELIMIT);
    NR_CHECK_MSG(strcmp(nr_err_msg(), "file is 95.4 MiB, over the 64.0 MiB limit") == 0, "%s",
                 nr_err_msg());
    /* with the cap raised it is read, and found to be zeros */
    nr_load_opts_default(&o);
    o.max_file_bytes = 128u << 20;
    NR_CHECK_INT(load(tmp_path("huge.txt"), &o, &d), NR_EFORMAT);
    NR_CHECK(strcmp(nr_err_msg(), "binary file (NUL byte at offset 0)") == 0);
    unlink(tmp_path("huge.txt"));

    /* 100 MB of real text: the extracted-text cap stops it cleanly */
    {
        size_t n = 100000000;
        char *t = malloc(n);
        for (size_t i = 0; i < n; i++)
            t[i] = "The quick brown fox jumps over the lazy dog.\n"[i % 45];
        NR_CHECK_INT(load_mem(t, n, NR_LOAD_TEXT, &o, &d), NR_ELIMIT);
        NR_CHECK_MSG(strcmp(nr_err_msg(), "extracted text is larger than the 64.0 MiB limit") == 0,
                     "%s", nr_err_msg());
        o.max_text_bytes = 128u << 20;
        if (OK(load_mem(t, n, NR_LOAD_TEXT, &o, &d))) {
            NR_CHECK(d->len == n - 1); /* the final newline is trimmed */
            nr_load_doc_free(d);
        }
        free(t);
    }
    nr_load_opts_default(&o);
    o.max_file_bytes = 10;
    NR_CHECK_INT(load_mem("eleven byte", 11, NR_LOAD_TEXT, &o, &d), NR_ELIMIT);
    nr_load_opts_default(&o);
    o.max_text_bytes = 8;
    NR_CHECK_INT(load_mem("<p>nine bytes</p>", 17, NR_LOAD_HTML, &o, &d), NR_ELIMIT);
    NR_CHECK_INT(nr_load_mem("x", 1, (enum nr_load_type)99, NULL, NULL, &d), NR_EINVAL);
}

/* Deep nesting and pathological markup: no crash, a bounded result. */
static void test_pathological(void)
{
    struct nr_load_doc *d = NULL;
    size_t n = 0, cap = 4u << 20;
    char *s = malloc(cap);
    int rc;

    for (int i = 0; i < 100000; i++, n += 5)
        memcpy(s + n, "<div>", 5);
    memcpy(s + n, "deep", 4);
    n += 4;
    rc = load_mem(s, n, NR_LOAD_HTML, NULL, &d); /* libxml2 stops at depth 256 */
    NR_CHECK(rc == NR_OK || rc == NR_EFORMAT);
    nr_load_doc_free(d);

    n = 0;
    for (int i = 0; i < 50000; i++, n += 2)
        memcpy(s + n, "> ", 2);
    memcpy(s + n, "quoted\n", 7);
    n += 7;
    for (int i = 0; i < 20000; i++, n += 3)
        memcpy(s + n, "- [", 3);
    for (int i = 0; i < 100000; i++)
        s[n++] = i % 2 ? '*' : '_';
    if (OK(load_mem(s, n, NR_LOAD_MARKDOWN, NULL, &d))) {
        NR_CHECK(has(d, "quoted"));
        nr_load_doc_free(d);
    }

    /* headings only, many of them */
    n = 0;
    for (int i = 0; i < 20000; i++)
        appendf(s, cap, &n, "%.*s H%d\n", 1 + i % 6, "######", i);
    if (OK(load_mem(s, n, NR_LOAD_MARKDOWN, NULL, &d))) {
        NR_CHECK_INT(d->n_headings, 20000);
        nr_load_doc_free(d);
    }
    free(s);
}

/* Random bytes and random markup soup through every loader: a document that
 * keeps the contract, or an error with a message. Never a crash. */
static void test_junk(void)
{
    static const char soup[] = "<>/=\"'&;#!-*_`[]()\n \t\r\f\xC3\xA9\xE2\x80\x8B"
                               "abcdefp h1 div "
                               "script pre &amp; &#x41; ```\n# > 1. | --- \x01\xFF";
    uint64_t x = 88172645463325252ull;
    unsigned char buf[3000];
    int ok = 0, err = 0;
    for (int it = 0; it < 600; it++) {
        size_t n = 0;
        x ^= x << 13, x ^= x >> 7, x ^= x << 17;
        n = (size_t)(x % sizeof buf);
        for (size_t i = 0; i < n; i++) {
            x ^= x << 13, x ^= x >> 7, x ^= x << 17;
            buf[i] = it % 3 == 0 ? (unsigned char)x : (unsigned char)soup[x % (sizeof soup - 1)];
        }
        for (int t = NR_LOAD_AUTO; t <= NR_LOAD_HTML; t++) {
            struct nr_load_doc *d = NULL;
            if (load_mem(buf, n, (enum nr_load_type)t, NULL, &d) == NR_OK) {
                ok++;
                nr_load_doc_free(d);
            } else {
                err++;
            }
        }
    }
    printf("  %d loaded, %d refused\n", ok, err);
    NR_CHECK(ok > 100 && err > 100);
}

/* Each failing allocation is a clean NR_ENOMEM with nothing of ours leaked. */
static void test_allocation_failures(void)
{
    static const char *const files[] = {"guide.md", "page.html", "rfc.txt", "latin1.txt",
                                        "utf16le.txt"};
    for (size_t f = 0; f < sizeof files / sizeof files[0]; f++) {
        int n, ok = 0;
        for (n = 1; n < 500 && !ok; n++) {
            struct nr_load_doc *d = NULL;
            size_t held = nr_mem_held();
            int rc;
            nr_mem_fail_after(n);
            rc = nr_load_file(fixture(files[f]), NR_LOAD_AUTO, NULL, &d);
            nr_mem_fail_after(0);
            if (rc == NR_OK) {
                ok = 1;
                NR_CHECK_INT(nr_load_doc_check(d), NR_OK);
                nr_load_doc_free(d);
            } else {
                NR_CHECK_MSG(rc == NR_ENOMEM && d == NULL, "%s, failure %d: %d %s", files[f], n, rc,
                             nr_err_msg());
            }
            NR_CHECK_MSG(nr_mem_held() == held, "%s: leak after failure %d", files[f], n);
        }
        NR_CHECK_MSG(ok && n > 3, "%s: loaded after %d failure points", files[f], n);
    }
}

/* A batch with broken files in it: each file gets its own result. */
static void test_batch(void)
{
    static const struct {
        const char *file;
        int rc;
    } batch[] = {
        {"guide.md", NR_OK},           {"empty.txt", NR_EFORMAT},  {"page.html", NR_OK},
        {"nul.txt", NR_EFORMAT},       {"truncated.html", NR_OK},  {"image.png.txt", NR_EFORMAT},
        {"blank.md", NR_EFORMAT},      {"utf16be.txt", NR_OK},     {"cp1252.html", NR_OK},
        {"truncated_tag.html", NR_OK}, {"invalid_utf8.md", NR_OK}, {"notes.txt", NR_OK},
    };
    for (size_t i = 0; i < sizeof batch / sizeof batch[0]; i++) {
        struct nr_load_doc *d = NULL;
        int rc = load(fixture(batch[i].file), NULL, &d);
        NR_CHECK_MSG(rc == batch[i].rc, "%s: %d (%s)", batch[i].file, rc, nr_err_msg());
        nr_load_doc_free(d);
    }
}

int main(void)
{
    snprintf(g_tmp, sizeof g_tmp, "/tmp/nr_test_load_XXXXXX");
    if (!mkdtemp(g_tmp)) {
        printf("cannot create a temporary directory\n");
        return 1;
    }
    NR_RUN(test_plain_text);
    NR_RUN(test_encodings);
    NR_RUN(test_pages_from_form_feeds);
    NR_RUN(test_binary_and_empty);
    NR_RUN(test_markdown);
    NR_RUN(test_html);
    NR_RUN(test_pdf);
    NR_RUN(test_pdf_child_process);
    NR_RUN(test_detect);
    NR_RUN(test_files_and_limits);
    NR_RUN(test_pathological);
    NR_RUN(test_junk);
    NR_RUN(test_allocation_failures);
    NR_RUN(test_batch);
    {
        static const char *const made[] = {"slow.sh",  "flood.sh",  "fail.sh",
                                           "crash.sh", "noread.sh", "echo.sh"};
        for (size_t i = 0; i < sizeof made / sizeof made[0]; i++)
            unlink(tmp_path(made[i]));
        rmdir(g_tmp);
    }
    return nr_test_summary();
}
