/*
 * nr_chunk on real text with the real all-MiniLM-L6-v2 tokenizer
 * (models/all-MiniLM-L6-v2/vocab.txt; missing -> the tests fail, as in
 * test_wordpiece).
 *
 * Every chunk list made here goes through nr_chunk_list_check, which re-
 * tokenizes each chunk and the whole text: offsets inside the text and on
 * character boundaries, ordered, trimmed, n_tokens exact and <= max_tokens,
 * <= max_bytes, one page, no heading edge inside, heading path exact,
 * overlap <= overlap_tokens (+2 after a cut inside a word), no token-bearing
 * text left out. On top of that the tests check what the contract promises in
 * words: where cuts fall (paragraph, sentence, word, token), overlap size,
 * page numbers of a paged text, heading paths of the Markdown fixture,
 * clean errors for bad input and for each failed allocation.
 */
#define _GNU_SOURCE /* memmem */
#include "nr_test.h"

#include "nr_chunk.h"
#include "nr_err.h"
#include "nr_str.h"
#include "nr_load.h"
#include "nr_mem.h"
#include "nr_wordpiece.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static struct nr_wordpiece *g_wp;

/* xorshift: reproducible texts */
static uint64_t g_rng = 0x9E3779B97F4A7C15ull;
static uint32_t rnd(void)
{
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return (uint32_t)(g_rng >> 16);
}

struct buf {
    char *p;
    size_t n, cap;
};

static void put(struct buf *b, const char *s, size_t n)
{
    if (b->n + n + 1 > b->cap) {
        b->cap = (b->n + n + 1) * 2;
        b->p = realloc(b->p, b->cap);
    }
    memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = '\0';
}

static void puts_(struct buf *b, const char *s)
{
    put(b, s, strlen(s));
}

static struct nr_load_doc text_doc(const char *s, size_t n)
{
    struct nr_load_doc d;
    memset(&d, 0, sizeof d);
    d.text = (char *)s;
    d.len = n;
    return d;
}

static struct nr_chunk_opts opts(int target, int max, int overlap, size_t max_bytes)
{
    struct nr_chunk_opts o;
    o.target_tokens = target;
    o.max_tokens = max;
    o.overlap_tokens = overlap;
    o.max_bytes = max_bytes;
    return o;
}

/* Chunk and check; returns the list (caller frees) or NULL after a failure. */
static struct nr_chunk_list *chunk_checked(const struct nr_load_doc *d,
                                           const struct nr_chunk_opts *o, const char *what)
{
    struct nr_chunk_list *l = NULL;
    int rc = nr_chunk_split(g_wp, d, o, &l);
    NR_CHECK_MSG(rc == NR_OK, "%s: chunk failed: %s", what, nr_err_msg());
    if (rc != NR_OK)
        return NULL;
    rc = nr_chunk_list_check(g_wp, d, o, l);
    NR_CHECK_MSG(rc == NR_OK, "%s: %s", what, nr_err_msg());
    if (rc != NR_OK) {
        int bad = -1;
        sscanf(nr_err_msg(), "chunk %d", &bad);
        for (int i = bad - 2; i <= bad + 1; i++)
            if (i >= 0 && i < l->n)
                printf("    chunk %d [%zu, %zu) %d tokens: \"%.*s\"\n", i, l->chunks[i].start,
                       l->chunks[i].end, l->chunks[i].n_tokens,
                       (int)(l->chunks[i].end - l->chunks[i].start > 160
                                 ? 160
                                 : l->chunks[i].end - l->chunks[i].start),
                       d->text + l->chunks[i].start);
        nr_chunk_list_free(l);
        return NULL;
    }
    return l;
}

static int count(const char *s, size_t n)
{
    int32_t ids[2];
    int ni, total = 0;
    nr_wordpiece_encode(g_wp, s, n, ids, NULL, NULL, 2, &ni, &total);
    return total;
}

/* ------------------------------------------------------------ generators */

