/*
 * The generation loop on the real SmolLM2-135M-Instruct (Q4_1): greedy
 * output equals nr_llama_eval + argmax run by hand, stop strings cut exactly
 * and never stream a partial stop, max_tokens gives "length", cancellation
 * from the callback and from the flag, multi-turn prefix reuse evaluates only
 * the new tokens and gives what a fresh sequence gives, and a long
 * conversation is trimmed to fit a small context.
 */
#include "nr_test.h"

#include "nr_chat.h"
#include "nr_err.h"
#include "nr_gen.h"
#include "nr_llama.h"
#include "nr_mem.h"
#include "nr_tok.h"

#include <stdlib.h>
#include <string.h>

#define MODEL "smollm2-135m-instruct/SmolLM2-135M-Instruct.Q4_1.gguf"

static struct nr_llama *g_model;

struct sink {
    char text[16384];
    size_t len;
    int calls;
    int cancel_after; /* callback returns 1 on this call (0: never) */
    int flag_after;   /* sets *flag on this call (0: never) */
    volatile int *flag;
    int saw_empty; /* a call with len 0 (must not happen) */
};

static int sink_cb(void *ud, const char *text, size_t len)
{
    struct sink *s = ud;
    s->calls++;
    if (len == 0)
        s->saw_empty = 1;
    if (s->len + len < sizeof s->text) {
        memcpy(s->text + s->len, text, len);
        s->len += len;
        s->text[s->len] = '\0';
    }
    if (s->flag_after && s->calls == s->flag_after)
        *s->flag = 1;
    return s->cancel_after && s->calls == s->cancel_after;
}

static void greedy(struct nr_gen_params *p, int max_tokens)
{
    nr_gen_params_default(p);
    p->temperature = 0;
    p->repeat_penalty = 1.0f;
    p->max_tokens = max_tokens;
}

static int gen_text(const char *prompt, const struct nr_gen_params *p, struct sink *s,
                    struct nr_gen_stats *st, int n_ctx)
{
    struct nr_llama_seq *seq;
    int rc = nr_llama_seq_new(g_model, n_ctx, &seq);
    if (rc)
        return rc;
    rc = nr_gen_text(g_model, seq, prompt, p, sink_cb, s, st);
    nr_llama_seq_free(seq);
    return rc;
}

/* Greedy by hand: encode, eval, argmax, decode with the streaming detokenizer. */
static int by_hand(const char *prompt, int max_tokens, char *out, size_t cap)
{
    const struct nr_tok *tok = nr_llama_tok(g_model);
    int n_vocab = nr_llama_info(g_model)->n_vocab, n = 0;
    int32_t ids[512];
    float *logits = malloc((size_t)n_vocab * sizeof *logits);
    struct nr_llama_seq *seq;
    struct nr_tok_stream ts;
    size_t len = 0;
    int gen = 0;

    NR_CHECK_INT(nr_tok_encode(tok, prompt, strlen(prompt), NR_TOK_ADD_BOS | NR_TOK_PARSE_SPECIAL,
                               ids, 512, &n),
                 NR_OK);
    NR_CHECK_INT(nr_llama_seq_new(g_model, 1024, &seq), NR_OK);
    NR_CHECK_INT(nr_llama_eval(g_model, seq, ids, n, logits), NR_OK);
    nr_tok_stream_init(&ts, tok);
    for (; gen < max_tokens; gen++) {
        char piece[NR_TOK_STREAM_CAP];
        int32_t best = 0;
        int k;
        for (int i = 1; i < n_vocab; i++)
            if (logits[i] > logits[best])
                best = i;
        if (nr_tok_is_eog(tok, best))
            break;
        k = nr_tok_stream_feed(&ts, best, piece, (int)sizeof piece);
        if (k > 0 && len + (size_t)k < cap) {
            memcpy(out + len, piece, (size_t)k);
            len += (size_t)k;
        }
        if (gen + 1 < max_tokens)
            NR_CHECK_INT(nr_llama_eval(g_model, seq, &best, 1, logits), NR_OK);
    }
    {
        char piece[NR_TOK_STREAM_CAP];
        int k = nr_tok_stream_flush(&ts, piece, (int)sizeof piece);
        if (k > 0 && len + (size_t)k < cap) {
            memcpy(out + len, piece, (size_t)k);
            len += (size_t)k;
        }
    }
    out[len] = '\0';
    nr_llama_seq_free(seq);
    free(logits);
    return gen;
}

