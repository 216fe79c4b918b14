/*
 * llm.c — nr_llm: the spec string, the slots and the queue, and dispatch
 * to the backends (llm_local.c, llm_remote.c).
 *
 * Spec grammar (checked at open, NR_EINVAL naming what is wrong):
 *   NULL or ""            the default local model (nr_llm_default_model)
 *   "local:PATH"          a local GGUF file
 *   "ollama:NAME[@URL]"   NAME up to the first '@' (names may hold ':'),
 *                         URL default http://127.0.0.1:11434
 *   "openai:MODEL[@URL]"  URL default https://api.openai.com
 *   anything else         a local GGUF path
 * URLs are http:// or https://, at most NR_LLM_MAX_URL bytes, no spaces or
 * control characters; trailing '/' and a trailing "/v1" are dropped (so both
 * "http://h:8000" and "http://h:8000/v1/" name the same server).
 *
 * Slots and queue. One mutex guards: free[slot] flags, busy, waiting. A
 * request takes the lowest free slot; if none is free and fewer than
 * `queue` requests wait, it waits on the condition variable, waking every
 * 20 ms to look at *p->cancel (a client gone while queued returns
 * NR_ECANCELED without having run); otherwise NR_EBUSY at once. Waiters are
 * not strictly FIFO (whoever wakes first after a release wins): the queue
 * bounds how many wait, not their order — a deliberate simplification, as
 * generations last seconds and the queue is short. Local slots map to
 * sequences (KV caches) of their own, so a slot's KV prefix survives
 * between requests (prefix reuse when the same conversation comes back to
 * the same slot); remote slots only bound the requests in flight.
 */
#include "nr_llm.h"

#include "llm_internal.h"
#include "nr_err.h"
#include "nr_file.h"
#include "nr_mem.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define MAX_SLOTS 256
#define MAX_QUEUE 65536

#define DEFAULT_LLM_DIR  "smollm2-135m-instruct"
#define DEFAULT_LLM_FILE "SmolLM2-135M-Instruct.Q4_1.gguf"

struct nr_llm {
    int backend;              /* enum nr_llm_backend */
    char *model;              /* name clients see */
    struct llm_local *local;  /* NR_LLM_LOCAL */
    struct llm_remote remote; /* NR_LLM_OLLAMA / NR_LLM_OPENAI */
    int n_ctx;                /* positions of one request */
    int slots, queue;
    pthread_mutex_t mu;
    pthread_cond_t freed;     /* signalled when a slot is released */
    unsigned char *slot_busy; /* [slots] */
    int busy, waiting;
    uint64_t requests; /* requests that got a slot, since open */
};

void nr_llm_opts_default(struct nr_llm_opts *o)
{
    memset(o, 0, sizeof *o);
    o->queue = 16;
    o->timeout_s = 120;
}

int nr_llm_default_model(char *buf, size_t cap)
{
    int rc =
        nr_path_find_model("NANORAG_GEN_MODEL", DEFAULT_LLM_DIR "/" DEFAULT_LLM_FILE, 0, buf, cap);
    if (rc == NR_ENOTFOUND)
        return nr_err_set(NR_ENOTFOUND,
                          "llm: no generator model found: run scripts/fetch_models.sh, or pass "
                          "a GGUF path (--model / --llm), or set NANORAG_GEN_MODEL");
    return rc;
}

static int check_url(const char *u, size_t len)
{
    if (len > NR_LLM_MAX_URL)
        return nr_err_set(NR_EINVAL, "llm: the URL is longer than %d bytes", NR_LLM_MAX_URL);
    if (!((len > 7 && !strncmp(u, "http://", 7)) || (len > 8 && !strncmp(u, "https://", 8))))
        return nr_err_set(NR_EINVAL, "llm: the URL must start with http:// or https://");
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)u[i] <= 0x20 || u[i] == 0x7f)
            return nr_err_set(NR_EINVAL, "llm: the URL has a space or control character");
    return NR_OK;
}

