/*
 * llm_local.c — the local generator backend of nr_llm: one nr_llama model
 * and one nr_llama_seq per slot, driven by the generation loop (nr_gen).
 *
 * A slot's sequence keeps its KV cache between requests, so a conversation
 * that returns to the same slot re-evaluates only its new turn (nr_gen's
 * prefix reuse); a different conversation truncates it to the common prefix
 * (often the system prompt). llm.c guarantees one request per slot at a
 * time; nr_llama serializes the model's forward passes across slots.
 *
 * The model name clients see is the file's base name, lowercased, without
 * ".gguf" and without a trailing ".Q<digit>..." / ".F<digit>..." quantization
 * tag: "SmolLM2-135M-Instruct.Q4_1.gguf" becomes "smollm2-135m-instruct"
 * (a tag joined by '-', as in "gemma-3-270m-q4_k_m", stays part of the name).
 */
#include "llm_internal.h"

#include "nr_err.h"
#include "nr_gen.h"
#include "nr_llama.h"
#include "nr_mem.h"
#include "nr_tok.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>

struct llm_local {
    struct nr_llama *m;
    struct nr_llama_seq **seq; /* [slots] */
    int slots;
    int n_ctx;      /* positions per sequence */
    char name[128]; /* model name as clients see it */
};

static void model_name(const char *path, char *out, size_t cap)
{
    const char *base = strrchr(path, '/');
    size_t n;
    char *dot;
    base = base ? base + 1 : path;
    snprintf(out, cap, "%s", base);
    n = strlen(out);
    if (n > 5 && !strcmp(out + n - 5, ".gguf"))
        out[n - 5] = '\0';
    dot = strrchr(out, '.');
    if (dot && dot != out && (dot[1] == 'Q' || dot[1] == 'q' || dot[1] == 'F' || dot[1] == 'f') &&
        isdigit((unsigned char)dot[2]))
        *dot = '\0';
    for (char *p = out; *p; p++)
        *p = (char)tolower((unsigned char)*p);
}

void llm_local_close(struct llm_local *lc)
{
    if (!lc)
        return;
    for (int i = 0; lc->seq && i < lc->slots; i++)
        nr_llama_seq_free(lc->seq[i]);
    nr_free(lc->seq);
    nr_llama_close(lc->m);
    nr_free(lc);
}

int llm_local_open(const char *path, int threads, struct nr_pool *pool, int n_ctx, int slots,
                   struct llm_local **out)
{
    struct nr_llama_opts mo;
    struct llm_local *lc;
    int rc;

    *out = NULL;
    lc = nr_calloc(1, sizeof *lc);
    if (!lc)
        return nr_err_set(NR_ENOMEM, "llm: out of memory");
    lc->slots = slots;
    model_name(path, lc->name, sizeof lc->name);
    nr_llama_opts_default(&mo);
    mo.threads = threads;
    mo.pool = pool;
    if ((rc = nr_llama_open(path, &mo, &lc->m)) != NR_OK)
        goto fail;
    lc->seq = nr_calloc((size_t)slots, sizeof *lc->seq);
    if (!lc->seq) {
        rc = nr_err_set(NR_ENOMEM, "llm: out of memory");
        goto fail;
    }
    for (int i = 0; i < slots; i++)
        if ((rc = nr_llama_seq_new(lc->m, n_ctx, &lc->seq[i])) != NR_OK) {
            nr_err_wrap(rc, "llm: KV cache of slot %d", i);
            goto fail;
        }
    lc->n_ctx = nr_llama_seq_n_ctx(lc->seq[0]);
    *out = lc;
    return NR_OK;
fail:
    llm_local_close(lc);
    return rc;
}

const char *llm_local_model_name(const struct llm_local *lc)
{
    return lc->name;
}

int llm_local_n_ctx(const struct llm_local *lc)
{
    return lc->n_ctx;
}

const struct nr_llama *llm_local_model(const struct llm_local *lc)
{
    return lc->m;
}

size_t llm_local_kv_bytes(const struct llm_local *lc)
{
    return nr_llama_kv_bytes(lc->m, lc->n_ctx) * (size_t)lc->slots;
}

int llm_local_chat(struct llm_local *lc, int slot, const struct nr_chat_msg *msgs, int n,
                   const struct nr_gen_params *p, nr_gen_cb cb, void *ud, struct nr_gen_stats *st)
{
    return nr_gen_chat(lc->m, lc->seq[slot], msgs, n, p, cb, ud, st);
}

int llm_local_generate(struct llm_local *lc, int slot, const char *prompt,
                       const struct nr_gen_params *p, nr_gen_cb cb, void *ud,
                       struct nr_gen_stats *st)
{
    return nr_gen_text(lc->m, lc->seq[slot], prompt, p, cb, ud, st);
}

int llm_local_count_tokens(const struct llm_local *lc, const char *text, size_t len)
{
    int32_t none;
    int n = 0, rc;
    if (len == 0)
        return 0;
    /* cap 0: count only */
    rc = nr_tok_encode(nr_llama_tok(lc->m), text, len, 0, &none, 0, &n);
    return rc != NR_OK ? rc : n;
}
