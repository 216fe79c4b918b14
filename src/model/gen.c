/*
 * The generation loop: prompt -> tokens -> prefill -> sample / decode ->
 * streamed text.
 *
 * Prefix reuse. A sequence remembers the ids it holds (nr_llama_seq_ids).
 * A new prompt is compared with them; the sequence is truncated to the
 * common prefix and only the rest is evaluated. A prompt that the sequence
 * already holds entirely is truncated by one token so its last position is
 * evaluated again (its logits are needed). A chat's next turn re-renders the
 * whole conversation, so everything up to the previous answer is reused
 * (the answer itself too, where its re-tokenization equals what was sampled).
 *
 * Context. need = prompt + max_tokens (max_tokens <= 0: prompt + 1) must fit
 * the sequence's n_ctx. A chat drops its oldest turns (a user message and the
 * answers after it; the system message and the last user message are kept)
 * until it fits; a raw prompt loses tokens from its front (BOS kept). When the
 * last user message with the system message alone does not fit, or
 * max_tokens leaves no room at all: NR_ELIMIT with the counts. With
 * max_tokens <= 0 generation runs until the context is full ("length").
 *
 * Stop strings. Text is streamed as complete UTF-8 (nr_tok_stream). The
 * not-yet-sent text is kept in `pend`: after each token, a stop string found
 * in it ends generation and only the text before it is sent; otherwise the
 * longest tail of pend that is a prefix of some stop string is held back and
 * the rest sent. So no byte of a stop string is ever streamed, and held text
 * is released as soon as it can no longer start one. pend never exceeds
 * NR_GEN_MAX_STOP_LEN - 1 held bytes plus one token's text.
 *
 * End-of-generation tokens (nr_tok_is_eog) are not evaluated and not
 * streamed. The last token of a "length" stop is not evaluated either (no
 * logits are needed after it); the next prompt re-evaluates it if reused.
 *
 * Cancellation: *p->cancel is read before every prefill chunk and every
 * token; a callback returning nonzero stops at once. Both end with
 * done_reason "cancel" and NR_OK (the caller asked for it), with the text
 * sent so far; nothing after the cancel is sent.
 *
 * Memory: a logits buffer (n_vocab floats), the prompt ids (n_ctx), the
 * sampler's scratch; allocated per call, none in the token loop.
 */
#include "nr_gen.h"

#include "nr_chat.h"
#include "nr_err.h"
#include "nr_llama.h"
#include "nr_mem.h"
#include "nr_sample.h"
#include "nr_tok.h"

#include <string.h>
#include <time.h>

#define PREFILL_CHUNK 512 /* tokens per nr_llama_eval call in prefill (cancel checked between) */
#define PEND_CAP      (NR_GEN_MAX_STOP_LEN + NR_TOK_STREAM_CAP + 64)

