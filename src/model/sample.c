/*
 * Token sampling: logits -> one token id.
 *
 * Steps, in this order (the order Hugging Face's warpers use, with the
 * repetition penalty first as in llama.cpp):
 *
 *   1. NaN logits become -inf, +inf becomes FLT_MAX (a broken model output
 *      must not poison the arithmetic below).
 *   2. Repetition penalty over the DISTINCT ids among the last repeat_last_n
 *      accepted tokens (prompt included): a positive logit is divided by the
 *      penalty, a negative one multiplied (the HF / llama.cpp rule, so the
 *      penalty always lowers the token's chance).
 *   3. temperature <= 0: argmax, lowest id on ties (torch.argmax's choice).
 *   4. top-k: the k best candidates. k <= n/16 (the usual 40 of 49152 or
 *      262144): one pass with a heap of the k best so far (one comparison per
 *      logit). Larger k: a quickselect (O(n) on average, a sort of the range
 *      past a depth bound so adversarial inputs stay O(n log n)). The
 *      vocabulary is never fully sorted for top-k.
 *   5. softmax at the temperature over what is left:
 *      w_i = exp((l_i - l_max) / T), p_i = w_i / sum(w).
 *   6. top-p: the smallest prefix (by decreasing probability) whose mass
 *      reaches p. Built incrementally: select and sort the next 64, 128, ...
 *      best until the mass is reached, so a peaked distribution costs O(n)
 *      and only a flat one approaches a full sort.
 *   7. min-p: drop p_i < min_p * p_max. Since w_max = 1, that is w_i < min_p,
 *      i.e. l_i < l_max + T ln(min_p): with min-p as the only filter, only
 *      logits near that bound enter the candidate set at all.
 *   8. renormalise and draw once with u in [0, 1) from xoshiro256**, seeded
 *      by splitmix64(seed).
 *
 * Ordering is the total order (logit desc, id asc) everywhere: which token
 * wins a tie at a top-k or top-p boundary never depends on pivot choices, so
 * the kept set equals that of a plain full sort (the test checks this).
 * Candidates are ordered by their logits, not by w, because exp can map two
 * different logits to the same float.
 *
 * With no filter at all (top_k 0, top_p 1, min_p 0) the draw walks the
 * vocabulary in id order without sorting; the distribution is the same.
 *
 * Memory: one candidate array of n_vocab (8 bytes each) plus the output ids
 * and probabilities (8 bytes each), allocated at creation: 4 MiB for a
 * 262144-token vocabulary. Sampling itself never allocates.
 */
#include "nr_sample.h"

#include "nr_err.h"
#include "nr_mem.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define TOP_P_FIRST_CHUNK 64 /* candidates sorted in the first top-p round */
#define SELECT_SMALL      16 /* ranges this short are insertion-sorted */

struct cand {
    float v;    /* (penalised) logit */
    int32_t id; /* token id */
};

