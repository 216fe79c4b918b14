/*
 * Chat templates, rendered in C.
 *
 * Detection (nr_chat_detect) looks for one distinctive substring per family
 * in tokenizer.chat_template, first match wins:
 *
 *   <|start_header_id|>  Llama 3.x     "Today Date" in the text: 3.1+ preamble
 *   <|im_start|>         ChatML        SmolLM2, Qwen2 (default system literal)
 *   <start_of_turn>      Gemma
 *   [INST]               Llama 2 if the text has <<SYS>>, else Mistral
 *
 * No template (the Gemma 3 270M GGUF has none), or a text that matches none:
 * by architecture: gemma3 -> Gemma; qwen2 -> ChatML; llama with <|im_start|>
 * in the vocabulary -> ChatML, with <|start_header_id|> -> Llama 3 (3.0
 * style); anything else -> PLAIN, our own documented fallback:
 *
 *     [BOS if the tokenizer adds one]{system}\n\nUser: {u1}\nAssistant: {a1}\nUser:
 * {u2}\nAssistant:
 *
 * with "\nUser:" as an extra stop string so the model cannot speak for the
 * user. The template text is only searched, with bounded copies of a few
 * literals; nothing in it is evaluated.
 *
 * Rendering, per family (what the real templates print; fixtures in
 * tests/fixtures/chat_*.json; trim = Python str.strip, i.e. Jinja's trim):
 *
 *   ChatML   [<|im_start|>system\n{default}<|im_end|>\n if the first message
 *            is not a system one and the template has a default]
 *            <|im_start|>{role}\n{content}<|im_end|>\n ...  <|im_start|>assistant\n
 *   Llama 3  {bos}[3.1+: <|start_header_id|>system<|end_header_id|>\n\n
 *            Cutting Knowledge Date: {k}\nToday Date: {d}\n\n{trim(system)}<|eot_id|>]
 *            <|start_header_id|>{role}<|end_header_id|>\n\n{trim(content)}<|eot_id|> ...
 *            <|start_header_id|>assistant<|end_header_id|>\n\n
 *            (3.0: the system message is an ordinary turn; no preamble)
 *   Gemma    {bos}<start_of_turn>user\n{system}\n\n{trim(u1)}<end_of_turn>\n
 *            <start_of_turn>model\n{trim(a1)}<end_of_turn>\n ... <start_of_turn>model\n
 *   Llama 2  per user turn: {bos}[INST] trim([<<SYS>>\n{system}\n<</SYS>>\n\n]{u}) [/INST]
 *            per answer:    " " trim(a) " " {eos}
 *   Mistral  {bos}[INST] {u} [/INST]{a}{eos}... (v0.1: "{eos} "; v0.3/Nemo without the
 *            spaces). The system message goes into the LAST user turn as
 *            "{system}\n\n{u}" (what Nemo's template does; v0.1/v0.2 templates refuse a
 *            system message, and we fold it the same way rather than drop it).
 *
 * Llama 3.1+ prints today's date from strftime_now when the caller provides
 * it; we print the template's own fallback date_string instead, so a prompt
 * renders to the same tokens on every day (prefix reuse, reproducible runs).
 *
 * Role alternation is not enforced (the Gemma / Llama 2 / Mistral templates
 * raise on it); two user turns in a row render as two turns.
 */
#include "nr_chat.h"

#include "nr_err.h"
#include "nr_mem.h"
#include "nr_tok.h"

#include <stdio.h>
#include <string.h>

#define SPECIAL_MAX 64 /* bytes of a special token's text we look up */

const char *nr_chat_family_name(int family)
{
    switch (family) {
    case NR_CHAT_CHATML:
        return "chatml";
    case NR_CHAT_LLAMA3:
        return "llama3";
    case NR_CHAT_GEMMA:
        return "gemma";
    case NR_CHAT_LLAMA2:
        return "llama2";
    case NR_CHAT_MISTRAL:
        return "mistral";
    default:
        return "plain";
    }
}

/* ---------------------------------------------------------------- detection */

/*
 * Copy the string literal text from s up to the first `end` (at most cap - 1
 * bytes) with the escapes \n \t \\ \' \" undone. Returns 1 when it is a
 * plain literal: it holds no quote, brace or '+' (so it is inside one string
 * literal, not an expression such as '<|im_start|>system\n' + messages[0]).
 */
