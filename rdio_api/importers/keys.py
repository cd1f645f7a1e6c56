"""Add upload keys brought from another server to our YAML config, keeping the file as written.

The keys live in the config (one settings tree), so an import edits it: the new entries go at the
end of the top-level ``api_keys:`` list, in the list's own indentation, and every other line,
comment included, stays as it was. The result is loaded as settings before it replaces the file
(temp file + rename; the old file kept as ``.bak``), so a running server's reload (file change)
picks the keys up and never sees a half-written file. A key already present (same key string) is
left alone, so a rerun adds nothing.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Any

import yaml

from rdio_core.settings import ConfigError, load_settings

_TOP = re.compile(r"^api_keys:\s*(?P<empty>\[\s*\])?\s*(#.*)?$")
_ITEM = re.compile(r"^(?P<indent>\s*)- ")


class KeysNotWritten(Exception):
    """The config could not be edited safely; the message says what to paste instead."""


def missing(config: Path | None, entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The entries whose key string the config does not hold yet."""
    text = config.read_text(encoding="utf-8") if config is not None and config.is_file() else ""
    loaded = yaml.safe_load(text) or {}
    present = {str(k.get("key")) for k in loaded.get("api_keys") or [] if isinstance(k, dict)}
    return [e for e in entries if e["key"] not in present]


def add_keys(config: Path, entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Append ``entries`` not yet in ``config`` to its ``api_keys``; the ones added."""
    new = missing(config, entries)
    if not new:
        return []
    text = config.read_text(encoding="utf-8") if config.is_file() else ""
    edited = _insert(text, new)
    tmp = config.with_name(f".{config.name}.import-tmp")
    tmp.write_text(edited, encoding="utf-8")
    try:
        settings = load_settings(tmp)
        wanted = {e["key"] for e in new}
        if not wanted <= {k.key for k in settings.api_keys}:
            raise KeysNotWritten("the edited config did not hold the new keys")
    except (ConfigError, KeysNotWritten) as exc:
        tmp.unlink(missing_ok=True)
        raise KeysNotWritten(
            f"{config} was not changed ({exc}); add these under api_keys:\n{snippet(new)}"
        ) from None
    if config.is_file():
        shutil.copy2(config, config.with_name(config.name + ".bak"))
    with tmp.open("rb") as fh:
        os.fsync(fh.fileno())
    os.replace(tmp, config)
    return new


def snippet(entries: list[dict[str, Any]]) -> str:
    return yaml.safe_dump(entries, sort_keys=False, default_flow_style=False, allow_unicode=True)


def _insert(text: str, entries: list[dict[str, Any]]) -> str:
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if _TOP.match(line)), None)
    if start is None:
        if any(line.startswith("api_keys:") for line in lines):
            raise KeysNotWritten("api_keys is written inline; not edited")
        newline = "\n" if text and not text.endswith("\n") else ""
        return (
            text
            + newline
            + "\n# Upload keys brought over by `rdio-api import`\napi_keys:\n"
            + _block(entries, "  ")
        )
    match = _TOP.match(lines[start])
    assert match is not None
    end, indent = len(lines), None
    for j in range(start + 1, len(lines)):
        line = lines[j]
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if not line[0].isspace() and not line.startswith("-"):
            end = j
            break
        item = _ITEM.match(line)
        if item is not None and indent is None:
            indent = item.group("indent")
    while end > start + 1 and not lines[end - 1].strip():
        end -= 1  # keep the blank lines that separate sections after the new entries
    head = [*lines[:start], "api_keys:"] if match.group("empty") else lines[:end]
    tail = lines[start + 1 :] if match.group("empty") else lines[end:]
    new_lines = _block(entries, indent if indent is not None else "  ").rstrip("\n").split("\n")
    return "\n".join(head + new_lines + tail) + "\n"


def _block(entries: list[dict[str, Any]], indent: str) -> str:
    return "".join(indent + line + "\n" for line in snippet(entries).splitlines())
