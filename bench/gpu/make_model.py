"""Build a CTranslate2 Whisper model with random weights and large-v3's exact shape.

No Whisper weights of that size can reach the GPU machine (no network, 64 MiB per call), and
throughput depends on the shape, not the values: 32+32 layers, d_model 1280, 20 heads, FFN 5120,
128 mel bins, 51,866 tokens (about 1.55 B parameters, 3.1 GB in float16). The weights are drawn
from a normal distribution scaled like a trained model's (std 0.02, layer-norm gains 1), so
activations stay finite in float16.

The tokenizer is a real multilingual Whisper tokenizer (``tokenizer.json`` of faster-whisper-base,
51,865 ids) with large-v3's one extra language token appended, so faster-whisper's
tokenizer, prompt and language-token code run unchanged. With random weights the decoder almost
never picks end-of-text (1 in 51,866 per step), so ``radio.max_new_tokens`` fixes the number of
decoded tokens per window: 24 is typical of a 5 s call.

    python bench/gpu/make_model.py --tokenizer-dir DIR --out /tmp/large-v3-random
    python bench/gpu/make_model.py --dims tiny ...        # a 39 M-parameter check on the CPU
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np

# name: (layers, heads, d_model, ffn, n_mels, vocab)
DIMS = {
    "large-v3": (32, 20, 1280, 5120, 128, 51866),
    "tiny": (4, 6, 384, 1536, 80, 51865),
}
ENCODER_FRAMES = 1500  # 30 s of 10 ms mel frames, halved by the stride-2 second convolution
DECODER_POSITIONS = 448


class Filler:
    """Random float16 arrays from one seeded generator (float32 draws are cast once)."""

    def __init__(self, seed: int, dtype: str) -> None:
        self.rng = np.random.default_rng(seed)
        self.dtype = np.dtype(dtype)

    def normal(self, *shape: int, std: float = 0.02) -> np.ndarray:
        return (self.rng.standard_normal(shape, dtype=np.float32) * std).astype(self.dtype)

    def ones(self, n: int) -> np.ndarray:
        return np.ones(n, dtype=self.dtype)

    def zeros(self, n: int) -> np.ndarray:
        return np.zeros(n, dtype=self.dtype)


def layer_norm(spec, f: Filler, d: int) -> None:  # type: ignore[no-untyped-def]
    spec.gamma = f.ones(d)
    spec.beta = f.zeros(d)


def linear(spec, f: Filler, out: int, inp: int, bias: bool = True) -> None:  # type: ignore[no-untyped-def]
    spec.weight = f.normal(out, inp)
    if bias:
        spec.bias = f.zeros(out)


def attention(spec, f: Filler, d: int, cross: bool) -> None:  # type: ignore[no-untyped-def]
    """Self-attention fuses q/k/v in one (3d x d) projection; cross-attention keeps q apart and
    fuses k/v (2d x d), since k/v come from the encoder once per call."""
    layer_norm(spec.layer_norm, f, d)
    if cross:
        linear(spec.linear[0], f, d, d)
        linear(spec.linear[1], f, 2 * d, d)
        linear(spec.linear[2], f, d, d)
    else:
        linear(spec.linear[0], f, 3 * d, d)
        linear(spec.linear[1], f, d, d)


def ffn(spec, f: Filler, d: int, hidden: int) -> None:  # type: ignore[no-untyped-def]
    layer_norm(spec.layer_norm, f, d)
    linear(spec.linear_0, f, hidden, d)
    linear(spec.linear_1, f, d, hidden)


def build_spec(dims: tuple[int, int, int, int, int, int], seed: int, dtype: str, tokens: list[str]):  # type: ignore[no-untyped-def]
    from ctranslate2.specs import whisper_spec

    layers, heads, d, hidden, n_mels, vocab = dims
    f = Filler(seed, dtype)
    spec = whisper_spec.WhisperSpec(layers, heads, layers, heads)
    enc = spec.encoder
    enc.conv1.weight = f.normal(d, n_mels, 3)
    enc.conv1.bias = f.zeros(d)
    enc.conv2.weight = f.normal(d, d, 3)
    enc.conv2.bias = f.zeros(d)
    enc.position_encodings.encodings = f.normal(ENCODER_FRAMES, d)
    layer_norm(enc.layer_norm, f, d)
    for layer in enc.layer:
        attention(layer.self_attention, f, d, cross=False)
        ffn(layer.ffn, f, d, hidden)
    dec = spec.decoder
    dec.embeddings.weight = f.normal(vocab, d)
    dec.position_encodings.encodings = f.normal(DECODER_POSITIONS, d)
    layer_norm(dec.layer_norm, f, d)
    for layer in dec.layer:
        attention(layer.self_attention, f, d, cross=False)
        attention(layer.attention, f, d, cross=True)
        ffn(layer.ffn, f, d, hidden)
    dec.projection.weight = dec.embeddings.weight  # Whisper ties the output projection
    spec.register_vocabulary(tokens)
    return spec


def vocabulary(tokenizer_dir: Path, size: int) -> tuple[list[str], dict[str, int]]:
    """Token strings by id from tokenizer.json, padded to ``size`` with timestamp-style names."""
    data = json.loads((tokenizer_dir / "tokenizer.json").read_text())
    by_id = {i: t for t, i in data["model"]["vocab"].items()}
    for added in data.get("added_tokens", []):
        by_id[added["id"]] = added["content"]
    tokens = [by_id.get(i, f"<|unused{i}|>") for i in range(max(by_id) + 1)]
    extra = ["<|yue|>"]  # large-v3's 100th language
    while len(tokens) < size:
        tokens.append(extra.pop(0) if extra else f"<|extra{len(tokens)}|>")
    return tokens[:size], {t: i for i, t in enumerate(tokens[:size])}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tokenizer-dir", type=Path, required=True, help="a multilingual model's folder")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--dims", choices=sorted(DIMS), default="large-v3")
    parser.add_argument("--dtype", choices=["float16", "float32"], default="float16")
    parser.add_argument("--seed", type=int, default=3)
    args = parser.parse_args()

    dims = DIMS[args.dims]
    layers, heads, d, hidden, n_mels, vocab = dims
    tokens, ids = vocabulary(args.tokenizer_dir, vocab)
    spec = build_spec(dims, args.seed, args.dtype, tokens)
    # The real model's token lists (faster-whisper-base's config.json), plus large-v3's extra language.
    real = json.loads((args.tokenizer_dir / "config.json").read_text())
    languages = list(real["lang_ids"]) + ([ids["<|yue|>"]] if "<|yue|>" in ids else [])
    spec.config.suppress_ids = list(real["suppress_ids"])
    spec.config.suppress_ids_begin = list(real["suppress_ids_begin"])
    spec.config.lang_ids = languages
    spec.config.alignment_heads = [(layers // 2 + i, h) for i in range(layers // 2) for h in range(heads)]
    spec.validate()
    spec.optimize(quantization=args.dtype)
    args.out.mkdir(parents=True, exist_ok=True)
    spec.save(str(args.out))
    shutil.copy(args.tokenizer_dir / "tokenizer.json", args.out / "tokenizer.json")
    (args.out / "preprocessor_config.json").write_text(
        json.dumps(
            {
                "chunk_length": 30,
                "feature_size": n_mels,
                "hop_length": 160,
                "n_fft": 400,
                "n_samples": 480000,
                "nb_max_frames": 3000,
                "sampling_rate": 16000,
            }
        )
    )
    # The dimensions bench/throughput.py counts encoder FLOPs from (HF WhisperConfig names).
    (args.out / "dims.json").write_text(
        json.dumps(
            {
                "d_model": d,
                "encoder_layers": layers,
                "encoder_attention_heads": heads,
                "encoder_ffn_dim": hidden,
                "num_mel_bins": n_mels,
                "vocab_size": vocab,
            }
        )
    )
    size = (args.out / "model.bin").stat().st_size
    print(f"{args.dims} random model: {size / 1e9:.2f} GB, {len(languages)} languages -> {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
