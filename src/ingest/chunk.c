/*
 * chunk.c: token-sized chunks of a loaded document (the contract is in
 * nr_chunk.h; this is how it is kept).
 *
 * Regions. The text is cut at every page start, heading start and section
 * end (sorted, deduplicated); a chunk lives inside one region, so its page
 * and heading path are constants of the region. The path comes from a stack
 * of open sections swept along with the regions (sections nest, checked on
 * entry), interned in a string pool when a chunk first uses it.
 *
 * Token stream. A region is tokenized front to back by nr_wordpiece_encode in
 * windows of at most `win` bytes (8 KiB, less for a small max_bytes). A window
 * ends just after its last whitespace character. BERT splits words at
 * whitespace and nothing in its pipeline looks across it, so the tokens of
 * consecutive windows are exactly the tokens of the whole region. A window
 * with no whitespace is cut at a character boundary and its last word (from
 * the last token that does not start with "##") is given back to the next
 * window (a window that is one single word keeps the cut). Either way the
 * first token after such a cut is marked `fake`: the stream's tokens around
 * it need not be the text's (the text has one [UNK] for a 20 KB word, the
 * stream one per window; a "[SEP]" literal cut after its "[" is one token in
 * the text, four in the stream).
 *
 * The stream lives in a sliding buffer t[0..n) that starts at the current
 * chunk's first token and holds at least max_tokens - 1 tokens ahead (or the
 * rest of the region): at most max_tokens + win entries, whatever the text's
 * size. Each token records the class of the boundary before it:
 *   PARA   the gap holds a blank line (two newlines)
 *   SENT   the previous token ends a sentence (. ! ?, or one of them then a
 *          closing quote or bracket) and the gap holds whitespace; after
 *          。！？ no whitespace is needed
 *   LINE   the gap holds one newline
 *   WORD   the gap holds whitespace (BERT's: \t \n \r space, Zs, U+2028/9)
 *   PRETOK no whitespace, but the token starts a word (punctuation, CJK)
 *   INWORD a "##" continuation, or a fake boundary
 *
 * A chunk. From the chunk's first token t[0]: e = how many tokens fit both
 * max_tokens - 2 and the byte budget; if the rest of the region is in the
 * buffer and all of it fits, it is the chunk. Otherwise the cut c is the
 * best class in [hi / 2, hi], hi = min(e, target_tokens - 2), the latest on
 * ties, and always past the previous chunk's last token (min_cut), so every
 * chunk ends later than the one before; when the byte cap leaves no room past
 * it, the overlap is dropped and the chunk starts where the last one ended.
 * Its range runs from t[0].start (the region's first non-whitespace byte
 * for the region's first chunk) to t[c].start with trailing whitespace
 * trimmed: gaps are covered, so text that gives no token (controls, U+200B)
 * is not lost, unless such a run is longer than JUNK_MAX at a chunk's edge,
 * where it is left out (that keeps the byte cap: budget = max_bytes -
 * JUNK_MAX for token spans, and a token never spans more than win <=
 * max_bytes - 2 JUNK_MAX bytes, so one token always fits).
 *
 * Exactness. If both ends of a chunk are at WORD or better (or at the region's
 * edges) and no fake boundary is inside, its tokens are exactly t[0..c), and
 * n_tokens = c + 2 without looking again. Otherwise (a cut inside a word or a
 * whitespace-free run: rare in text) the chunk is re-tokenized, and while it
 * is over max_tokens, c moves back; n_tokens is the re-tokenized count.
 *
 * Overlap. The next chunk starts at the first boundary of class SENT or better
 * in [c - overlap, c - overlap / 2], else the first of class WORD or better in
 * [c - overlap, c), else at c (no overlap). Starts always move forward
 * (the window begins at token 1 at the earliest).
 *
 * Cost: every byte is tokenized once by the stream, plus the inexact chunks
 * again; choosing cuts looks at each token a bounded number of times. The
 * buffer is compacted (memmove of < max_tokens + win entries) once per chunk.
 */
#include "nr_chunk.h"

#include "nr_err.h"
#include "nr_mem.h"

#include <limits.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define WIN_MAX    8192 /* bytes per tokenizer call */
#define JUNK_MAX   128  /* token-less bytes kept at a chunk edge */
#define PATH_DEPTH 8    /* section titles in a heading path */
#define PATH_TITLE 200  /* bytes kept of one title in a path */
#define PATH_CAP   (PATH_DEPTH * (PATH_TITLE + 3) + 1)

enum { CUT_INWORD = 0, CUT_PRETOK, CUT_WORD, CUT_LINE, CUT_SENT, CUT_PARA };

struct tok {
    size_t start, end; /* bytes [start, end) in the text */
    uint8_t cut;       /* class of the boundary before this token */
    uint8_t fake;      /* that boundary is a window cut inside a word */
};