static const char *const g_words[] = {
    "the",          "river",
    "was",          "high",
    "on",           "monday",
    "we",           "measured",
    "bridge",       "gauge",
    "embedding",    "retrieval",
    "tokenizer",    "internationalization",
    "unbelievable", "Kubernetes",
    "naïve",        "café",
    "straße",       "ﬁle",
    "x86-64",       "e.g.",
    "3.14",         "don't",
    "(see",         "above)",
    "\"quoted\"",   "well-known",
    "CMake",
};

static void gen_english(struct buf *b, int words)
{
    for (int i = 0; i < words; i++) {
        uint32_t r = rnd();
        puts_(b, g_words[r % (sizeof g_words / sizeof g_words[0])]);
        r >>= 8;
        if (r % 9 == 0)
            puts_(b, r % 2 ? ". " : "! ");
        else if (r % 23 == 1)
            puts_(b, "\n");
        else if (r % 61 == 2)
            puts_(b, ".\n\n");
        else
            puts_(b, " ");
    }
}

static void gen_cjk(struct buf *b, int chars)
{
    static const char *const cjk[] = {"東", "京", "大", "学", "中", "文", "日", "本", "語"};
    for (int i = 0; i < chars; i++) {
        uint32_t r = rnd();
        puts_(b, cjk[r % 9]);
        if (r % 17 == 0)
            puts_(b, "。");
        else if (r % 41 == 1)
            puts_(b, "！\n\n");
    }
}

/* Text with every kind of awkward content: giant words, runs without
 * whitespace, token-less characters, Unicode spaces, special-token
 * literals, combining marks, emoji, controls. */
static void gen_mixed(struct buf *b, size_t bytes)
{
    while (b->n < bytes) {
        uint32_t r = rnd() % 20;
        switch (r) {
        case 0: {
            int k = 1 + (int)(rnd() % 3000); /* one giant word */
            for (int i = 0; i < k; i++)
                put(b, "abcdefghij" + rnd() % 10, 1);
            break;
        }
        case 1: {
            int k = 1 + (int)(rnd() % 400); /* punctuation-joined, no whitespace */
            for (int i = 0; i < k; i++)
                puts_(b, rnd() % 2 ? "foo." : "bar-baz/");
            break;
        }
        case 2:
            for (int i = (int)(rnd() % 300); i > 0; i--)
                puts_(b, "\xE2\x80\x8B"); /* U+200B: no token */
            break;
        case 3:
            puts_(b, rnd() % 2 ? "\xC2\xA0" : "\xE3\x80\x80"); /* NBSP, ideographic space */
            break;
        case 4:
            puts_(b, rnd() % 2 ? "[CLS]" : "x[SEP]y");
            break;
        case 5:
            puts_(b, "e\xCC\x81\xCC\x81 a\xCC\x88"); /* combining marks */
            break;
        case 6:
            puts_(b, "\xF0\x9F\x99\x82\xF0\x9F\x8E\x89");
            break;
        case 7:
            puts_(b, rnd() % 2 ? "\x01\x02" : "\r\n");
            break;
        case 8:
            gen_cjk(b, 1 + (int)(rnd() % 200));
            break;
        case 9:
            puts_(b, "\n\n");
            break;
        case 10:
            puts_(b, "   \t ");
            break;
        default:
            gen_english(b, 1 + (int)(rnd() % 120));
            break;
        }
    }
}

/* Random structure at character boundaries: pages, nested headings. */
struct structure {
    size_t pages[8];
    struct nr_load_heading h[16];
    char names[16][32];
};

static size_t snap(const char *s, size_t n, size_t off)
{
    if (off > n)
        off = n;
    while (off > 0 && off < n && ((unsigned char)s[off] & 0xC0) == 0x80)
        off--;
    return off;
}

static int cmp_sz(const void *a, const void *b)
{
    size_t x = *(const size_t *)a, y = *(const size_t *)b;
    return x < y ? -1 : x > y;
}

