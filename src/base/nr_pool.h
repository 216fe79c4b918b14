/*
 * nr_pool: a fixed pool of worker threads for data-parallel loops.
 *
 * nr_pool_run(pool, n, fn, ctx) calls fn(ctx, i, worker) once for every
 * i in [0, n), spread over the pool's threads and the calling thread, and
 * returns when all calls are done. `worker` is in [0, nr_pool_threads()) and
 * is stable for the call, so fn can use per-worker scratch space.
 * Tasks are handed out by an atomic counter (dynamic scheduling): make them
 * a few times more numerous than threads when their costs differ.
 *
 * Callers may share a pool: concurrent nr_pool_run calls on one pool take
 * turns, one whole run at a time (a lock held for the run). Components that
 * run side by side in one process (the server's embedder, generator and
 * index) share one pool so they never put more threads on the cores than
 * there are cores; their work interleaves run by run. A run must not start
 * another run on the same pool from inside fn (it would wait for itself).
 * A pool of 1 thread runs everything inline.
 */
#ifndef NR_POOL_H
#define NR_POOL_H

struct nr_pool;

typedef void (*nr_pool_fn)(void *ctx, int task, int worker);

/* nthreads <= 0 means one per online CPU. NULL on failure (NR error set). */
struct nr_pool *nr_pool_new(int nthreads);
void nr_pool_free(struct nr_pool *pool);
int nr_pool_threads(const struct nr_pool *pool);
void nr_pool_run(struct nr_pool *pool, int ntasks, nr_pool_fn fn, void *ctx);

/* Online CPUs. */
int nr_cpu_count(void);

#endif
