/*
 * ask.c — the ask pipeline (nr_ask.h): retrieval, context assembly within
 * the generator's token budget, the prompt, the streamed answer, citations.
 *
 * Retrieval query. A follow-up ("and what about X?") names its subject only
 * through the conversation, so the query is the most recent earlier user
 * message followed by the question (each cut to NR_ASK_QUERY_PART bytes on a
 * character boundary). Older turns are left out: they pull the query toward
 * what has already been answered. The query with no history is the question.
 *
 * Relevance. Hybrid retrieval ranks by reciprocal rank fusion, which says
 * nothing about absolute relevance (BM25 matches any shared word), so the
 * threshold applies to the cosine of the vector search: a hit the vector
 * search found is kept when its cosine is >= threshold; a hit only BM25
 * found (its cosine is unknown) is kept only when some hit passed the
 * threshold — it adds an exact keyword match to a question the store is
 * known to cover. When nothing passes, the answer is NR_ASK_NO_ANSWER and
 * the generator is not called. The default, 0.2, is for all-MiniLM-L6-v2:
 * on this repository's README and docs, questions they do not answer
 * ("What is the capital of Mongolia?", "What is the boiling point of
 * water?") reach 0.13-0.16 at best, a tersely worded one they answer
 * ("Where is the store kept?") 0.21, typical ones 0.35-0.47.
 *
 * Duplicates. In fused-score order a hit is dropped when it overlaps an
 * accepted one (same document, byte ranges sharing at least half of the
 * shorter: neighbouring chunks share only the chunker's overlap, a fifth of
 * a chunk by default, and are kept) or is nearly the
 * same text as one (word 3-shingle Jaccard >= 0.8: the same paragraph in two
 * files, a page repeated in a PDF). Retrieval fetches 2k + 4 candidates so
 * that k survive.
 *
 * Budget (tokens, counted with nr_llm_count_tokens: exact locally):
 *     budget   = n_ctx - max_tokens (the room kept for the answer)
 *     fixed    = instruction + question + ASK_TEMPLATE_TOKENS per message + 8
 *     history  = newest earlier messages whose tokens fit in (budget - fixed) / 3
 *     sources  = in fused-score order, each "[n] title (page p): text\n\n"
 *                block that still fits (+1 token each for merges across the
 *                joins); one that does not fit is skipped and smaller ones
 *                after it may still go in.
 * The template allowance is generous for the templates we render (ChatML
 * costs 5 tokens a message, Llama 3 and Gemma fewer than 8), so the prompt
 * the generator evaluates fits and nr_gen never has to drop turns.
 *
 * Prompt: a system message (instruction to answer only from the numbered
 * sources, cite them as [n], and say so when they do not hold the answer;
 * then the sources), the kept history, then the question as the last user
 * message.
 *
 * Citations: every "[...]" in the answer made only of numbers, ',', ';',
 * '-' and spaces ("[1]", "[1, 2]", "[2-4]", and "[1][3]" as two) marks the
 * sources it names; numbers outside 1..n are ignored.
 */
#include "nr_ask.h"

#include "nr_err.h"
#include "nr_llm.h"
#include "nr_mem.h"
#include "nr_retrieve.h"
#include "nr_store.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define NR_ASK_QUERY_PART    1024 /* bytes of each part of the retrieval query */
#define ASK_TEMPLATE_TOKENS  8    /* chat-template tokens allowed per message */
#define ASK_DEFAULT_ANSWER   512  /* tokens kept for the answer when max_tokens <= 0 */
#define ASK_SNIPPET          240  /* bytes */
#define ASK_DUP_JACCARD      0.8
#define ASK_MAX_SHINGLE_TEXT (64 << 10) /* bytes of a text compared for near-duplicates */

static const char INSTRUCTION[] =
    "You answer questions using only the numbered sources below. Cite the sources you use "
    "with their numbers in square brackets, like [1] or [2][3]. If the sources do not contain "
    "the answer, say that you don't know; do not make anything up.\n\nSources:\n\n";

