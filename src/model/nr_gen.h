/*
 * nr_gen: text generation with a local model — the API the CLI (`nanorag
 * generate`, `nanorag chat`), the server and the ask pipeline use.
 *
 *     struct nr_gen_params p;  nr_gen_params_default(&p);
 *     p.temperature = 0;                       // greedy
 *     struct nr_chat_msg msgs[] = {{"user", "Hi!"}};
 *     struct nr_gen_stats st;
 *     nr_gen_chat(m, seq, msgs, 1, &p, on_text, ud, &st);
 *
 * The prompt is tokenized (chat: rendered with the model's template first,
 * nr_chat.h), evaluated in one prefill, then tokens are sampled (nr_sample.h)
 * and streamed as complete UTF-8 through the callback until an end-of-
 * generation token, a stop string, max_tokens, the end of the context, or
 * cancellation. Text that could be the start of a stop string is held back
 * until it is known not to be one, so a stop string is never streamed.
 *
 * Cancellation: the callback returns nonzero, or *p.cancel becomes nonzero
 * (checked before every token; another thread may set it).
 *
 * The sequence: generation appends to seq. If seq already holds a prefix of
 * the new prompt's tokens (a previous turn), only the rest is evaluated
 * (prefix reuse, by comparing with nr_llama_seq_ids); otherwise it is
 * truncated to the common prefix first.
 * When prompt + max_tokens exceed the sequence's context, the oldest turns
 * of a chat are dropped (the system message kept) until it fits; a plain
 * prompt is cut from the front. Callers own msgs, params and the callback
 * state; nothing is retained after return.
 */
#ifndef NR_GEN_H
#define NR_GEN_H

#include <stddef.h>
#include <stdint.h>

struct nr_llama;
struct nr_llama_seq;

#define NR_GEN_MAX_STOP     16
#define NR_GEN_MAX_STOP_LEN 256 /* bytes of one stop string */

struct nr_gen_params {
    int max_tokens;       /* tokens to generate at most (default 512); <= 0: until the
                           * context ends; must be < the sequence's n_ctx */
    float temperature;    /* 0: greedy (argmax); default 0.8 */
    int top_k;            /* 0: off; default 40 */
    float top_p;          /* 1: off; default 0.95 */
    float min_p;          /* 0: off; default 0.05 */
    float repeat_penalty; /* 1: off; default 1.1 */
    int repeat_last_n;    /* tokens the penalty looks back over; default 64 */
    uint64_t seed;        /* same seed, model, prompt and params -> same output (default 0) */
    const char *stop[NR_GEN_MAX_STOP]; /* stop strings (NULL-terminated list unless all
                                        * 16 are used; each <= NR_GEN_MAX_STOP_LEN bytes) */
    volatile int *cancel;              /* optional; nonzero stops generation */
};

/* One chat message. role: "system", "user" or "assistant". */
struct nr_chat_msg {
    const char *role;
    const char *content;
};

struct nr_gen_stats {
    int prompt_tokens;       /* tokens in the prompt */
    int prompt_evaluated;    /* of which evaluated (the rest reused from seq) */
    int gen_tokens;          /* tokens generated */
    double prompt_s;         /* seconds of prefill */
    double gen_s;            /* seconds of decode (first token sampled .. last) */
    const char *done_reason; /* "stop" (EOG or stop string), "length", "cancel" */
};

/* Return 0 to go on, nonzero to cancel. text is complete UTF-8, len > 0. */
typedef int (*nr_gen_cb)(void *ud, const char *text, size_t len);

void nr_gen_params_default(struct nr_gen_params *p);

/*
 * Generate from a raw prompt: no template; BOS added as the model says, and
 * special-token text in the prompt IS parsed (a raw prompt is how a caller
 * writes its own template). Text from an untrusted user belongs in a
 * message of nr_gen_chat, whose user content is never parsed for specials.
 */
int nr_gen_text(struct nr_llama *m, struct nr_llama_seq *seq, const char *prompt,
                const struct nr_gen_params *p, nr_gen_cb cb, void *ud, struct nr_gen_stats *st);

/* Generate the assistant's reply to msgs[0..n), rendered with the model's chat template. */
int nr_gen_chat(struct nr_llama *m, struct nr_llama_seq *seq, const struct nr_chat_msg *msgs, int n,
                const struct nr_gen_params *p, nr_gen_cb cb, void *ud, struct nr_gen_stats *st);

#endif