static int literal_until(const char *s, const char *end, char *out, size_t cap)
{
    const char *e = strstr(s, end);
    size_t n = 0;

    out[0] = '\0';
    if (!e)
        return 0;
    for (const char *c = s; c < e; c++) {
        char ch = *c;
        if (ch == '\'' || ch == '"' || ch == '{' || ch == '}' || ch == '+')
            return 0;
        if (ch == '\\') {
            if (c + 1 >= e)
                return 0;
            c++;
            if (*c == 'n')
                ch = '\n';
            else if (*c == 't')
                ch = '\t';
            else if (*c == '\\' || *c == '\'' || *c == '"')
                ch = *c;
            else
                return 0;
        }
        if (n + 1 >= cap)
            return 0;
        out[n++] = ch;
    }
    out[n] = '\0';
    return 1;
}

/* The first plain literal that follows an occurrence of key (see literal_until). */
static int literal_after(const char *text, const char *key, const char *end, char *out, size_t cap)
{
    size_t klen = strlen(key);
    for (const char *p = strstr(text, key); p; p = strstr(p + 1, key))
        if (literal_until(p + klen, end, out, cap))
            return 1;
    out[0] = '\0';
    return 0;
}

/* A newline as the template writes it inside a literal: a real one or "\n". */
static const char *skip_newline(const char *s)
{
    if (s[0] == '\n')
        return s + 1;
    if (s[0] == '\\' && s[1] == 'n')
        return s + 2;
    return NULL;
}

/*
 * ChatML templates that print a system turn when the conversation has none
 * (SmolLM2, Qwen2) write it as one literal:
 * '<|im_start|>system\nYou are ...<|im_end|>\n'. Other occurrences of
 * "<|im_start|>system" are followed by an expression and are skipped.
 */
static void chatml_default_system(const char *tmpl, struct nr_chat_tmpl *t)
{
    const char *key = "<|im_start|>system";
    for (const char *p = strstr(tmpl, key); p; p = strstr(p + 1, key)) {
        const char *s = skip_newline(p + strlen(key));
        if (s && literal_until(s, "<|im_end|>", t->default_system, sizeof t->default_system)) {
            t->has_default_system = 1;
            return;
        }
    }
    t->default_system[0] = '\0';
}

static void copy_token(char *dst, size_t cap, const char *src)
{
    snprintf(dst, cap, "%s", src && strlen(src) < cap ? src : "");
}

static void by_arch(const struct nr_chat_model *m, struct nr_chat_tmpl *t)
{
    const char *arch = m->arch ? m->arch : "";
    if (!strcmp(arch, "gemma3") || !strcmp(arch, "gemma2") || !strcmp(arch, "gemma")) {
        t->family = NR_CHAT_GEMMA;
        t->bos_mode = 1;
    } else if (!strcmp(arch, "qwen2") || m->has_im_start) {
        t->family = NR_CHAT_CHATML;
    } else if (m->has_header_id) {
        t->family = NR_CHAT_LLAMA3;
        t->bos_mode = 1;
    } else {
        t->family = NR_CHAT_PLAIN;
        t->bos_mode = m->adds_bos ? 1 : 0;
        t->stop = "\nUser:";
    }
}

void nr_chat_detect(const struct nr_chat_model *m, struct nr_chat_tmpl *t)
{
    const char *tx = m->template_text;

    memset(t, 0, sizeof *t);
    copy_token(t->bos, sizeof t->bos, m->bos);
    copy_token(t->eos, sizeof t->eos, m->eos);
    if (!tx || !*tx) {
        by_arch(m, t);
        return;
    }
    t->from_template = 1;
    t->bos_mode = strstr(tx, "bos_token") ? 1 : 0;
    if (strstr(tx, "<|start_header_id|>")) {
        t->family = NR_CHAT_LLAMA3;
        if (strstr(tx, "Today Date")) {
            t->llama3_preamble = 1;
            if (!literal_after(tx, "Cutting Knowledge Date: ", "\\n", t->knowledge_date,
                               sizeof t->knowledge_date) &&
                !literal_after(tx, "Cutting Knowledge Date: ", "\n", t->knowledge_date,
                               sizeof t->knowledge_date))
                snprintf(t->knowledge_date, sizeof t->knowledge_date, "December 2023");
            if (!literal_after(tx, "set date_string = \"", "\"", t->today_date,
                               sizeof t->today_date) &&
                !literal_after(tx, "set date_string = '", "'", t->today_date, sizeof t->today_date))
                snprintf(t->today_date, sizeof t->today_date, "26 Jul 2024");
        }
    } else if (strstr(tx, "<|im_start|>")) {
        t->family = NR_CHAT_CHATML;
        chatml_default_system(tx, t);
    } else if (strstr(tx, "<start_of_turn>")) {
        t->family = NR_CHAT_GEMMA;
    } else if (strstr(tx, "[INST]")) {
        if (strstr(tx, "<<SYS>>")) {
            t->family = NR_CHAT_LLAMA2;
            t->bos_mode = t->bos_mode ? 2 : 0;
        } else {
            t->family = NR_CHAT_MISTRAL;
            t->inst_space = strstr(tx, "'[INST] '") || strstr(tx, "\"[INST] \"");
            t->eos_space = strstr(tx, "eos_token + ' '") || strstr(tx, "eos_token + \" \"");
        }
    } else {
        by_arch(m, t);
        t->from_template = 0;
    }
}