void nr_ask_req_default(struct nr_ask_req *r)
{
    memset(r, 0, sizeof *r);
    r->k = 5;
    r->threshold = 0.2f;
    nr_gen_params_default(&r->gen);
    r->gen.temperature = 0;
    r->gen.max_tokens = ASK_DEFAULT_ANSWER;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Length of s[0..n) cut to at most max bytes without splitting a UTF-8 character. */
static size_t utf8_cut(const char *s, size_t n, size_t max)
{
    if (n <= max)
        return n;
    while (max > 0 && ((unsigned char)s[max] & 0xC0) == 0x80)
        max--;
    return max;
}

char *nr_ask_query(const char *question, const struct nr_chat_msg *history, int n_history)
{
    const char *prev = NULL;
    size_t ql, pl = 0;
    char *q;

    for (int i = n_history - 1; i >= 0 && history; i--)
        if (history[i].role && history[i].content && !strcmp(history[i].role, "user") &&
            history[i].content[0]) {
            prev = history[i].content;
            break;
        }
    ql = utf8_cut(question, strlen(question), 2 * NR_ASK_QUERY_PART);
    if (prev)
        pl = utf8_cut(prev, strlen(prev), NR_ASK_QUERY_PART);
    q = nr_malloc(pl + 1 + ql + 1);
    if (!q)
        return NULL;
    if (prev) {
        memcpy(q, prev, pl);
        q[pl++] = '\n';
    }
    memcpy(q + pl, question, ql);
    q[pl + ql] = '\0';
    return q;
}

int nr_ask_citations(const char *text, size_t len, int n_sources, unsigned char *cited)
{
    int marked = 0;
    for (size_t i = 0; i < len; i++) {
        size_t j;
        int ok = 1, any = 0;
        if (text[i] != '[')
            continue;
        /* validate the bracket's content first */
        for (j = i + 1; j < len && text[j] != ']'; j++) {
            char c = text[j];
            if (c >= '0' && c <= '9')
                any = 1;
            else if (c != ',' && c != ';' && c != '-' && c != ' ')
                ok = 0;
            if (!ok || j - i > 64)
                break;
        }
        if (!ok || !any || j >= len || text[j] != ']')
            continue;
        /* numbers, and ranges a-b */
        {
            long prev = -1, v;
            int range = 0;
            for (size_t p = i + 1; p < j;) {
                if (text[p] < '0' || text[p] > '9') {
                    if (text[p] == '-')
                        range = prev > 0;
                    p++;
                    continue;
                }
                v = 0;
                while (p < j && text[p] >= '0' && text[p] <= '9') {
                    if (v < 100000)
                        v = v * 10 + (text[p] - '0');
                    p++;
                }
                for (long x = range ? prev + 1 : v; x <= v && x - v < 1; x++)
                    if (x >= 1 && x <= n_sources && !cited[x - 1]) {
                        cited[x - 1] = 1;
                        marked++;
                    }
                prev = v;
                range = 0;
            }
        }
        i = j;
    }
    return marked;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static int is_word_byte(unsigned char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c >= 0x80;
}

/* Sorted unique hashes of the word 3-shingles of s (unigrams when fewer than 3 words).
 * *out owned by the caller; returns the count, or -1 on allocation failure. */
static int shingles(const char *s, size_t len, uint64_t **out)
{
    uint64_t *w, *sh;
    int nw = 0, ns = 0;
    size_t i = 0;

    len = len > ASK_MAX_SHINGLE_TEXT ? ASK_MAX_SHINGLE_TEXT : len;
    w = nr_malloc((len / 2 + 2) * sizeof *w);
    if (!w)
        return -1;
    while (i < len) {
        uint64_t h = 1469598103934665603ull; /* FNV-1a */
        while (i < len && !is_word_byte((unsigned char)s[i]))
            i++;
        if (i >= len)
            break;
        while (i < len && is_word_byte((unsigned char)s[i])) {
            unsigned char c = (unsigned char)s[i++];
            if (c >= 'A' && c <= 'Z')
                c = (unsigned char)(c - 'A' + 'a');
            h = (h ^ c) * 1099511628211ull;
        }
        w[nw++] = h;
    }
    sh = nr_malloc(((size_t)nw + 1) * sizeof *sh);
    if (!sh) {
        nr_free(w);
        return -1;
    }
    if (nw < 3) {
        for (int k = 0; k < nw; k++)
            sh[ns++] = w[k];
    } else {
        for (int k = 0; k + 2 < nw; k++)
            sh[ns++] = (w[k] * 31 + w[k + 1]) * 1000003ull ^ w[k + 2];
    }
    nr_free(w);
    qsort(sh, (size_t)ns, sizeof *sh, cmp_u64);
    {
        int u = 0;
        for (int k = 0; k < ns; k++)
            if (u == 0 || sh[u - 1] != sh[k])
                sh[u++] = sh[k];
        ns = u;
    }
    *out = sh;
    return ns;
}

static double jaccard(const uint64_t *a, int na, const uint64_t *b, int nb)
{
    int i = 0, j = 0, inter = 0;
    if (na == 0 && nb == 0)
        return 1.0;
    while (i < na && j < nb) {
        if (a[i] == b[j]) {
            inter++;
            i++;
            j++;
        } else if (a[i] < b[j]) {
            i++;
        } else {
            j++;
        }
    }
    return (double)inter / (double)(na + nb - inter);
}

double nr_ask_similarity(const char *a, size_t alen, const char *b, size_t blen)
{
    uint64_t *sa = NULL, *sb = NULL;
    int na = shingles(a, alen, &sa), nb = na >= 0 ? shingles(b, blen, &sb) : -1;
    double j = na >= 0 && nb >= 0 ? jaccard(sa, na, sb, nb) : 0.0;
    nr_free(sa);
    nr_free(sb);
    return j;
}

/* Same document, byte ranges sharing at least half of the shorter one (the chunker's own
 * overlap between neighbours, a fifth of a chunk by default, does not count). */
static int same_span(const struct nr_store_chunk *a, const struct nr_store_chunk *b)
{
    int64_t lo = a->start > b->start ? a->start : b->start;
    int64_t hi = a->end < b->end ? a->end : b->end;
    int64_t la = a->end - a->start, lb = b->end - b->start;
    int64_t shorter = la < lb ? la : lb;
    return a->doc_id == b->doc_id && hi > lo && 2 * (hi - lo) >= shorter;
}

/* ---------------------------------------------------------------- growable text */

struct sbuf {
    char *p;
    size_t len, cap, max; /* bytes; max: hard cap */
    int full;             /* something was cut at max */
};

static int sb_add(struct sbuf *b, const char *s, size_t n)
{
    if (b->len + n > b->max) {
        n = utf8_cut(s, n, b->max - b->len);
        b->full = 1;
    }
    if (b->len + n + 1 > b->cap) {
        size_t c = b->cap ? b->cap : 1024;
        char *np;
        while (c < b->len + n + 1)
            c *= 2;
        np = nr_realloc(b->p, c);
        if (!np)
            return NR_ENOMEM;
        b->p = np;
        b->cap = c;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
    return NR_OK;
}

static int sb_printf(struct sbuf *b, const char *fmt, const char *s1, int page)
{
    char tmp[NR_STORE_MAX_STRING + 64];
    int n =
        page > 0 ? snprintf(tmp, sizeof tmp, fmt, s1, page) : snprintf(tmp, sizeof tmp, fmt, s1);
    if (n < 0)
        return NR_EINTERNAL;
    return sb_add(b, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

/* ---------------------------------------------------------------- the pipeline */

void nr_ask_result_free(struct nr_ask_result *res)
{
    if (!res)
        return;
    for (int i = 0; i < res->n_sources; i++) {
        nr_store_chunk_free(res->sources[i].chunk_);
        nr_free(res->sources[i].snippet);
    }
    nr_free(res->sources);
    nr_free(res->answer);
    nr_free(res->query);
    nr_free(res->system);
    memset(res, 0, sizeof *res);
}

struct stream_ctx {
    const struct nr_ask_req *req;
    struct sbuf answer;
    double t0, t_first;
};

static int on_piece(void *ud, const char *text, size_t len)
{
    struct stream_ctx *s = ud;
    if (s->t_first == 0)
        s->t_first = now_s();
    if (sb_add(&s->answer, text, len) != NR_OK)
        return 1; /* out of memory: stop generating; reported after */
    return s->req->on_text ? s->req->on_text(s->req->ud, text, len) : 0;
}

static char *make_snippet(const char *t)
{
    size_t n = 0, i = 0, len = strlen(t);
    char *s = nr_malloc(ASK_SNIPPET + 8);
    int space = 0;
    if (!s)
        return NULL;
    while (i < len && (t[i] == ' ' || t[i] == '\n' || t[i] == '\t' || t[i] == '\r'))
        i++;
    for (; i < len && n < ASK_SNIPPET; i++) {
        char c = t[i];
        if (c == ' ' || c == '\n' || c == '\t' || c == '\r') {
            space = 1;
            continue;
        }
        if (space && n > 0)
            s[n++] = ' ';
        space = 0;
        s[n++] = c;
    }
    /* finish a character cut by the limit, then mark the cut */
    while (i < len && ((unsigned char)t[i] & 0xC0) == 0x80 && n < ASK_SNIPPET + 4)
        s[n++] = t[i++];
    if (i < len) {
        memcpy(s + n, "...", 3);
        n += 3;
    }
    s[n] = '\0';
    return s;
}

static const char *display_title(const struct nr_store_chunk *c)
{
    const char *slash;
    if (c->title && c->title[0])
        return c->title;
    slash = strrchr(c->source, '/');
    return slash && slash[1] ? slash + 1 : c->source;
}

static int count_tokens(struct nr_llm *l, const char *s, size_t n, int *out)
{
    int t = nr_llm_count_tokens(l, s, n);
    if (t < 0)
        return t;
    *out = t;
    return NR_OK;
}

static int check_req(const struct nr_ask_req *req)
{
    if (!req->question || !req->question[0])
        return nr_err_set(NR_EINVAL, "ask: the question is empty");
    if (strlen(req->question) > NR_ASK_MAX_QUESTION)
        return nr_err_set(NR_EINVAL, "ask: the question is longer than %d bytes",
                          NR_ASK_MAX_QUESTION);
    if (req->k < 1 || req->k > NR_ASK_MAX_K)
        return nr_err_set(NR_EINVAL, "ask: k must be 1 to %d", NR_ASK_MAX_K);
    if (!(req->threshold >= -1.0f && req->threshold <= 1.0f))
        return nr_err_set(NR_EINVAL, "ask: threshold must be a cosine in [-1, 1]");
    if (req->n_history < 0 || req->n_history > NR_ASK_MAX_HISTORY ||
        (req->n_history > 0 && !req->history))
        return nr_err_set(NR_EINVAL, "ask: history must be 0 to %d messages", NR_ASK_MAX_HISTORY);
    for (int i = 0; i < req->n_history; i++) {
        const struct nr_chat_msg *m = &req->history[i];
        if (!m->role || !m->content ||
            (strcmp(m->role, "user") != 0 && strcmp(m->role, "assistant") != 0))
            return nr_err_set(
                NR_EINVAL, "ask: history message %d needs role user or assistant and content", i);
    }
    return NR_OK;
}

int nr_ask_run(const struct nr_ask_ctx *ctx, const struct nr_ask_req *req,
               struct nr_ask_result *res)
{
    struct nr_search_hit hits[2 * NR_ASK_MAX_K + 4];
    int n_hits = 0, rc, passed = 0;
    unsigned char keep[2 * NR_ASK_MAX_K + 4];
    uint64_t *sh[2 * NR_ASK_MAX_K + 4];
    int nsh[2 * NR_ASK_MAX_K + 4];
    struct nr_search_opts so;
    struct nr_llm_info info;
    struct nr_gen_params gp;
    struct nr_chat_msg *msgs = NULL;
    struct stream_ctx sc;
    struct sbuf sys = {NULL, 0, 0, (size_t)64 << 20, 0};
    int budget, fixed, t, hist_first, hist_budget, hist_tokens = 0, src_budget, used = 0;
    double t0 = now_s(), t1;

    memset(res, 0, sizeof *res);
    memset(&sc, 0, sizeof sc);
    memset(sh, 0, sizeof sh);
    if ((rc = check_req(req)) != NR_OK)
        return rc;
    if (!ctx || !ctx->retriever || !ctx->llm)
        return nr_err_set(NR_EINVAL, "ask: no retriever or generator");
    gp = req->gen;
    if (gp.max_tokens <= 0)
        gp.max_tokens = ASK_DEFAULT_ANSWER;
    nr_llm_info(ctx->llm, &info);
    if (gp.max_tokens > info.n_ctx - 64)
        return nr_err_set(NR_EINVAL,
                          "ask: max_tokens %d leaves no room for a prompt in a context of %d",
                          gp.max_tokens, info.n_ctx);
    budget = info.n_ctx - gp.max_tokens;
    res->budget_tokens = budget;

    /* retrieval */
    res->query = nr_ask_query(req->question, req->history, req->n_history);
    if (!res->query) {
        rc = nr_err_set(NR_ENOMEM, "ask: out of memory");
        goto fail;
    }
    nr_search_opts_default(&so);
    so.k = 2 * req->k + 4;
    so.collection = req->collection;
    if (ctx->retriever_lock)
        pthread_mutex_lock(ctx->retriever_lock);
    rc = nr_retrieve(ctx->retriever, res->query, &so, hits, &n_hits);
    if (ctx->retriever_lock)
        pthread_mutex_unlock(ctx->retriever_lock);
    t1 = now_s();
    res->retrieve_s = t1 - t0;
    if (rc != NR_OK) {
        nr_err_wrap(rc, "ask: retrieval");
        n_hits = 0;
        goto fail;
    }
    res->hits = n_hits;

    /* threshold */
    for (int i = 0; i < n_hits; i++)
        if (hits[i].vec_rank > 0 && hits[i].vec_score >= req->threshold)
            passed++;
    for (int i = 0; i < n_hits; i++) {
        keep[i] = hits[i].vec_rank > 0 ? hits[i].vec_score >= req->threshold : passed > 0;
        res->dropped_threshold += !keep[i];
    }
    if (passed == 0) {
        res->no_answer = 1;
        res->answer = nr_strdup(NR_ASK_NO_ANSWER);
        if (!res->answer) {
            rc = nr_err_set(NR_ENOMEM, "ask: out of memory");
            goto fail;
        }
        res->answer_len = strlen(res->answer);
        res->first_token_s = now_s() - t0;
        if (req->on_text)
            req->on_text(req->ud, res->answer, res->answer_len);
        if (req->on_sources)
            req->on_sources(req->ud, NULL, 0);
        nr_search_hits_free(hits, n_hits);
        res->total_s = now_s() - t0;
        return NR_OK;
    }

    /* duplicates: overlapping ranges of one document, or near-identical text */
    for (int i = 0; i < n_hits; i++) {
        const struct nr_store_chunk *ci = hits[i].chunk;
        if (!keep[i])
            continue;
        nsh[i] = shingles(ci->text, strlen(ci->text), &sh[i]);
        if (nsh[i] < 0) {
            rc = nr_err_set(NR_ENOMEM, "ask: out of memory");
            goto fail;
        }
        for (int j = 0; j < i && keep[i]; j++) {
            const struct nr_store_chunk *cj = hits[j].chunk;
            if (!keep[j])
                continue;
            if (same_span(ci, cj) || jaccard(sh[i], nsh[i], sh[j], nsh[j]) >= ASK_DUP_JACCARD) {
                keep[i] = 0;
                res->dropped_duplicate++;
            }
        }
    }

    /* budget: instruction, question, template allowance; then history; then sources */
    if ((rc = count_tokens(ctx->llm, INSTRUCTION, sizeof INSTRUCTION - 1, &fixed)) != NR_OK ||
        (rc = count_tokens(ctx->llm, req->question, strlen(req->question), &t)) != NR_OK)
        goto fail;
    fixed += t + 2 * ASK_TEMPLATE_TOKENS + 8;
    if (fixed > budget) {
        rc = nr_err_set(NR_ELIMIT,
                        "ask: the question needs %d tokens with the instruction; the budget is %d "
                        "(context %d - answer %d)",
                        fixed, budget, info.n_ctx, gp.max_tokens);
        goto fail;
    }
    hist_budget = (budget - fixed) / 3;
    hist_first = req->n_history;
    for (int i = req->n_history - 1; i >= 0; i--) {
        const char *c = req->history[i].content;
        if ((rc = count_tokens(ctx->llm, c, strlen(c), &t)) != NR_OK)
            goto fail;
        t += ASK_TEMPLATE_TOKENS;
        if (hist_tokens + t > hist_budget)
            break;
        hist_tokens += t;
        hist_first = i;
    }
    /* start the kept history with a user turn, as chat templates expect */
    while (hist_first < req->n_history && strcmp(req->history[hist_first].role, "user") != 0) {
        const char *c = req->history[hist_first].content;
        if ((rc = count_tokens(ctx->llm, c, strlen(c), &t)) != NR_OK)
            goto fail;
        hist_tokens -= t + ASK_TEMPLATE_TOKENS;
        hist_first++;
    }
    res->history_used = req->n_history - hist_first;
    src_budget = budget - fixed - hist_tokens;

    if ((rc = sb_add(&sys, INSTRUCTION, sizeof INSTRUCTION - 1)) != NR_OK)
        goto fail;
    res->sources = nr_calloc((size_t)req->k, sizeof *res->sources);
    if (!res->sources) {
        rc = nr_err_set(NR_ENOMEM, "ask: out of memory");
        goto fail;
    }
    for (int i = 0; i < n_hits && res->n_sources < req->k; i++) {
        struct nr_store_chunk *c = hits[i].chunk;
        struct nr_ask_source *s;
        struct sbuf blk = {NULL, 0, 0, (size_t)NR_STORE_MAX_TEXT, 0};
        int cost;
        if (!keep[i])
            continue;
        {
            char num[16];
            snprintf(num, sizeof num, "[%d] ", res->n_sources + 1);
            rc = sb_add(&blk, num, strlen(num));
        }
        if (rc == NR_OK)
            rc = c->page > 0 ? sb_printf(&blk, "%s (page %d): ", display_title(c), c->page)
                             : sb_printf(&blk, "%s: ", display_title(c), 0);
        if (rc == NR_OK)
            rc = sb_add(&blk, c->text, strlen(c->text));
        if (rc == NR_OK)
            rc = sb_add(&blk, "\n\n", 2);
        if (rc == NR_OK)
            rc = count_tokens(ctx->llm, blk.p, blk.len, &cost);
        if (rc != NR_OK) {
            nr_free(blk.p);
            if (rc == NR_ENOMEM)
                nr_err_set(NR_ENOMEM, "ask: out of memory");
            goto fail;
        }
        cost += 1;
        if (used + cost > src_budget) {
            res->dropped_budget++;
            nr_free(blk.p);
            continue;
        }
        rc = sb_add(&sys, blk.p, blk.len);
        nr_free(blk.p);
        if (rc != NR_OK) {
            nr_err_set(NR_ENOMEM, "ask: out of memory");
            goto fail;
        }
        used += cost;
        s = &res->sources[res->n_sources++];
        s->number = res->n_sources;
        s->doc_id = hits[i].doc_id;
        s->chunk_id = hits[i].chunk_id;
        s->source = c->source;
        s->title = c->title;
        s->heading = c->heading;
        s->page = c->page;
        s->start = c->start;
        s->end = c->end;
        s->text = c->text;
        s->score = hits[i].score;
        s->vec_score = hits[i].vec_score;
        s->vec_rank = hits[i].vec_rank;
        s->bm25_score = hits[i].bm25_score;
        s->bm25_rank = hits[i].bm25_rank;
        s->chunk_ = c;
        hits[i].chunk = NULL; /* moved */
        s->snippet = make_snippet(c->text);
        if (!s->snippet) {
            rc = nr_err_set(NR_ENOMEM, "ask: out of memory");
            goto fail;
        }
    }
    res->system = sys.p;
    sys.p = NULL;
    res->prompt_tokens_est = fixed + hist_tokens + used;

    /* the prompt and the answer */
    msgs = nr_calloc((size_t)res->history_used + 2, sizeof *msgs);
    if (!msgs) {
        rc = nr_err_set(NR_ENOMEM, "ask: out of memory");
        goto fail;
    }
    msgs[0].role = "system";
    msgs[0].content = res->system;
    for (int i = 0; i < res->history_used; i++)
        msgs[1 + i] = req->history[hist_first + i];
    msgs[1 + res->history_used].role = "user";
    msgs[1 + res->history_used].content = req->question;
    sc.req = req;
    sc.answer.max = NR_ASK_MAX_ANSWER;
    sc.t0 = t0;
    rc = nr_llm_chat(ctx->llm, msgs, res->history_used + 2, &gp, on_piece, &sc, &res->gen);
    if (rc != NR_OK)
        goto fail;
    if (!sc.answer.p && (rc = sb_add(&sc.answer, "", 0)) != NR_OK) {
        nr_err_set(NR_ENOMEM, "ask: out of memory");
        goto fail;
    }
    res->answer = sc.answer.p;
    res->answer_len = sc.answer.len;
    sc.answer.p = NULL;
    res->prompt_s = res->gen.prompt_s;
    res->gen_s = res->gen.gen_s;
    res->first_token_s = sc.t_first > 0 ? sc.t_first - t0 : 0;

    /* citations */
    {
        unsigned char cited[NR_ASK_MAX_K] = {0};
        res->n_cited = nr_ask_citations(res->answer, res->answer_len, res->n_sources, cited);
        for (int i = 0; i < res->n_sources; i++)
            res->sources[i].cited = cited[i];
    }
    if (req->on_sources)
        req->on_sources(req->ud, res->sources, res->n_sources);
    res->total_s = now_s() - t0;
    rc = NR_OK;
    goto out;
fail:
    nr_ask_result_free(res);
out:
    for (int i = 0; i < n_hits; i++)
        nr_free(sh[i]);
    nr_search_hits_free(hits, n_hits);
    nr_free(msgs);
    nr_free(sys.p);
    nr_free(sc.answer.p);
    return rc;
}
