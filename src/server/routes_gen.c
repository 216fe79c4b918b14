/*
 * routes_gen.c — the generation routes (Ollama /api/generate and /api/chat,
 * OpenAI /v1/chat/completions and /v1/completions). Until the generator
 * interface (nr_llm) is linked in, the server runs without a generator and
 * these routes answer 503 "no generator".
 */
#include "server_internal.h"

#include "nr_err.h"
#include "nr_log.h"

#include <string.h>

int srv_llm_open(struct nr_server *s)
{
    if (s->llm_spec && s->llm_spec[0])
        return nr_err_set(NR_EUNSUPPORTED, "this build has no generator backends");
    if (s->llm_spec)
        nr_log_warn("serve: this build has no generator: generation routes answer 503");
    return NR_OK;
}

void srv_llm_close(struct nr_server *s)
{
    (void)s;
}

void srv_llm_load(struct nr_server *s, struct srv_llm_load *l)
{
    (void)s;
    memset(l, 0, sizeof *l);
    l->backend = "none";
}

int srv_llm_count_tokens(struct nr_server *s, const char *text, size_t len)
{
    (void)s;
    (void)text;
    (void)len;
    return nr_err_set(NR_EUNSUPPORTED, "no generator");
}

static int no_generator(struct nr_http_req *r)
{
    json_t *body;
    int st;
    if ((st = nr_http_json_body(r, &body)))
        return st;
    json_decref(body);
    return nr_http_error(r, 503, "no generator: start the server with --llm MODEL");
}

int route_ollama_generate(void *ud, struct nr_http_req *r)
{
    (void)ud;
    return no_generator(r);
}

int route_ollama_chat(void *ud, struct nr_http_req *r)
{
    (void)ud;
    return no_generator(r);
}

int route_openai_chat(void *ud, struct nr_http_req *r)
{
    (void)ud;
    return no_generator(r);
}

int route_openai_completions(void *ud, struct nr_http_req *r)
{
    (void)ud;
    return no_generator(r);
}

int route_ask(void *ud, struct nr_http_req *r)
{
    (void)ud;
    return no_generator(r);
}