static const char *STORY = "Once upon a time, in a small village by the sea,";

static void test_greedy_matches_by_hand(void)
{
    struct nr_gen_params p;
    struct nr_gen_stats st, st2;
    struct sink a = {0}, b = {0};
    char want[16384];
    int n;

    greedy(&p, 48);
    NR_CHECK_INT(gen_text(STORY, &p, &a, &st, 1024), NR_OK);
    NR_CHECK_INT(gen_text(STORY, &p, &b, &st2, 1024), NR_OK);
    NR_CHECK_MSG(a.len > 0 && !strcmp(a.text, b.text), "two greedy runs differ:\n[%s]\n[%s]",
                 a.text, b.text);
    n = by_hand(STORY, 48, want, sizeof want);
    NR_CHECK_MSG(!strcmp(a.text, want), "gen vs by hand:\n[%s]\n[%s]", a.text, want);
    NR_CHECK_INT(st.gen_tokens, n);
    NR_CHECK(!a.saw_empty);
    NR_CHECK(st.prompt_tokens > 5 && st.prompt_evaluated == st.prompt_tokens);
    NR_CHECK(!strcmp(st.done_reason, n == 48 ? "length" : "stop"));
    NR_CHECK(st.prompt_s > 0 && st.gen_s > 0);
    printf("  greedy: %s\n", a.text);
}

static void test_max_tokens_length(void)
{
    struct nr_gen_params p;
    struct nr_gen_stats st;
    struct sink s = {0};
    greedy(&p, 5);
    NR_CHECK_INT(gen_text(STORY, &p, &s, &st, 256), NR_OK);
    NR_CHECK_INT(st.gen_tokens, 5);
    NR_CHECK(!strcmp(st.done_reason, "length"));
}

/* A stop string taken from the middle of the greedy output cuts exactly there. */
static void test_stop_strings(void)
{
    struct nr_gen_params p;
    struct nr_gen_stats st;
    struct sink full = {0};
    char stop1[16], stop2[32];
    const char *cut;
    size_t at;

    greedy(&p, 48);
    NR_CHECK_INT(gen_text(STORY, &p, &full, &st, 1024), NR_OK);
    if (full.len < 40) {
        NR_CHECK_MSG(0, "greedy output too short for the stop test: [%s]", full.text);
        return;
    }
    /* 5 bytes from the middle (may span two tokens). */
    at = full.len / 2;
    while (at < full.len && ((unsigned char)full.text[at] & 0xc0) == 0x80)
        at++;
    memcpy(stop1, full.text + at, 5);
    stop1[5] = '\0';
    cut = strstr(full.text, stop1);
    {
        struct sink s = {0};
        p.stop[0] = stop1;
        NR_CHECK_INT(gen_text(STORY, &p, &s, &st, 1024), NR_OK);
        NR_CHECK_MSG(s.len == (size_t)(cut - full.text) && !memcmp(s.text, full.text, s.len),
                     "stop [%s]: got [%s] (%zu bytes), want the first %zu bytes of [%s]", stop1,
                     s.text, s.len, (size_t)(cut - full.text), full.text);
        NR_CHECK(!strcmp(st.done_reason, "stop"));
    }
    /* A string whose first bytes occur but which never completes: all text, none lost. */
    snprintf(stop2, sizeof stop2, "%.4s\x01never", full.text + at);
    {
        struct sink s = {0};
        p.stop[0] = stop2;
        NR_CHECK_INT(gen_text(STORY, &p, &s, &st, 1024), NR_OK);
        NR_CHECK_MSG(!strcmp(s.text, full.text), "near-stop: got [%s] want [%s]", s.text,
                     full.text);
        NR_CHECK(!strcmp(st.done_reason, "length") || !strcmp(st.done_reason, "stop"));
    }
    /* Two stops: the earlier one in the text wins, whatever the list order. */
    {
        struct sink s = {0};
        char early[8];
        memcpy(early, full.text + 3, 4);
        early[4] = '\0';
        p.stop[0] = stop1;
        p.stop[1] = early;
        NR_CHECK_INT(gen_text(STORY, &p, &s, &st, 1024), NR_OK);
        NR_CHECK_INT(s.len, strstr(full.text, early) - full.text);
        p.stop[1] = NULL;
    }
}

