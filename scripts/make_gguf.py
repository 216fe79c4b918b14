#!/usr/bin/env python3
"""Convert a sentence-transformers BERT directory (safetensors) to GGUF with the
`gguf` package from PyPI, laid out the way llama.cpp's converter writes the
`bert` architecture (and as Ollama's all-minilm is stored): tensor names
token_embd / blk.N.attn_q ..., the WordPiece vocabulary in "phantom space"
form (word-initial pieces prefixed with U+2581, continuation pieces without
their "##", special tokens kept), and bert.* hyperparameters.

It is an independent writer: tests load its output with nanorag's own GGUF
reader and compare the vectors with those from the safetensors directory.

    python3 scripts/make_gguf.py MODEL_DIR OUT.gguf [--f16]
"""
import json
import struct
import sys

import gguf
import numpy as np


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        b, e = info["data_offsets"]
        dt = {"F32": np.float32, "F16": np.float16, "I64": np.int64}[info["dtype"]]
        out[name] = np.frombuffer(data[b:e], dtype=dt).reshape(info["shape"])
    return out


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    mdir, out_path = sys.argv[1], sys.argv[2]
    f16 = "--f16" in sys.argv[3:]
    cfg = json.load(open(f"{mdir}/config.json"))
    pool = json.load(open(f"{mdir}/1_Pooling/config.json"))
    t = read_safetensors(f"{mdir}/model.safetensors")
    t = {k[5:] if k.startswith("bert.") else k: v for k, v in t.items()}

    w = gguf.GGUFWriter(out_path, "bert")
    w.add_name("all-MiniLM-L6-v2")
    w.add_context_length(cfg["max_position_embeddings"])
    w.add_embedding_length(cfg["hidden_size"])
    w.add_feed_forward_length(cfg["intermediate_size"])
    w.add_block_count(cfg["num_hidden_layers"])
    w.add_head_count(cfg["num_attention_heads"])
    w.add_layer_norm_eps(cfg["layer_norm_eps"])
    w.add_causal_attention(False)
    w.add_pooling_type(gguf.PoolingType.MEAN if pool["pooling_mode_mean_tokens"] else gguf.PoolingType.CLS)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_F16 if f16 else gguf.LlamaFileType.ALL_F32)

    vocab = [l.rstrip("\n") for l in open(f"{mdir}/vocab.txt", encoding="utf-8")]
    specials = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"}
    toks, types = [], []
    for tok in vocab:
        if tok in specials or (tok.startswith("[") and tok.endswith("]")):
            toks.append(tok)
            types.append(gguf.TokenType.CONTROL)
        elif tok.startswith("##"):
            toks.append(tok[2:])
            types.append(gguf.TokenType.NORMAL)
        else:
            toks.append("\u2581" + tok)
            types.append(gguf.TokenType.NORMAL)
    w.add_tokenizer_model("bert")
    w.add_token_type_count(cfg.get("type_vocab_size", 2))
    w.add_token_list(toks)
    w.add_token_types(types)
    idx = {tok: i for i, tok in enumerate(vocab)}
    w.add_unk_token_id(idx["[UNK]"])
    w.add_sep_token_id(idx["[SEP]"])
    w.add_pad_token_id(idx["[PAD]"])
    w.add_bos_token_id(idx["[CLS]"])  # llama.cpp stores BERT's [CLS] as BOS
    w.add_eos_token_id(idx["[SEP]"])
    w.add_mask_token_id(idx["[MASK]"])

    def put(name, arr, keep_f32=False):
        arr = np.ascontiguousarray(arr)
        if f16 and arr.ndim == 2 and not keep_f32:
            arr = arr.astype(np.float16)
        else:
            arr = arr.astype(np.float32)
        w.add_tensor(name, arr)

    put("token_embd.weight", t["embeddings.word_embeddings.weight"])
    put("token_types.weight", t["embeddings.token_type_embeddings.weight"], keep_f32=True)
    put("position_embd.weight", t["embeddings.position_embeddings.weight"])
    put("token_embd_norm.weight", t["embeddings.LayerNorm.weight"])
    put("token_embd_norm.bias", t["embeddings.LayerNorm.bias"])
    for i in range(cfg["num_hidden_layers"]):
        p = f"encoder.layer.{i}."
        for src, dst in [
            ("attention.self.query", "attn_q"),
            ("attention.self.key", "attn_k"),
            ("attention.self.value", "attn_v"),
            ("attention.output.dense", "attn_output"),
            ("attention.output.LayerNorm", "attn_output_norm"),
            ("intermediate.dense", "ffn_up"),
            ("output.dense", "ffn_down"),
            ("output.LayerNorm", "layer_output_norm"),
        ]:
            put(f"blk.{i}.{dst}.weight", t[p + src + ".weight"])
            put(f"blk.{i}.{dst}.bias", t[p + src + ".bias"])

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    print(f"wrote {out_path} ({'f16' if f16 else 'f32'})")


if __name__ == "__main__":
    main()
