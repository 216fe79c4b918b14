#!/usr/bin/env python3
"""Build a tokenizer-only GGUF from a SentencePiece model file (tokenizer.model,
the protobuf ModelProto) with the `gguf` package's writer, laid out the way
llama.cpp's converter writes a Llama 2 / Mistral vocabulary:

    general.architecture            "llama"
    tokenizer.ggml.model            "llama"   (SentencePiece BPE)
    tokenizer.ggml.pre              "default"
    tokenizer.ggml.tokens/scores/token_type   one per piece, in order; the
                                    type is SentencePiece's (NORMAL 1,
                                    UNKNOWN 2, CONTROL 3, USER_DEFINED 4,
                                    UNUSED 5, BYTE 6)
    tokenizer.ggml.bos/eos/unknown_token_id   from the trainer spec
    tokenizer.ggml.add_bos_token    true, add_eos_token false
    tokenizer.ggml.add_space_prefix the normalizer spec's add_dummy_prefix

The protobuf is read by the small decoder below (only the fields above), so
nothing beyond `gguf` is needed. Used for the Mistral 7B v0.1 tokenizer that the
mistral-common wheel carries (tokenizer.model.v1: 32000 pieces, byte fallback),
fetched into models/mistral-tokenizer/ by scripts/fetch_models.sh:

    python3 scripts/make_spm_vocab_gguf.py models/mistral-tokenizer/tokenizer.model.v1 \\
        models/mistral-tokenizer/mistral-vocab.gguf
"""
import os
import struct
import sys

import gguf


def varint(b, i):
    v = s = 0
    while True:
        c = b[i]
        i += 1
        v |= (c & 0x7F) << s
        s += 7
        if c < 0x80:
            return v, i


def fields(b):
    """(field number, wire type, value) for each field of one message."""
    i = 0
    while i < len(b):
        key, i = varint(b, i)
        f, wt = key >> 3, key & 7
        if wt == 0:
            v, i = varint(b, i)
        elif wt == 1:
            v = b[i : i + 8]
            i += 8
        elif wt == 2:
            n, i = varint(b, i)
            v = b[i : i + n]
            i += n
        elif wt == 5:
            v = b[i : i + 4]
            i += 4
        else:
            sys.exit(f"unsupported protobuf wire type {wt}")
        yield f, wt, v


def signed32(v):
    v &= 0xFFFFFFFFFFFFFFFF
    return v - (1 << 64) if v >= 1 << 63 else v


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    src, out = sys.argv[1], sys.argv[2]
    data = open(src, "rb").read()
    pieces, trainer, norm = [], {}, {}
    for f, wt, v in fields(data):
        if f == 1:
            p = {"piece": "", "score": 0.0, "type": 1}
            for g, gw, gv in fields(v):
                if g == 1:
                    p["piece"] = gv.decode("utf-8")
                elif g == 2:
                    p["score"] = struct.unpack("<f", gv)[0]
                elif g == 3:
                    p["type"] = gv
            pieces.append(p)
        elif f == 2:
            for g, gw, gv in fields(v):
                if gw == 0:
                    trainer[g] = signed32(gv)
        elif f == 3:
            for g, gw, gv in fields(v):
                if gw == 0:
                    norm[g] = gv
    # TrainerSpec: model_type 3 (2 = BPE), unk_id 40, bos_id 41, eos_id 42, pad_id 43.
    if trainer.get(3, 1) != 2:
        sys.exit(f"{src}: model_type {trainer.get(3, 1)} is not BPE")
    unk, bos, eos, pad = trainer.get(40, 0), trainer.get(41, 1), trainer.get(42, 2), trainer.get(43, -1)
    add_prefix = bool(norm.get(3, 1))  # NormalizerSpec.add_dummy_prefix, default true

    tmp = out + ".tmp"
    w = gguf.GGUFWriter(tmp, "llama")
    w.add_name(os.path.basename(src))
    w.add_tokenizer_model("llama")
    w.add_tokenizer_pre("default")
    w.add_token_list([p["piece"] for p in pieces])
    w.add_token_scores([p["score"] for p in pieces])
    w.add_token_types([p["type"] for p in pieces])
    w.add_bos_token_id(bos)
    w.add_eos_token_id(eos)
    w.add_unk_token_id(unk)
    if pad >= 0:
        w.add_pad_token_id(pad)
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)
    w.add_add_space_prefix(add_prefix)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    os.replace(tmp, out)
    print(f"{out}: {len(pieces)} pieces, bos {bos} eos {eos} unk {unk}, add_space_prefix {add_prefix}")


if __name__ == "__main__":
    main()
