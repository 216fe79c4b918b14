/*
 * routes_ollama.c — Ollama's model and embedding routes: /api/tags,
 * /api/show, /api/ps, /api/embed and the legacy /api/embeddings (the
 * generation routes are in routes_gen.c).
 *
 * Shapes follow Ollama's API as its clients parse it: model lists with
 * name/model/size/digest/details, embed replies with "embeddings" (always
 * L2-normalized, as Ollama's are) and durations in nanoseconds. Errors are
 * {"error": "..."} with Ollama's status codes: 400 for a bad request, 404
 * for a model that is not loaded.
 */
#include "server_internal.h"

#include "nr_err.h"
#include "nr_mem.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

int route_ollama_tags(void *ud, struct nr_http_req *r)
{
    struct nr_server *s = ud;
    json_t *models = json_array();
    /* the generator first: clients that take the first model to chat with
     * then get one that can */
    if (s->llm)
        json_array_append_new(models, srv_model_details(s, 0));
    json_array_append_new(models, srv_model_details(s, 1));
    return nr_http_reply_json(r, 200, json_pack("{s:o}", "models", models));
}

int route_ollama_ps(void *ud, struct nr_http_req *r)
{
    struct nr_server *s = ud;
    json_t *models = json_array();
    for (int k = s->llm ? 0 : 1; k < 2; k++) { /* generator first, as in /api/tags */
        json_t *m = srv_model_details(s, k == 1);
        /* resident until the server stops: no expiry */
        json_object_set_new(m, "expires_at", json_string("2318-11-25T00:00:00Z"));
        json_object_set_new(m, "size_vram", json_integer(0));
        json_array_append_new(models, m);
    }
    return nr_http_reply_json(r, 200, json_pack("{s:o}", "models", models));
}

/* The model a request names ("model", or the older "name"): 0 and *embed,
 * or the error reply's status. */
static int which_model(struct nr_server *s, struct nr_http_req *r, json_t *body, int *embed)
{
    const char *name = NULL;
    if (srv_str(body, "model", 0, &name) || (!name && srv_str(body, "name", 0, &name)))
        return nr_http_error_status(r, NR_EINVAL);
    if (!name || !name[0])
        return nr_http_error(r, 400, "field 'model' is required");
    if (srv_is_embed_model(s, name)) {
        *embed = 1;
        return 0;
    }
    if (s->llm && srv_model_is(name, s->llm_name)) {
        *embed = 0;
        return 0;
    }
    return nr_http_error(r, 404, "model \"%s\" not found", name);
}

int route_ollama_show(void *ud, struct nr_http_req *r)
{
    struct nr_server *s = ud;
    json_t *body, *m, *info;
    int st, embed = 0;
    if ((st = nr_http_json_body(r, &body)))
        return st;
    if ((st = which_model(s, r, body, &embed))) {
        json_decref(body);
        return st;
    }
    json_decref(body);
    m = srv_model_details(s, embed);
    if (embed)
        info = json_pack("{s:s,s:i,s:i}", "general.architecture", "bert", "bert.embedding_length",
                         s->einfo.dim, "bert.context_length", s->einfo.max_seq);
    else {
        struct srv_llm_load l;
        srv_llm_load(s, &l);
        info = json_pack("{s:s,s:i}", "general.architecture", "llama", "llama.context_length",
                         l.n_ctx);
    }
    json_object_set_new(m, "model_info", info);
    json_object_set_new(m, "modelfile", json_string(""));
    json_object_set_new(m, "parameters", json_string(""));
    json_object_set_new(m, "template", json_string(""));
    json_object_set_new(m, "capabilities", json_pack("[s]", embed ? "embedding" : "completion"));
    return nr_http_reply_json(r, 200, m);
}

/* Checks shared by both embed routes: a JSON object naming the embedder. */
static int embed_request(struct nr_server *s, struct nr_http_req *r, json_t **body)
{
    const char *name = NULL;
    json_t *opt;
    int st;
    if ((st = nr_http_json_body(r, body)))
        return st;
    if (srv_str(*body, "model", 1, &name))
        st = nr_http_error_status(r, NR_EINVAL);
    else if (!srv_is_embed_model(s, name))
        st = s->llm && srv_model_is(name, s->llm_name)
                 ? nr_http_error(r, 400, "\"%s\" does not support embeddings", name)
                 : nr_http_error(r, 404, "model \"%s\" not found", name);
    else if ((opt = json_object_get(*body, "options")) && !json_is_object(opt))
        st = nr_http_error(r, 400, "field 'options' must be an object");
    if (st) {
        json_decref(*body);
        *body = NULL;
    }
    return st;
}

int route_ollama_embed(void *ud, struct nr_http_req *r)
{
    struct nr_server *s = ud;
    struct nr_http_text t = {0};
    json_t *body;
    float *v = NULL;
    int st, truncate = 1, n = 0, dim = 0;
    int64_t dims = 0, tokens = 0;
    double t0 = srv_now();

    if ((st = embed_request(s, r, &body)))
        return st;
    if (srv_bool(body, "truncate", &truncate) ||
        srv_int(body, "dimensions", 1, s->einfo.dim, &dims)) {
        st = nr_http_error_status(r, NR_EINVAL);
        goto done;
    }
    if ((st = srv_embed(s, r, json_object_get(body, "input"), "input", truncate, (int)dims, &v, &n,
                        &dim, &tokens)))
        goto done;
    nr_http_text_printf(&t, "{\"model\":");
    srv_text_json_str(&t, s->embed_name);
    nr_http_text_printf(&t, ",\"embeddings\":[");
    for (int i = 0; i < n; i++) {
        if (i)
            nr_http_text_printf(&t, ",");
        srv_text_floats(&t, v + (size_t)i * (size_t)dim, dim);
    }
    nr_http_text_printf(&t,
                        "],\"total_duration\":%lld,\"load_duration\":0,"
                        "\"prompt_eval_count\":%lld}",
                        (long long)((srv_now() - t0) * 1e9), (long long)tokens);
    st = srv_reply_text_json(r, &t);
done:
    nr_free(v);
    json_decref(body);
    return st;
}

int route_ollama_embeddings(void *ud, struct nr_http_req *r)
{
    struct nr_server *s = ud;
    struct nr_http_text t = {0};
    json_t *body, *prompt;
    float *v = NULL;
    int st, n = 0, dim = 0;
    int64_t tokens = 0;

    if ((st = embed_request(s, r, &body)))
        return st;
    prompt = json_object_get(body, "prompt");
    if (!prompt || !json_is_string(prompt)) {
        st = nr_http_error(
            r, 400, prompt ? "field 'prompt' must be a string" : "field 'prompt' is required");
        goto done;
    }
    if (json_string_length(prompt) == 0) { /* Ollama answers an empty prompt with no vector */
        st = nr_http_reply_json(r, 200, json_pack("{s:[]}", "embedding"));
        goto done;
    }
    if ((st = srv_embed(s, r, prompt, "prompt", 1, 0, &v, &n, &dim, &tokens)))
        goto done;
    nr_http_text_printf(&t, "{\"embedding\":");
    srv_text_floats(&t, v, dim);
    nr_http_text_printf(&t, "}");
    st = srv_reply_text_json(r, &t);
done:
    nr_free(v);
    json_decref(body);
    return st;
}
