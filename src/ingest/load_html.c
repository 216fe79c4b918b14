/*
 * load_html.c: HTML through libxml2's HTML parser (htmlReadMemory; never the
 * XML parser, which would stop at the first tag soup).
 *
 * Parser options: HTML_PARSE_RECOVER (tag soup is the norm), NONET (no fetch
 * of anything), NOERROR/NOWARNING (no stderr noise), and nothing else: no
 * HTML_PARSE_HUGE, so libxml2's own caps stay on (256 levels of nesting, 10 MB
 * text nodes), and entities are the HTML ones the parser always knows.
 *
 * Charset, decided before parsing, and libxml2 is handed UTF-8 whenever we
 * can decode the bytes ourselves:
 *   UTF-16 BOM        decoded here (load.c);
 *   UTF-8 BOM         dropped;
 *   no BOM            the bytes pass the binary test (NUL, control bytes),
 *                     then the label after the first "charset=" in the first
 *                     4 KiB (<meta charset=...> or http-equiv) decides:
 *     none, a UTF-8 or UTF-16 label (HTML5 reads a BOM-less "utf-16" page as
 *     UTF-8), or a Latin-1 family label (windows-1252, iso-8859-1, latin1,
 *     ascii: HTML5 maps them all to Windows-1252):
 *                     UTF-8 if the bytes are valid UTF-8, else Windows-1252
 *                     (with legacy_8bit off: NR_EFORMAT). Valid UTF-8 under
 *                     a Latin-1 label is the common misconfiguration, not a
 *                     coincidence, so the bytes win over the label.
 *     any other label (shift_jis, koi8-r, gb2312, iso-8859-15 ...): left to
 *                     libxml2, which reads the tag and converts through iconv.
 * Why not let libxml2 do Windows-1252 too: iconv refuses its five undefined
 * bytes (0x81 0x8D 0x8F 0x90 0x9D), and libxml2 then stops reading: the rest
 * of the page is lost (and it prints to stderr). Our decoder drops them.
 * libxml2's generic error channel (where encoding errors go, whatever the
 * parser options say) is pointed at a silent handler for the parse and
 * restored after; it is per thread in a threaded libxml2. What a non-Western
 * page loses after an invalid byte (iconv stops there) is lost: not handled.
 *
 * The tree walk is iterative (first child, next sibling, parent), writing
 * through the text builder (load_internal.h):
 *   dropped   script style noscript template svg nav aside form iframe object
 *             embed canvas button select textarea audio video datalist
 *             noframes, head (once its title is taken), comments, processing
 *             instructions, elements with hidden or aria-hidden="true", or
 *             with role navigation/banner/contentinfo/search; header and
 *             footer unless inside article or main (a page's header is its
 *             site banner, an article's header holds the article's title).
 *   title     <title> -> the document title (not in the text).
 *   h1-h6     headings.
 *   blocks    p div li pre blockquote tr, lists, tables, sections ...:
 *             separated by a blank line; br is a line break. A table row is
 *             one block with a line per cell (td, th), so a row's cells stay
 *             together in one chunk, which a blank line per cell would not
 *             promise.
 *   pre       whitespace kept (its first newline dropped, as browsers do);
 *             elsewhere whitespace runs (and &nbsp;) collapse to one space.
 *
 * libxml2 is initialized once (xmlInitParser through pthread_once) so
 * documents can be parsed on several threads. Its allocations are its own:
 * nr_mem fault injection does not reach them.
 */
#include "load_internal.h"

#include "nr_err.h"
#include "nr_mem.h"

#include <ctype.h>
#include <libxml/HTMLparser.h>
#include <libxml/parser.h>
#include <libxml/tree.h>
#include <libxml/xmlerror.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

static pthread_once_t xml_once = PTHREAD_ONCE_INIT;

static void xml_init(void)
{
    xmlInitParser();
}

static int name_in(const char *name, const char *const *list)
{
    for (; *list; list++)
        if (strcmp(name, *list) == 0)
            return 1;
    return 0;
}

static const char *const dropped[] = {
    "script",   "style",  "noscript", "template", "svg",      "nav",    "aside",
    "form",     "iframe", "object",   "embed",    "canvas",   "button", "select",
    "textarea", "audio",  "video",    "datalist", "noframes", NULL,
};

static const char *const blocks[] = {
    "address", "article", "blockquote", "body", "caption", "center",   "dd",         "details",
    "dialog",  "dir",     "div",        "dl",   "dt",      "fieldset", "figcaption", "figure",
    "footer",  "header",  "hgroup",     "hr",   "html",    "legend",   "li",         "main",
    "menu",    "ol",      "p",          "pre",  "section", "summary",  "table",      "tbody",
    "tfoot",   "thead",   "tr",         "ul",   NULL,
};

struct walk {
    struct nr_tb *b;
    int pre;       /* depth of open <pre> */
    int pre_fresh; /* the next text is the first in a <pre> */
    int article;   /* depth of open <article>/<main> */
};