/* "ollama:NAME[@URL]" / "openai:MODEL[@URL]" into r (owned strings). */
static int parse_remote(const char *rest, int proto, const char *api_key, struct llm_remote *r)
{
    const char *at = strchr(rest, '@');
    size_t name_len = at ? (size_t)(at - rest) : strlen(rest);
    const char *url =
        at ? at + 1
           : (proto == NR_LLM_OLLAMA ? "http://127.0.0.1:11434" : "https://api.openai.com");
    size_t url_len = strlen(url);
    int rc;

    r->proto = proto;
    if (name_len == 0 || name_len > NR_LLM_MAX_MODEL)
        return nr_err_set(NR_EINVAL, "llm: the model name must be 1 to %d bytes", NR_LLM_MAX_MODEL);
    for (size_t i = 0; i < name_len; i++)
        if ((unsigned char)rest[i] < 0x20 || rest[i] == 0x7f)
            return nr_err_set(NR_EINVAL, "llm: the model name has a control character");
    while (url_len > 0 && url[url_len - 1] == '/')
        url_len--;
    if (url_len >= 3 && !strncmp(url + url_len - 3, "/v1", 3))
        url_len -= 3;
    while (url_len > 0 && url[url_len - 1] == '/')
        url_len--;
    if ((rc = check_url(url, url_len)) != NR_OK)
        return rc;
    if (api_key) {
        size_t n = strlen(api_key);
        if (n == 0 || n > 512)
            return nr_err_set(NR_EINVAL, "llm: the API key must be 1 to 512 bytes");
        for (size_t i = 0; i < n; i++)
            if ((unsigned char)api_key[i] < 0x20 || api_key[i] == 0x7f)
                return nr_err_set(NR_EINVAL, "llm: the API key has a control character");
    }
    r->model = nr_strndup(rest, name_len);
    r->url = nr_strndup(url, url_len);
    r->api_key = api_key ? nr_strdup(api_key) : NULL;
    if (!r->model || !r->url || (api_key && !r->api_key))
        return nr_err_set(NR_ENOMEM, "llm: out of memory");
    return NR_OK;
}

void nr_llm_close(struct nr_llm *l)
{
    if (!l)
        return;
    llm_local_close(l->local);
    nr_free(l->remote.model);
    nr_free(l->remote.url);
    nr_free(l->remote.api_key);
    nr_free(l->model);
    nr_free(l->slot_busy);
    pthread_cond_destroy(&l->freed);
    pthread_mutex_destroy(&l->mu);
    nr_free(l);
}

int nr_llm_open(const struct nr_llm_opts *opts, struct nr_llm **out)
{
    struct nr_llm_opts o;
    struct nr_llm *l;
    const char *spec;
    char path[4096];
    int rc;

    *out = NULL;
    if (opts)
        o = *opts;
    else
        nr_llm_opts_default(&o);
    spec = o.spec;
    if (o.queue < 0 || o.queue > MAX_QUEUE)
        return nr_err_set(NR_EINVAL, "llm: queue must be 0 to %d", MAX_QUEUE);
    if (o.slots < 0 || o.slots > MAX_SLOTS)
        return nr_err_set(NR_EINVAL, "llm: slots must be 1 to %d", MAX_SLOTS);
    if (o.timeout_s <= 0)
        o.timeout_s = 120;
    if (o.timeout_s > 86400)
        return nr_err_set(NR_EINVAL, "llm: timeout must be at most 86400 s");
    l = nr_calloc(1, sizeof *l);
    if (!l)
        return nr_err_set(NR_ENOMEM, "llm: out of memory");
    pthread_mutex_init(&l->mu, NULL);
    pthread_cond_init(&l->freed, NULL);
    l->queue = o.queue;

    if (spec && !strncmp(spec, "ollama:", 7)) {
        l->backend = NR_LLM_OLLAMA;
        rc = parse_remote(spec + 7, NR_LLM_OLLAMA, o.api_key, &l->remote);
    } else if (spec && !strncmp(spec, "openai:", 7)) {
        l->backend = NR_LLM_OPENAI;
        rc = parse_remote(spec + 7, NR_LLM_OPENAI, o.api_key, &l->remote);
    } else {
        l->backend = NR_LLM_LOCAL;
        if (spec && !strncmp(spec, "local:", 6))
            spec += 6;
        if (!spec || !*spec)
            rc = nr_llm_default_model(path, sizeof path);
        else
            rc = snprintf(path, sizeof path, "%s", spec) < (int)sizeof path
                     ? NR_OK
                     : nr_err_set(NR_EINVAL, "llm: the model path is too long");
        l->slots = o.slots > 0 ? o.slots : 1;
        if (rc == NR_OK)
            rc = llm_local_open(path, o.threads, o.pool, o.n_ctx, l->slots, &l->local);
        if (rc == NR_OK) {
            l->n_ctx = llm_local_n_ctx(l->local);
            l->model = nr_strdup(llm_local_model_name(l->local));
            if (!l->model)
                rc = nr_err_set(NR_ENOMEM, "llm: out of memory");
        }
    }
    if (rc == NR_OK && l->backend != NR_LLM_LOCAL) {
        l->remote.timeout_s = o.timeout_s;
        l->slots = o.slots > 0 ? o.slots : 4;
        /* what the remote model holds is unknown; this is what prompts are sized for */
        l->n_ctx = o.n_ctx > 0 ? o.n_ctx : 4096;
        l->model = nr_strdup(l->remote.model);
        if (!l->model)
            rc = nr_err_set(NR_ENOMEM, "llm: out of memory");
    }
    if (rc == NR_OK) {
        l->slot_busy = nr_calloc((size_t)l->slots, 1);
        if (!l->slot_busy)
            rc = nr_err_set(NR_ENOMEM, "llm: out of memory");
    }
    if (rc != NR_OK)
        goto fail;
    *out = l;
    return NR_OK;
fail:
    nr_llm_close(l);
    return rc;
}