/* ---------------------------------------------------------------- output */

static int put(struct nr_chat_prompt *p, const char *s, size_t n, int special)
{
    size_t need;
    if (n == 0)
        return NR_OK;
    if (nr_add_size(p->len, n + 1, &need) || need > NR_CHAT_MAX_TEXT)
        return nr_err_set(NR_ELIMIT, "chat: rendered prompt over %u bytes", NR_CHAT_MAX_TEXT);
    if (need > p->cap) {
        size_t cap = p->cap ? p->cap : 1024;
        char *nt;
        while (cap < need)
            cap *= 2;
        if (cap > NR_CHAT_MAX_TEXT + 1)
            cap = NR_CHAT_MAX_TEXT + 1;
        nt = nr_realloc(p->text, cap);
        if (!nt)
            return nr_err_set(NR_ENOMEM, "chat: out of memory for the prompt");
        p->text = nt;
        p->cap = cap;
    }
    if (p->n_seg > 0 && !special && !p->seg[p->n_seg - 1].special) {
        p->seg[p->n_seg - 1].len += (uint32_t)n;
    } else {
        if (p->n_seg == p->seg_cap) {
            int cap = p->seg_cap ? p->seg_cap * 2 : 64;
            struct nr_chat_seg *ns = nr_realloc(p->seg, (size_t)cap * sizeof *ns);
            if (!ns)
                return nr_err_set(NR_ENOMEM, "chat: out of memory for the prompt");
            p->seg = ns;
            p->seg_cap = cap;
        }
        p->seg[p->n_seg].off = (uint32_t)p->len;
        p->seg[p->n_seg].len = (uint32_t)n;
        p->seg[p->n_seg].special = special;
        p->n_seg++;
    }
    memcpy(p->text + p->len, s, n);
    p->len += n;
    p->text[p->len] = '\0';
    return NR_OK;
}

static int text(struct nr_chat_prompt *p, const char *s)
{
    return put(p, s, strlen(s), 0);
}
static int special(struct nr_chat_prompt *p, const char *s)
{
    return put(p, s, strlen(s), 1);
}

/* Python's str.isspace() for one code point (what Jinja's trim strips). */
static int py_space(uint32_t c)
{
    return (c >= 0x09 && c <= 0x0d) || (c >= 0x1c && c <= 0x20) || c == 0x85 || c == 0xa0 ||
           c == 0x1680 || (c >= 0x2000 && c <= 0x200a) || c == 0x2028 || c == 0x2029 ||
           c == 0x202f || c == 0x205f || c == 0x3000;
}

/* Decode the UTF-8 sequence at s (n bytes available); *len its length. Invalid: 0xFFFFFFFF. */
static uint32_t utf8_at(const unsigned char *s, size_t n, size_t *len)
{
    uint32_t c;
    size_t k;
    if (s[0] < 0x80) {
        *len = 1;
        return s[0];
    }
    if ((s[0] & 0xe0) == 0xc0)
        k = 2, c = s[0] & 0x1f;
    else if ((s[0] & 0xf0) == 0xe0)
        k = 3, c = s[0] & 0x0f;
    else if ((s[0] & 0xf8) == 0xf0)
        k = 4, c = s[0] & 0x07;
    else {
        *len = 1;
        return 0xffffffffu;
    }
    if (k > n) {
        *len = 1;
        return 0xffffffffu;
    }
    for (size_t i = 1; i < k; i++) {
        if ((s[i] & 0xc0) != 0x80) {
            *len = 1;
            return 0xffffffffu;
        }
        c = (c << 6) | (s[i] & 0x3f);
    }
    *len = k;
    return c;
}