static int attr_is(xmlNode *n, const char *attr, const char *const *values)
{
    xmlChar *v = xmlGetProp(n, (const xmlChar *)attr);
    int hit = 0;
    if (!v)
        return 0;
    for (; *values && !hit; values++)
        hit = strcasecmp((const char *)v, *values) == 0;
    xmlFree(v);
    return hit;
}

static int is_dropped(struct walk *w, xmlNode *n, const char *name)
{
    static const char *const truth[] = {"true", NULL};
    static const char *const roles[] = {"navigation", "banner", "contentinfo", "search", NULL};
    if (name_in(name, dropped))
        return 1;
    if ((strcmp(name, "header") == 0 || strcmp(name, "footer") == 0) && w->article == 0)
        return 1;
    if (xmlHasProp(n, (const xmlChar *)"hidden"))
        return 1;
    return attr_is(n, "aria-hidden", truth) || attr_is(n, "role", roles);
}

static int heading_level(const char *name)
{
    if (name[0] == 'h' && name[1] >= '1' && name[1] <= '6' && name[2] == '\0')
        return name[1] - '0';
    return 0;
}

static void set_title(struct walk *w, xmlNode *n)
{
    xmlChar *t = xmlNodeGetContent(n);
    if (t) {
        nr_tb_set_title(w->b, (const char *)t, strlen((const char *)t));
        xmlFree(t);
    }
}

/* Visit n on the way down; returns 1 if it was entered (children are walked
 * and leave() is called), 0 if it is done with. */
static int enter(struct walk *w, xmlNode *n)
{
    const char *name;
    int level;

    if (n->type == XML_TEXT_NODE || n->type == XML_CDATA_SECTION_NODE) {
        const char *s = (const char *)n->content;
        size_t len = s ? strlen(s) : 0;
        if (w->pre && w->pre_fresh && len > 0) {
            if (s[0] == '\n') {
                s++;
                len--;
            } else if (len > 1 && s[0] == '\r' && s[1] == '\n') {
                s += 2;
                len -= 2;
            }
        }
        if (len > 0)
            w->pre_fresh = 0;
        nr_tb_put(w->b, s, len, w->pre > 0);
        return 0;
    }
    if (n->type != XML_ELEMENT_NODE || !n->name)
        return 0; /* comments, processing instructions, ... */
    name = (const char *)n->name;
    if (strcmp(name, "title") == 0) {
        set_title(w, n);
        return 0;
    }
    if (strcmp(name, "head") == 0) {
        for (xmlNode *c = n->children; c; c = c->next)
            if (c->type == XML_ELEMENT_NODE && c->name &&
                strcmp((const char *)c->name, "title") == 0)
                set_title(w, c);
        return 0;
    }
    if (is_dropped(w, n, name))
        return 0;
    if (strcmp(name, "br") == 0) {
        if (w->pre)
            nr_tb_put(w->b, "\n", 1, 1);
        else
            nr_tb_break(w->b, 1);
        return 0;
    }
    if ((level = heading_level(name)) > 0) {
        nr_tb_heading_begin(w->b, level);
        return 1;
    }
    if (strcmp(name, "article") == 0 || strcmp(name, "main") == 0)
        w->article++;
    if (strcmp(name, "pre") == 0) {
        w->pre++;
        w->pre_fresh = 1;
    }
    if (name_in(name, blocks))
        nr_tb_break(w->b, 2);
    else if (strcmp(name, "td") == 0 || strcmp(name, "th") == 0)
        nr_tb_break(w->b, 1);
    return 1;
}

static void leave(struct walk *w, xmlNode *n)
{
    const char *name = (const char *)n->name;
    if (n->type != XML_ELEMENT_NODE || !name)
        return;
    if (heading_level(name) > 0) {
        nr_tb_heading_end(w->b);
        return;
    }
    if ((strcmp(name, "article") == 0 || strcmp(name, "main") == 0) && w->article > 0)
        w->article--;
    if (strcmp(name, "pre") == 0 && w->pre > 0)
        w->pre--;
    if (name_in(name, blocks))
        nr_tb_break(w->b, 2);
    else if (strcmp(name, "td") == 0 || strcmp(name, "th") == 0)
        nr_tb_break(w->b, 1);
}

static void walk_tree(struct walk *w, xmlNode *root)
{
    xmlNode *cur = root;
    while (cur) {
        int entered = enter(w, cur);
        if (entered && cur->children) {
            cur = cur->children;
            continue;
        }
        if (entered)
            leave(w, cur);
        while (cur != root && !cur->next) {
            cur = cur->parent;
            leave(w, cur);
        }
        if (cur == root)
            break;
        cur = cur->next;
    }
}

/* The label after the first "charset" (then optional spaces, '=', quotes)
 * in the first 4 KiB, lowercased into lab; "" if there is none. */