struct chunker {
    const struct nr_wordpiece *wp;
    const char *text;
    size_t len;
    const struct nr_chunk_opts *o;
    size_t win;      /* bytes per window */
    size_t span_max; /* bytes from a chunk's start to its last token's end */

    struct tok *t; /* [cap] the stream buffer */
    int n, cap;
    size_t pos, rend;       /* next byte to tokenize, region end */
    int split_word;         /* the last window was cut inside a word */
    int32_t *ids, *st, *en; /* [win + 2] encoder output */

    struct nr_chunk *c; /* [ccap] result */
    size_t *hoff;       /* [ccap] pool offset of each chunk's heading path */
    int nc, ccap;
    char *pool; /* heading paths, NUL-terminated; offset 0 holds "" */
    size_t pool_len, pool_cap;

    int page;            /* of the current region */
    char path[PATH_CAP]; /* of the current region */
    size_t path_off;     /* its pool offset, or SIZE_MAX until a chunk uses it */
};

void nr_chunk_opts_default(struct nr_chunk_opts *o)
{
    o->target_tokens = 200;
    o->max_tokens = 256;
    o->overlap_tokens = 40;
    o->max_bytes = 16384;
}

/* ------------------------------------------------------------- characters */

/* Bytes of the BERT whitespace character at text[i] (0 if none). */
static int ws_at(const unsigned char *s, size_t n, size_t i)
{
    unsigned c = s[i];
    if (c == ' ' || c == '\t' || c == '\n' || c == '\r')
        return 1;
    if (c == 0xC2 && i + 1 < n && s[i + 1] == 0xA0)
        return 2;
    if (c >= 0xE1 && c <= 0xE3 && i + 2 < n) {
        unsigned b1 = s[i + 1], b2 = s[i + 2];
        if ((c == 0xE1 && b1 == 0x9A && b2 == 0x80) || (c == 0xE3 && b1 == 0x80 && b2 == 0x80))
            return 3;
        if (c == 0xE2 && b1 == 0x80 &&
            ((b2 >= 0x80 && b2 <= 0x8A) || b2 == 0xA8 || b2 == 0xA9 || b2 == 0xAF))
            return 3;
        if (c == 0xE2 && b1 == 0x81 && b2 == 0x9F)
            return 3;
    }
    return 0;
}

/* Bytes of the whitespace character ending at text[i - 1] (0 if none). */
static int ws_before(const unsigned char *s, size_t n, size_t i)
{
    if (i >= 1 && ws_at(s, n, i - 1) == 1)
        return 1;
    if (i >= 2 && ws_at(s, n, i - 2) == 2)
        return 2;
    if (i >= 3 && ws_at(s, n, i - 3) == 3)
        return 3;
    return 0;
}

static int utf8_len(const unsigned char *s, size_t n, size_t i)
{
    unsigned c = s[i];
    int m = c < 0x80 ? 1 : c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
    return i + (size_t)m <= n ? m : 1;
}

static int valid_utf8(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        if (c < 0x80) {
            i++;
            continue;
        }
        int m = c >= 0xC2 && c <= 0xDF   ? 2
                : c >= 0xE0 && c <= 0xEF ? 3
                : c >= 0xF0 && c <= 0xF4 ? 4
                                         : 0;
        if (!m || i + (size_t)m > n)
            return 0;
        for (int k = 1; k < m; k++)
            if ((s[i + k] & 0xC0) != 0x80)
                return 0;
        if ((c == 0xE0 && s[i + 1] < 0xA0) || (c == 0xED && s[i + 1] >= 0xA0) ||
            (c == 0xF0 && s[i + 1] < 0x90) || (c == 0xF4 && s[i + 1] >= 0x90))
            return 0;
        i += (size_t)m;
    }
    return 1;
}

static int is_boundary(const char *text, size_t len, size_t off)
{
    return off == 0 || off >= len || ((unsigned char)text[off] & 0xC0) != 0x80;
}

static int tok_is(const char *text, const struct tok *t, const char *lit)
{
    size_t k = strlen(lit);
    return t->end - t->start == k && memcmp(text + t->start, lit, k) == 0;
}

/* 2: a CJK sentence end (no space needed after it), 1: . ! ?, 0: no. */
static int sentence_end(const char *text, const struct tok *t)
{
    if (tok_is(text, t, ".") || tok_is(text, t, "!") || tok_is(text, t, "?"))
        return 1;
    if (tok_is(text, t, "\xE3\x80\x82") || tok_is(text, t, "\xEF\xBC\x81") ||
        tok_is(text, t, "\xEF\xBC\x9F"))
        return 2;
    return 0;
}

static int is_closer(const char *text, const struct tok *t)
{
    static const char *const cl[] = {
        "\"",           "'", ")", "]", "\xE2\x80\x9D", "\xE2\x80\x99", "\xC2\xBB", "\xE3\x80\x8D",
        "\xE3\x80\x8F", NULL};
    for (int i = 0; cl[i]; i++)
        if (tok_is(text, t, cl[i]))
            return 1;
    return 0;
}