/*
 * Strip Python whitespace from both ends of text[start, len), which lies in
 * the last segment (a text one: callers only strip text they just wrote).
 */
static void strip_from(struct nr_chat_prompt *p, size_t start)
{
    unsigned char *s = (unsigned char *)p->text;
    size_t lead = start, end = p->len, cut;
    struct nr_chat_seg *g;

    if (p->n_seg == 0 || start >= p->len)
        return;
    while (lead < end) {
        size_t k;
        uint32_t c = utf8_at(s + lead, end - lead, &k);
        if (!py_space(c))
            break;
        lead += k;
    }
    while (end > lead) {
        size_t b = end - 1, k;
        uint32_t c;
        while (b > lead && (s[b] & 0xc0) == 0x80 && end - b < 4)
            b--;
        c = utf8_at(s + b, end - b, &k);
        if (b + k != end || !py_space(c))
            break;
        end = b;
    }
    memmove(s + start, s + lead, end - lead);
    cut = (lead - start) + (p->len - end);
    p->len -= cut;
    p->text[p->len] = '\0';
    g = &p->seg[p->n_seg - 1];
    g->len -= (uint32_t)cut;
    if (g->len == 0)
        p->n_seg--;
}

static int trimmed(struct nr_chat_prompt *p, const char *s)
{
    size_t start = p->len;
    int rc = text(p, s);
    if (rc)
        return rc;
    strip_from(p, start);
    return NR_OK;
}

#define TRY(x)                                                                                     \
    do {                                                                                           \
        int rc_ = (x);                                                                             \
        if (rc_)                                                                                   \
            return rc_;                                                                            \
    } while (0)

static int render_chatml(const struct nr_chat_tmpl *t, const struct nr_chat_msg *m, int n,
                         struct nr_chat_prompt *p)
{
    if (t->has_default_system && (n == 0 || strcmp(m[0].role, "system"))) {
        TRY(special(p, "<|im_start|>"));
        TRY(text(p, "system\n"));
        TRY(text(p, t->default_system));
        TRY(special(p, "<|im_end|>"));
        TRY(text(p, "\n"));
    }
    for (int i = 0; i < n; i++) {
        TRY(special(p, "<|im_start|>"));
        TRY(text(p, m[i].role));
        TRY(text(p, "\n"));
        TRY(text(p, m[i].content));
        TRY(special(p, "<|im_end|>"));
        TRY(text(p, "\n"));
    }
    TRY(special(p, "<|im_start|>"));
    return text(p, "assistant\n");
}

static int llama3_header(struct nr_chat_prompt *p, const char *role)
{
    TRY(special(p, "<|start_header_id|>"));
    TRY(text(p, role));
    TRY(special(p, "<|end_header_id|>"));
    return text(p, "\n\n");
}

static int render_llama3(const struct nr_chat_tmpl *t, const struct nr_chat_msg *m, int n,
                         struct nr_chat_prompt *p)
{
    int i = 0;
    if (t->bos_mode && t->bos[0] && (n > 0 || t->llama3_preamble))
        TRY(special(p, t->bos));
    if (t->llama3_preamble) {
        TRY(llama3_header(p, "system"));
        TRY(text(p, "Cutting Knowledge Date: "));
        TRY(text(p, t->knowledge_date));
        TRY(text(p, "\nToday Date: "));
        TRY(text(p, t->today_date));
        TRY(text(p, "\n\n"));
        if (n > 0 && !strcmp(m[0].role, "system")) {
            TRY(trimmed(p, m[0].content));
            i = 1;
        }
        TRY(special(p, "<|eot_id|>"));
    }
    for (; i < n; i++) {
        TRY(llama3_header(p, m[i].role));
        TRY(trimmed(p, m[i].content));
        TRY(special(p, "<|eot_id|>"));
    }
    return llama3_header(p, "assistant");
}

static int render_gemma(const struct nr_chat_tmpl *t, const struct nr_chat_msg *m, int n,
                        struct nr_chat_prompt *p)
{
    const char *sys = NULL;
    int i = 0, first = 1;
    if (t->bos_mode && t->bos[0])
        TRY(special(p, t->bos));
    if (n > 0 && !strcmp(m[0].role, "system")) {
        sys = m[0].content;
        i = 1;
    }
    for (; i < n; i++) {
        TRY(special(p, "<start_of_turn>"));
        TRY(text(p, !strcmp(m[i].role, "assistant") ? "model\n" : "user\n"));
        if (first && sys) {
            TRY(text(p, sys));
            TRY(text(p, "\n\n"));
        }
        first = 0;
        TRY(trimmed(p, m[i].content));
        TRY(special(p, "<end_of_turn>"));
        TRY(text(p, "\n"));
    }
    TRY(special(p, "<start_of_turn>"));
    return text(p, "model\n");
}