static void test_cancel(void)
{
    struct nr_gen_params p;
    struct nr_gen_stats st;
    volatile int flag = 0;
    greedy(&p, 40);
    {
        struct sink s = {.cancel_after = 3};
        NR_CHECK_INT(gen_text(STORY, &p, &s, &st, 256), NR_OK);
        NR_CHECK(!strcmp(st.done_reason, "cancel"));
        NR_CHECK_INT(s.calls, 3);
    }
    {
        /* The flag, as another thread would set it: no text after it is seen. */
        struct sink s = {.flag_after = 2, .flag = &flag};
        p.cancel = &flag;
        NR_CHECK_INT(gen_text(STORY, &p, &s, &st, 256), NR_OK);
        NR_CHECK(!strcmp(st.done_reason, "cancel"));
        NR_CHECK_INT(s.calls, 2);
        NR_CHECK(st.gen_tokens >= 2 && st.gen_tokens < 40);
    }
    {
        struct sink s = {0};
        flag = 1;
        NR_CHECK_INT(gen_text(STORY, &p, &s, &st, 256), NR_OK);
        NR_CHECK(!strcmp(st.done_reason, "cancel"));
        NR_CHECK_INT(st.gen_tokens, 0);
        NR_CHECK_INT(s.calls, 0);
        flag = 0;
    }
}

static void test_seeded_sampling(void)
{
    struct nr_gen_params p;
    struct nr_gen_stats st;
    struct sink a = {0}, b = {0}, c = {0};
    nr_gen_params_default(&p);
    p.max_tokens = 32;
    p.temperature = 1.0f;
    p.seed = 7;
    NR_CHECK_INT(gen_text(STORY, &p, &a, &st, 256), NR_OK);
    NR_CHECK_INT(gen_text(STORY, &p, &b, &st, 256), NR_OK);
    NR_CHECK_MSG(!strcmp(a.text, b.text), "same seed:\n[%s]\n[%s]", a.text, b.text);
    p.seed = 8;
    NR_CHECK_INT(gen_text(STORY, &p, &c, &st, 256), NR_OK);
    NR_CHECK_MSG(strcmp(a.text, c.text) != 0, "seeds 7 and 8 gave the same 32 tokens: [%s]",
                 a.text);
}

