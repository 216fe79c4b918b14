/*
 * load_md.c: Markdown through cmark (CommonMark 0.30, Debian's libcmark).
 *
 * The bytes are decoded like plain text first (BOM, UTF-16, binary check,
 * Windows-1252 fallback: load.c), then parsed; the syntax tree is walked with
 * cmark's iterator (no recursion, so nesting depth costs no stack) and written
 * through the text builder:
 *   heading          a heading of its level, in a block of its own
 *   paragraph        a block; soft and hard line breaks stay line breaks, so a
 *                    pipe table (not CommonMark: a paragraph here) keeps rows
 *   list, item       blocks; a tight list's items are one line each
 *   block quote      a block around its content
 *   code block       its text verbatim, as a block
 *   inline code      its text
 *   text, emphasis   their text; a link's text stays, its URL goes
 *   image            dropped with its alt text (badges and screenshots are
 *                    noise in a search index)
 *   HTML block and inline HTML, thematic break: dropped (a break is a block
 *   boundary).
 * YAML front matter: a first line "---", up to a line "---" or "..." within
 * the first 64 KiB, is dropped; a "title:" line in it gives the title.
 *
 * cmark allocates with its own allocator, which aborts the process when
 * memory runs out (its design); nr_mem fault injection does not reach it.
 */
#include "load_internal.h"

#include "nr_err.h"
#include "nr_mem.h"

#include <cmark.h>
#include <string.h>

#define FRONT_MATTER_MAX (64 * 1024)

/* Length of the line at s (without its terminator) and of its terminator. */
static size_t line_len(const char *s, size_t n, size_t *term)
{
    const char *nl = memchr(s, '\n', n);
    size_t k = nl ? (size_t)(nl - s) : n;
    *term = nl ? 1 : 0;
    if (k > 0 && s[k - 1] == '\r') {
        k--;
        (*term)++;
    }
    return k;
}

static int line_is(const char *s, size_t k, const char *lit)
{
    size_t m = strlen(lit);
    if (k < m || memcmp(s, lit, m) != 0)
        return 0;
    for (size_t i = m; i < k; i++)
        if (s[i] != ' ' && s[i] != '\t')
            return 0;
    return 1;
}

/* Bytes of front matter at the start of s (0 if there is none). */
static size_t front_matter(const char *s, size_t n, struct nr_tb *b)
{
    size_t p, term, k = line_len(s, n, &term);
    if (!line_is(s, k, "---") || term == 0)
        return 0;
    p = k + term;
    while (p < n && p < FRONT_MATTER_MAX) {
        k = line_len(s + p, n - p, &term);
        if (line_is(s + p, k, "---") || line_is(s + p, k, "...")) {
            /* found: now read the title out of the lines before */
            size_t q = 0, t2;
            q = line_len(s, n, &t2) + t2;
            while (q < p) {
                size_t kk = line_len(s + q, p - q, &t2);
                if (kk > 6 && strncmp(s + q, "title:", 6) == 0) {
                    const char *v = s + q + 6;
                    size_t vn = kk - 6;
                    while (vn > 0 && (*v == ' ' || *v == '\t')) {
                        v++;
                        vn--;
                    }
                    while (vn > 0 && (v[vn - 1] == ' ' || v[vn - 1] == '\t'))
                        vn--;
                    if (vn >= 2 && (v[0] == '"' || v[0] == '\'') && v[vn - 1] == v[0]) {
                        v++;
                        vn -= 2;
                    }
                    nr_tb_set_title(b, v, vn);
                    break;
                }
                q += kk + t2;
            }
            return p + k + term;
        }
        if (term == 0)
            break;
        p += k + term;
    }
    return 0;
}

/* 1 if node sits directly in an item of a tight list. */
static int in_tight_item(cmark_node *node)
{
    cmark_node *item = cmark_node_parent(node);
    cmark_node *list = item ? cmark_node_parent(item) : NULL;
    return item && list && cmark_node_get_type(item) == CMARK_NODE_ITEM &&
           cmark_node_get_list_tight(list);
}

static void walk(cmark_node *root, struct nr_tb *b)
{
    cmark_iter *it = cmark_iter_new(root);
    cmark_node *skip = NULL;
    cmark_event_type ev;

    while ((ev = cmark_iter_next(it)) != CMARK_EVENT_DONE) {
        cmark_node *nd = cmark_iter_get_node(it);
        cmark_node_type type = cmark_node_get_type(nd);
        const char *lit;
        if (skip) {
            if (nd == skip && ev == CMARK_EVENT_EXIT)
                skip = NULL;
            continue;
        }
        switch (type) {
        case CMARK_NODE_HEADING:
            if (ev == CMARK_EVENT_ENTER)
                nr_tb_heading_begin(b, cmark_node_get_heading_level(nd));
            else
                nr_tb_heading_end(b);
            break;
        case CMARK_NODE_PARAGRAPH:
            nr_tb_break(b, in_tight_item(nd) ? 1 : 2);
            break;
        case CMARK_NODE_ITEM:
            nr_tb_break(b, cmark_node_get_list_tight(cmark_node_parent(nd)) ? 1 : 2);
            break;
        case CMARK_NODE_LIST:
            nr_tb_break(b, cmark_node_get_list_tight(nd) && cmark_node_parent(nd) &&
                                   cmark_node_get_type(cmark_node_parent(nd)) == CMARK_NODE_ITEM
                               ? 1
                               : 2);
            break;
        case CMARK_NODE_BLOCK_QUOTE:
        case CMARK_NODE_THEMATIC_BREAK:
            nr_tb_break(b, 2);
            break;
        case CMARK_NODE_CODE_BLOCK:
            lit = cmark_node_get_literal(nd);
            nr_tb_break(b, 2);
            if (lit)
                nr_tb_put(b, lit, strlen(lit), 1);
            nr_tb_break(b, 2);
            break;
        case CMARK_NODE_TEXT:
        case CMARK_NODE_CODE:
            lit = cmark_node_get_literal(nd);
            if (lit)
                nr_tb_put(b, lit, strlen(lit), 0);
            break;
        case CMARK_NODE_SOFTBREAK:
        case CMARK_NODE_LINEBREAK:
            nr_tb_break(b, 1);
            break;
        case CMARK_NODE_IMAGE:
            if (ev == CMARK_EVENT_ENTER)
                skip = nd;
            break;
        default: /* document, emphasis, links, raw HTML (dropped), custom nodes */
            break;
        }
    }
    cmark_iter_free(it);
}

int nr_load_markdown(const unsigned char *d, size_t n, const struct nr_load_opts *o,
                     struct nr_load_doc **out)
{
    const char *s;
    size_t len, skip;
    int owned, rc;
    char enc[24];
    struct nr_tb b;
    cmark_node *root;

    *out = NULL;
    rc = nr_load_decode(d, n, o, &s, &len, &owned, enc);
    if (rc != NR_OK)
        return rc;
    nr_tb_init(&b, o->max_text_bytes);
    skip = front_matter(s, len, &b);
    root = cmark_parse_document(s + skip, len - skip, CMARK_OPT_VALIDATE_UTF8);
    if (owned)
        nr_free((char *)s);
    if (!root) {
        nr_tb_free(&b);
        return nr_err_set(NR_ENOMEM, "markdown: the parser failed (out of memory)");
    }
    walk(root, &b);
    cmark_node_free(root);
    return nr_tb_finish(&b, NR_LOAD_MARKDOWN, enc, "no text outside markup", out);
}
