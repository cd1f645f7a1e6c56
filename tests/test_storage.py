"""rdio_core.storage: what the upload path's shortcuts (directories remembered, free space read at
most every FREE_SPACE_TTL) must still guarantee."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from rdio_core import storage
from rdio_core.storage import AudioStore


def _commit(store: AudioStore, relative: str, data: bytes = b"audio") -> Path:
    spooled = store.spool()
    spooled.write(data)
    final = store.commit(spooled, relative)
    spooled.discard()  # what the upload route does in its finally: must not touch the stored file
    return final


def test_a_committed_file_survives_discard_and_a_pruned_directory_is_made_again(tmp_path: Path) -> None:
    store = AudioStore(tmp_path / "audio")
    relative = store.relative_path(datetime(2026, 12, 5, 13, 0), 7, 52198, "mp3")
    first = _commit(store, relative)
    assert first.read_bytes() == b"audio"
    store.remove(relative)  # retention: the file and its now-empty directories go
    assert not first.parent.exists()
    again = store.relative_path(datetime(2026, 12, 5, 13, 1), 7, 52198, "mp3")
    second = _commit(store, again, b"more")  # the remembered directory is gone: made again
    assert second.parent == first.parent and second.read_bytes() == b"more"
    assert not any((tmp_path / "audio" / storage.INCOMING).iterdir())


@pytest.mark.parametrize("relative", ["../outside.mp3", "/etc/x.mp3", "2026/../../x.mp3", ""])
def test_commit_refuses_a_path_out_of_the_store(tmp_path: Path, relative: str) -> None:
    store = AudioStore(tmp_path / "audio")
    spooled = store.spool()
    spooled.write(b"x")
    with pytest.raises(ValueError):
        store.commit(spooled, relative)
    spooled.discard()
    assert not (tmp_path / "outside.mp3").exists()


def test_free_space_floor_counts_what_was_stored_since_the_last_look(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = AudioStore(tmp_path / "audio")
    free = {"bytes": 10_000}
    looks = []

    def statvfs() -> int:
        looks.append(1)
        return free["bytes"]

    monkeypatch.setattr(store, "free_bytes", statvfs)
    assert store.low_space(9_000) is None
    _commit(store, "2026/12/05/1/1/a.mp3", b"x" * 1_500)  # 8_500 left, unseen by statvfs yet
    assert store.low_space(9_000) is not None  # within the TTL, still refused at once
    assert len(looks) == 1
    monkeypatch.setattr(storage, "FREE_SPACE_TTL", 0.0)
    free["bytes"] = 50_000  # space freed elsewhere: seen on the next look
    assert store.low_space(9_000) is None