/* ----------------------------------------------------------------- stream */

static int is_continuation(const struct nr_wordpiece *wp, int id)
{
    const char *s = nr_wordpiece_token(wp, id);
    return s && s[0] == '#' && s[1] == '#' && s[2] != '\0';
}

/* Class of the boundary before token `cur`, the previous ones being `prev`
 * and `pprev` (either may be NULL at a region's start). */
static int boundary_class(const struct chunker *k, const struct tok *pprev, const struct tok *prev,
                          const struct tok *cur, int cont)
{
    const unsigned char *u = (const unsigned char *)k->text;
    int nl = 0, ws = 0, lead = 0, end;
    if (!prev)
        return CUT_PARA;
    for (size_t i = prev->end; i < cur->start; i++) {
        if (u[i] == '\n' || (u[i] == '\r' && !(i + 1 < cur->start && u[i + 1] == '\n')))
            nl++;
        if ((u[i] & 0xC0) == 0x80) /* inside a character */
            continue;
        if (ws_at(u, k->len, i))
            ws = 1, lead = 0;
        else
            lead = 1;
    }
    /* Characters that gave no token sit between the last whitespace and the
     * token: they belong to its word (a dropped control or U+FFFD, a mark
     * whose token HF's alignment places on a later mark), so cutting at the
     * token's start could change its tokens: not a clean word start. */
    if (lead)
        return cont ? CUT_INWORD : CUT_PRETOK;
    if (nl >= 2)
        return CUT_PARA;
    end = sentence_end(k->text, prev);
    if (!end && pprev && is_closer(k->text, prev) && pprev->end == prev->start)
        end = sentence_end(k->text, pprev);
    if (end == 2 || (end && ws))
        return CUT_SENT;
    if (nl)
        return CUT_LINE;
    if (ws)
        return CUT_WORD;
    return cont ? CUT_INWORD : CUT_PRETOK;
}

/* Tokenize the next window of the region into the buffer. */
static int stream_window(struct chunker *k)
{
    const unsigned char *u = (const unsigned char *)k->text;
    size_t p = k->pos, lim, w_end, next;
    int ni = 0, total = 0, keep, cut_in_word, rc;

    /* The encoder holds win tokens: BERT gives at most one per byte, but if a
     * window ever gave more (it would be truncated), it is halved and redone. */
    lim = k->rend - p > k->win ? p + k->win : k->rend;
    for (;;) {
        w_end = lim;
        cut_in_word = 0;
        if (w_end < k->rend) {
            size_t q = w_end;
            while (q > p && !ws_before(u, k->len, q))
                q--;
            if (q > p) {
                w_end = q;
            } else {
                cut_in_word = 1;
                while (w_end > p + 1 && (u[w_end] & 0xC0) == 0x80)
                    w_end--;
            }
        }
        rc = nr_wordpiece_encode(k->wp, k->text + p, w_end - p, k->ids, k->st, k->en,
                                 (int)k->win + 2, &ni, &total);
        if (rc != NR_OK)
            return rc;
        if (total <= ni)
            break;
        if (w_end - p <= 4)
            return nr_err_set(NR_EINTERNAL, "chunk: %zu bytes give %d tokens", w_end - p, total);
        lim = p + (w_end - p) / 2;
    }
    keep = ni - 2;
    next = w_end;
    if (cut_in_word && keep > 0) {
        int j = ni - 2; /* the last word starts at the last non-continuation token */
        while (j >= 1 && is_continuation(k->wp, k->ids[j]))
            j--;
        if (j > 1) { /* the next window starts at that word */
            keep = j - 1;
            next = p + (size_t)k->st[j];
        }
    }
    if (k->n + keep > k->cap)
        return nr_err_set(NR_EINTERNAL, "chunk: token buffer overflow");
    for (int i = 1; i <= keep; i++) {
        struct tok *t = &k->t[k->n];
        int cont = is_continuation(k->wp, k->ids[i]);
        t->start = p + (size_t)k->st[i];
        t->end = p + (size_t)k->en[i];
        t->fake = (uint8_t)(i == 1 && k->split_word);
        t->cut = t->fake ? CUT_INWORD
                         : (uint8_t)boundary_class(k, k->n >= 2 ? &k->t[k->n - 2] : NULL,
                                                   k->n >= 1 ? &k->t[k->n - 1] : NULL, t, cont);
        k->n++;
    }
    k->split_word = cut_in_word; /* a window ending at whitespace clears it */
    k->pos = next;
    return NR_OK;
}

/* ----------------------------------------------------------------- output */