static void sniff_charset(const unsigned char *d, size_t n, char *lab, size_t cap)
{
    static const char key[] = "charset";
    size_t lim = n < 4096 ? n : 4096, k = 0;
    lab[0] = '\0';
    for (size_t i = 0; i + sizeof key - 1 <= lim; i++) {
        size_t j = i + sizeof key - 1;
        if (strncasecmp((const char *)d + i, key, sizeof key - 1) != 0)
            continue;
        while (j < lim && (d[j] == ' ' || d[j] == '\t'))
            j++;
        if (j >= lim || d[j] != '=')
            continue;
        j++;
        while (j < lim && (d[j] == ' ' || d[j] == '\t' || d[j] == '"' || d[j] == '\''))
            j++;
        while (j < lim && k + 1 < cap &&
               (isalnum(d[j]) || d[j] == '-' || d[j] == '_' || d[j] == '.' || d[j] == ':'))
            lab[k++] = (char)tolower(d[j++]);
        lab[k] = '\0';
        return;
    }
}

/* 1 if we decode this label ourselves (UTF-8 or the Latin-1 family). */
static int label_ours(const char *lab)
{
    static const char *const ours[] = {
        "",         "utf-8",      "utf8",      "unicode-1-1-utf-8", "utf-16",
        "utf-16le", "utf-16be",   "unicode",   "windows-1252",      "cp1252",
        "x-cp1252", "iso-8859-1", "iso8859-1", "iso_8859-1",        "latin1",
        "l1",       "ascii",      "us-ascii",  "ansi_x3.4-1968",    NULL,
    };
    return name_in(lab, ours);
}

static void quiet(void *ctx, const char *msg, ...)
{
    (void)ctx;
    (void)msg;
}

int nr_load_html(const unsigned char *d, size_t n, const struct nr_load_opts *o,
                 struct nr_load_doc **out)
{
    const char *s = (const char *)d;
    size_t len = n;
    int owned = 0, rc;
    const char *enc = "UTF-8"; /* what libxml2 is told; NULL = let it read the document */
    char encname[24], label[32];
    htmlDocPtr doc;
    struct nr_tb b;
    struct walk w;
    xmlNode *root;
    xmlGenericErrorFunc old_err;
    void *old_ctx;

    *out = NULL;
    pthread_once(&xml_once, xml_init);
    snprintf(encname, sizeof encname, "utf-8");
    if (n >= 2 && ((d[0] == 0xFF && d[1] == 0xFE) || (d[0] == 0xFE && d[1] == 0xFF))) {
        rc = nr_load_decode(d, n, o, &s, &len, &owned, encname);
        if (rc != NR_OK)
            return rc;
    } else {
        if (n >= 3 && d[0] == 0xEF && d[1] == 0xBB && d[2] == 0xBF) {
            s += 3;
            len -= 3;
            label[0] = '\0';
        } else {
            sniff_charset(d, n, label, sizeof label);
        }
        rc = nr_load_binary_check((const unsigned char *)s, len);
        if (rc != NR_OK)
            return rc;
        if (!label_ours(label)) {
            enc = NULL;
        } else if (!nr_load_utf8_valid((const unsigned char *)s, len)) {
            char *buf;
            if (!o->legacy_8bit)
                return nr_err_set(NR_EFORMAT, "html: not valid UTF-8 (legacy 8-bit text is off)");
            rc = nr_load_decode_1252((const unsigned char *)s, len, &buf, &len);
            if (rc != NR_OK)
                return rc;
            s = buf;
            owned = 1;
            snprintf(encname, sizeof encname, "windows-1252");
        }
    }
    if (len > INT_MAX) {
        if (owned)
            nr_free((char *)s);
        return nr_err_set(NR_ELIMIT, "html: document larger than 2 GiB");
    }
    old_err = xmlGenericError;
    old_ctx = xmlGenericErrorContext;
    xmlSetGenericErrorFunc(NULL, quiet);
    doc = htmlReadMemory(s, (int)len, NULL, enc,
                         HTML_PARSE_RECOVER | HTML_PARSE_NONET | HTML_PARSE_NOERROR |
                             HTML_PARSE_NOWARNING);
    xmlSetGenericErrorFunc(old_ctx, old_err);
    if (owned)
        nr_free((char *)s);
    if (!doc)
        return nr_err_set(NR_EFORMAT, "empty document (no HTML content)");
    root = xmlDocGetRootElement(doc);
    nr_tb_init(&b, o->max_text_bytes);
    memset(&w, 0, sizeof w);
    w.b = &b;
    if (root)
        walk_tree(&w, root);
    if (!enc) { /* libxml2 decoded it: report what it read */
        const char *e = doc->encoding ? (const char *)doc->encoding : label;
        size_t i = 0;
        for (; e[i] && i + 1 < sizeof encname; i++)
            encname[i] = (char)tolower((unsigned char)e[i]);
        encname[i] = '\0';
    }
    xmlFreeDoc(doc);
    return nr_tb_finish(&b, NR_LOAD_HTML, encname, "no text outside dropped markup", out);
}