static void add_structure(struct nr_load_doc *d, struct structure *st)
{
    int np = (int)(rnd() % 5), nh = (int)(rnd() % 12), k = 0;
    size_t starts[16];
    int levels[16];
    if (d->len == 0)
        return;
    st->pages[0] = 0;
    for (int i = 1; i < np; i++)
        st->pages[i] = snap(d->text, d->len, rnd() % (d->len + 1));
    qsort(st->pages, (size_t)(np > 0 ? np : 0), sizeof st->pages[0], cmp_sz);
    d->pages = np ? st->pages : NULL;
    d->n_pages = np;
    for (int i = 0; i < nh; i++)
        starts[i] = snap(d->text, d->len, rnd() % d->len);
    qsort(starts, (size_t)nh, sizeof starts[0], cmp_sz);
    for (int i = 0; i < nh; i++) {
        if (i > 0 && starts[i] == starts[i - 1])
            continue;
        levels[k] = 1 + (int)(rnd() % 3);
        starts[k++] = starts[i];
    }
    for (int i = 0; i < k; i++) {
        st->h[i].level = levels[i];
        st->h[i].start = starts[i];
        st->h[i].end = d->len;
        for (int j = i + 1; j < k; j++)
            if (levels[j] <= levels[i]) {
                st->h[i].end = starts[j];
                break;
            }
        snprintf(st->names[i], sizeof st->names[i], "Section %d.%d", levels[i], i);
        st->h[i].text = st->names[i];
    }
    d->headings = k ? st->h : NULL;
    d->n_headings = k;
}

/* ----------------------------------------------------------------- tests */

static void test_random_text_invariants(void)
{
    static const struct {
        int target, max, overlap;
        size_t max_bytes;
    } cfg[] = {
        {200, 256, 40, 16384}, {32, 40, 8, 1024}, {100, 128, 0, 2048},
        {60, 256, 30, 4096},   {8, 32, 4, 1024},  {512, 512, 100, 65536},
    };
    /* NR_CHUNK_STRESS=N runs N texts instead of 120 (seeded by N too). */
    const char *env = getenv("NR_CHUNK_STRESS");
    int iters = 120, runs = 0;
    if (env && nr_parse_int(env, 1, 1000000, "NR_CHUNK_STRESS", &iters))
        iters = 120;
    if (env)
        g_rng ^= (uint64_t)iters * 0x2545F4914F6CDD1Dull;
    for (int it = 0; it < iters; it++) {
        struct buf b = {0};
        struct structure st;
        struct nr_load_doc d;
        struct nr_chunk_opts o;
        struct nr_chunk_list *l;
        int c = it % (int)(sizeof cfg / sizeof cfg[0]);
        char what[64];
        uint32_t kind = rnd() % 3;
        size_t size = 200 + rnd() % (it % 10 == 0 ? 60000 : 6000);
        if (kind == 0) {
            while (b.n < size)
                gen_english(&b, 50);
        } else if (kind == 1) {
            gen_cjk(&b, (int)size / 3);
        } else {
            gen_mixed(&b, size);
        }
        d = text_doc(b.p, b.n);
        if (it % 2)
            add_structure(&d, &st);
        o = opts(cfg[c].target, cfg[c].max, cfg[c].overlap, cfg[c].max_bytes);
        snprintf(what, sizeof what, "run %d (kind %u, cfg %d, %zu bytes)", it, kind, c, b.n);
        l = chunk_checked(&d, &o, what);
        if (getenv("DUMP_RUN") && strtol(getenv("DUMP_RUN"), NULL, 10) == it) {
            FILE *f = fopen("/tmp/ing/run.txt", "wb");
            fwrite(b.p, 1, b.n, f);
            fclose(f);
        }
        if (l) {
            runs++;
            NR_CHECK_MSG(l->n > 0 || count(b.p, b.n) == 2, "%s: no chunks", what);
        }
        nr_chunk_list_free(l);
        free(b.p);
    }
    NR_CHECK_INT(runs, iters);
}