void nr_gen_params_default(struct nr_gen_params *p)
{
    memset(p, 0, sizeof *p);
    p->max_tokens = 512;
    p->temperature = 0.8f;
    p->top_k = 40;
    p->top_p = 0.95f;
    p->min_p = 0.05f;
    p->repeat_penalty = 1.1f;
    p->repeat_last_n = 64;
    p->seed = 0;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cancelled(const struct nr_gen_params *p)
{
    return p->cancel && __atomic_load_n(p->cancel, __ATOMIC_RELAXED); /* set by other threads */
}

/* ---------------------------------------------------------------- stop strings */

struct stopper {
    const char *s[NR_GEN_MAX_STOP + 1]; /* stop strings */
    size_t len[NR_GEN_MAX_STOP + 1];    /* their lengths, bytes (1..NR_GEN_MAX_STOP_LEN) */
    int n;
    char pend[PEND_CAP]; /* text decoded but not yet sent */
    size_t n_pend;       /* bytes */
    nr_gen_cb cb;
    void *ud;
};

static int stopper_init(struct stopper *st, const struct nr_gen_params *p, const char *extra,
                        nr_gen_cb cb, void *ud)
{
    memset(st, 0, sizeof *st);
    st->cb = cb;
    st->ud = ud;
    for (int i = 0; i < NR_GEN_MAX_STOP && p->stop[i]; i++) {
        size_t n = strlen(p->stop[i]);
        if (n == 0)
            continue;
        if (n > NR_GEN_MAX_STOP_LEN)
            return nr_err_set(NR_EINVAL, "gen: stop string %d is %zu bytes (at most %d)", i, n,
                              NR_GEN_MAX_STOP_LEN);
        st->s[st->n] = p->stop[i];
        st->len[st->n++] = n;
    }
    if (extra && *extra) {
        st->s[st->n] = extra;
        st->len[st->n++] = strlen(extra);
    }
    return NR_OK;
}

/* First occurrence of needle[0, k) in hay[0, n), or NULL (k >= 1). */
static const char *find_bytes(const char *hay, size_t n, const char *needle, size_t k)
{
    for (size_t i = 0; k <= n && i <= n - k; i++)
        if (hay[i] == needle[0] && !memcmp(hay + i, needle, k))
            return hay + i;
    return NULL;
}

/* Send pend[0, n) and drop it from pend; 1 if the callback asked to stop. */
static int send(struct stopper *st, size_t n)
{
    int stop = 0;
    if (n == 0)
        return 0;
    if (st->cb)
        stop = st->cb(st->ud, st->pend, n) != 0;
    memmove(st->pend, st->pend + n, st->n_pend - n);
    st->n_pend -= n;
    return stop;
}

/* Longest tail of pend that is a proper prefix of a stop string. */
static size_t held_tail(const struct stopper *st)
{
    size_t best = 0;
    for (int i = 0; i < st->n; i++) {
        size_t max = st->len[i] - 1 < st->n_pend ? st->len[i] - 1 : st->n_pend;
        for (size_t l = max; l > best; l--)
            if (!memcmp(st->pend + st->n_pend - l, st->s[i], l)) {
                best = l;
                break;
            }
    }
    return best;
}

/*
 * Add text; send what is safe. Returns 0 to go on, 1 when a stop string was
 * found (text before it sent), 2 when the callback cancelled.
 */
static int stopper_add(struct stopper *st, const char *text, size_t n)
{
    size_t first = (size_t)-1, cut;
    if (n == 0)
        return 0;
    memcpy(st->pend + st->n_pend, text, n);
    st->n_pend += n;
    for (int i = 0; i < st->n; i++) {
        const char *hit = find_bytes(st->pend, st->n_pend, st->s[i], st->len[i]);
        if (hit && (size_t)(hit - st->pend) < first)
            first = (size_t)(hit - st->pend);
    }
    if (first != (size_t)-1)
        return send(st, first) ? 2 : 1;
    cut = st->n_pend - held_tail(st);
    /* Never split a UTF-8 character (a stop string could start mid-character
     * only if it is not valid UTF-8 itself). */
    while (cut > 0 && cut < st->n_pend && ((unsigned char)st->pend[cut] & 0xc0) == 0x80)
        cut--;
    return send(st, cut) ? 2 : 0;
}

/* ---------------------------------------------------------------- the loop */

static int common_prefix(const int32_t *a, int na, const int32_t *b, int nb)
{
    int i = 0;
    while (i < na && i < nb && a[i] == b[i])
        i++;
    return i;
}

static int generate(struct nr_llama *m, struct nr_llama_seq *seq, const int32_t *prompt,
                    int n_prompt, const struct nr_gen_params *p, const char *extra_stop,
                    nr_gen_cb cb, void *ud, struct nr_gen_stats *st)
{
    const struct nr_tok *tok = nr_llama_tok(m);
    const struct nr_llama_info *info = nr_llama_info(m);
    struct nr_sample_params sp = {.temperature = p->temperature,
                                  .top_k = p->top_k,
                                  .top_p = p->top_p,
                                  .min_p = p->min_p,
                                  .repeat_penalty = p->repeat_penalty,
                                  .repeat_last_n = p->repeat_last_n,
                                  .seed = p->seed};
    struct nr_sampler *smp = NULL;
    struct stopper *stop = NULL;
    struct nr_tok_stream ts;
    float *logits = NULL;
    char piece[NR_TOK_STREAM_CAP];
    int n_ctx = nr_llama_seq_n_ctx(seq), reuse, rc, max_gen, by_string = 0;
    double t0;

    st->prompt_tokens = n_prompt;
    rc = nr_sampler_new(info->n_vocab, &sp, &smp);
    if (rc)
        goto fail;
    stop = nr_malloc(sizeof *stop);
    logits = nr_malloc((size_t)info->n_vocab * sizeof *logits);
    if (!stop || !logits) {
        rc = nr_err_set(NR_ENOMEM, "gen: out of memory for %d logits", info->n_vocab);
        goto fail;
    }
    rc = stopper_init(stop, p, extra_stop, cb, ud);
    if (rc)
        goto fail;

    /* Prefix reuse: keep what the sequence already holds of this prompt. */
    reuse = common_prefix(nr_llama_seq_ids(seq), nr_llama_seq_pos(seq), prompt, n_prompt);
    if (reuse >= n_prompt)
        reuse = n_prompt - 1;
    nr_llama_seq_truncate(seq, reuse);
    st->prompt_evaluated = n_prompt - reuse;

    t0 = now_s();
    for (int at = reuse; at < n_prompt;) {
        int n = n_prompt - at < PREFILL_CHUNK ? n_prompt - at : PREFILL_CHUNK;
        if (cancelled(p)) {
            st->prompt_s = now_s() - t0;
            st->done_reason = "cancel";
            rc = NR_OK;
            goto fail;
        }
        rc = nr_llama_eval(m, seq, prompt + at, n, at + n == n_prompt ? logits : NULL);
        if (rc)
            goto fail;
        at += n;
    }
    st->prompt_s = now_s() - t0;

    for (int i = n_prompt > p->repeat_last_n ? n_prompt - p->repeat_last_n : 0; i < n_prompt; i++)
        nr_sampler_accept(smp, prompt[i]);
    nr_tok_stream_init(&ts, tok);
    max_gen = n_ctx - n_prompt;
    if (p->max_tokens > 0 && p->max_tokens < max_gen)
        max_gen = p->max_tokens;
    st->done_reason = "length";

    t0 = now_s();
    for (int i = 0; i < max_gen; i++) {
        int32_t id;
        int n, r;
        if (cancelled(p)) {
            st->done_reason = "cancel";
            break;
        }
        rc = nr_sampler_sample(smp, logits, &id);
        if (rc)
            goto fail;
        if (nr_tok_is_eog(tok, id)) {
            st->done_reason = "stop";
            break;
        }
        st->gen_tokens++;
        nr_sampler_accept(smp, id);
        n = nr_tok_stream_feed(&ts, id, piece, (int)sizeof piece);
        r = stopper_add(stop, piece, n > 0 ? (size_t)n : 0);
        if (r) {
            st->done_reason = r == 1 ? "stop" : "cancel";
            by_string = r == 1;
            break;
        }
        if (i + 1 == max_gen)
            break; /* "length": no logits needed after the last token */
        rc = nr_llama_eval(m, seq, &id, 1, logits);
        if (rc)
            goto fail;
    }
    if (!by_string && strcmp(st->done_reason, "cancel")) {
        /* EOG or length: release what was held back, unless it completes a stop string. */
        int n = nr_tok_stream_flush(&ts, piece, (int)sizeof piece);
        int r = stopper_add(stop, piece, n > 0 ? (size_t)n : 0);
        if (r == 1)
            st->done_reason = "stop";
        else if (r == 0)
            send(stop, stop->n_pend);
    }
    st->gen_s = now_s() - t0;
    rc = NR_OK;
fail:
    nr_sampler_free(smp);
    nr_free(stop);
    nr_free(logits);
    return rc;
}

static void stats_init(struct nr_gen_stats *st)
{
    memset(st, 0, sizeof *st);
    st->done_reason = "stop";
}

static int check_args(struct nr_llama *m, struct nr_llama_seq *seq, const struct nr_gen_params *p,
                      struct nr_gen_stats *st)
{
    if (!m || !seq || !p || !st)
        return nr_err_set(NR_EINVAL, "gen: NULL argument");
    if (!nr_llama_tok(m))
        return nr_err_set(NR_EUNSUPPORTED, "gen: the model file has no tokenizer");
    if (p->max_tokens >= nr_llama_seq_n_ctx(seq))
        return nr_err_set(NR_ELIMIT,
                          "gen: max_tokens %d leaves no room for a prompt in a context of %d",
                          p->max_tokens, nr_llama_seq_n_ctx(seq));
    return NR_OK;
}

/* Tokens the prompt may use: n_ctx minus the room reserved for the answer. */
static int prompt_room(const struct nr_gen_params *p, int n_ctx)
{
    return p->max_tokens > 0 ? n_ctx - p->max_tokens : n_ctx - 1;
}

int nr_gen_text(struct nr_llama *m, struct nr_llama_seq *seq, const char *prompt,
                const struct nr_gen_params *p, nr_gen_cb cb, void *ud, struct nr_gen_stats *st)
{
    const struct nr_tok *tok;
    int32_t *ids = NULL;
    int n = 0, rc, room, n_ctx;
    size_t len;

    if (st)
        stats_init(st);
    rc = check_args(m, seq, p, st);
    if (rc)
        return rc;
    if (!prompt)
        return nr_err_set(NR_EINVAL, "gen: NULL prompt");
    tok = nr_llama_tok(m);
    n_ctx = nr_llama_seq_n_ctx(seq);
    room = prompt_room(p, n_ctx);
    len = strlen(prompt);
    rc = nr_tok_encode(tok, prompt, len, NR_TOK_ADD_BOS | NR_TOK_PARSE_SPECIAL, NULL, 0, &n);
    if (rc)
        return rc;
    ids = nr_malloc(((size_t)n + 1) * sizeof *ids);
    if (!ids)
        return nr_err_set(NR_ENOMEM, "gen: out of memory for %d prompt tokens", n);
    rc = nr_tok_encode(tok, prompt, len, NR_TOK_ADD_BOS | NR_TOK_PARSE_SPECIAL, ids, n, &n);
    if (rc)
        goto out;
    if (n == 0) {
        rc = nr_err_set(NR_EINVAL, "gen: empty prompt (no tokens and no BOS)");
        goto out;
    }
    if (n > room) {
        /* Cut from the front, keeping a leading BOS. */
        int keep_bos = ids[0] == nr_tok_bos(tok) && room > 1;
        int drop = n - room;
        memmove(ids + keep_bos, ids + keep_bos + drop, (size_t)(n - keep_bos - drop) * sizeof *ids);
        n = room;
    }
    rc = generate(m, seq, ids, n, p, NULL, cb, ud, st);
out:
    nr_free(ids);
    return rc;
}

static void describe(struct nr_llama *m, struct nr_chat_tmpl *t)
{
    const struct nr_tok *tok = nr_llama_tok(m);
    struct nr_chat_model md = {0};
    md.template_text = nr_llama_chat_template(m);
    md.arch = nr_llama_info(m)->arch;
    md.bos = nr_tok_bos(tok) >= 0 ? nr_tok_text(tok, nr_tok_bos(tok)) : NULL;
    md.eos = nr_tok_eos(tok) >= 0 ? nr_tok_text(tok, nr_tok_eos(tok)) : NULL;
    md.adds_bos = nr_tok_adds_bos(tok);
    md.has_im_start = nr_tok_find(tok, "<|im_start|>") >= 0;
    md.has_header_id = nr_tok_find(tok, "<|start_header_id|>") >= 0;
    nr_chat_detect(&md, t);
}

int nr_gen_chat(struct nr_llama *m, struct nr_llama_seq *seq, const struct nr_chat_msg *msgs, int n,
                const struct nr_gen_params *p, nr_gen_cb cb, void *ud, struct nr_gen_stats *st)
{
    struct nr_chat_tmpl *t = NULL;
    struct nr_chat_prompt pr = {0};
    struct nr_chat_msg *sub = NULL;
    int32_t *ids = NULL;
    int rc, n_ctx, room, n_ids = 0, first, has_sys, last_user = -1;

    if (st)
        stats_init(st);
    rc = check_args(m, seq, p, st);
    if (rc)
        return rc;
    if (n < 1 || n > NR_CHAT_MAX_MSGS || !msgs)
        return nr_err_set(NR_EINVAL, "gen: %d chat messages (1..%d)", n, NR_CHAT_MAX_MSGS);
    n_ctx = nr_llama_seq_n_ctx(seq);
    room = prompt_room(p, n_ctx);
    t = nr_malloc(sizeof *t);
    sub = nr_malloc((size_t)n * sizeof *sub);
    ids = nr_malloc((size_t)n_ctx * sizeof *ids);
    if (!t || !sub || !ids) {
        rc = nr_err_set(NR_ENOMEM, "gen: out of memory for a %d-message chat", n);
        goto out;
    }
    describe(m, t);
    has_sys = msgs[0].role && !strcmp(msgs[0].role, "system");
    for (int i = n - 1; i >= 0; i--)
        if (msgs[i].role && !strcmp(msgs[i].role, "user")) {
            last_user = i;
            break;
        }
    /* Drop whole turns from the oldest: first = index of the first kept non-system message. */
    first = has_sys;
    for (;;) {
        int k = 0;
        if (has_sys)
            sub[k++] = msgs[0];
        for (int i = first; i < n; i++)
            sub[k++] = msgs[i];
        rc = nr_chat_render(t, sub, k, &pr);
        if (rc)
            goto out;
        rc = nr_chat_tokenize(nr_llama_tok(m), &pr, ids, n_ctx, &n_ids);
        if (rc)
            goto out;
        if (n_ids <= room)
            break;
        /* Skip the oldest user message and the answers after it. */
        {
            int next = first + 1;
            while (next < n && strcmp(msgs[next].role, "user"))
                next++;
            if (first >= last_user || next > last_user || last_user < 0) {
                rc = nr_err_set(NR_ELIMIT,
                                "gen: the prompt needs %d tokens (system and last user message "
                                "alone) + max_tokens %d, the context holds %d",
                                n_ids, p->max_tokens, n_ctx);
                goto out;
            }
            first = next;
        }
    }
    if (n_ids == 0) {
        rc = nr_err_set(NR_EINVAL, "gen: the chat renders to no tokens");
        goto out;
    }
    rc = generate(m, seq, ids, n_ids, p, t->stop, cb, ud, st);
out:
    nr_chat_prompt_free(&pr);
    nr_free(t);
    nr_free(sub);
    nr_free(ids);
    return rc;
}
