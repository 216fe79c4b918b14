/*
 * batch.c — embed coalescing (contract in nr_batch.h).
 *
 * Jobs live on their callers' stacks and are linked into a FIFO under the
 * batcher's mutex. The worker pops a prefix of the FIFO whose estimated
 * tokens fit the budget (always at least one job, however large: the
 * embedder splits big inputs itself), gathers their text pointers into one
 * array, embeds into one scratch matrix, copies each job's rows out, and
 * marks the jobs done under the mutex. A caller waits on its own job's
 * flag (one condition variable shared by all; broadcasts are per pass, not
 * per token, so the herd is small).
 *
 * Token estimate per text: bytes / 3 + 2 ([CLS], [SEP]), capped at the
 * model's max_seq. WordPiece averages 4-5 bytes per token on English, so the
 * estimate errs high and a batch stays inside the budget.
 *
 * Scratch arrays grow to the largest batch seen and are kept (no allocation
 * per pass once warm); their size is bounded by the budget plus one job, and
 * a job is bounded by the HTTP layer's batch cap.
 */
#include "nr_batch.h"

#include "nr_embed.h"
#include "nr_err.h"
#include "nr_mem.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

struct job {
    const char *const *texts; /* [n] */
    const size_t *lens;       /* [n] or NULL */
    int n;
    float *out; /* [n][dim] */
    int done, rc;
    char err[256]; /* the worker's message on failure */
    struct job *next;
};

struct nr_batch {
    struct nr_embedder *e;
    int dim, max_seq, max_tokens;
    pthread_t thread;
    int started, stop;
    pthread_mutex_t mu;
    pthread_cond_t work;      /* jobs queued or stop */
    pthread_cond_t done;      /* some jobs finished */
    struct job *head, *tail;  /* FIFO */
    struct nr_batch_stats st; /* under mu */
    /* worker-only scratch */
    const char **texts; /* [cap_texts] */
    size_t *lens;       /* [cap_texts] */
    float *vecs;        /* [cap_texts][dim] */
    int cap_texts;
};

static int est_tokens(const struct nr_batch *b, const char *t, const size_t *len)
{
    size_t n = len ? *len : strlen(t);
    size_t tok = n / 3 + 2;
    return tok > (size_t)b->max_seq ? b->max_seq : (int)tok;
}

static int grow(struct nr_batch *b, int n)
{
    const char **t;
    size_t *l;
    float *v;
    size_t vbytes;
    if (n <= b->cap_texts)
        return NR_OK;
    if (nr_mul_size((size_t)n, (size_t)b->dim * sizeof(float), &vbytes))
        return nr_err_set(NR_ELIMIT, "batch: %d texts overflow", n);
    t = nr_realloc(b->texts, (size_t)n * sizeof *t);
    if (t)
        b->texts = t;
    l = nr_realloc(b->lens, (size_t)n * sizeof *l);
    if (l)
        b->lens = l;
    v = nr_realloc(b->vecs, vbytes);
    if (v)
        b->vecs = v;
    if (!t || !l || !v)
        return nr_err_set(NR_ENOMEM, "batch: out of memory for %d texts", n);
    b->cap_texts = n;
    return NR_OK;
}

