"""The PyTorch encoder (asr/torch_encoder.py) against CTranslate2's, on the CPU in float32.

On CUDA the worker runs Whisper's encoder in PyTorch on the weights of the CTranslate2 model
(CTranslate2's own spent half its time in one softmax kernel on the H100). These tests pin that it
is the same function: the same encoder output for the real tiny.en and for a random model whose
equal arrays CTranslate2 stored once (aliases), and the same transcripts through the engine.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from rdio_tasks.asr.models import resolve_model
from rdio_tasks.asr.torch_encoder import TorchEncoder, read_variables

ctranslate2 = pytest.importorskip("ctranslate2")
REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO / "tests" / "corpus"


def ct2_encode(model_dir: Path, mel: np.ndarray) -> np.ndarray:
    model = ctranslate2.models.Whisper(str(model_dir), device="cpu", compute_type="float32")
    return np.asarray(model.encode(ctranslate2.StorageView.from_array(mel)))


def torch_encode(model_dir: Path, mel: np.ndarray) -> np.ndarray:
    return np.asarray(TorchEncoder(model_dir, "cpu", "float32").encode(list(mel)))


def test_tiny_en_encoder_output_matches_ctranslate2() -> None:
    model_dir = Path(resolve_model("tiny.en", None))
    mel = np.random.default_rng(1).random((2, 80, 3000), dtype=np.float32)
    expected, got = ct2_encode(model_dir, mel), torch_encode(model_dir, mel)
    assert got.shape == expected.shape == (2, 1500, 384)
    assert np.abs(got - expected).max() < 5e-3 * np.abs(expected).max()


def test_aliased_variables_are_resolved(tmp_path: Path) -> None:
    """A model with equal arrays (zero biases) stores them once; the reader follows the aliases."""
    spec_path = REPO / "bench" / "gpu" / "make_model.py"
    loader = importlib.util.spec_from_file_location("make_model", spec_path)
    assert loader is not None and loader.loader is not None
    make_model = importlib.util.module_from_spec(loader)
    loader.loader.exec_module(make_model)
    dims = (2, 4, 64, 128, 80, 51865)
    tokens = [f"<|t{i}|>" for i in range(51865)]
    spec = make_model.build_spec(dims, 5, "float32", tokens)
    spec.config.suppress_ids, spec.config.suppress_ids_begin = [], []
    spec.config.lang_ids, spec.config.alignment_heads = [], [(1, 0)]
    spec.validate()
    spec.optimize()
    spec.save(str(tmp_path))
    names = read_variables(tmp_path / "model.bin", prefix="encoder/")
    assert {"encoder/conv1/bias", "encoder/layer_1/ffn/linear_1/bias"} <= set(names)
    mel = np.random.default_rng(2).random((1, 80, 3000), dtype=np.float32)
    expected, got = ct2_encode(tmp_path, mel), torch_encode(tmp_path, mel)
    assert np.abs(got - expected).max() < 1e-3 * max(1.0, float(np.abs(expected).max()))


def test_transcripts_match_with_either_encoder() -> None:
    from rdio_tasks.asr import EngineConfig, clear_engines, get_engine
    from rdio_tasks.audio_decode import decode_audio

    rows = [r.split("\t") for r in (CORPUS / "manifest.tsv").read_text().splitlines()[1:]]
    clips = [decode_audio(CORPUS / r[0]) for r in rows if r[1] == "clean"][:3]
    texts = {}
    for encoder in ("ctranslate2", "torch"):
        engine = get_engine(
            EngineConfig(model="tiny.en", compute_type="float32", encoder=encoder, align=False, batch_size=1)
        )
        assert engine.encoder == encoder
        texts[encoder] = [engine.transcribe(c).text for c in clips]
        clear_engines()
    assert all(texts["torch"])
    assert texts["torch"] == texts["ctranslate2"]