/* Paragraphs of ~40 tokens: every cut falls on a paragraph break. */
static void test_cuts_at_paragraphs(void)
{
    struct buf b = {0};
    struct nr_chunk_opts o = opts(200, 256, 0, 16384);
    struct nr_chunk_list *l;
    struct nr_load_doc d;
    for (int p = 0; p < 60; p++) {
        char head[32];
        snprintf(head, sizeof head, "Paragraph %d says", p);
        puts_(&b, head);
        gen_english(&b, 30);
        puts_(&b, "end\n\n");
    }
    /* the generator sometimes emits its own blank lines; that's fine */
    d = text_doc(b.p, b.n);
    l = chunk_checked(&d, &o, "paragraphs");
    if (l) {
        NR_CHECK(l->n >= 6);
        for (int i = 0; i + 1 < l->n; i++) {
            const struct nr_chunk *c = &l->chunks[i];
            NR_CHECK_MSG(c->end + 2 <= b.n && memcmp(b.p + c->end, "\n\n", 2) == 0,
                         "chunk %d ends mid-paragraph: ...%.20s|%.20s", i, b.p + c->end - 20,
                         b.p + c->end);
            NR_CHECK_MSG(c->n_tokens >= 100 && c->n_tokens <= 200,
                         "chunk %d has %d tokens (target 200, at least half)", i, c->n_tokens);
        }
    }
    nr_chunk_list_free(l);
    free(b.p);
}

/* One paragraph of sentences: cuts after . ! ? */
static void test_cuts_at_sentences(void)
{
    struct buf b = {0};
    struct nr_chunk_opts o = opts(100, 128, 30, 16384);
    struct nr_chunk_list *l;
    struct nr_load_doc d;
    for (int s = 0; s < 120; s++)
        puts_(&b, s % 3 ? "The gauge at the bridge read two metres on monday morning. "
                        : "Was it higher than last year? ");
    d = text_doc(b.p, b.n);
    l = chunk_checked(&d, &o, "sentences");
    if (l) {
        NR_CHECK(l->n >= 5);
        for (int i = 0; i + 1 < l->n; i++) {
            char last = b.p[l->chunks[i].end - 1];
            NR_CHECK_MSG(last == '.' || last == '?', "chunk %d ends with '%c'", i, last);
        }
        /* the overlap snaps to a sentence start */
        for (int i = 1; i < l->n; i++) {
            const struct nr_chunk *c = &l->chunks[i];
            NR_CHECK_MSG(c->start < l->chunks[i - 1].end, "chunk %d does not overlap", i);
            NR_CHECK_MSG(b.p[c->start] == 'T' || b.p[c->start] == 'W',
                         "chunk %d starts mid-sentence: %.20s", i, b.p + c->start);
        }
    }
    nr_chunk_list_free(l);
    free(b.p);
}

/* No punctuation, no newline: cuts at whitespace; overlap within bounds. */
static void test_cuts_at_words_and_overlap(void)
{
    struct buf b = {0};
    struct nr_chunk_opts o = opts(64, 80, 16, 16384);
    struct nr_chunk_list *l;
    struct nr_load_doc d;
    for (int w = 0; w < 3000; w++)
        puts_(&b, w % 7 ? "word " : "internationalization ");
    d = text_doc(b.p, b.n);
    l = chunk_checked(&d, &o, "words");
    if (l) {
        for (int i = 0; i < l->n; i++) {
            const struct nr_chunk *c = &l->chunks[i];
            NR_CHECK(c->end == b.n || b.p[c->end] == ' ');
            NR_CHECK(c->start == 0 || b.p[c->start - 1] == ' ');
            if (i + 1 < l->n)
                NR_CHECK_MSG(c->n_tokens >= 31 && c->n_tokens <= 64, "chunk %d: %d tokens", i,
                             c->n_tokens);
            if (i > 0) {
                const struct nr_chunk *p = &l->chunks[i - 1];
                int ov = p->end > c->start ? count(b.p + c->start, p->end - c->start) - 2 : 0;
                /* word starts every 1-5 tokens: 16 back, snapped forward */
                NR_CHECK_MSG(ov >= 12 && ov <= 16, "overlap %d tokens before chunk %d", ov, i);
            }
        }
    }
    nr_chunk_list_free(l);
    free(b.p);
}

