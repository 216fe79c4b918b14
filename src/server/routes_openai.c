/*
 * routes_openai.c — OpenAI's model list and embeddings (/v1/models,
 * /v1/embeddings) and the /v1/tokenize extra; chat and completions are in
 * routes_gen.c.
 *
 * /v1/embeddings takes a string or an array of strings (token-id arrays are
 * refused: nothing here maps another model's ids to ours), encoding_format
 * "float" (JSON numbers) or "base64" (the little-endian float32 bytes; the
 * official Python client asks for this by default and decodes it), and
 * dimensions (the first d components, re-normalized). Errors use OpenAI's
 * {"error": {"message", "type", "param", "code"}} shape so its clients show
 * the message.
 */
#include "server_internal.h"

#include "nr_err.h"
#include "nr_mem.h"
#include "nr_wordpiece.h"

#include <stdio.h>
#include <string.h>

int route_openai_models(void *ud, struct nr_http_req *r)
{
    struct nr_server *s = ud;
    json_t *data = json_array();
    if (s->llm) /* the generator first, as in /api/tags */
        json_array_append_new(data,
                              json_pack("{s:s,s:s,s:I,s:s}", "id", s->llm_name, "object", "model",
                                        "created", (json_int_t)s->started, "owned_by", "nanorag"));
    json_array_append_new(data,
                          json_pack("{s:s,s:s,s:I,s:s}", "id", s->embed_name, "object", "model",
                                    "created", (json_int_t)s->started, "owned_by", "nanorag"));
    return nr_http_reply_json(r, 200, json_pack("{s:s,s:o}", "object", "list", "data", data));
}

int route_openai_embeddings(void *ud, struct nr_http_req *r)
{
    struct nr_server *s = ud;
    struct nr_http_text t = {0};
    json_t *body, *input;
    const char *name = NULL, *fmt = "float";
    float *v = NULL;
    int st, n = 0, dim = 0, b64;
    int64_t dims = 0, tokens = 0;

    if ((st = nr_http_json_body(r, &body)))
        return st;
    if (srv_str(body, "model", 1, &name) || srv_str(body, "encoding_format", 0, &fmt) ||
        srv_int(body, "dimensions", 1, s->einfo.dim, &dims)) {
        st = nr_http_error_status(r, NR_EINVAL);
        goto done;
    }
    if (!srv_is_embed_model(s, name)) {
        st = nr_http_error(r, 404, "the model '%s' does not exist or is not an embedding model",
                           name);
        goto done;
    }
    if (strcmp(fmt, "float") && strcmp(fmt, "base64")) {
        st = nr_http_error(r, 400, "field 'encoding_format' must be \"float\" or \"base64\"");
        goto done;
    }
    b64 = !strcmp(fmt, "base64");
    input = json_object_get(body, "input");
    if (json_is_array(input) && json_array_size(input) > 0 &&
        (json_is_number(json_array_get(input, 0)) || json_is_array(json_array_get(input, 0)))) {
        st = nr_http_error(r, 400, "field 'input' holds token ids: send text instead");
        goto done;
    }
    if ((st = srv_embed(s, r, input, "input", 1, (int)dims, &v, &n, &dim, &tokens)))
        goto done;
    nr_http_text_printf(&t, "{\"object\":\"list\",\"data\":[");
    for (int i = 0; i < n; i++) {
        nr_http_text_printf(
            &t, "%s{\"object\":\"embedding\",\"index\":%d,\"embedding\":", i ? "," : "", i);
        if (b64)
            srv_text_base64_floats(&t, v + (size_t)i * (size_t)dim, dim);
        else
            srv_text_floats(&t, v + (size_t)i * (size_t)dim, dim);
        nr_http_text_printf(&t, "}");
    }
    nr_http_text_printf(&t, "],\"model\":");
    srv_text_json_str(&t, s->embed_name);
    nr_http_text_printf(&t, ",\"usage\":{\"prompt_tokens\":%lld,\"total_tokens\":%lld}}",
                        (long long)tokens, (long long)tokens);
    st = srv_reply_text_json(r, &t);
done:
    nr_free(v);
    json_decref(body);
    return st;
}

#define TOKENIZE_MAX 8192 /* ids one /v1/tokenize call returns */

/*
 * POST /v1/tokenize {"model": embedder, "text" (or "content"): "..."} ->
 * {"tokens": [ids], "pieces": ["[CLS]", ...], "count": n} with the embedder's
 * WordPiece tokenizer, [CLS] and [SEP] included, untruncated up to 8192 ids.
 * For the generator, {"count": n} (its tokenizer is behind nr_llm).
 */
int route_tokenize(void *ud, struct nr_http_req *r)
{
    struct nr_server *s = ud;
    json_t *body, *out = NULL;
    const char *name = NULL, *text = NULL;
    int32_t *ids = NULL;
    int st, n = 0, total = 0;

    if ((st = nr_http_json_body(r, &body)))
        return st;
    if (srv_str(body, "model", 0, &name) || srv_str(body, "text", 0, &text) ||
        (!text && srv_str(body, "content", 0, &text))) {
        st = nr_http_error_status(r, NR_EINVAL);
        goto done;
    }
    if (!text) {
        st = nr_http_error(r, 400, "field 'text' is required");
        goto done;
    }
    if (name && !srv_is_embed_model(s, name)) {
        if (s->llm && srv_model_is(name, s->llm_name)) {
            int c = srv_llm_count_tokens(s, text, strlen(text));
            st = c < 0 ? nr_http_error_status(r, c)
                       : nr_http_reply_json(
                             r, 200, json_pack("{s:s,s:i}", "model", s->llm_name, "count", c));
        } else {
            st = nr_http_error(r, 404, "model \"%s\" not found", name);
        }
        goto done;
    }
    if (!(ids = nr_malloc(TOKENIZE_MAX * sizeof *ids))) {
        st = nr_http_error(r, 500, "out of memory");
        goto done;
    }
    if ((st = nr_wordpiece_encode(nr_embedder_tokenizer(s->e), text, strlen(text), ids, NULL, NULL,
                                  TOKENIZE_MAX, &n, &total))) {
        st = nr_http_error_status(r, st);
        goto done;
    }
    out = json_pack("{s:s,s:[],s:[],s:i,s:b}", "model", s->embed_name, "tokens", "pieces", "count",
                    total, "truncated", total > n);
    for (int i = 0; out && i < n; i++) {
        const char *piece = nr_wordpiece_token(nr_embedder_tokenizer(s->e), ids[i]);
        json_array_append_new(json_object_get(out, "tokens"), json_integer(ids[i]));
        json_array_append_new(json_object_get(out, "pieces"), json_string(piece ? piece : ""));
    }
    st = nr_http_reply_json(r, 200, out);
done:
    nr_free(ids);
    json_decref(body);
    return st;
}