static int pool_add(struct chunker *k, const char *s, size_t n, size_t *off)
{
    if (k->pool_len + n + 1 > k->pool_cap) {
        size_t ncap = k->pool_cap ? k->pool_cap : 256;
        char *np;
        while (ncap < k->pool_len + n + 1)
            ncap *= 2;
        np = nr_realloc(k->pool, ncap);
        if (!np)
            return nr_err_set(NR_ENOMEM, "chunk: out of memory for heading paths");
        k->pool = np;
        k->pool_cap = ncap;
    }
    memcpy(k->pool + k->pool_len, s, n);
    k->pool[k->pool_len + n] = '\0';
    *off = k->pool_len;
    k->pool_len += n + 1;
    return NR_OK;
}

static int emit(struct chunker *k, size_t start, size_t end, int n_tokens)
{
    if (k->path_off == SIZE_MAX) {
        int rc = k->path[0] ? pool_add(k, k->path, strlen(k->path), &k->path_off) : NR_OK;
        if (rc != NR_OK)
            return rc;
        if (!k->path[0])
            k->path_off = 0;
    }
    if (k->nc == k->ccap) {
        int ncap;
        struct nr_chunk *nc;
        size_t *nh;
        if (k->ccap > INT_MAX / 2)
            return nr_err_set(NR_ELIMIT, "chunk: too many chunks");
        ncap = k->ccap ? k->ccap * 2 : 64;
        nc = nr_realloc(k->c, (size_t)ncap * sizeof *nc);
        if (!nc)
            return nr_err_set(NR_ENOMEM, "chunk: out of memory for chunks");
        k->c = nc;
        nh = nr_realloc(k->hoff, (size_t)ncap * sizeof *nh);
        if (!nh)
            return nr_err_set(NR_ENOMEM, "chunk: out of memory for chunks");
        k->hoff = nh;
        k->ccap = ncap;
    }
    k->c[k->nc].start = start;
    k->c[k->nc].end = end;
    k->c[k->nc].page = k->page;
    k->c[k->nc].n_tokens = n_tokens;
    k->c[k->nc].heading = NULL;
    k->hoff[k->nc] = k->path_off;
    k->nc++;
    return NR_OK;
}

/* End of a chunk whose last token is t[c - 1] and which reaches up to `limit`
 * (the next token's start, or the region's end): trailing whitespace goes,
 * and so does a long token-less run. */
static size_t chunk_end(const struct chunker *k, int c, size_t limit)
{
    const unsigned char *u = (const unsigned char *)k->text;
    size_t last = k->t[c - 1].end, end = limit;
    int w;
    while (end > last && (w = ws_before(u, k->len, end)) > 0)
        end -= (size_t)w;
    if (end - last > JUNK_MAX)
        end = last;
    return end;
}

/* Tokens of text[a, b) incl. [CLS]/[SEP]. */
static int count_tokens(const struct nr_wordpiece *wp, const char *text, size_t a, size_t b,
                        int *count)
{
    int32_t ids[2];
    int ni;
    return nr_wordpiece_encode(wp, text + a, b - a, ids, NULL, NULL, 2, &ni, count);
}

/* ----------------------------------------------------------------- region */

/* Drop t[0..k) from the stream buffer. */
static void stream_drop(struct chunker *k, int count)
{
    memmove(k->t, k->t + count, (size_t)(k->n - count) * sizeof *k->t);
    k->n -= count;
}