struct nr_sampler {
    struct nr_sample_params p;
    int n_vocab;
    uint64_t rng[4];   /* xoshiro256** state */
    int32_t *hist;     /* [repeat_last_n] ring of accepted ids */
    int hist_n;        /* valid entries in hist */
    int hist_next;     /* ring write position */
    int32_t *uniq;     /* [repeat_last_n] scratch for distinct ids */
    struct cand *cand; /* [n_vocab] working set */
    int32_t *out_id;   /* [n_vocab] last candidate set, best first */
    float *out_p;      /* [n_vocab] its probabilities */
    int n_out;         /* size of the last candidate set */
};

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static inline uint64_t rotl64(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

static uint64_t xoshiro_next(uint64_t s[4])
{
    uint64_t out = rotl64(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl64(s[3], 45);
    return out;
}

double nr_sampler_uniform(struct nr_sampler *s)
{
    /* The top 53 bits as a fraction: every value is exact and < 1. */
    return (double)(xoshiro_next(s->rng) >> 11) * 0x1.0p-53;
}

static int check_params(int n_vocab, const struct nr_sample_params *p)
{
    if (n_vocab < 1 || n_vocab > NR_SAMPLE_MAX_VOCAB)
        return nr_err_set(NR_EINVAL, "sample: vocabulary of %d tokens (1..%d)", n_vocab,
                          NR_SAMPLE_MAX_VOCAB);
    if (!isfinite(p->temperature))
        return nr_err_set(NR_EINVAL, "sample: temperature must be a finite number");
    if (p->top_k < 0)
        return nr_err_set(NR_EINVAL, "sample: top_k %d must be >= 0", p->top_k);
    if (!(p->top_p > 0.0f && p->top_p <= 1.0f))
        return nr_err_set(NR_EINVAL, "sample: top_p %g must be in (0, 1]", (double)p->top_p);
    if (!(p->min_p >= 0.0f && p->min_p <= 1.0f))
        return nr_err_set(NR_EINVAL, "sample: min_p %g must be in [0, 1]", (double)p->min_p);
    if (!(p->repeat_penalty > 0.0f && isfinite(p->repeat_penalty)))
        return nr_err_set(NR_EINVAL, "sample: repeat_penalty %g must be > 0",
                          (double)p->repeat_penalty);
    if (p->repeat_last_n < 0 || p->repeat_last_n > NR_SAMPLE_MAX_LAST_N)
        return nr_err_set(NR_EINVAL, "sample: repeat_last_n %d must be in 0..%d", p->repeat_last_n,
                          NR_SAMPLE_MAX_LAST_N);
    return NR_OK;
}

void nr_sampler_reset(struct nr_sampler *s)
{
    uint64_t x = s->p.seed;
    for (int i = 0; i < 4; i++)
        s->rng[i] = splitmix64(&x);
    s->hist_n = 0;
    s->hist_next = 0;
    s->n_out = 0;
}

int nr_sampler_new(int n_vocab, const struct nr_sample_params *p, struct nr_sampler **out)
{
    struct nr_sampler *s = NULL;
    int rc;

    if (!p || !out)
        return nr_err_set(NR_EINVAL, "sample: NULL argument");
    *out = NULL;
    rc = check_params(n_vocab, p);
    if (rc)
        return rc;
    s = nr_calloc(1, sizeof *s);
    if (!s)
        goto nomem;
    s->p = *p;
    s->n_vocab = n_vocab;
    if (p->repeat_last_n > 0) {
        s->hist = nr_malloc((size_t)p->repeat_last_n * sizeof *s->hist);
        s->uniq = nr_malloc((size_t)p->repeat_last_n * sizeof *s->uniq);
        if (!s->hist || !s->uniq)
            goto nomem;
    }
    s->cand = nr_malloc((size_t)n_vocab * sizeof *s->cand);
    s->out_id = nr_malloc((size_t)n_vocab * sizeof *s->out_id);
    s->out_p = nr_malloc((size_t)n_vocab * sizeof *s->out_p);
    if (!s->cand || !s->out_id || !s->out_p)
        goto nomem;
    nr_sampler_reset(s);
    *out = s;
    return NR_OK;
nomem:
    nr_sampler_free(s);
    return nr_err_set(NR_ENOMEM, "sample: out of memory for a %d-token vocabulary", n_vocab);
}

void nr_sampler_free(struct nr_sampler *s)
{
    if (!s)
        return;
    nr_free(s->hist);
    nr_free(s->uniq);
    nr_free(s->cand);
    nr_free(s->out_id);
    nr_free(s->out_p);
    nr_free(s);
}

void nr_sampler_accept(struct nr_sampler *s, int32_t id)
{
    if (!s || s->p.repeat_last_n == 0 || id < 0 || id >= s->n_vocab)
        return;
    s->hist[s->hist_next] = id;
    s->hist_next = (s->hist_next + 1) % s->p.repeat_last_n;
    if (s->hist_n < s->p.repeat_last_n)
        s->hist_n++;
}

int nr_sampler_last(const struct nr_sampler *s, const int32_t **ids, const float **probs)
{
    *ids = s->out_id;
    *probs = s->out_p;
    return s->n_out;
}

static int cmp_i32(const void *a, const void *b)
{
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

static void apply_penalty(struct nr_sampler *s, float *logits)
{
    float pen = s->p.repeat_penalty;
    int n = s->hist_n;

    if (pen == 1.0f || n == 0)
        return;
    memcpy(s->uniq, s->hist, (size_t)n * sizeof *s->uniq);
    qsort(s->uniq, (size_t)n, sizeof *s->uniq, cmp_i32);
    for (int i = 0; i < n; i++) {
        float *l;
        if (i > 0 && s->uniq[i] == s->uniq[i - 1])
            continue;
        l = &logits[s->uniq[i]];
        *l = *l > 0.0f ? *l / pen : *l * pen;
    }
}

/* a goes before b: higher logit, then lower id. A total order (ids are unique). */
static inline int before(const struct cand *a, const struct cand *b)
{
    return a->v > b->v || (a->v == b->v && a->id < b->id);
}

static int cmp_cand(const void *pa, const void *pb)
{
    const struct cand *a = pa, *b = pb;
    return before(a, b) ? -1 : before(b, a) ? 1 : 0;
}

static void insertion_sort(struct cand *c, int lo, int hi)
{
    for (int i = lo + 1; i < hi; i++) {
        struct cand x = c[i];
        int j = i;
        while (j > lo && before(&x, &c[j - 1])) {
            c[j] = c[j - 1];
            j--;
        }
        c[j] = x;
    }
}

static const struct cand *median3(const struct cand *a, const struct cand *b, const struct cand *c)
{
    if (before(a, b))
        return before(b, c) ? b : before(a, c) ? c : a;
    return before(a, c) ? a : before(b, c) ? c : b;
}

/*
 * Rearrange c[lo, hi) so that c[lo, end) holds its (end - lo) best in some
 * order and everything after is worse (quickselect, Hoare partition).
 */
static void select_top(struct cand *c, int lo, int hi, int end)
{
    int depth = 0;

    while (hi - lo > SELECT_SMALL) {
        struct cand piv = *median3(&c[lo], &c[lo + (hi - lo) / 2], &c[hi - 1]);
        int i = lo, j = hi - 1;

        if (++depth > 48) {
            qsort(c + lo, (size_t)(hi - lo), sizeof *c, cmp_cand);
            return;
        }
        while (i <= j) {
            while (before(&c[i], &piv))
                i++;
            while (before(&piv, &c[j]))
                j--;
            if (i <= j) {
                struct cand t = c[i];
                c[i] = c[j];
                c[j] = t;
                i++;
                j--;
            }
        }
        /* [lo, j] precede the pivot, (j, i) equal it, [i, hi) follow it. */
        if (end <= j + 1)
            hi = j + 1;
        else if (end >= i)
            lo = i;
        else
            return;
    }
    insertion_sort(c, lo, hi);
}

/* Sift c[i] down a heap whose root is its WORST element (the k-th best so far). */
static void heap_sift_worst(struct cand *c, int n, int i)
{
    for (;;) {
        int l = 2 * i + 1, r = l + 1, w = i;
        if (l < n && before(&c[w], &c[l]))
            w = l;
        if (r < n && before(&c[w], &c[r]))
            w = r;
        if (w == i)
            return;
        struct cand t = c[i];
        c[i] = c[w];
        c[w] = t;
        i = w;
    }
}

/*
 * The k best of logits[0, n) into c[0, k) (unordered), in one pass: a heap
 * of the k best so far, its worst at the root; a logit enters only when it
 * beats the root, which for a vocabulary in no particular order happens
 * about k ln(n / k) times. So the cost is one comparison per logit.
 */
static void heap_top_k(const float *logits, int n, int k, struct cand *c)
{
    for (int i = 0; i < k; i++) {
        c[i].v = logits[i];
        c[i].id = i;
    }
    for (int i = k / 2 - 1; i >= 0; i--)
        heap_sift_worst(c, k, i);
    for (int i = k; i < n; i++) {
        struct cand x = {logits[i], i};
        if (before(&x, &c[0])) {
            c[0] = x;
            heap_sift_worst(c, k, 0);
        }
    }
}

/*
 * Lowest index of the largest value (no NaN in l). Two passes: the maximum
 * with eight independent lanes (a chain the CPU can overlap, and that
 * compilers turn into vector max instructions), then its first position.
 */
static int32_t argmax(const float *l, int n)
{
    float m[8], best;
    int i = 0;
    for (int j = 0; j < 8; j++)
        m[j] = -INFINITY;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++)
            m[j] = l[i + j] > m[j] ? l[i + j] : m[j];
    for (; i < n; i++)
        m[0] = l[i] > m[0] ? l[i] : m[0];
    best = m[0];
    for (int j = 1; j < 8; j++)
        best = m[j] > best ? m[j] : best;
    for (i = 0; i < n; i++)
        if (l[i] == best)
            return i;
    return 0;
}

int nr_sampler_sample(struct nr_sampler *s, float *logits, int32_t *id)
{
    const struct nr_sample_params *p;
    struct cand *c;
    int n, sorted = 0;
    float lmax, inv_t;
    double sum, total, r, acc;

    if (!s || !logits || !id)
        return nr_err_set(NR_EINVAL, "sample: NULL argument");
    p = &s->p;
    c = s->cand;
    n = s->n_vocab;

    for (int i = 0; i < n; i++)
        if (!(logits[i] <= FLT_MAX)) /* NaN or +inf, rare: one branch per logit */
            logits[i] = isnan(logits[i]) ? -INFINITY : FLT_MAX;
    apply_penalty(s, logits);

    *id = argmax(logits, n);
    lmax = logits[*id];
    if (p->temperature <= 0.0f || lmax == -INFINITY) {
        /* Greedy, or nothing has any mass: the argmax either way. */
        s->out_id[0] = *id;
        s->out_p[0] = 1.0f;
        s->n_out = 1;
        return NR_OK;
    }
    inv_t = 1.0f / p->temperature;

    if (p->top_k == 0 && p->top_p < 1.0f && n >= 16 * TOP_P_FIRST_CHUNK) {
        /*
         * top-p without top-k on a large vocabulary: the mass usually sits
         * in a few tokens. Normalise over the logits, take the best 64 with
         * the one-pass heap; if they reach the mass, that is the set.
         * Otherwise fall through to the general incremental sort.
         */
        double target, cum = 0.0;
        sum = 0.0;
        for (int i = 0; i < n; i++)
            sum += expf((logits[i] - lmax) * inv_t);
        target = (double)p->top_p * sum;
        heap_top_k(logits, n, TOP_P_FIRST_CHUNK, c);
        qsort(c, TOP_P_FIRST_CHUNK, sizeof *c, cmp_cand);
        for (int i = 0; i < TOP_P_FIRST_CHUNK; i++) {
            cum += expf((c[i].v - lmax) * inv_t);
            if (cum >= target) {
                n = i + 1;
                sorted = n;
                goto top_p_done;
            }
        }
    }
    if (p->top_k > 0 && p->top_k <= n / 16) {
        heap_top_k(logits, n, p->top_k, c);
        n = p->top_k;
    } else if (p->top_k == 0 && p->top_p >= 1.0f && p->min_p > 0.0f) {
        /*
         * min-p alone: w >= min_p  <=>  l >= l_max + T ln(min_p). Only logits
         * near that bound become candidates (the bound is loosened a little
         * so rounding never drops one; the exact test on w follows below).
         */
        float bound = lmax + p->temperature * logf(p->min_p);
        int m = 0;
        bound -= 1e-3f * (1.0f + fabsf(bound));
        for (int i = 0; i < n; i++)
            if (logits[i] >= bound) {
                c[m].v = logits[i];
                c[m++].id = i;
            }
        n = m;
    } else {
        for (int i = 0; i < n; i++) {
            c[i].v = logits[i];
            c[i].id = i;
        }
        if (p->top_k > 0 && p->top_k < n) {
            select_top(c, 0, n, p->top_k);
            n = p->top_k;
        }
    }

    /* The normalisation over every candidate is needed only by top-p. */
    sum = 0.0;
    if (p->top_p < 1.0f)
        for (int i = 0; i < n; i++)
            sum += expf((c[i].v - lmax) * inv_t);

    if (p->top_p < 1.0f) {
        /* Sort the best 64, then the next 128, ... until the mass reaches top_p. */
        double target = (double)p->top_p * sum, cum = 0.0;
        int chunk = TOP_P_FIRST_CHUNK, keep = n;
        while (sorted < n) {
            int end = n - sorted > chunk ? sorted + chunk : n;
            if (end < n)
                select_top(c, sorted, n, end);
            qsort(c + sorted, (size_t)(end - sorted), sizeof *c, cmp_cand);
            for (int i = sorted; i < end; i++) {
                cum += expf((c[i].v - lmax) * inv_t);
                if (cum >= target) {
                    keep = i + 1;
                    break;
                }
            }
            sorted = end;
            if (keep < n)
                break;
            chunk *= 2;
        }
        n = keep;
        sorted = n;
    }
top_p_done:

    if (p->min_p > 0.0f) {
        /* w = p / p_max; the best token (w = 1) always stays. */
        int m = 0;
        for (int i = 0; i < n; i++)
            if (expf((c[i].v - lmax) * inv_t) >= p->min_p)
                c[m++] = c[i];
        n = m;
        if (sorted > n)
            sorted = n;
    }

    if (sorted < n && (p->top_k > 0 || p->min_p > 0.0f))
        qsort(c, (size_t)n, sizeof *c, cmp_cand);

    total = 0.0;
    for (int i = 0; i < n; i++) {
        float w = expf((c[i].v - lmax) * inv_t);
        s->out_id[i] = c[i].id;
        s->out_p[i] = w;
        total += w;
    }
    s->n_out = n;

    r = nr_sampler_uniform(s) * total;
    acc = 0.0;
    *id = c[n - 1].id;
    for (int i = 0; i < n; i++) {
        acc += s->out_p[i];
        if (r < acc) {
            *id = c[i].id;
            break;
        }
    }
    for (int i = 0; i < n; i++)
        s->out_p[i] = (float)(s->out_p[i] / total);
    return NR_OK;
}