/* A run with no whitespace at all: cut at word starts (CJK characters,
 * punctuation) and, in a giant word, anywhere. */
static void test_cuts_without_whitespace(void)
{
    struct buf b = {0};
    struct nr_chunk_opts o = opts(50, 64, 10, 1024);
    struct nr_chunk_list *l;
    struct nr_load_doc d;

    gen_cjk(&b, 3000);
    for (int i = 0; i < 500; i++)
        puts_(&b, "path/to/file.c:");
    for (int i = 0; i < 40000; i++) /* 40 KB single word: one [UNK] in BERT */
        put(&b, "q", 1);
    for (int i = 0; i < 300; i++)
        puts_(&b, "xyzzyplugh"); /* 3000 chars, ## pieces */
    d = text_doc(b.p, b.n);
    l = chunk_checked(&d, &o, "no whitespace");
    if (l) {
        NR_CHECK(l->n > 20);
        for (int i = 0; i < l->n; i++)
            NR_CHECK(l->chunks[i].end - l->chunks[i].start <= 1024);
    }
    nr_chunk_list_free(l);
    free(b.p);
}

/* A special-token literal cut by a tokenizer window inside a whitespace-free
 * run that one chunk holds whole (its edges are whitespace, so its count is
 * taken from the stream): "[SEP]" is one token in the text but "[", "sep",
 * "]" in the stream. Regression: the chunk claimed the stream's count. */
static void test_special_token_across_window(void)
{
    for (size_t at = 8190; at <= 8202; at++) {
        struct buf b = {0};
        struct nr_load_doc d;
        char what[32];
        puts_(&b, "start ");
        while (b.n < at) /* 150-letter words: one [UNK] each */
            put(&b, b.n % 151 == 150 ? "." : "a", 1);
        puts_(&b, "[SEP]");
        while (b.n < 12000)
            put(&b, b.n % 151 == 150 ? "." : "a", 1);
        puts_(&b, " end");
        d = text_doc(b.p, b.n);
        snprintf(what, sizeof what, "[SEP] at %zu", at);
        nr_chunk_list_free(chunk_checked(&d, NULL, what));
        free(b.p);
    }
}

/* Loaded documents: structure drives pages and heading paths. */
static void test_fixture_docs(void)
{
    static const char *const files[] = {"guide.md",       "page.html",   "notes.txt",
                                        "rfc.txt",        "latin1.txt",  "utf16le.txt",
                                        "truncated.html", "cp1252.html", "invalid_utf8.md"};
    for (size_t f = 0; f < sizeof files / sizeof files[0]; f++) {
        char rel[128];
        struct nr_load_doc *doc = NULL;
        snprintf(rel, sizeof rel, "tests/fixtures/docs/%s", files[f]);
        if (nr_load_file(nr_test_src_path(rel), NR_LOAD_AUTO, NULL, &doc) != NR_OK) {
            NR_CHECK_MSG(0, "%s: %s", files[f], nr_err_msg());
            continue;
        }
        for (int target = 16; target <= 256; target *= 4) {
            struct nr_chunk_opts o = opts(target, target < 32 ? 32 : target, target / 4, 1024);
            nr_chunk_list_free(chunk_checked(doc, &o, files[f]));
        }
        nr_chunk_list_free(chunk_checked(doc, NULL, files[f]));
        nr_load_doc_free(doc);
    }
}

