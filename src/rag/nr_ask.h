/*
 * nr_ask: answer a question from the documents — retrieval-augmented
 * generation with numbered, cited sources.
 *
 *     question (+ history) ─▶ retrieval query ─▶ hybrid retrieval (nr_retrieve)
 *     ─▶ relevance threshold ─▶ duplicates dropped ─▶ sources packed into the
 *     generator's token budget ─▶ prompt ─▶ nr_llm_chat (streamed) ─▶ [n] parsed
 *     from the answer ─▶ the cited sources
 *
 *     struct nr_ask_ctx ctx = {retriever, NULL, llm};
 *     struct nr_ask_req req;  nr_ask_req_default(&req);
 *     req.question = "How do I reset the router?";
 *     req.on_text = print_piece;  req.ud = stdout;
 *     struct nr_ask_result res;
 *     if (nr_ask_run(&ctx, &req, &res) == NR_OK) { ... res.sources ... }
 *     nr_ask_result_free(&res);
 *
 * The rules (query construction, threshold, duplicates, budget, prompt,
 * citations) are described at the top of ask.c.
 *
 * Threads: nr_ask_run may run on several threads at once with one context
 * when ctx->retriever_lock is given (the retriever is one-thread-at-a-time;
 * the lock is held only around retrieval); the generator has its own slots.
 * Ownership: the context's objects are borrowed; the request's strings are
 * borrowed for the call; the result owns everything in it until
 * nr_ask_result_free.
 */
#ifndef NR_ASK_H
#define NR_ASK_H

#include "nr_gen.h"

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

struct nr_retriever;
struct nr_llm;
struct nr_store_chunk;

#define NR_ASK_NO_ANSWER    "I could not find this in the documents."
#define NR_ASK_MAX_K        50         /* sources per answer */
#define NR_ASK_MAX_QUESTION (16 << 10) /* bytes of the question */
#define NR_ASK_MAX_HISTORY  256        /* earlier messages */
#define NR_ASK_MAX_ANSWER   (1 << 20)  /* answer bytes kept in the result (all are streamed) */

struct nr_ask_ctx {
    struct nr_retriever *retriever;  /* borrowed */
    pthread_mutex_t *retriever_lock; /* held around retrieval; NULL: one caller at a time */
    struct nr_llm *llm;              /* borrowed */
};

struct nr_ask_source {
    int number; /* its [n] in the prompt, from 1 */
    int cited;  /* 1 when the answer cites [n] */
    int64_t doc_id, chunk_id;
    const char *source;  /* document source name (path or upload name) */
    const char *title;   /* document title, or NULL */
    const char *heading; /* section heading, or NULL */
    int page;            /* 1-based, 0 if unknown */
    int64_t start, end;  /* byte offsets of the chunk in the document text */
    const char *text;    /* the chunk text given to the generator */
    char *snippet;       /* start of the text, whitespace folded, <= ~240 bytes */
    double score;        /* hybrid (fused) score */
    float vec_score;     /* cosine, when the vector search found it */
    int vec_rank;        /* 1-based, 0: not among the vector candidates */
    double bm25_score;
    int bm25_rank;                 /* 1-based, 0: not among the BM25 candidates */
    struct nr_store_chunk *chunk_; /* owns the strings above */
};

typedef void (*nr_ask_sources_cb)(void *ud, const struct nr_ask_source *src, int n);

struct nr_ask_req {
    const char *question;
    const struct nr_chat_msg *history; /* earlier turns, oldest first ("user"/"assistant") */
    int n_history;
    int k;                        /* sources at most, 1..NR_ASK_MAX_K (default 5) */
    float threshold;              /* min cosine of a source to the query (default 0.2, see ask.c) */
    const char *collection;       /* NULL: all */
    struct nr_gen_params gen;     /* max_tokens: room kept for the answer (default 512);
                                     temperature default 0 (greedy) */
    nr_gen_cb on_text;            /* answer pieces as they come; may be NULL */
    nr_ask_sources_cb on_sources; /* after the answer: all numbered sources; may be NULL */
    void *ud;
};

struct nr_ask_result {
    char *answer; /* the whole answer (first NR_ASK_MAX_ANSWER bytes), NUL-terminated */
    size_t answer_len;
    char *query;                   /* the retrieval query */
    char *system;                  /* the system message: instruction + numbered sources */
    struct nr_ask_source *sources; /* [n_sources], sources[i].number == i + 1 */
    int n_sources;
    int n_cited;
    int no_answer;    /* 1: nothing passed the threshold; the answer is NR_ASK_NO_ANSWER */
    int history_used; /* earlier messages kept in the prompt */
    int hits;         /* retrieved before filtering */
    int dropped_threshold, dropped_duplicate, dropped_budget;
    int budget_tokens;     /* prompt tokens allowed: n_ctx - answer room */
    int prompt_tokens_est; /* our count of the prompt (text + template allowance) */
    struct nr_gen_stats gen;
    double retrieve_s;    /* query embedding + search */
    double prompt_s;      /* prompt evaluation (remote: time to the first piece) */
    double gen_s;         /* generation */
    double first_token_s; /* from the call to the first answer piece */
    double total_s;
};

void nr_ask_req_default(struct nr_ask_req *r);

/*
 * Answer req->question. NR_OK with *res filled (also when nothing relevant
 * was found: res->no_answer). Errors: NR_EINVAL (bad request, message names
 * the field), NR_ELIMIT (the question and instruction alone exceed the
 * budget), and the generator's (NR_EBUSY, NR_ECANCELED, NR_EREMOTE, NR_EIO);
 * *res is then empty (safe to free).
 */
int nr_ask_run(const struct nr_ask_ctx *ctx, const struct nr_ask_req *req,
               struct nr_ask_result *res);
void nr_ask_result_free(struct nr_ask_result *res);

/* The parts, exposed for tests. */

/* The retrieval query for question after history (see ask.c); owned by the caller (nr_free). */
char *nr_ask_query(const char *question, const struct nr_chat_msg *history, int n_history);
/* Mark cited[i] for every [n] (1 <= n <= n_sources) cited in text; returns how many marked. */
int nr_ask_citations(const char *text, size_t len, int n_sources, unsigned char *cited);
/* Word 3-shingle Jaccard similarity of two texts, in [0, 1]. */
double nr_ask_similarity(const char *a, size_t alen, const char *b, size_t blen);

#endif
