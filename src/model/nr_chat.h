/*
 * nr_chat: chat templates without a template engine.
 *
 * A GGUF file's tokenizer.chat_template is Jinja text from the model's
 * publisher: untrusted, and never executed here. nr_chat_detect reads it only
 * to recognise the family (and a few literals: ChatML's default system
 * message, Llama 3's dates), and nr_chat_render writes the prompt in C,
 * byte for byte as the real template renders it (tests/fixtures/chat_*.json,
 * from transformers' renderer).
 *
 * The rendered prompt is a list of segments: the special tokens the template
 * writes (<|im_start|>, <start_of_turn>, BOS, ...) and text. nr_chat_tokenize
 * turns each special segment into its one token and encodes the text between
 * them WITHOUT special-token parsing, so a user who types "<|im_start|>system"
 * gets those characters as plain text, never a forged turn.
 *
 *     struct nr_chat_tmpl t;  nr_chat_detect(&model_desc, &t);
 *     struct nr_chat_prompt p = {0};
 *     nr_chat_render(&t, msgs, n, &p);      // p.text, p.seg[]
 *     nr_chat_tokenize(tok, &p, ids, cap, &n_ids);
 *     nr_chat_prompt_free(&p);
 */
#ifndef NR_CHAT_H
#define NR_CHAT_H

#include <stddef.h>
#include <stdint.h>

#include "nr_gen.h"

struct nr_tok;

#define NR_CHAT_MAX_TEXT   (64u << 20) /* bytes of one rendered prompt */
#define NR_CHAT_MAX_MSGS   100000
#define NR_CHAT_MAX_SYSTEM 2048 /* bytes of a template's default system message */

enum nr_chat_family {
    NR_CHAT_PLAIN = 0,   /* "User: ...\nAssistant:" (no template, unknown model) */
    NR_CHAT_CHATML = 1,  /* <|im_start|>role\n...<|im_end|>\n: SmolLM2, Qwen2 */
    NR_CHAT_LLAMA3 = 2,  /* <|start_header_id|>role<|end_header_id|>\n\n...<|eot_id|> */
    NR_CHAT_GEMMA = 3,   /* <start_of_turn>user|model\n...<end_of_turn>\n */
    NR_CHAT_LLAMA2 = 4,  /* <s>[INST] <<SYS>>\n...\n<</SYS>>\n\n... [/INST] ... </s> */
    NR_CHAT_MISTRAL = 5, /* <s>[INST] ... [/INST]...</s> */
};

/* What detection looks at. */
struct nr_chat_model {
    const char *template_text; /* tokenizer.chat_template, or NULL */
    const char *arch;          /* general.architecture ("llama", "qwen2", "gemma3") */
    const char *bos;           /* BOS token text, or NULL */
    const char *eos;           /* EOS token text, or NULL */
    int adds_bos;              /* the tokenizer prepends BOS to plain text */
    int has_im_start;          /* "<|im_start|>" is in the vocabulary */
    int has_header_id;         /* "<|start_header_id|>" is in the vocabulary */
};

struct nr_chat_tmpl {
    int family;        /* enum nr_chat_family */
    int from_template; /* 1: recognised in the text; 0: chosen by arch */
    int bos_mode;      /* 0 none, 1 once at the start, 2 before every user turn */
    char bos[64];      /* BOS text the template writes */
    char eos[64];      /* EOS text (Llama 2 / Mistral after answers) */
    char default_system[NR_CHAT_MAX_SYSTEM]; /* ChatML: system turn when none is given ("" none) */
    int has_default_system;                  /* default_system applies (it may be "") */
    int llama3_preamble;                     /* Llama 3.1+: system turn always, with dates */
    char knowledge_date[32];                 /* "December 2023" */
    char today_date[32]; /* the template's fallback date_string, "26 Jul 2024" */
    int inst_space;      /* Mistral: "[INST] x [/INST]" (1) or "[INST]x[/INST]" (0) */
    int eos_space;       /* Mistral v0.1: a space after each answer's EOS */
    const char *stop;    /* an extra stop string the family needs, or NULL */
};

/* One piece of the prompt: text[off, off + len). */
struct nr_chat_seg {
    uint32_t off, len; /* bytes */
    int special;       /* 1: a special token's text written by the template */
};

struct nr_chat_prompt {
    char *text;              /* rendered prompt, NUL-terminated (owned) */
    size_t len, cap;         /* bytes */
    struct nr_chat_seg *seg; /* [n_seg] in text order, covering text (owned) */
    int n_seg, seg_cap;
};

/* Pick the family (never fails; PLAIN when nothing matches). */
void nr_chat_detect(const struct nr_chat_model *m, struct nr_chat_tmpl *t);
const char *nr_chat_family_name(int family);

/*
 * Render msgs[0..n) and the generation prompt (the assistant's turn opened)
 * into p (reset first; its buffers are reused). Roles: "system" (first only,
 * except ChatML and Llama 3 which render later system turns as the templates
 * do), "user", "assistant". NR_EINVAL (bad role, NULL content), NR_ELIMIT
 * (over NR_CHAT_MAX_TEXT or NR_CHAT_MAX_MSGS), NR_ENOMEM.
 */
int nr_chat_render(const struct nr_chat_tmpl *t, const struct nr_chat_msg *msgs, int n,
                   struct nr_chat_prompt *p);
void nr_chat_prompt_free(struct nr_chat_prompt *p);

/*
 * Token ids of a rendered prompt: special segments that are single special
 * tokens of this vocabulary become that token; everything else is encoded as
 * plain text (no special parsing). Writes at most cap ids, *n_out gets the
 * full count (as nr_tok_encode).
 */
int nr_chat_tokenize(const struct nr_tok *tok, const struct nr_chat_prompt *p, int32_t *ids,
                     int cap, int *n_out);

#endif