static int do_region(struct chunker *k, size_t a, size_t b)
{
    const unsigned char *u = (const unsigned char *)k->text;
    const struct nr_chunk_opts *o = k->o;
    size_t first_start = a;
    int first = 1, rc, w;
    int min_cut = 1; /* the cut must pass the previous chunk's last token: progress */

    while (first_start < b && (w = ws_at(u, k->len, first_start)) > 0)
        first_start += (size_t)w;
    if (first_start >= b)
        return NR_OK;
    k->n = 0;
    k->pos = first_start;
    k->rend = b;
    k->split_word = 0;

    for (;;) {
        size_t cstart, end;
        int e, c, hi, lo, all, exact, n_tokens;
        while (k->pos < k->rend && k->n < o->max_tokens - 1)
            if ((rc = stream_window(k)) != NR_OK)
                return rc;
        if (k->n == 0)
            return NR_OK; /* no (more) tokens in the region */
        all = k->pos >= k->rend;
        cstart = first ? first_start : k->t[0].start;
        if (k->t[0].start - cstart > JUNK_MAX)
            cstart = k->t[0].start;

        for (e = 0; e < k->n && e < o->max_tokens - 2 && k->t[e].end - cstart <= k->span_max; e++)
            ;
        if (e < 1)
            return nr_err_set(NR_EINTERNAL, "chunk: a token does not fit the byte budget");
        if (e < min_cut) { /* the overlap leaves no room to move on: drop it */
            stream_drop(k, min_cut - 1);
            min_cut = 1;
            continue;
        }
        if (all && e == k->n) {
            c = k->n;
            end = chunk_end(k, c, k->rend);
        } else {
            int best_cls = -1;
            hi = e < o->target_tokens - 2 ? e : o->target_tokens - 2;
            if (hi < min_cut)
                hi = min_cut;
            lo = hi / 2 > min_cut ? hi / 2 : min_cut;
            c = hi;
            for (int i = hi; i >= lo; i--) {
                int cls = k->t[i].fake ? CUT_INWORD : k->t[i].cut;
                if (cls > best_cls) {
                    best_cls = cls;
                    c = i;
                    if (cls == CUT_PARA)
                        break;
                }
            }
            end = chunk_end(k, c, k->t[c].start);
        }

        /* Exact unless an edge or an inside boundary is not a whitespace one. */
        exact = first || (k->t[0].cut >= CUT_WORD && !k->t[0].fake);
        for (int i = 1; i < c && exact; i++)
            exact = !k->t[i].fake;
        if (c < k->n)
            exact = exact && k->t[c].cut >= CUT_WORD && !k->t[c].fake;
        n_tokens = c + 2;
        if (!exact) {
            int dropped = 0;
            for (;;) {
                int over;
                if ((rc = count_tokens(k->wp, k->text, cstart, end, &n_tokens)) != NR_OK)
                    return rc;
                if (n_tokens <= o->max_tokens)
                    break;
                over = n_tokens - o->max_tokens;
                if (c - over < min_cut) {
                    if (min_cut > 1) { /* shrinking would undo progress: drop the overlap */
                        stream_drop(k, min_cut - 1);
                        min_cut = 1;
                        dropped = 1;
                        break;
                    }
                    if (c <= 1)
                        return nr_err_set(NR_EINTERNAL,
                                          "chunk: one token re-tokenizes to %d > %d tokens",
                                          n_tokens, o->max_tokens);
                    over = c - 1;
                }
                c -= over;
                end = chunk_end(k, c, k->t[c].start);
            }
            if (dropped)
                continue;
        }
        if ((rc = emit(k, cstart, end, n_tokens)) != NR_OK)
            return rc;
        if (c >= k->n && all)
            return NR_OK;

        /* Overlap: where the next chunk starts. */
        {
            int ov = o->overlap_tokens, next = c;
            if (ov > 0) {
                int w0 = c - ov > 1 ? c - ov : 1, found = 0;
                for (int i = w0; i < c && i <= w0 + ov / 2; i++) {
                    if (k->t[i].cut >= CUT_SENT && !k->t[i].fake) {
                        next = i;
                        found = 1;
                        break;
                    }
                }
                for (int i = w0; i < c && !found; i++) {
                    if (k->t[i].cut >= CUT_WORD && !k->t[i].fake) {
                        next = i;
                        found = 1;
                    }
                }
            }
            stream_drop(k, next);
            min_cut = c - next + 1;
        }
        first = 0;
    }
}

/* ------------------------------------------------------------- structure */

static int cmp_size(const void *a, const void *b)
{
    size_t x = *(const size_t *)a, y = *(const size_t *)b;
    return x < y ? -1 : x > y;
}

/* The region edges of doc, sorted (duplicates kept; callers skip empty
 * regions): 0, len, every heading start and section end, every page start.
 * NULL when out of memory. */
static size_t *region_bounds(const struct nr_load_doc *doc, int *nb)
{
    size_t *b =
        nr_malloc(((size_t)2 + 2 * (size_t)doc->n_headings + (size_t)doc->n_pages) * sizeof *b);
    int n = 0;
    *nb = 0;
    if (!b)
        return NULL;
    b[n++] = 0;
    b[n++] = doc->len;
    for (int i = 0; i < doc->n_headings; i++) {
        b[n++] = doc->headings[i].start;
        b[n++] = doc->headings[i].end;
    }
    for (int i = 0; i < doc->n_pages; i++)
        b[n++] = doc->pages[i];
    qsort(b, (size_t)n, sizeof *b, cmp_size);
    *nb = n;
    return b;
}

/* Append up to PATH_TITLE bytes of title (valid UTF-8 only; controls become
 * spaces) to path[*len]. */
static void path_append(char *path, size_t *len, const char *title)
{
    const unsigned char *s = (const unsigned char *)(title ? title : "");
    size_t n = strlen((const char *)s), i = 0, start = *len;
    while (i < n && *len - start < PATH_TITLE) {
        int m = utf8_len(s, n, i);
        if (m > 1 && !valid_utf8(s + i, (size_t)m)) {
            i++;
            continue;
        }
        if (m == 1 && s[i] >= 0x80) {
            i++;
            continue;
        }
        if (*len - start + (size_t)m > PATH_TITLE)
            break;
        if (m == 1 && (s[i] < 0x20 || s[i] == 0x7F))
            path[(*len)++] = ' ';
        else
            for (int j = 0; j < m; j++)
                path[(*len)++] = (char)s[i + j];
        i += (size_t)m;
    }
    path[*len] = '\0';
}

