/*
 * nr_tok: the tokenizers of generative models, built from a GGUF file's
 * tokenizer.ggml.* metadata.
 *
 *   tokenizer.ggml.model "gpt2"  -> byte-level BPE (bpe.c); the pre-tokenizer
 *        comes from tokenizer.ggml.pre: "llama-bpe" (Llama 3), "smollm",
 *        "gpt2" / "default", "qwen2"; unknown names are refused (NR_EUNSUPPORTED)
 *   tokenizer.ggml.model "llama" -> SentencePiece BPE with scores and byte
 *        fallback (spm.c): Llama 2, TinyLlama, Mistral, Gemma
 *
 * Ids equal the Hugging Face tokenizer of the same model (fixtures in
 * tests/fixtures/, made by scripts/fixtures/ with transformers / tiktoken).
 *
 * Special tokens (token_type CONTROL or UNKNOWN, e.g. <|im_start|>,
 * <start_of_turn>, <s>) are matched as whole tokens in the text only when
 * NR_TOK_PARSE_SPECIAL is given (chat prompts we render ourselves);
 * user-supplied text is encoded without it, so it cannot forge a turn.
 * USER_DEFINED tokens (Gemma's "\n" runs, "<table>", ...) are plain text
 * the vocabulary keeps whole: they are matched always, as HF does.
 *
 * Lifetime: immutable after nr_tok_open_gguf; every const function may run
 * on any number of threads at once. The tokenizer copies what it needs from
 * the GGUF handle (the handle may be closed afterwards).
 */
#ifndef NR_TOK_H
#define NR_TOK_H

#include <stddef.h>
#include <stdint.h>

struct nr_gguf;
struct nr_tok; /* opaque */

#define NR_TOK_MAX_VOCAB (1 << 20)
#define NR_TOK_MAX_TEXT  (64u << 20) /* bytes per encode call */
#define NR_TOK_MAX_PIECE 256         /* bytes one token decodes to, at most */

enum nr_tok_kind { NR_TOK_BPE = 1, NR_TOK_SPM = 2 };

enum nr_tok_flags {
    NR_TOK_ADD_BOS = 1 << 0,       /* prepend BOS if the model's add_bos_token says so */
    NR_TOK_PARSE_SPECIAL = 1 << 1, /* recognise special-token text as special tokens */
};

int nr_tok_open_gguf(const struct nr_gguf *g, struct nr_tok **out);
void nr_tok_free(struct nr_tok *t);

int nr_tok_kind(const struct nr_tok *t);
const char *nr_tok_pre(const struct nr_tok *t); /* pre-tokenizer name ("llama-bpe", ...) */
int nr_tok_n_vocab(const struct nr_tok *t);
int nr_tok_bos(const struct nr_tok *t); /* -1 when none */
int nr_tok_eos(const struct nr_tok *t); /* -1 when none */
int nr_tok_adds_bos(const struct nr_tok *t);
/* 1 if generation ends at id: EOS, EOT, <|im_end|>, <|eot_id|>, <end_of_turn>, ... */
int nr_tok_is_eog(const struct nr_tok *t, int id);
/* Id of the token whose text is exactly s (special tokens included); -1 if none. */
int nr_tok_find(const struct nr_tok *t, const char *s);
/* The token's text as stored (e.g. "Ġthe", "▁the", "<|im_end|>"); NULL if out of range. */
const char *nr_tok_text(const struct nr_tok *t, int id);

/*
 * Encode len bytes of UTF-8 text. Writes at most cap ids; *n_out gets the
 * full count (so a caller can retry with a bigger buffer, or use cap = 0 to
 * count). Invalid UTF-8 is encoded as its bytes (byte-level BPE) or byte
 * fallback tokens (SPM), never an error. NR_EINVAL (NULL args), NR_ELIMIT
 * (text > NR_TOK_MAX_TEXT), NR_ENOMEM.
 */
int nr_tok_encode(const struct nr_tok *t, const char *text, size_t len, int flags, int32_t *ids,
                  int cap, int *n_out);

/*
 * The bytes of token id as they appear in text (byte-level BPE unmapped,
 * "▁" -> " ", <0xAB> -> byte 0xAB; special tokens give their text unless
 * skip_special). Writes the piece to buf and returns its length (may be 0;
 * may be a partial UTF-8 sequence — see nr_tok_stream); NR_ELIMIT if it
 * does not fit in cap (cap >= NR_TOK_MAX_PIECE always fits), NR_EINVAL for
 * an id out of range.
 */
int nr_tok_piece(const struct nr_tok *t, int id, int skip_special, char *buf, int cap);

/*
 * Streaming detokenizer: feeds token ids, hands out only complete UTF-8
 * (a character split across tokens is held back until it completes;
 * invalid bytes become U+FFFD, one per byte). Special tokens (CONTROL,
 * UNKNOWN, UNUSED) give no text. Also drops the leading space SPM adds at
 * the start of a sequence when the model prepends one (add_space_prefix).
 * Output: cap >= NR_TOK_STREAM_CAP always suffices (valid text needs
 * NR_TOK_MAX_PIECE + 8); NR_ELIMIT if a smaller buffer is too small.
 * The struct may be copied; it holds no memory.
 */
#define NR_TOK_STREAM_CAP (3 * (NR_TOK_MAX_PIECE + 8))
struct nr_tok_stream {
    const struct nr_tok *tok;
    int n_fed;    /* tokens fed so far */
    int n_text;   /* of those, tokens that gave text (not skipped specials) */
    int n_pend;   /* held-back bytes */
    char pend[8]; /* an incomplete UTF-8 sequence */
};
void nr_tok_stream_init(struct nr_tok_stream *s, const struct nr_tok *t);
/* Append the text of id to out (cap >= NR_TOK_MAX_PIECE + 8); returns bytes written. */
int nr_tok_stream_feed(struct nr_tok_stream *s, int id, char *out, int cap);
/* Flush held-back bytes (as U+FFFD) at the end; returns bytes written. */
int nr_tok_stream_flush(struct nr_tok_stream *s, char *out, int cap);

#endif
