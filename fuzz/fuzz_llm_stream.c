/*
 * Fuzz entry point for the remote generator stream parsers (nr_llm_stream:
 * Ollama NDJSON and OpenAI server-sent events). Input layout:
 *
 *   byte 0   bit 0: protocol (0 Ollama, 1 OpenAI); bit 1: chat (1) or completion (0)
 *   byte 1   chunk size for the second pass, 1 + b1
 *   rest     the response body
 *
 * The body is parsed twice: in one feed, and in chunks of 1 + b1 bytes. Both
 * passes must agree on the status, the text delivered and the done reason
 * (a parser that depends on where reads split aborts here); every piece of
 * text handed to the callback must be non-empty valid UTF-8; the line buffer
 * never grows past its cap.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "llm_internal.h"
#include "nr_err.h"
#include "nr_llm.h"

struct out {
    char text[1 << 16];
    size_t len;
};

static int valid_utf8(const unsigned char *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        unsigned c = s[i];
        size_t need = c < 0x80             ? 0
                      : (c & 0xE0) == 0xC0 ? 1
                      : (c & 0xF0) == 0xE0 ? 2
                      : (c & 0xF8) == 0xF0 ? 3
                                           : 4;
        if (need == 4 || need > n - i - 1)
            return 0;
        for (size_t k = 1; k <= need; k++)
            if ((s[i + k] & 0xC0) != 0x80)
                return 0;
        i += need + 1;
    }
    return 1;
}

static int on_text(void *ud, const char *t, size_t n)
{
    struct out *o = ud;
    if (n == 0 || !valid_utf8((const unsigned char *)t, n))
        abort();
    if (o->len + n < sizeof o->text) {
        memcpy(o->text + o->len, t, n);
        o->len += n;
    }
    return 0;
}

static int parse(int proto, int chat, const uint8_t *p, size_t n, size_t step, struct out *o,
                 const char **reason)
{
    struct nr_llm_stream s;
    int rc = NR_OK;
    nr_llm_stream_init(&s, proto, chat, on_text, o);
    for (size_t at = 0; at < n && rc == NR_OK; at += step) {
        size_t k = n - at < step ? n - at : step;
        rc = nr_llm_stream_feed(&s, (const char *)p + at, k);
        if (s.line_cap > NR_LLM_MAX_LINE + 1 || s.event_cap > NR_LLM_MAX_LINE + 1)
            abort();
    }
    if (rc == NR_OK)
        rc = nr_llm_stream_end(&s);
    *reason = s.done_reason;
    nr_llm_stream_free(&s);
    return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct out a, b;
    const char *ra, *rb;
    int proto, chat, rca, rcb;
    if (size < 2)
        return 0;
    proto = data[0] & 1 ? NR_LLM_OPENAI : NR_LLM_OLLAMA;
    chat = (data[0] >> 1) & 1;
    a.len = b.len = 0;
    rca = parse(proto, chat, data + 2, size - 2, size, &a, &ra);
    rcb = parse(proto, chat, data + 2, size - 2, 1 + (size_t)data[1], &b, &rb);
    if (rca != rcb || a.len != b.len || memcmp(a.text, b.text, a.len) != 0 || ra != rb)
        abort();
    return 0;
}