/* Turn 2 on the same sequence reuses turn 1 and equals a fresh sequence. */
static void test_prefix_reuse(void)
{
    struct nr_gen_params p;
    struct nr_gen_stats st1, st2, st3;
    struct nr_llama_seq *seq, *fresh;
    struct sink r1 = {0}, r2 = {0}, r3 = {0};
    struct nr_chat_msg msgs[3] = {
        {"user", "What is the capital of France?"}, {"assistant", ""}, {"user", "And of Italy?"}};

    greedy(&p, 24);
    NR_CHECK_INT(nr_llama_seq_new(g_model, 1024, &seq), NR_OK);
    NR_CHECK_INT(nr_llama_seq_new(g_model, 1024, &fresh), NR_OK);
    NR_CHECK_INT(nr_gen_chat(g_model, seq, msgs, 1, &p, sink_cb, &r1, &st1), NR_OK);
    NR_CHECK(st1.prompt_evaluated == st1.prompt_tokens && r1.len > 0);
    msgs[1].content = r1.text;
    NR_CHECK_INT(nr_gen_chat(g_model, seq, msgs, 3, &p, sink_cb, &r2, &st2), NR_OK);
    NR_CHECK_INT(nr_gen_chat(g_model, fresh, msgs, 3, &p, sink_cb, &r3, &st3), NR_OK);
    NR_CHECK_INT(st2.prompt_tokens, st3.prompt_tokens);
    NR_CHECK_INT(st3.prompt_evaluated, st3.prompt_tokens);
    /* Reused: turn 1's prompt at least; evaluated: the answer's end and the new turn. */
    NR_CHECK_MSG(st2.prompt_evaluated <= st2.prompt_tokens - st1.prompt_tokens,
                 "turn 2 evaluated %d of %d tokens (turn 1 prompt: %d)", st2.prompt_evaluated,
                 st2.prompt_tokens, st1.prompt_tokens);
    NR_CHECK_MSG(!strcmp(r2.text, r3.text), "reused vs fresh:\n[%s]\n[%s]", r2.text, r3.text);
    /* The same prompt again: everything but the last token is reused. */
    {
        struct sink r4 = {0};
        struct nr_gen_stats st4;
        NR_CHECK_INT(nr_gen_chat(g_model, fresh, msgs, 3, &p, sink_cb, &r4, &st4), NR_OK);
        NR_CHECK_INT(st4.prompt_evaluated, 1);
        NR_CHECK(!strcmp(r4.text, r3.text));
    }
    printf("  turn 1: %s\n  turn 2: %s (evaluated %d of %d prompt tokens)\n", r1.text, r2.text,
           st2.prompt_evaluated, st2.prompt_tokens);
    nr_llama_seq_free(seq);
    nr_llama_seq_free(fresh);
}

/* 30 turns do not fit 160 positions: the oldest go, the answer still comes. */
static void test_trim_history(void)
{
    enum { TURNS = 30 };
    struct nr_chat_msg msgs[2 * TURNS + 2];
    char text[2 * TURNS][96];
    struct nr_gen_params p;
    struct nr_gen_stats st;
    struct nr_llama_seq *seq;
    struct sink s = {0};
    int n = 0;

    greedy(&p, 16);
    msgs[n].role = "system";
    msgs[n++].content = "You are a helpful assistant.";
    for (int i = 0; i < TURNS; i++) {
        snprintf(text[2 * i], sizeof text[0], "Tell me fact number %d about the ocean.", i);
        snprintf(text[2 * i + 1], sizeof text[0], "Fact %d: the ocean is deep and wide.", i);
        msgs[n].role = "user";
        msgs[n++].content = text[2 * i];
        msgs[n].role = "assistant";
        msgs[n++].content = text[2 * i + 1];
    }
    msgs[n].role = "user";
    msgs[n++].content = "Which fact was the last?";
    NR_CHECK_INT(nr_llama_seq_new(g_model, 160, &seq), NR_OK);
    NR_CHECK_INT(nr_llama_seq_n_ctx(seq), 160);
    NR_CHECK_INT(nr_gen_chat(g_model, seq, msgs, n, &p, sink_cb, &s, &st), NR_OK);
    NR_CHECK_MSG(st.prompt_tokens + 16 <= 160 && st.prompt_tokens > 100,
                 "trimmed prompt of %d tokens", st.prompt_tokens);
    NR_CHECK(st.gen_tokens > 0);

    /* The last message alone too long: NR_ELIMIT naming the counts. */
    {
        static char big[4096];
        struct nr_chat_msg one[1] = {{"user", big}};
        for (size_t i = 0; i + 6 < sizeof big; i += 6)
            memcpy(big + i, "ocean ", 6);
        big[sizeof big - 1] = '\0';
        NR_CHECK_INT(nr_gen_chat(g_model, seq, one, 1, &p, sink_cb, &s, &st), NR_ELIMIT);
        NR_CHECK(strstr(nr_err_msg(), "160") != NULL);
    }
    /* A raw prompt is cut from the front and still fits. */
    {
        static char big[4096];
        struct sink r = {0};
        for (size_t i = 0; i + 6 < sizeof big; i += 6)
            memcpy(big + i, "ocean ", 6);
        big[sizeof big - 1] = '\0';
        NR_CHECK_INT(nr_gen_text(g_model, seq, big, &p, sink_cb, &r, &st), NR_OK);
        NR_CHECK_INT(st.prompt_tokens, 160 - 16);
    }
    /* max_tokens as large as the context: no room. */
    p.max_tokens = 160;
    NR_CHECK_INT(nr_gen_text(g_model, seq, "hi", &p, sink_cb, &s, &st), NR_ELIMIT);
    nr_llama_seq_free(seq);
}