static int render_llama2(const struct nr_chat_tmpl *t, const struct nr_chat_msg *m, int n,
                         struct nr_chat_prompt *p)
{
    const char *sys = NULL;
    int i = 0, first = 1;
    if (n > 0 && !strcmp(m[0].role, "system")) {
        sys = m[0].content;
        i = 1;
    }
    for (; i < n; i++, first = 0) {
        size_t start;
        if (!strcmp(m[i].role, "assistant")) {
            TRY(text(p, " "));
            TRY(trimmed(p, m[i].content));
            TRY(text(p, " "));
            if (t->eos[0])
                TRY(special(p, t->eos));
            continue;
        }
        if (t->bos_mode && t->bos[0])
            TRY(special(p, t->bos));
        TRY(special(p, "[INST]"));
        TRY(text(p, " "));
        start = p->len;
        if (first && sys) {
            TRY(text(p, "<<SYS>>\n"));
            TRY(text(p, sys));
            TRY(text(p, "\n<</SYS>>\n\n"));
        }
        TRY(text(p, m[i].content));
        strip_from(p, start);
        TRY(text(p, " "));
        TRY(special(p, "[/INST]"));
    }
    return NR_OK;
}

static int render_mistral(const struct nr_chat_tmpl *t, const struct nr_chat_msg *m, int n,
                          struct nr_chat_prompt *p)
{
    const char *sys = NULL;
    int i = 0, last_user = -1;
    if (n > 0 && !strcmp(m[0].role, "system")) {
        sys = m[0].content;
        i = 1;
    }
    /* Nemo's template puts the system message in the user turn that is the
     * last message; with an assistant message last it is dropped. */
    if (n > i && !strcmp(m[n - 1].role, "user"))
        last_user = n - 1;
    if (t->bos_mode && t->bos[0])
        TRY(special(p, t->bos));
    for (; i < n; i++) {
        if (!strcmp(m[i].role, "assistant")) {
            TRY(text(p, m[i].content));
            if (t->eos[0])
                TRY(special(p, t->eos));
            if (t->eos_space)
                TRY(text(p, " "));
            continue;
        }
        TRY(special(p, "[INST]"));
        if (t->inst_space)
            TRY(text(p, " "));
        if (i == last_user && sys) {
            TRY(text(p, sys));
            TRY(text(p, "\n\n"));
        }
        TRY(text(p, m[i].content));
        if (t->inst_space)
            TRY(text(p, " "));
        TRY(special(p, "[/INST]"));
    }
    return NR_OK;
}

static int render_plain(const struct nr_chat_tmpl *t, const struct nr_chat_msg *m, int n,
                        struct nr_chat_prompt *p)
{
    if (t->bos_mode && t->bos[0])
        TRY(special(p, t->bos));
    for (int i = 0; i < n; i++) {
        if (!strcmp(m[i].role, "system")) {
            TRY(text(p, m[i].content));
            TRY(text(p, "\n\n"));
            continue;
        }
        TRY(text(p, !strcmp(m[i].role, "user") ? "User: " : "Assistant: "));
        TRY(text(p, m[i].content));
        TRY(text(p, "\n"));
    }
    return text(p, "Assistant:");
}