static void build_path(const struct nr_load_doc *doc, const int *stack, int depth, char *path)
{
    size_t len = 0;
    path[0] = '\0';
    for (int i = depth > PATH_DEPTH ? depth - PATH_DEPTH : 0; i < depth; i++) {
        if (len) {
            memcpy(path + len, " > ", 3);
            len += 3;
        }
        path_append(path, &len, doc->headings[stack[i]].text);
    }
}

static int check_input(const struct nr_load_doc *doc, const struct nr_chunk_opts *o)
{
    const char *text = doc->text;
    size_t len = doc->len;
    int top = 0, rc = NR_OK;
    int *stack;

    if (o->max_tokens < NR_CHUNK_MIN_TOKENS || o->max_tokens > NR_CHUNK_MAX_TOKENS)
        return nr_err_set(NR_EINVAL, "chunk: max_tokens must be in %d..%d (got %d)",
                          NR_CHUNK_MIN_TOKENS, NR_CHUNK_MAX_TOKENS, o->max_tokens);
    if (o->target_tokens < 8 || o->target_tokens > o->max_tokens)
        return nr_err_set(NR_EINVAL, "chunk: target_tokens must be in 8..max_tokens (got %d)",
                          o->target_tokens);
    if (o->overlap_tokens < 0 || o->overlap_tokens > o->target_tokens / 2)
        return nr_err_set(NR_EINVAL, "chunk: overlap_tokens must be in 0..target_tokens/2 (got %d)",
                          o->overlap_tokens);
    if (o->max_bytes < NR_CHUNK_MIN_BYTES || o->max_bytes > ((size_t)64 << 20))
        return nr_err_set(NR_EINVAL, "chunk: max_bytes must be in %d..64 MiB (got %zu)",
                          NR_CHUNK_MIN_BYTES, o->max_bytes);
    if (len > NR_CHUNK_MAX_TEXT)
        return nr_err_set(NR_ELIMIT, "chunk: text of %zu bytes is over the %u byte limit", len,
                          NR_CHUNK_MAX_TEXT);
    if (len && !text)
        return nr_err_set(NR_EINVAL, "chunk: NULL text");
    if (!valid_utf8((const unsigned char *)text, len))
        return nr_err_set(NR_EINVAL, "chunk: text is not valid UTF-8");
    if (doc->n_pages < 0 || (doc->n_pages > 0 && !doc->pages))
        return nr_err_set(NR_EINVAL, "chunk: bad page list");
    for (int i = 0; i < doc->n_pages; i++) {
        size_t p = doc->pages[i];
        if ((i == 0 && p != 0) || (i > 0 && p < doc->pages[i - 1]) || p > len ||
            !is_boundary(text, len, p))
            return nr_err_set(NR_EINVAL, "chunk: page %d starts at a bad offset", i + 1);
    }
    if (doc->n_headings < 0 || (doc->n_headings > 0 && !doc->headings))
        return nr_err_set(NR_EINVAL, "chunk: bad heading list");
    if (doc->n_headings == 0)
        return NR_OK;
    stack = nr_malloc((size_t)doc->n_headings * sizeof *stack);
    if (!stack)
        return nr_err_set(NR_ENOMEM, "chunk: out of memory");
    for (int i = 0; i < doc->n_headings && rc == NR_OK; i++) {
        const struct nr_load_heading *h = &doc->headings[i];
        if (h->start >= h->end || h->end > len || !is_boundary(text, len, h->start) ||
            !is_boundary(text, len, h->end))
            rc = nr_err_set(NR_EINVAL, "chunk: heading %d has a bad range", i);
        else if (i > 0 && h->start < doc->headings[i - 1].start)
            rc = nr_err_set(NR_EINVAL, "chunk: headings are not sorted (at %d)", i);
        if (rc != NR_OK)
            break;
        while (top > 0 && doc->headings[stack[top - 1]].end <= h->start)
            top--;
        if (top > 0 && h->end > doc->headings[stack[top - 1]].end)
            rc = nr_err_set(NR_EINVAL, "chunk: heading %d's section overlaps an enclosing one", i);
        stack[top++] = i;
    }
    nr_free(stack);
    return rc;
}

void nr_chunk_list_free(struct nr_chunk_list *l)
{
    if (!l)
        return;
    nr_free(l->chunks);
    nr_free(l->pool_);
    nr_free(l);
}

