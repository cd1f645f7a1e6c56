"""Whisper's audio encoder in PyTorch, on the weights of the CTranslate2 model already on disk.

Why: on the H100 (bench/gpu), CTranslate2 4.8.5's encoder ran large-v3 at 86 TFLOP/s with 32
windows per pass, 12% of the 740 TFLOP/s the same GPU gives a float16 matrix product. A CUDA
profile of one pass showed why: 53% of the time in one softmax kernel over the 1500 x 1500
attention scores of every head (written out and read back), 9% in a transpose, and only about a
quarter in the matrix products. PyTorch's ``scaled_dot_product_attention`` (flash attention on
Hopper) never writes the scores out. The decoder stays in CTranslate2: its ``generate`` accepts
encoder output, so beam search, the tokenizer and every filter are unchanged.

The weights are read from CTranslate2's ``model.bin`` (float32, float16, bfloat16, or int8 with
per-row scales), so a worker needs no second copy of the model. The module mirrors CTranslate2's
Whisper encoder: two GELU convolutions (the second with stride 2), learned positions, pre-norm
layers with fused q/k/v, a final layer norm.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import torch

__all__ = ["TorchEncoder", "read_variables"]

# CTranslate2's DataType enum order (include/ctranslate2/types.h).
_DTYPES = ("float32", "int8", "int16", "int32", "float16", "bfloat16")


def read_variables(model_bin: Path, prefix: str = "") -> dict[str, np.ndarray]:
    """The variables of a CTranslate2 ``model.bin`` whose names start with ``prefix``.

    Aliases (CTranslate2 stores equal arrays once and names the others after it) are resolved.
    int8 weights come back multiplied out by their ``weight_scale`` (float32); bfloat16 as
    float32. Others keep their stored dtype.

    Raises:
        ValueError: the file is not a CTranslate2 model this reader knows (binary version 6).
    """
    import numpy as np

    index: dict[str, tuple[int, tuple[int, ...], str, int]] = {}
    with open(model_bin, "rb") as f:

        def string() -> str:
            (n,) = struct.unpack("<H", f.read(2))
            return f.read(n)[:-1].decode()

        (version,) = struct.unpack("<I", f.read(4))
        if version != 6:
            raise ValueError(f"{model_bin}: CTranslate2 binary version {version}, this reader knows 6")
        string()  # spec name
        f.read(4)  # spec revision
        (count,) = struct.unpack("<I", f.read(4))
        for _ in range(count):
            name = string()
            (rank,) = struct.unpack("<B", f.read(1))
            shape = struct.unpack(f"<{rank}I", f.read(4 * rank))
            (dtype,) = struct.unpack("<B", f.read(1))
            (size,) = struct.unpack("<I", f.read(4))
            index[name] = (f.tell(), shape, _DTYPES[dtype], size)
            f.seek(size, 1)
        (aliases,) = struct.unpack("<I", f.read(4))
        for _ in range(aliases):
            alias, target = string(), string()
            index[alias] = index[target]
        out: dict[str, np.ndarray] = {}
        for name, (offset, shape, kind, size) in index.items():
            if not name.startswith(prefix):
                continue
            f.seek(offset)
            raw = f.read(size)
            if kind == "bfloat16":
                array = (np.frombuffer(raw, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)
            else:
                array = np.frombuffer(raw, dtype=kind).copy()
            out[name] = array.reshape(shape)
    for name in [n for n in out if n.endswith("/weight_scale")]:
        weight = name.removesuffix("_scale")
        scale = out.pop(name).astype(np.float32)
        out[weight] = out[weight].astype(np.float32) / scale.reshape(-1, *([1] * (out[weight].ndim - 1)))
    return out


class TorchEncoder:
    """A Whisper encoder built from CTranslate2 weights; call it on stacked log-mel windows."""

    def __init__(self, model_dir: str | Path, device: str, dtype: str = "float16") -> None:
        import torch

        self.device = torch.device(device)
        self.dtype = getattr(torch, dtype)
        raw = read_variables(Path(model_dir) / "model.bin", prefix="encoder/")
        self.heads = int(raw.pop("encoder/num_heads"))
        self.w = {
            name.removeprefix("encoder/"): torch.from_numpy(value.astype("float32")).to(
                self.device, self.dtype
            )
            for name, value in raw.items()
        }
        self.layers = sum(1 for n in self.w if n.endswith("self_attention/linear_0/weight"))
        self.n_mels = int(self.w["conv1/weight"].shape[1])

    def __call__(self, mel: torch.Tensor) -> torch.Tensor:
        """[batch, n_mels, 3000] log-mel -> [batch, 1500, d_model] in this encoder's dtype."""
        import torch
        import torch.nn.functional as F

        w = self.w
        with torch.inference_mode():
            x = mel.to(self.device, self.dtype, non_blocking=True)
            x = F.gelu(F.conv1d(x, w["conv1/weight"], w["conv1/bias"], padding=1))
            x = F.gelu(F.conv1d(x, w["conv2/weight"], w["conv2/bias"], stride=2, padding=1))
            x = x.transpose(1, 2) + w["position_encodings/encodings"][: x.shape[2]]
            batch, frames, d = x.shape
            for i in range(self.layers):
                p = f"layer_{i}/"
                h = self._norm(x, p + "self_attention/layer_norm")
                qkv = F.linear(
                    h, w[p + "self_attention/linear_0/weight"], w[p + "self_attention/linear_0/bias"]
                )
                q, k, v = qkv.view(batch, frames, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
                a = F.scaled_dot_product_attention(q, k, v)
                a = a.transpose(1, 2).reshape(batch, frames, d)
                x = x + F.linear(
                    a, w[p + "self_attention/linear_1/weight"], w[p + "self_attention/linear_1/bias"]
                )
                h = self._norm(x, p + "ffn/layer_norm")
                h = F.gelu(F.linear(h, w[p + "ffn/linear_0/weight"], w[p + "ffn/linear_0/bias"]))
                x = x + F.linear(h, w[p + "ffn/linear_1/weight"], w[p + "ffn/linear_1/bias"])
            return self._norm(x, "layer_norm").contiguous()

    def _norm(self, x: torch.Tensor, name: str) -> torch.Tensor:
        import torch.nn.functional as F

        return F.layer_norm(x, x.shape[-1:], self.w[name + "/gamma"], self.w[name + "/beta"], eps=1e-5)

    def encode(self, features: list[Any]) -> Any:
        """Stacked windows -> a CTranslate2 StorageView on the encoder's device, for ``generate``.

        The host-to-GPU copy goes through pinned memory in float16 (half the bytes of float32).
        The result stays referenced by the StorageView, so it outlives this call.
        """
        import ctranslate2
        import numpy as np
        import torch

        host = torch.from_numpy(np.stack([np.asarray(f, dtype=np.float32) for f in features]))
        if self.device.type == "cuda":
            host = host.to(self.dtype).pin_memory()
        encoded = self(host)
        if self.device.type == "cuda":
            torch.cuda.current_stream(self.device).synchronize()  # CTranslate2 runs on its own stream
            return ctranslate2.StorageView.from_array(encoded)
        return ctranslate2.StorageView.from_array(encoded.float().numpy())
