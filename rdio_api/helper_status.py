"""What ``rdio-api up`` reports of its helper processes (Flower, workers, Redis), read by /ready
and /metrics in the API process: the supervisor writes ``data_dir/rdio-api.helpers.json`` whenever
one exits or is started again (rdio_api.supervisor)."""

from __future__ import annotations

import json
import os
from pathlib import Path

from rdio_api import metrics

HELPERS_FILE = "rdio-api.helpers.json"


def read(data_dir: Path) -> dict[str, dict] | None:
    """The helpers by name, or None when no live ``rdio-api up`` supervises this data_dir."""
    try:
        data = json.loads((data_dir / HELPERS_FILE).read_text())
        os.kill(int(data["supervisor"]), 0)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    helpers = data.get("helpers")
    return helpers if isinstance(helpers, dict) else None


def describe(helpers: dict[str, dict]) -> str:
    """``ok`` or what is wrong: "flower restarting (exit 1, 3 restarts)"."""
    trouble = [
        f"{name} {h.get('state')} (exit {h.get('last_exit')}, {h.get('restarts')} restarts)"
        for name, h in sorted(helpers.items())
        if h.get("state") != "running" or h.get("restarts")
    ]
    return "; ".join(trouble) if trouble else "ok"


def export(data_dir: Path) -> None:
    """Set the per-helper gauges on /metrics."""
    helpers = read(data_dir) or {}
    metrics.HELPER_UP.clear()
    metrics.HELPER_RESTARTS.clear()
    for name, h in helpers.items():
        metrics.HELPER_UP.labels(helper=name).set(1 if h.get("state") == "running" else 0)
        metrics.HELPER_RESTARTS.labels(helper=name).set(int(h.get("restarts") or 0))