static void test_bad_params(void)
{
    struct nr_gen_params p;
    struct nr_gen_stats st;
    struct sink s = {0};
    char longstop[NR_GEN_MAX_STOP_LEN + 2];
    greedy(&p, 4);
    p.top_p = 0;
    NR_CHECK_INT(gen_text(STORY, &p, &s, &st, 128), NR_EINVAL);
    greedy(&p, 4);
    memset(longstop, 'x', sizeof longstop - 1);
    longstop[sizeof longstop - 1] = '\0';
    p.stop[0] = longstop;
    NR_CHECK_INT(gen_text(STORY, &p, &s, &st, 128), NR_EINVAL);
}

/* Stop strings of 1 to 12 bytes at spread-out places of the greedy text: each cuts exactly. */
static void test_stop_strings_spread(void)
{
    struct nr_gen_params p;
    struct nr_gen_stats st;
    struct sink full = {0};
    greedy(&p, 40);
    NR_CHECK_INT(gen_text(STORY, &p, &full, &st, 512), NR_OK);
    for (int c = 0; c < 6 && full.len > 30; c++) {
        struct sink s = {0};
        char stop[16];
        size_t at = 1 + (full.len - 14) * (size_t)c / 6, len = 1 + (size_t)(c * 7) % 12;
        const char *hit;
        memcpy(stop, full.text + at, len);
        stop[len] = '\0';
        hit = strstr(full.text, stop);
        p.stop[0] = stop;
        NR_CHECK_INT(gen_text(STORY, &p, &s, &st, 512), NR_OK);
        NR_CHECK_MSG(s.len == (size_t)(hit - full.text) && !memcmp(s.text, full.text, s.len),
                     "stop [%s]: %zu bytes streamed, want %zu", stop, s.len,
                     (size_t)(hit - full.text));
    }
}

/*
 * Gemma 3 270M (SentencePiece, no template in the file: Gemma turns chosen by
 * arch): a greedy chat reply equals rendering + tokenizing + eval + argmax by hand.
 */