int nr_chunk_split(const struct nr_wordpiece *wp, const struct nr_load_doc *doc,
                   const struct nr_chunk_opts *opts, struct nr_chunk_list **out)
{
    struct nr_chunk_opts def;
    struct chunker *k = NULL;
    struct nr_chunk_list *l = NULL;
    size_t *bounds = NULL;
    int *stack = NULL;
    int nb = 0, rc, top = 0, hi = 0, pg = 0;

    if (!out)
        return nr_err_set(NR_EINVAL, "chunk: NULL output");
    *out = NULL;
    if (!wp || !doc)
        return nr_err_set(NR_EINVAL, "chunk: NULL argument");
    if (!opts) {
        nr_chunk_opts_default(&def);
        opts = &def;
    }
    if ((rc = check_input(doc, opts)) != NR_OK)
        return rc;

    k = nr_calloc(1, sizeof *k);
    if (!k)
        goto oom;
    k->wp = wp;
    k->text = doc->text;
    k->len = doc->len;
    k->o = opts;
    k->win = opts->max_bytes - 2 * JUNK_MAX < WIN_MAX ? opts->max_bytes - 2 * JUNK_MAX : WIN_MAX;
    k->span_max = opts->max_bytes - JUNK_MAX;
    k->cap = opts->max_tokens + (int)k->win + 16;
    k->t = nr_malloc((size_t)k->cap * sizeof *k->t);
    k->ids = nr_malloc((k->win + 2) * sizeof *k->ids);
    k->st = nr_malloc((k->win + 2) * sizeof *k->st);
    k->en = nr_malloc((k->win + 2) * sizeof *k->en);
    bounds = region_bounds(doc, &nb);
    stack = nr_malloc(((size_t)doc->n_headings + 1) * sizeof *stack);
    if (!k->t || !k->ids || !k->st || !k->en || !bounds || !stack)
        goto oom;
    if ((rc = pool_add(k, "", 0, &k->path_off)) != NR_OK) /* offset 0: the empty path */
        goto fail;

    k->path[0] = '\0';
    for (int r = 0; r + 1 < nb; r++) {
        size_t a = bounds[r], b = bounds[r + 1];
        char path[PATH_CAP];
        if (a == b)
            continue;
        /* sections open at a: close those that ended, open those that start */
        while (top > 0 && doc->headings[stack[top - 1]].end <= a)
            top--;
        while (hi < doc->n_headings && doc->headings[hi].start <= a) {
            while (top > 0 && doc->headings[stack[top - 1]].end <= doc->headings[hi].start)
                top--;
            stack[top++] = hi++;
        }
        while (top > 0 && doc->headings[stack[top - 1]].end <= a)
            top--;
        build_path(doc, stack, top, path);
        if (strcmp(path, k->path) != 0) {
            memcpy(k->path, path, strlen(path) + 1);
            k->path_off = SIZE_MAX;
        }
        while (pg + 1 < doc->n_pages && doc->pages[pg + 1] <= a)
            pg++;
        k->page = doc->n_pages ? pg + 1 : 0;
        if ((rc = do_region(k, a, b)) != NR_OK)
            goto fail;
    }

    l = nr_calloc(1, sizeof *l);
    if (!l)
        goto oom;
    l->chunks = k->c;
    l->n = k->nc;
    l->pool_ = k->pool;
    for (int i = 0; i < l->n; i++)
        l->chunks[i].heading = l->pool_ + k->hoff[i];
    k->c = NULL;
    k->pool = NULL;
    rc = NR_OK;
    *out = l;
    goto done;
oom:
    rc = nr_err_set(NR_ENOMEM, "chunk: out of memory");
fail:
    nr_chunk_list_free(l);
done:
    if (k) {
        nr_free(k->t);
        nr_free(k->ids);
        nr_free(k->st);
        nr_free(k->en);
        nr_free(k->c);
        nr_free(k->hoff);
        nr_free(k->pool);
        nr_free(k);
    }
    nr_free(bounds);
    nr_free(stack);
    return rc;
}

/* ------------------------------------------------------------------ check */

static int page_of(const struct nr_load_doc *doc, size_t off)
{
    int lo = 0, hi = doc->n_pages - 1;
    if (doc->n_pages == 0)
        return 0;
    while (lo < hi) { /* the last page starting at or before off */
        int mid = (lo + hi + 1) / 2;
        if (doc->pages[mid] <= off)
            lo = mid;
        else
            hi = mid - 1;
    }
    return lo + 1;
}