void nr_llm_info(struct nr_llm *l, struct nr_llm_info *info)
{
    memset(info, 0, sizeof *info);
    info->backend = l->backend;
    info->model = l->model;
    info->url = l->backend == NR_LLM_LOCAL ? NULL : l->remote.url;
    info->n_ctx = l->n_ctx;
    info->slots = l->slots;
    info->queue = l->queue;
    pthread_mutex_lock(&l->mu);
    info->busy = l->busy;
    info->waiting = l->waiting;
    info->requests = l->requests;
    pthread_mutex_unlock(&l->mu);
    if (l->local) {
        info->local = llm_local_model(l->local);
        info->kv_bytes = llm_local_kv_bytes(l->local);
    }
}

static int canceled(const struct nr_gen_params *p)
{
    return p->cancel && __atomic_load_n(p->cancel, __ATOMIC_RELAXED); /* set by other threads */
}

/* A free slot's index, or NR_EBUSY / NR_ECANCELED. */
static int slot_take(struct nr_llm *l, const struct nr_gen_params *p)
{
    int slot = -1, queued = 0;

    pthread_mutex_lock(&l->mu);
    for (;;) {
        if (canceled(p))
            break;
        if (l->busy < l->slots) {
            for (int i = 0; i < l->slots; i++)
                if (!l->slot_busy[i]) {
                    slot = i;
                    break;
                }
            l->slot_busy[slot] = 1;
            l->busy++;
            l->requests++;
            break;
        }
        if (!queued) {
            if (l->waiting >= l->queue)
                break;
            l->waiting++;
            queued = 1;
        }
        {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_nsec += 20 * 1000 * 1000;
            if (ts.tv_nsec >= 1000000000L) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000L;
            }
            pthread_cond_timedwait(&l->freed, &l->mu, &ts);
        }
    }
    if (queued)
        l->waiting--;
    pthread_mutex_unlock(&l->mu);
    if (slot >= 0)
        return slot;
    if (canceled(p))
        return nr_err_set(NR_ECANCELED, "llm: canceled while waiting for a slot");
    return nr_err_set(NR_EBUSY, "llm: all %d generation slots are busy and the queue (%d) is full",
                      l->slots, l->queue);
}

static void slot_give(struct nr_llm *l, int slot)
{
    pthread_mutex_lock(&l->mu);
    l->slot_busy[slot] = 0;
    l->busy--;
    pthread_cond_signal(&l->freed);
    pthread_mutex_unlock(&l->mu);
}

static int run(struct nr_llm *l, const struct nr_chat_msg *msgs, int n, const char *prompt,
               const struct nr_gen_params *p, nr_gen_cb cb, void *ud, struct nr_gen_stats *st)
{
    struct nr_gen_params def;
    struct nr_gen_stats tmp;
    int slot, rc;

    if (!p) {
        nr_gen_params_default(&def);
        p = &def;
    }
    if (!st)
        st = &tmp;
    memset(st, 0, sizeof *st);
    if (msgs ? n < 1 : !prompt)
        return nr_err_set(NR_EINVAL, "llm: nothing to generate from (no messages or prompt)");
    slot = slot_take(l, p);
    if (slot < 0)
        return slot;
    if (l->backend == NR_LLM_LOCAL)
        rc = msgs ? llm_local_chat(l->local, slot, msgs, n, p, cb, ud, st)
                  : llm_local_generate(l->local, slot, prompt, p, cb, ud, st);
    else
        rc = llm_remote_run(&l->remote, msgs, n, prompt, p, cb, ud, st);
    slot_give(l, slot);
    return rc;
}

int nr_llm_chat(struct nr_llm *l, const struct nr_chat_msg *msgs, int n,
                const struct nr_gen_params *p, nr_gen_cb cb, void *ud, struct nr_gen_stats *st)
{
    if (!msgs || n < 1)
        return nr_err_set(NR_EINVAL, "llm: no messages");
    return run(l, msgs, n, NULL, p, cb, ud, st);
}

int nr_llm_generate(struct nr_llm *l, const char *prompt, const struct nr_gen_params *p,
                    nr_gen_cb cb, void *ud, struct nr_gen_stats *st)
{
    if (!prompt)
        return nr_err_set(NR_EINVAL, "llm: no prompt");
    return run(l, NULL, 0, prompt, p, cb, ud, st);
}

int nr_llm_count_tokens(struct nr_llm *l, const char *text, size_t len)
{
    if (l->backend == NR_LLM_LOCAL)
        return llm_local_count_tokens(l->local, text, len);
    if (len > (size_t)INT32_MAX - 3)
        return nr_err_set(NR_ELIMIT, "llm: text too long to count");
    return (int)((len + 3) / 4);
}