static void test_markdown_heading_paths(void)
{
    struct nr_load_doc *doc = NULL;
    struct nr_chunk_list *l;
    int seen_req = 0, seen_build = 0, seen_setext = 0;
    if (nr_load_file(nr_test_src_path("tests/fixtures/docs/guide.md"), NR_LOAD_AUTO, NULL, &doc)) {
        NR_CHECK_MSG(0, "%s", nr_err_msg());
        return;
    }
    l = chunk_checked(doc, NULL, "guide.md");
    if (l) {
        NR_CHECK_INT(l->n, 4); /* one per section: chunks never cross a heading */
        for (int i = 0; i < l->n; i++) {
            const struct nr_chunk *c = &l->chunks[i];
            const char *t = doc->text + c->start;
            NR_CHECK_INT(c->page, 0);
            if (strcmp(c->heading, "Install > Requirements") == 0) {
                seen_req = 1;
                NR_CHECK(strncmp(t, "Requirements", 12) == 0);
                NR_CHECK(memmem(t, c->end - c->start, "poppler-utils for PDF", 21) != NULL);
            }
            if (strcmp(c->heading, "Install > Build") == 0) {
                seen_build = 1;
                NR_CHECK(memmem(t, c->end - c->start, "cmake --build build -j2", 23) != NULL);
            }
            if (strcmp(c->heading, "Setext heading") == 0)
                seen_setext = 1;
        }
        NR_CHECK_MSG(strcmp(l->chunks[0].heading, "Install") == 0, "first path '%s'",
                     l->chunks[0].heading);
    }
    NR_CHECK(seen_req && seen_build && seen_setext);
    nr_chunk_list_free(l);
    nr_load_doc_free(doc);
}

static void test_pages(void)
{
    struct nr_load_doc *doc = NULL;
    struct nr_chunk_list *l;
    if (nr_load_file(nr_test_src_path("tests/fixtures/docs/rfc.txt"), NR_LOAD_AUTO, NULL, &doc)) {
        NR_CHECK_MSG(0, "%s", nr_err_msg());
        return;
    }
    l = chunk_checked(doc, NULL, "rfc.txt");
    if (l) {
        /* pages 1, 2 and 4 have text, page 3 is empty */
        NR_CHECK_INT(l->n, 3);
        if (l->n == 3) {
            NR_CHECK_INT(l->chunks[0].page, 1);
            NR_CHECK_INT(l->chunks[1].page, 2);
            NR_CHECK_INT(l->chunks[2].page, 4);
            NR_CHECK(memmem(doc->text + l->chunks[1].start, l->chunks[1].end - l->chunks[1].start,
                            "page two", 8) != NULL);
        }
    }
    nr_chunk_list_free(l);
    nr_load_doc_free(doc);
}

