/*
 * nr_sample: pick the next token from a model's logits.
 *
 *     struct nr_sampler *s;
 *     nr_sampler_new(n_vocab, &params, &s);
 *     for each prompt token: nr_sampler_accept(s, id);   // repetition-penalty history
 *     nr_sampler_sample(s, logits, &id);                  // logits are modified in place
 *     nr_sampler_accept(s, id);
 *
 * Order (sample.c explains each step): repetition penalty over the distinct
 * ids among the last repeat_last_n accepted tokens; then greedy (argmax,
 * lowest id on ties) when temperature <= 0; else top-k, softmax at the
 * temperature, top-p, min-p, renormalise, one draw from a seeded
 * xoshiro256** stream. Same seed, same logits, same accepted ids -> same ids.
 *
 * Ownership: the sampler owns its scratch (sized for n_vocab once at
 * creation; sampling never allocates). One sampler per generation, used by
 * one thread at a time.
 */
#ifndef NR_SAMPLE_H
#define NR_SAMPLE_H

#include <stdint.h>

#define NR_SAMPLE_MAX_VOCAB  (1 << 20)
#define NR_SAMPLE_MAX_LAST_N 8192 /* repetition-penalty window, tokens */

struct nr_sampler;

struct nr_sample_params {
    float temperature;    /* <= 0: greedy */
    int top_k;            /* 0: off */
    float top_p;          /* (0, 1]; 1: off */
    float min_p;          /* [0, 1]; 0: off */
    float repeat_penalty; /* > 0; 1: off */
    int repeat_last_n;    /* [0, NR_SAMPLE_MAX_LAST_N] tokens */
    uint64_t seed;
};

/* NR_EINVAL naming the field for out-of-range params, NR_ENOMEM. */
int nr_sampler_new(int n_vocab, const struct nr_sample_params *p, struct nr_sampler **out);
void nr_sampler_free(struct nr_sampler *s);

/* Forget the history and restart the random stream from the seed. */
void nr_sampler_reset(struct nr_sampler *s);

/* Record a token (prompt or generated) for the repetition penalty. */
void nr_sampler_accept(struct nr_sampler *s, int32_t id);

/*
 * Choose a token from logits[n_vocab] (penalised and otherwise overwritten
 * in place: pass a copy if the logits are needed afterwards). NaN logits
 * count as -inf. NR_EINVAL for NULL arguments.
 */
int nr_sampler_sample(struct nr_sampler *s, float *logits, int32_t *id);

/*
 * The candidate set the last nr_sampler_sample drew from (after every
 * filter): ids in order of decreasing probability (ties: lower id first) and
 * their renormalised probabilities. Greedy leaves one candidate with p = 1.
 * Valid until the next sample; for tests and diagnostics.
 */
int nr_sampler_last(const struct nr_sampler *s, const int32_t **ids, const float **probs);

/* The next uniform double in [0, 1) of the sampler's stream (tests). */
double nr_sampler_uniform(struct nr_sampler *s);

#endif
