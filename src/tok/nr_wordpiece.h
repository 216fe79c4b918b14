/*
 * nr_wordpiece: the BERT WordPiece tokenizer (uncased BERT, all-MiniLM-L6-v2),
 * identical in ids and offsets to Hugging Face's fast tokenizer (tokenizers
 * 0.23: BertNormalizer + BertPreTokenizer + WordPiece + [CLS]/[SEP] template).
 *
 * Lifetime: an nr_wordpiece is built once (nr_wordpiece_load or
 * nr_wordpiece_from_tokens), is immutable afterwards, and is freed with
 * nr_wordpiece_free. Every const function may be called from any number of
 * threads at once on the same object. The constructors copy what they need:
 * the caller keeps ownership of the token list it passes.
 *
 * Strings handed back (nr_wordpiece_token) are owned by the tokenizer and live
 * until nr_wordpiece_free. Tokens are always in vocab.txt form ("##" marks a
 * continuation piece), whichever constructor was used.
 */
#ifndef NR_WORDPIECE_H
#define NR_WORDPIECE_H

#include <stddef.h>
#include <stdint.h>

/* Hard limits (inputs past them get NR_EFORMAT / NR_EINVAL / NR_ELIMIT). */
#define NR_WORDPIECE_MAX_TOKENS     (1 << 22)   /* vocabulary entries */
#define NR_WORDPIECE_MAX_TOKEN_LEN  1024        /* bytes in one token */
#define NR_WORDPIECE_MAX_FILE       (64u << 20) /* vocab.txt bytes */
#define NR_WORDPIECE_MAX_WORD_CHARS 512         /* upper bound for max_chars_per_word */
#define NR_WORDPIECE_MAX_TEXT       (1u << 30)  /* bytes of text per encode call */

struct nr_wordpiece; /* opaque */

struct nr_wordpiece_opts {
    int lowercase;          /* do_lower_case (default 1) */
    int strip_accents;      /* -1 = follow lowercase (HF's null), 0, 1 */
    int chinese_chars;      /* tokenize_chinese_chars (default 1) */
    int max_chars_per_word; /* default 100; 1..NR_WORDPIECE_MAX_WORD_CHARS */
};

/* Defaults of all-MiniLM-L6-v2 / bert-base-uncased: 1, -1, 1, 100. */
void nr_wordpiece_opts_default(struct nr_wordpiece_opts *o);

/*
 * Load vocab.txt: one token per line ("\n" or "\r\n"), id = line number - 1.
 * Malformed files give NR_EFORMAT with a message naming the line: empty file,
 * no [UNK]/[CLS]/[SEP], empty token, token longer than
 * NR_WORDPIECE_MAX_TOKEN_LEN bytes, invalid UTF-8 or a NUL byte, duplicate
 * token, more than NR_WORDPIECE_MAX_TOKENS lines, file larger than
 * NR_WORDPIECE_MAX_FILE. opts may be NULL (defaults). On success *out is a new
 * tokenizer owned by the caller.
 */
int nr_wordpiece_load(const char *vocab_path, const struct nr_wordpiece_opts *opts,
                      struct nr_wordpiece **out);

/*
 * Build from an in-memory token list: tokens[i] (lens[i] bytes, no NUL needed;
 * lens may be NULL for NUL-terminated tokens) gets id i. With gguf_style the tokens are in
 * llama.cpp's converted form (convert_hf_to_gguf.py, BertModel.set_vocab): a token starting with
 * U+2581 is a word-initial piece (the U+2581 is stripped), a token of the form
 * "[...]" is kept as is (special tokens; older converters also kept
 * "[unused0]" and the like this way), anything else is a continuation piece
 * ("##" + token). The same checks as nr_wordpiece_load apply, to the tokens
 * after that mapping; messages name the token index.
 */
int nr_wordpiece_from_tokens(const char *const *tokens, const size_t *lens, int n, int gguf_style,
                             const struct nr_wordpiece_opts *opts, struct nr_wordpiece **out);

void nr_wordpiece_free(struct nr_wordpiece *wp);

int nr_wordpiece_vocab_size(const struct nr_wordpiece *wp);
/* Id of the NUL-terminated token `tok` (vocab.txt form), or -1 if absent. */
int nr_wordpiece_token_id(const struct nr_wordpiece *wp, const char *tok);
/* Token string of `id` (vocab.txt form), or NULL if out of range. */
const char *nr_wordpiece_token(const struct nr_wordpiece *wp, int id);
int nr_wordpiece_cls_id(const struct nr_wordpiece *wp);
int nr_wordpiece_sep_id(const struct nr_wordpiece *wp);
int nr_wordpiece_unk_id(const struct nr_wordpiece *wp);
int nr_wordpiece_pad_id(const struct nr_wordpiece *wp); /* -1 if the vocab has no [PAD] */

/*
 * Tokenize `len` bytes of `text` into [CLS] pieces... [SEP].
 *
 * `text` may hold any bytes: invalid UTF-8 sequences are dropped, as HF drops
 * the U+FFFD that a lossy decode puts in their place. The literal special
 * tokens [PAD] [UNK] [CLS] [SEP] [MASK] (exact bytes, case-sensitive) in the
 * text become their ids, as in HF where they are added tokens.
 *
 * At most max_ids (>= 2) ids are written: a longer text keeps its first
 * max_ids - 2 pieces and [SEP] stays last (HF truncation=True,
 * max_length=max_ids). ids[i] gets the token ids; starts/ends, when non-NULL,
 * get each token's byte range [start, end) in `text` ((0, 0) for the [CLS]
 * and [SEP] added around the text). All three arrays hold max_ids entries.
 * *n_ids = the number written; *n_total (may be NULL) = the count the
 * untruncated text gives, [CLS] and [SEP] included.
 *
 * Errors: NR_EINVAL (NULL arguments, max_ids < 2), NR_ELIMIT (len >
 * NR_WORDPIECE_MAX_TEXT). Never allocates: the scratch is bounded and lives on
 * the stack (about 10 KiB). Safe to call concurrently on the same wp.
 */
int nr_wordpiece_encode(const struct nr_wordpiece *wp, const char *text, size_t len, int32_t *ids,
                        int32_t *starts, int32_t *ends, int max_ids, int *n_ids, int *n_total);

#endif