static void test_gemma_chat(void)
{
    struct nr_llama *gm = NULL;
    struct nr_llama_opts o;
    struct nr_llama_seq *seq = NULL;
    struct nr_gen_params p;
    struct nr_gen_stats st;
    struct nr_chat_msg msgs[] = {{"system", "Answer in one word."},
                                 {"user", "What color is the sky?"}};
    struct sink s = {0};
    struct nr_chat_model md = {0};
    struct nr_chat_tmpl t;
    struct nr_chat_prompt pr = {0};
    const struct nr_tok *tok;
    int32_t ids[256];
    int n = 0, n_vocab;
    float *logits;
    char want[1024];
    size_t wl = 0;
    struct nr_tok_stream ts;

    nr_llama_opts_default(&o);
    o.threads = 2;
    if (nr_llama_open(nr_test_model_path("gemma-3-270m/gemma-3-270m-q4_k_m.gguf"), &o, &gm)) {
        NR_CHECK_MSG(0, "gemma 3: %s", nr_err_msg());
        return;
    }
    tok = nr_llama_tok(gm);
    n_vocab = nr_llama_info(gm)->n_vocab;
    greedy(&p, 8);
    NR_CHECK_INT(nr_llama_seq_new(gm, 256, &seq), NR_OK);
    NR_CHECK_INT(nr_gen_chat(gm, seq, msgs, 2, &p, sink_cb, &s, &st), NR_OK);

    md.arch = nr_llama_info(gm)->arch;
    md.template_text = nr_llama_chat_template(gm);
    md.bos = nr_tok_text(tok, nr_tok_bos(tok));
    nr_chat_detect(&md, &t);
    NR_CHECK_INT(t.family, NR_CHAT_GEMMA);
    NR_CHECK_INT(nr_chat_render(&t, msgs, 2, &pr), NR_OK);
    NR_CHECK(!strcmp(pr.text, "<bos><start_of_turn>user\nAnswer in one word.\n\nWhat color is the "
                              "sky?<end_of_turn>\n<start_of_turn>model\n"));
    NR_CHECK_INT(nr_chat_tokenize(tok, &pr, ids, 256, &n), NR_OK);
    NR_CHECK_INT(st.prompt_tokens, n);
    logits = malloc((size_t)n_vocab * sizeof *logits);
    nr_llama_seq_truncate(seq, 0);
    NR_CHECK_INT(nr_llama_eval(gm, seq, ids, n, logits), NR_OK);
    nr_tok_stream_init(&ts, tok);
    for (int g = 0; g < 8; g++) {
        char piece[NR_TOK_STREAM_CAP];
        int32_t best = 0;
        int k;
        for (int i = 1; i < n_vocab; i++)
            if (logits[i] > logits[best])
                best = i;
        if (nr_tok_is_eog(tok, best))
            break;
        k = nr_tok_stream_feed(&ts, best, piece, (int)sizeof piece);
        if (k > 0 && wl + (size_t)k < sizeof want) {
            memcpy(want + wl, piece, (size_t)k);
            wl += (size_t)k;
        }
        NR_CHECK_INT(nr_llama_eval(gm, seq, &best, 1, logits), NR_OK);
    }
    want[wl] = '\0';
    NR_CHECK_MSG(!strcmp(s.text, want), "gemma chat:\n[%s]\n[%s]", s.text, want);
    printf("  gemma 3 reply: %s\n", s.text);
    free(logits);
    nr_chat_prompt_free(&pr);
    nr_llama_seq_free(seq);
    nr_llama_close(gm);
}

/* Allocation failure at each allocation of a chat generation: a clean NR_ENOMEM, then success. */
static void test_alloc_failures(void)
{
    struct nr_gen_params p;
    struct nr_gen_stats st;
    struct nr_llama_seq *seq;
    struct nr_chat_msg msgs[] = {{"system", "Be brief."}, {"user", "Hi!"}};
    int ok = 0, k;
    greedy(&p, 2);
    p.stop[0] = "zz";
    NR_CHECK_INT(nr_llama_seq_new(g_model, 256, &seq), NR_OK);
    for (k = 1; k < 200 && !ok; k++) {
        struct sink s = {0};
        int rc;
        nr_llama_seq_truncate(seq, 0);
        nr_mem_fail_after(k);
        rc = nr_gen_chat(g_model, seq, msgs, 2, &p, sink_cb, &s, &st);
        nr_mem_fail_after(0);
        NR_CHECK_MSG(rc == NR_OK || rc == NR_ENOMEM, "allocation %d: %s", k, nr_err_name(rc));
        ok = rc == NR_OK;
    }
    NR_CHECK_MSG(ok && k > 3, "succeeded after %d injected failures", k - 1);
    nr_llama_seq_free(seq);
}

int main(void)
{
    struct nr_llama_opts o;
    nr_llama_opts_default(&o);
    o.threads = 2;
    if (nr_llama_open(nr_test_model_path(MODEL), &o, &g_model) != NR_OK) {
        printf("cannot open %s: %s (run scripts/fetch_models.sh)\n", MODEL, nr_err_msg());
        return 1;
    }
    NR_RUN(test_greedy_matches_by_hand);
    NR_RUN(test_max_tokens_length);
    NR_RUN(test_stop_strings);
    NR_RUN(test_stop_strings_spread);
    NR_RUN(test_cancel);
    NR_RUN(test_seeded_sampling);
    NR_RUN(test_prefix_reuse);
    NR_RUN(test_trim_history);
    NR_RUN(test_bad_params);
    NR_RUN(test_alloc_failures);
    NR_RUN(test_gemma_chat);
    nr_llama_close(g_model);
    return nr_test_summary();
}