static void test_empty_and_bad_input(void)
{
    struct nr_chunk_list *l = NULL;
    struct nr_load_doc d = text_doc("", 0);
    struct nr_chunk_opts o;
    struct nr_load_heading h[2];
    size_t pages[2];

    NR_CHECK_INT(nr_chunk_split(g_wp, &d, NULL, &l), NR_OK);
    NR_CHECK(l && l->n == 0);
    nr_chunk_list_free(l);
    d = text_doc(" \n\n\t \xC2\xA0 ", 9);
    NR_CHECK_INT(nr_chunk_split(g_wp, &d, NULL, &l), NR_OK);
    NR_CHECK(l && l->n == 0);
    nr_chunk_list_free(l);

    d = text_doc("caf\xE9 au lait", 12);
    NR_CHECK_INT(nr_chunk_split(g_wp, &d, NULL, &l), NR_EINVAL);
    NR_CHECK(l == NULL && strstr(nr_err_msg(), "UTF-8"));

    d = text_doc("hello world", 11);
    nr_chunk_opts_default(&o);
    o.max_tokens = 300000;
    NR_CHECK_INT(nr_chunk_split(g_wp, &d, &o, &l), NR_EINVAL);
    NR_CHECK(strstr(nr_err_msg(), "max_tokens") != NULL);
    nr_chunk_opts_default(&o);
    o.overlap_tokens = 150;
    NR_CHECK_INT(nr_chunk_split(g_wp, &d, &o, &l), NR_EINVAL);
    nr_chunk_opts_default(&o);
    o.target_tokens = 300;
    NR_CHECK_INT(nr_chunk_split(g_wp, &d, &o, &l), NR_EINVAL);
    nr_chunk_opts_default(&o);
    o.max_bytes = 10;
    NR_CHECK_INT(nr_chunk_split(g_wp, &d, &o, &l), NR_EINVAL);

    /* structure: overlapping sections, unsorted, out of range, mid-character */
    d = text_doc("aaaa bbbb cccc \xC3\xA9 dddd", 22);
    h[0] = (struct nr_load_heading){1, "A", 0, 10};
    h[1] = (struct nr_load_heading){2, "B", 5, 15};
    d.headings = h;
    d.n_headings = 2;
    NR_CHECK_INT(nr_chunk_split(g_wp, &d, NULL, &l), NR_EINVAL);
    h[1] = (struct nr_load_heading){2, "B", 0, 5};
    h[0] = (struct nr_load_heading){1, "A", 5, 10};
    NR_CHECK_INT(nr_chunk_split(g_wp, &d, NULL, &l), NR_EINVAL);
    h[0] = (struct nr_load_heading){1, "A", 0, 99};
    d.n_headings = 1;
    NR_CHECK_INT(nr_chunk_split(g_wp, &d, NULL, &l), NR_EINVAL);
    h[0] = (struct nr_load_heading){1, "A", 16, 22}; /* 16 is inside U+00E9 */
    NR_CHECK_INT(nr_chunk_split(g_wp, &d, NULL, &l), NR_EINVAL);
    d.n_headings = 0;
    pages[0] = 5;
    d.pages = pages;
    d.n_pages = 1;
    NR_CHECK_INT(nr_chunk_split(g_wp, &d, NULL, &l), NR_EINVAL); /* page 1 must start at 0 */
    pages[0] = 0;
    pages[1] = 16;
    d.n_pages = 2;
    NR_CHECK_INT(nr_chunk_split(g_wp, &d, NULL, &l), NR_EINVAL);
    pages[1] = 15;
    l = chunk_checked(&d, NULL, "two pages");
    NR_CHECK(l && l->n == 2 && l->chunks[1].page == 2);
    nr_chunk_list_free(l);
}

/* Heading paths: titles cut at 200 bytes, controls turned into spaces,
 * invalid UTF-8 dropped, only the innermost 8 of a deeper nesting kept. */
static void test_heading_path_text(void)
{
    char long_title[600], names[10][8];
    struct nr_load_heading h[10];
    struct nr_load_doc d;
    struct nr_chunk_list *l;
    const char *text = "one two three four five six seven eight nine ten eleven";
    memset(long_title, 'T', sizeof long_title - 1);
    long_title[sizeof long_title - 1] = '\0';
    d = text_doc(text, strlen(text));
    for (int i = 0; i < 10; i++) { /* a chain of 10 nested sections */
        snprintf(names[i], sizeof names[i], "H%d", i);
        h[i].level = 1 + (i < 6 ? i : 5);
        h[i].start = (size_t)(4 * i);
        h[i].end = d.len;
        h[i].text = i == 0   ? long_title
                    : i == 1 ? "tab\there"
                    : i == 2 ? "bad \xFF byte"
                             : names[i];
    }
    d.headings = h;
    d.n_headings = 10;
    l = chunk_checked(&d, NULL, "paths");
    if (l) {
        NR_CHECK_INT(l->n, 10);
        NR_CHECK_INT(strlen(l->chunks[0].heading), 200);
        NR_CHECK(strncmp(l->chunks[1].heading + 200, " > tab here", 12) == 0);
        NR_CHECK_MSG(strcmp(l->chunks[l->n - 1].heading,
                            "bad  byte > H3 > H4 > H5 > H6 > H7 > H8 > H9") == 0,
                     "path '%s'", l->chunks[l->n - 1].heading);
    }
    nr_chunk_list_free(l);
}

