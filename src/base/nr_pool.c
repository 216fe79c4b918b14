/*
 * Workers wait for a new "generation" of work. Waiting goes through three
 * phases: spin (a forward pass issues dozens of short parallel loops back to
 * back, and a condition-variable wake-up costs tens of microseconds, more when
 * a VM's idle vCPU must be woken by its host), then sched_yield (when the
 * cores are oversubscribed, the thread we wait for may be queued behind us on
 * the same core: spinning would burn our whole time slice, ~3 ms, at every one
 * of the ~80 sync points of a query — measured 236 ms instead of 1.6 ms), then
 * sleep on a condition variable so an idle pool costs no CPU.
 *
 * Invariants: `gen` only grows, and is published (release) after fn, ctx,
 * ntasks and next are set; `busy` counts workers that have not finished the
 * current generation; the caller returns only when busy == 0, so fn/ctx are
 * never read after nr_pool_run returns.
 */
#define _GNU_SOURCE
#include "nr_pool.h"

#include "nr_err.h"
#include "nr_mem.h"

#include <pthread.h>
#include <stdatomic.h>
#include <sched.h>
#include <unistd.h>

#define SPIN_ITERS  2000 /* pause loops: ~50 us on Zen 4 */
#define YIELD_ITERS 200  /* sched_yield calls before sleeping */

struct nr_pool {
    int nthreads;  /* workers + the calling thread */
    pthread_t *th; /* (nthreads - 1) */
    pthread_mutex_t mu;
    pthread_mutex_t run_mu; /* held by the caller for a whole run: callers take turns */
    pthread_cond_t work_cv;
    pthread_cond_t done_cv;
    atomic_uint gen;
    atomic_int next;
    atomic_int busy;
    atomic_int sleepers;
    atomic_int stop;
    int ntasks;
    nr_pool_fn fn;
    void *ctx;
};

struct worker_arg {
    struct nr_pool *pool;
    int id;
};

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ __volatile__("yield");
#endif
}

/* One step of waiting; returns 0 once it is time to sleep instead. */
static int wait_step(int *iter)
{
    int i = (*iter)++;
    if (i < SPIN_ITERS)
        cpu_relax();
    else if (i < SPIN_ITERS + YIELD_ITERS)
        sched_yield();
    else
        return 0;
    return 1;
}

static void do_tasks(struct nr_pool *p, int worker)
{
    for (;;) {
        int i = atomic_fetch_add(&p->next, 1);
        if (i >= p->ntasks)
            break;
        p->fn(p->ctx, i, worker);
    }
}

static void *worker_main(void *argp)
{
    struct worker_arg *arg = argp;
    struct nr_pool *p = arg->pool;
    int id = arg->id;
    unsigned seen = 0;

    nr_free(arg);
    for (;;) {
        unsigned g;
        int spins = 0;
        while ((g = atomic_load_explicit(&p->gen, memory_order_acquire)) == seen &&
               !atomic_load(&p->stop)) {
            if (wait_step(&spins))
                continue;
            pthread_mutex_lock(&p->mu);
            atomic_fetch_add(&p->sleepers, 1);
            while (atomic_load(&p->gen) == seen && !atomic_load(&p->stop))
                pthread_cond_wait(&p->work_cv, &p->mu);
            atomic_fetch_sub(&p->sleepers, 1);
            pthread_mutex_unlock(&p->mu);
            spins = 0;
        }
        if (atomic_load(&p->stop))
            return NULL;
        seen = g;
        do_tasks(p, id);
        if (atomic_fetch_sub_explicit(&p->busy, 1, memory_order_acq_rel) == 1) {
            pthread_mutex_lock(&p->mu);
            pthread_cond_signal(&p->done_cv);
            pthread_mutex_unlock(&p->mu);
        }
    }
}

int nr_cpu_count(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : (int)n;
}

struct nr_pool *nr_pool_new(int nthreads)
{
    struct nr_pool *p;
    int i = 0;

    if (nthreads <= 0)
        nthreads = nr_cpu_count();
    if (nthreads > 256)
        nthreads = 256;
    p = nr_calloc(1, sizeof *p);
    if (!p)
        goto nomem;
    p->nthreads = nthreads;
    pthread_mutex_init(&p->mu, NULL);
    pthread_mutex_init(&p->run_mu, NULL);
    pthread_cond_init(&p->work_cv, NULL);
    pthread_cond_init(&p->done_cv, NULL);
    if (nthreads > 1) {
        p->th = nr_calloc((size_t)nthreads - 1, sizeof *p->th);
        if (!p->th)
            goto nomem;
    }
    for (i = 0; i < nthreads - 1; i++) {
        struct worker_arg *a = nr_malloc(sizeof *a);
        if (!a)
            goto nomem;
        a->pool = p;
        a->id = i + 1;
        if (pthread_create(&p->th[i], NULL, worker_main, a) != 0) {
            nr_free(a);
            p->nthreads = i + 1; /* only i workers exist */
            nr_pool_free(p);
            nr_err_set(NR_ENOMEM, "cannot start worker thread %d", i + 1);
            return NULL;
        }
    }
    return p;
nomem:
    if (p) {
        p->nthreads = i + 1; /* i workers were started */
        nr_pool_free(p);
    }
    nr_err_set(NR_ENOMEM, "out of memory creating thread pool");
    return NULL;
}

void nr_pool_free(struct nr_pool *p)
{
    int i;
    if (!p)
        return;
    pthread_mutex_lock(&p->mu);
    atomic_store(&p->stop, 1);
    pthread_cond_broadcast(&p->work_cv);
    pthread_mutex_unlock(&p->mu);
    for (i = 0; i < p->nthreads - 1; i++)
        pthread_join(p->th[i], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_mutex_destroy(&p->run_mu);
    pthread_cond_destroy(&p->work_cv);
    pthread_cond_destroy(&p->done_cv);
    nr_free(p->th);
    nr_free(p);
}

int nr_pool_threads(const struct nr_pool *p)
{
    return p ? p->nthreads : 1;
}

void nr_pool_run(struct nr_pool *p, int ntasks, nr_pool_fn fn, void *ctx)
{
    int spins = 0;

    if (ntasks <= 0)
        return;
    if (!p || p->nthreads == 1 || ntasks == 1) {
        for (int i = 0; i < ntasks; i++) /* inline: nothing shared is touched */
            fn(ctx, i, 0);
        return;
    }
    pthread_mutex_lock(&p->run_mu);
    p->fn = fn;
    p->ctx = ctx;
    p->ntasks = ntasks;
    atomic_store(&p->next, 0);
    atomic_store(&p->busy, p->nthreads - 1);
    /* seq_cst, paired with the worker's sleepers++ then gen re-check: one of
     * the two sides always sees the other, so no wake-up is lost. */
    atomic_fetch_add(&p->gen, 1);
    if (atomic_load(&p->sleepers) > 0) {
        pthread_mutex_lock(&p->mu);
        pthread_cond_broadcast(&p->work_cv);
        pthread_mutex_unlock(&p->mu);
    }
    do_tasks(p, 0);
    while (atomic_load_explicit(&p->busy, memory_order_acquire) > 0) {
        if (wait_step(&spins))
            continue;
        pthread_mutex_lock(&p->mu);
        while (atomic_load(&p->busy) > 0)
            pthread_cond_wait(&p->done_cv, &p->mu);
        pthread_mutex_unlock(&p->mu);
    }
    pthread_mutex_unlock(&p->run_mu);
}