int nr_chat_render(const struct nr_chat_tmpl *t, const struct nr_chat_msg *msgs, int n,
                   struct nr_chat_prompt *p)
{
    int rc;
    if (!t || !p || (n > 0 && !msgs) || n < 0)
        return nr_err_set(NR_EINVAL, "chat: NULL argument");
    if (n > NR_CHAT_MAX_MSGS)
        return nr_err_set(NR_ELIMIT, "chat: %d messages (at most %d)", n, NR_CHAT_MAX_MSGS);
    for (int i = 0; i < n; i++) {
        const char *r = msgs[i].role;
        if (!r || !msgs[i].content)
            return nr_err_set(NR_EINVAL, "chat: message %d has no role or content", i);
        if (strcmp(r, "system") && strcmp(r, "user") && strcmp(r, "assistant"))
            return nr_err_set(NR_EINVAL, "chat: message %d: role must be system, user or assistant",
                              i);
        if (!strcmp(r, "system") && i > 0 && t->family != NR_CHAT_CHATML &&
            t->family != NR_CHAT_LLAMA3 && t->family != NR_CHAT_PLAIN)
            return nr_err_set(NR_EINVAL,
                              "chat: message %d: a system message must come first for %s models", i,
                              nr_chat_family_name(t->family));
    }
    p->len = 0;
    p->n_seg = 0;
    switch (t->family) {
    case NR_CHAT_CHATML:
        rc = render_chatml(t, msgs, n, p);
        break;
    case NR_CHAT_LLAMA3:
        rc = render_llama3(t, msgs, n, p);
        break;
    case NR_CHAT_GEMMA:
        rc = render_gemma(t, msgs, n, p);
        break;
    case NR_CHAT_LLAMA2:
        rc = render_llama2(t, msgs, n, p);
        break;
    case NR_CHAT_MISTRAL:
        rc = render_mistral(t, msgs, n, p);
        break;
    default:
        rc = render_plain(t, msgs, n, p);
        break;
    }
    if (rc == NR_OK && !p->text) {
        /* Nothing rendered (no messages, a family without a generation prompt). */
        rc = put(p, "", 0, 0);
        if (!p->text) {
            p->text = nr_malloc(1);
            if (!p->text)
                return nr_err_set(NR_ENOMEM, "chat: out of memory for the prompt");
            p->cap = 1;
            p->text[0] = '\0';
        }
    }
    return rc;
}

void nr_chat_prompt_free(struct nr_chat_prompt *p)
{
    if (!p)
        return;
    nr_free(p->text);
    nr_free(p->seg);
    memset(p, 0, sizeof *p);
}

/* ---------------------------------------------------------------- tokens */

/*
 * The id of s when s is one special token of this vocabulary: found as a
 * whole token, and plain-text encoding gives something else (a special
 * token's text is never produced from plain text). -1 otherwise.
 */
static int special_id(const struct nr_tok *tok, const char *s, size_t n)
{
    char buf[SPECIAL_MAX];
    int32_t ids[2];
    int id, k = 0;
    if (n == 0 || n >= sizeof buf)
        return -1;
    memcpy(buf, s, n);
    buf[n] = '\0';
    id = nr_tok_find(tok, buf);
    if (id < 0)
        return -1;
    if (nr_tok_encode(tok, buf, n, 0, ids, 2, &k) != NR_OK)
        return -1;
    if (k == 1 && ids[0] == id)
        return -1; /* an ordinary token: leave it to the text encoder */
    return id;
}

static int encode_run(const struct nr_tok *tok, const char *s, size_t n, int32_t *ids, int cap,
                      int *total)
{
    int k = 0, rc, have = *total < cap ? *total : cap;
    if (n == 0)
        return NR_OK;
    rc = nr_tok_encode(tok, s, n, 0, ids + have, cap - have, &k);
    if (rc)
        return rc;
    if (k > 0x7fffffff - *total)
        return nr_err_set(NR_ELIMIT, "chat: prompt token count overflows");
    *total += k;
    return NR_OK;
}

int nr_chat_tokenize(const struct nr_tok *tok, const struct nr_chat_prompt *p, int32_t *ids,
                     int cap, int *n_out)
{
    size_t run = 0, run_len = 0;
    int total = 0, rc;

    if (!tok || !p || !n_out || cap < 0 || (cap > 0 && !ids))
        return nr_err_set(NR_EINVAL, "chat: NULL argument");
    *n_out = 0;
    for (int i = 0; i < p->n_seg; i++) {
        const struct nr_chat_seg *g = &p->seg[i];
        int id = g->special ? special_id(tok, p->text + g->off, g->len) : -1;
        if (id < 0) {
            if (run_len == 0)
                run = g->off;
            run_len += g->len;
            continue;
        }
        rc = encode_run(tok, p->text + run, run_len, ids, cap, &total);
        if (rc)
            return rc;
        run_len = 0;
        if (total < cap)
            ids[total] = id;
        if (total == 0x7fffffff)
            return nr_err_set(NR_ELIMIT, "chat: prompt token count overflows");
        total++;
    }
    rc = encode_run(tok, p->text + run, run_len, ids, cap, &total);
    if (rc)
        return rc;
    *n_out = total;
    return NR_OK;
}