/* Every allocation failure is a clean NR_ENOMEM with nothing leaked. */
static void test_allocation_failures(void)
{
    struct buf b = {0};
    struct structure st;
    struct nr_load_doc d;
    struct nr_chunk_opts o = opts(40, 48, 10, 1024);
    int n, ok = 0;
    gen_english(&b, 2000);
    d = text_doc(b.p, b.n);
    g_rng = 42;
    while (d.n_headings < 3)
        add_structure(&d, &st);
    for (n = 1; n < 1000 && !ok; n++) {
        struct nr_chunk_list *l = NULL;
        size_t held = nr_mem_held();
        int rc;
        nr_mem_fail_after(n);
        rc = nr_chunk_split(g_wp, &d, &o, &l);
        nr_mem_fail_after(0);
        if (rc == NR_OK) {
            ok = 1;
            NR_CHECK_INT(nr_chunk_list_check(g_wp, &d, &o, l), NR_OK);
            nr_chunk_list_free(l);
        } else {
            NR_CHECK_MSG(rc == NR_ENOMEM && l == NULL, "fail at %d: %d %s", n, rc, nr_err_msg());
        }
        NR_CHECK_MSG(nr_mem_held() == held, "leak after failing allocation %d", n);
    }
    NR_CHECK_MSG(ok && n > 5, "succeeded after %d failure points", n);
    free(b.p);
}

/* 10 MB of text: linear time and bounded work. Prints the time; the bound
 * only catches a complexity regression (a quadratic chunker takes minutes). */
static void test_ten_megabytes(void)
{
    struct buf b = {0};
    struct nr_load_doc d;
    struct nr_chunk_list *l = NULL;
    struct timespec t0, t1;
    double secs;
    long tokens = 0;
    while (b.n < (10u << 20))
        gen_english(&b, 4000);
    d = text_doc(b.p, b.n);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    NR_CHECK_INT(nr_chunk_split(g_wp, &d, NULL, &l), NR_OK);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9;
    if (l) {
        for (int i = 0; i < l->n; i++)
            tokens += l->chunks[i].n_tokens;
        printf("  10 MiB: %d chunks, %.1f tokens each, %.3f s\n", l->n, (double)tokens / l->n,
               secs);
        NR_CHECK_INT(nr_chunk_list_check(g_wp, &d, NULL, l), NR_OK);
    }
    NR_CHECK_MSG(secs < 30, "10 MiB took %.1f s", secs);
    nr_chunk_list_free(l);
    free(b.p);
}

int main(void)
{
    int rc = nr_wordpiece_load(nr_test_model_path("all-MiniLM-L6-v2/vocab.txt"), NULL, &g_wp);
    if (rc != NR_OK) {
        printf("cannot load the vocab (run scripts/setup.sh): %s\n", nr_err_msg());
        return 1;
    }
    NR_RUN(test_random_text_invariants);
    NR_RUN(test_cuts_at_paragraphs);
    NR_RUN(test_cuts_at_sentences);
    NR_RUN(test_cuts_at_words_and_overlap);
    NR_RUN(test_cuts_without_whitespace);
    NR_RUN(test_special_token_across_window);
    NR_RUN(test_fixture_docs);
    NR_RUN(test_markdown_heading_paths);
    NR_RUN(test_pages);
    NR_RUN(test_empty_and_bad_input);
    NR_RUN(test_heading_path_text);
    NR_RUN(test_allocation_failures);
    NR_RUN(test_ten_megabytes);
    nr_wordpiece_free(g_wp);
    return nr_test_summary();
}