static double now_s(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static void *worker(void *arg)
{
    struct nr_batch *b = arg;
    pthread_mutex_lock(&b->mu);
    for (;;) {
        struct job *first, *last, *j;
        int n = 0, tokens = 0, rc;
        double t0;
        while (!b->head && !b->stop)
            pthread_cond_wait(&b->work, &b->mu);
        if (b->stop && !b->head)
            break;
        /* take a prefix of the FIFO within the budget */
        first = last = b->head;
        for (j = b->head; j; j = j->next) {
            int jt = 0;
            for (int i = 0; i < j->n; i++)
                jt += est_tokens(b, j->texts[i], j->lens ? &j->lens[i] : NULL);
            if (j != first && tokens + jt > b->max_tokens)
                break;
            tokens += jt;
            n += j->n;
            last = j;
        }
        b->head = last->next;
        if (!b->head)
            b->tail = NULL;
        last->next = NULL;
        pthread_mutex_unlock(&b->mu);

        t0 = now_s();
        if (first == last) {
            /* one request: straight into its own output, no copies */
            rc = nr_embedder_embed(b->e, first->texts, first->lens, first->n, first->out);
        } else if ((rc = grow(b, n)) == NR_OK) {
            int k = 0;
            for (j = first; j; j = j->next)
                for (int i = 0; i < j->n; i++, k++) {
                    b->texts[k] = j->texts[i];
                    b->lens[k] = j->lens ? j->lens[i] : strlen(j->texts[i]);
                }
            rc = nr_embedder_embed(b->e, b->texts, b->lens, n, b->vecs);
            if (rc == NR_OK) {
                k = 0;
                for (j = first; j; j = j->next) {
                    memcpy(j->out, b->vecs + (size_t)k * (size_t)b->dim,
                           (size_t)j->n * (size_t)b->dim * sizeof(float));
                    k += j->n;
                }
            }
        }
        t0 = now_s() - t0;

        pthread_mutex_lock(&b->mu);
        b->st.passes++;
        b->st.busy_s += t0;
        if (rc == NR_OK) {
            b->st.texts += (uint64_t)n;
            b->st.tokens += (uint64_t)tokens;
        }
        for (j = first; j;) {
            struct job *next = j->next; /* j may vanish once done is seen */
            b->st.requests++;
            j->rc = rc;
            if (rc)
                snprintf(j->err, sizeof j->err, "%s", nr_err_msg());
            j->done = 1;
            j = next;
        }
        pthread_cond_broadcast(&b->done);
    }
    pthread_mutex_unlock(&b->mu);
    return NULL;
}

int nr_batch_new(struct nr_embedder *e, int max_tokens, struct nr_batch **out)
{
    struct nr_batch *b = nr_calloc(1, sizeof *b);
    struct nr_embedder_info info;
    *out = NULL;
    if (!b)
        return nr_err_set(NR_ENOMEM, "batch: out of memory");
    nr_embedder_info(e, &info);
    b->e = e;
    b->dim = info.dim;
    b->max_seq = info.max_seq > 0 ? info.max_seq : 512;
    b->max_tokens = max_tokens > 0 ? max_tokens : 8192;
    pthread_mutex_init(&b->mu, NULL);
    pthread_cond_init(&b->work, NULL);
    pthread_cond_init(&b->done, NULL);
    if (pthread_create(&b->thread, NULL, worker, b)) {
        nr_batch_free(b);
        return nr_err_set(NR_ENOMEM, "batch: cannot start the worker thread");
    }
    b->started = 1;
    *out = b;
    return NR_OK;
}

void nr_batch_free(struct nr_batch *b)
{
    if (!b)
        return;
    if (b->started) {
        pthread_mutex_lock(&b->mu);
        b->stop = 1;
        pthread_cond_signal(&b->work);
        pthread_mutex_unlock(&b->mu);
        pthread_join(b->thread, NULL);
    }
    pthread_mutex_destroy(&b->mu);
    pthread_cond_destroy(&b->work);
    pthread_cond_destroy(&b->done);
    nr_free(b->texts);
    nr_free(b->lens);
    nr_free(b->vecs);
    nr_free(b);
}

int nr_batch_embed(struct nr_batch *b, const char *const *texts, const size_t *lens, int n,
                   float *out)
{
    struct job j = {.texts = texts, .lens = lens, .n = n, .out = out};
    if (n < 0 || !texts || (n > 0 && !out))
        return nr_err_set(NR_EINVAL, "batch: bad arguments");
    for (int i = 0; i < n; i++)
        if (!texts[i])
            return nr_err_set(NR_EINVAL, "batch: text %d is NULL", i);
    if (n == 0)
        return NR_OK;
    pthread_mutex_lock(&b->mu);
    if (b->tail)
        b->tail->next = &j;
    else
        b->head = &j;
    b->tail = &j;
    b->st.waiting++;
    pthread_cond_signal(&b->work);
    while (!j.done)
        pthread_cond_wait(&b->done, &b->mu);
    b->st.waiting--;
    pthread_mutex_unlock(&b->mu);
    if (j.rc)
        return nr_err_set(j.rc, "%s", j.err);
    return NR_OK;
}

void nr_batch_get_stats(struct nr_batch *b, struct nr_batch_stats *st)
{
    pthread_mutex_lock(&b->mu);
    *st = b->st;
    pthread_mutex_unlock(&b->mu);
}
