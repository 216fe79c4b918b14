/*
 * Fuzz entry point for nr_chat (template detection and rendering). The
 * template text of a GGUF file is untrusted: detection only searches it and
 * copies a few bounded literals; rendering writes the prompt in C.
 *
 * Input layout:
 *   byte 0      model description: bit 0-1 arch (llama, qwen2, gemma3, other),
 *               bit 2 has <|im_start|>, bit 3 has <|start_header_id|>,
 *               bit 4 adds BOS, bit 5 no template text at all
 *   then        the template text, up to the first 0x00 byte
 *   then        messages, each: 1 role byte (% 4: system, user, assistant,
 *               an invalid role) and the content up to the next 0x00 byte
 *               (at most 64 messages)
 *
 * Checked (a violation aborts): detection never fails and leaves
 * NUL-terminated, bounded literals; rendering returns NR_OK or NR_EINVAL
 * (bad role, misplaced system message); on NR_OK the segments are
 * contiguous, non-empty and cover the text exactly, the text is
 * NUL-terminated at len, special segments only hold the family's marker
 * strings or the BOS/EOS texts, and the prompt ends with the family's
 * generation prompt.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nr_chat.h"
#include "nr_err.h"

#define MAX_MSGS 64

static void fail(const char *what)
{
    fprintf(stderr, "fuzz_chat: %s\n", what);
    abort();
}

static int bounded(const char *s, size_t cap)
{
    return memchr(s, '\0', cap) != NULL;
}

static int known_special(const char *s, size_t n, const struct nr_chat_tmpl *t)
{
    static const char *const marks[] = {"<|im_start|>",      "<|im_end|>", "<|start_header_id|>",
                                        "<|end_header_id|>", "<|eot_id|>", "<start_of_turn>",
                                        "<end_of_turn>",     "[INST]",     "[/INST]"};
    for (size_t i = 0; i < sizeof marks / sizeof marks[0]; i++)
        if (strlen(marks[i]) == n && !memcmp(marks[i], s, n))
            return 1;
    return (strlen(t->bos) == n && !memcmp(t->bos, s, n)) ||
           (strlen(t->eos) == n && !memcmp(t->eos, s, n));
}

static int ends_with(const struct nr_chat_prompt *p, const char *s)
{
    size_t n = strlen(s);
    return p->len >= n && !memcmp(p->text + p->len - n, s, n);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const archs[] = {"llama", "qwen2", "gemma3", "mamba"};
    static const char *const roles[] = {"system", "user", "assistant", "tool"};
    struct nr_chat_model md = {0};
    struct nr_chat_tmpl t;
    struct nr_chat_prompt p = {0};
    struct nr_chat_msg msgs[MAX_MSGS];
    char *buf, *cur, *end;
    int n = 0, rc;

    if (size < 1)
        return 0;
    /* A NUL-terminated copy so every piece is a C string. */
    buf = malloc(size + 1);
    if (!buf)
        return 0;
    memcpy(buf, data + 1, size - 1);
    buf[size - 1] = '\0';
    end = buf + size - 1;
    md.arch = archs[data[0] & 3];
    md.has_im_start = (data[0] >> 2) & 1;
    md.has_header_id = (data[0] >> 3) & 1;
    md.adds_bos = (data[0] >> 4) & 1;
    md.bos = md.arch[0] == 'g' ? "<bos>" : "<s>";
    md.eos = "</s>";
    md.template_text = (data[0] >> 5) & 1 ? NULL : buf;
    cur = buf + strlen(buf) + 1;
    while (cur < end && n < MAX_MSGS) {
        /* cur[0] is the role byte, the content runs to the next NUL (buf ends with one). */
        msgs[n].role = roles[(unsigned char)cur[0] % 4];
        msgs[n].content = cur + 1;
        n++;
        cur += 1 + strlen(cur + 1) + 1;
    }

    nr_chat_detect(&md, &t);
    if (t.family < NR_CHAT_PLAIN || t.family > NR_CHAT_MISTRAL)
        fail("family out of range");
    if (!bounded(t.default_system, sizeof t.default_system) ||
        !bounded(t.knowledge_date, sizeof t.knowledge_date) ||
        !bounded(t.today_date, sizeof t.today_date) || !bounded(t.bos, sizeof t.bos) ||
        !bounded(t.eos, sizeof t.eos))
        fail("unterminated literal");

    rc = nr_chat_render(&t, msgs, n, &p);
    if (rc != NR_OK && rc != NR_EINVAL)
        fail("render: unexpected status");
    if (rc == NR_OK) {
        size_t pos = 0;
        if (!p.text || p.text[p.len] != '\0')
            fail("text not terminated at len");
        for (int i = 0; i < p.n_seg; i++) {
            const struct nr_chat_seg *g = &p.seg[i];
            if (g->off != pos || g->len == 0)
                fail("segments not contiguous");
            if (g->special && !known_special(p.text + g->off, g->len, &t))
                fail("unknown special segment");
            pos += g->len;
        }
        if (pos != p.len)
            fail("segments do not cover the text");
        switch (t.family) {
        case NR_CHAT_CHATML:
            if (!ends_with(&p, "<|im_start|>assistant\n"))
                fail("chatml: no generation prompt");
            break;
        case NR_CHAT_LLAMA3:
            if (!ends_with(&p, "<|start_header_id|>assistant<|end_header_id|>\n\n"))
                fail("llama3: no generation prompt");
            break;
        case NR_CHAT_GEMMA:
            if (!ends_with(&p, "<start_of_turn>model\n"))
                fail("gemma: no generation prompt");
            break;
        case NR_CHAT_PLAIN:
            if (!ends_with(&p, "Assistant:"))
                fail("plain: no generation prompt");
            break;
        default:
            break;
        }
    }
    nr_chat_prompt_free(&p);
    free(buf);
    return 0;
}