int nr_chunk_list_check(const struct nr_wordpiece *wp, const struct nr_load_doc *doc,
                        const struct nr_chunk_opts *opts, const struct nr_chunk_list *l)
{
    struct nr_chunk_opts def;
    const unsigned char *u;
    size_t *bounds = NULL;
    int *stack = NULL;
    int rc = NR_OK, total = 0, nb = 0;
    size_t cs = 0, ce = 0; /* the merged chunk range the coverage sweep is in */

    if (!opts) {
        nr_chunk_opts_default(&def);
        opts = &def;
    }
    if (!wp || !doc || !l || (l->n > 0 && !l->chunks))
        return nr_err_set(NR_EINTERNAL, "chunk check: NULL argument");
    u = (const unsigned char *)doc->text;
    stack = nr_malloc(((size_t)doc->n_headings + 1) * sizeof *stack);
    if (!stack)
        return nr_err_set(NR_ENOMEM, "chunk check: out of memory");
    for (int i = 0; i < l->n && rc == NR_OK; i++) {
        const struct nr_chunk *c = &l->chunks[i];
        char path[PATH_CAP];
        int n, top = 0;
        if (c->start >= c->end || c->end > doc->len)
            rc = nr_err_set(NR_EINTERNAL, "chunk %d: range [%zu, %zu) outside the text", i,
                            c->start, c->end);
        else if (!is_boundary(doc->text, doc->len, c->start) ||
                 !is_boundary(doc->text, doc->len, c->end))
            rc = nr_err_set(NR_EINTERNAL, "chunk %d: splits a UTF-8 character", i);
        else if (ws_at(u, doc->len, c->start) || ws_before(u, doc->len, c->end))
            rc = nr_err_set(NR_EINTERNAL, "chunk %d: not trimmed", i);
        else if (i > 0 && (c->start <= l->chunks[i - 1].start || c->end <= l->chunks[i - 1].end))
            rc = nr_err_set(NR_EINTERNAL, "chunk %d: out of order", i);
        else if (c->end - c->start > opts->max_bytes)
            rc = nr_err_set(NR_EINTERNAL, "chunk %d: %zu bytes > max_bytes", i, c->end - c->start);
        if (rc != NR_OK)
            break;
        if ((rc = count_tokens(wp, doc->text, c->start, c->end, &n)) != NR_OK)
            break;
        if (n != c->n_tokens || n > opts->max_tokens) {
            rc = nr_err_set(NR_EINTERNAL, "chunk %d: %d tokens, says %d (max %d)", i, n,
                            c->n_tokens, opts->max_tokens);
            break;
        }
        if (c->page != page_of(doc, c->start) || c->page != page_of(doc, c->end - 1)) {
            rc = nr_err_set(NR_EINTERNAL, "chunk %d: page %d, but its bytes are on %d..%d", i,
                            c->page, page_of(doc, c->start), page_of(doc, c->end - 1));
            break;
        }
        for (int h = 0; h < doc->n_headings; h++) {
            const struct nr_load_heading *hd = &doc->headings[h];
            if ((hd->start > c->start && hd->start < c->end) ||
                (hd->end > c->start && hd->end < c->end)) {
                rc = nr_err_set(NR_EINTERNAL, "chunk %d: crosses heading %d's section edge", i, h);
                break;
            }
            if (hd->start <= c->start && c->start < hd->end)
                stack[top++] = h;
        }
        if (rc != NR_OK)
            break;
        build_path(doc, stack, top, path);
        if (!c->heading || strcmp(path, c->heading) != 0) {
            rc = nr_err_set(NR_EINTERNAL, "chunk %d: heading path \"%s\", expected \"%s\"", i,
                            c->heading ? c->heading : "(null)", path);
            break;
        }
        if (i > 0 && c->start < l->chunks[i - 1].end) {
            int ov;
            if ((rc = count_tokens(wp, doc->text, c->start, l->chunks[i - 1].end, &ov)) != NR_OK)
                break;
            /* +2: where the previous chunk ended inside a word, the overlap's
             * last word may tokenize into a piece or two more on its own */
            if (ov - 2 > opts->overlap_tokens + 2) {
                rc = nr_err_set(NR_EINTERNAL, "chunk %d: overlaps the previous by %d tokens", i,
                                ov - 2);
                break;
            }
        }
    }
    if (rc != NR_OK)
        goto done;

    /* Coverage: what no chunk covers, cut at region edges, must give no token
     * when tokenized on its own (whitespace, controls, format characters).
     * Chunks are sorted, so their union is swept once, merged as it comes. */
    bounds = region_bounds(doc, &nb);
    if (!bounds) {
        rc = nr_err_set(NR_ENOMEM, "chunk check: out of memory");
        goto done;
    }
    for (int r = 0, j = 0; r + 1 < nb; r++) {
        size_t a = bounds[r], b = bounds[r + 1], p = a;
        while (p < b) {
            size_t gap_end;
            while (ce <= p && j < l->n) { /* next merged range */
                cs = l->chunks[j].start;
                ce = l->chunks[j].end;
                for (j++; j < l->n && l->chunks[j].start <= ce; j++)
                    if (l->chunks[j].end > ce)
                        ce = l->chunks[j].end;
            }
            if (cs <= p && p < ce) { /* covered up to ce */
                p = ce;
                continue;
            }
            gap_end = ce > p && cs > p && cs < b ? cs : b;
            if ((rc = count_tokens(wp, doc->text, p, gap_end, &total)) != NR_OK)
                goto done;
            if (total != 2) {
                rc = nr_err_set(NR_EINTERNAL, "bytes [%zu, %zu) hold %d tokens and are in no chunk",
                                p, gap_end, total - 2);
                goto done;
            }
            p = gap_end;
        }
    }
done:
    nr_free(stack);
    nr_free(bounds);
    return rc;
}
