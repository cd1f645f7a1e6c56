"""``transcription.radio`` is one typed model: checked when the settings load, used as the engine's
options as is, and the engine's whole config derived from the settings in one place."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest

from rdio_core.radio_settings import RadioSettings
from rdio_core.settings import ConfigError, Settings, TranscriptionSettings, load_settings
from rdio_tasks.asr.config import EngineConfig
from rdio_tasks.radio import RadioOptions


@pytest.mark.parametrize(
    ("yaml_text", "needle"),
    [
        ("transcription:\n  radio: {no_such_option: 3}\n", "transcription.radio.no_such_option"),
        # The case: both faults at once; the line names the first and counts the rest.
        ("transcription:\n  radio: {beam_size: 0, no_such_option: 3}\n", "transcription.radio.beam_size"),
        ("transcription:\n  radio: {beam_size: 0}\n", "transcription.radio.beam_size"),
        ("transcription:\n  radio: {temperatures: []}\n", "transcription.radio.temperatures"),
        ("transcription:\n  radio: {no_speech_threshold: 1.5}\n", "transcription.radio.no_speech_threshold"),
        ("transcription:\n  radio: {replacements: [[' ', x]]}\n", "transcription.radio.replacements"),
    ],
)
def test_bad_radio_settings_stop_the_program_naming_the_key(tmp_path, yaml_text, needle):
    """Before, ``radio: {beam_size: 0, no_such_option: 3}`` loaded fine and every job then retried."""
    cfg = tmp_path / "bad.yaml"
    cfg.write_text(yaml_text)
    with pytest.raises(ConfigError, match=needle.replace(".", r"\.")):
        load_settings(cfg)
    proc = subprocess.run(
        [sys.executable, "-m", "rdio_api", "db", "upgrade", "--config", str(cfg)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0] and "Traceback" not in proc.stderr


def test_radio_settings_are_the_engine_options(tmp_path):
    cfg = tmp_path / "ok.yaml"
    cfg.write_text(
        "transcription:\n  radio:\n    beam_size: 3\n    temperatures: [0, 0.2]\n"
        "    phrase_files: /etc/rdio/phrases.txt\n    replacements: [[ten four, 10-4]]\n"
    )
    radio = load_settings(cfg).transcription.radio
    assert RadioOptions is RadioSettings and isinstance(radio, RadioOptions)
    assert radio == RadioOptions(
        beam_size=3,
        temperatures=(0.0, 0.2),
        phrase_files=("/etc/rdio/phrases.txt",),
        replacements=(("ten four", "10-4"),),
    )
    assert {radio: "cached"}[radio.model_copy()] == "cached"  # hashable by value (engine cache key)
    with pytest.raises(ValueError, match="frozen"):
        radio.beam_size = 1  # type: ignore[misc]
    assert Settings().transcription.radio == RadioOptions()  # the default is the radio pipeline


def test_every_radio_setting_keeps_its_documentation():
    """The reasons written beside each knob survive as field descriptions (shown in schemas)."""
    undocumented = [name for name, f in RadioSettings.model_fields.items() if not f.description]
    assert undocumented == []
    assert "80 Hz" in (RadioSettings.model_fields["highpass_hz"].description or "")


def test_engine_config_is_derived_from_the_settings():
    tx = TranscriptionSettings(
        model="base.en",
        device="cpu",
        compute_type="int8",
        models_dir="/srv/models",
        batch_size=1,
        concurrency=6,
        language="en",
        vad_onset=0.4,
        vad_offset=0.3,
        max_batch_wait_ms=5,
        max_prepare_wait_ms=250,
        prepare_processes=3,
        radio={"min_avg_logprob": -1.2},
    )
    config = EngineConfig.from_settings(tx)
    shared = [
        f.name for f in dataclasses.fields(EngineConfig) if f.name in TranscriptionSettings.model_fields
    ]
    assert len(shared) == 14 and all(getattr(config, name) == getattr(tx, name) for name in shared)
    assert (config.model, config.device, config.compute_type, str(config.models_dir)) == (
        "base.en",
        "cpu",
        "int8",
        "/srv/models",
    )
    assert (config.batch_size, config.language, config.vad_onset, config.vad_offset) == (1, "en", 0.4, 0.3)
    assert config.cross_call_batching is False and config.max_batch_wait_ms == 5
    assert config.max_prepare_wait_ms == 250 and config.concurrency == 6
    # Unset, the batch size is sized by the calls in flight (batch_size_for), and batching is on.
    unset = EngineConfig.from_settings(TranscriptionSettings())
    assert unset.batch_size is None and unset.cross_call_batching is True
    assert config.radio == RadioOptions(min_avg_logprob=-1.2)
    # A job's or talkgroup's model and language win over the global ones.
    per_call = EngineConfig.from_settings(tx, model="small.en", language="de")
    assert (per_call.model, per_call.language) == ("small.en", "de")
    # Switched off in the settings: the plain pipeline, one spelling (None) inside the engine.
    plain = EngineConfig.from_settings(TranscriptionSettings(radio={"enabled": False, "beam_size": 2}))
    assert plain.radio is None


def test_a_worker_sizes_its_batches_by_the_calls_it_runs_at_once() -> None:
    """``-c`` wins over ``transcription.concurrency`` (the threads pool's real size); the solo pool
    runs one call at a time, so its batches are single chunks (batching off)."""
    from types import SimpleNamespace

    from celery.concurrency.thread import TaskPool

    from rdio_tasks.asr.config import batch_size_for
    from rdio_tasks.tasks import calls_at_once

    assert calls_at_once(SimpleNamespace(pool_cls=TaskPool, concurrency=64)) == 64
    assert calls_at_once(SimpleNamespace(pool_cls="solo", concurrency=8)) == 1
    assert calls_at_once(None) is None
    tx = TranscriptionSettings(concurrency=8)
    assert EngineConfig.from_settings(tx).concurrency == 8
    started_with_c64 = EngineConfig.from_settings(tx, concurrency=64)
    assert started_with_c64.concurrency == 64 and batch_size_for(started_with_c64, 1) == 32
    assert batch_size_for(EngineConfig.from_settings(tx, concurrency=1), 1) == 1
