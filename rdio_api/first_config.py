"""The first ``config.yaml`` (``make run`` / ``rdio-api init``): fresh keys and only what a newcomer
changes.

The first file used to be a copy of config.example.yaml, whose samples were live: system 1 got a
sample prompt and its talkgroup 52198 had transcription off, so a newcomer following README (system
1, the alert example on 52198) saw calls that were never transcribed. Every sample now stays in
config.example.yaml, commented; this file holds two keys and the settings people change first.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

UPLOAD_KEY_NAME = "sdrtrunk"
CONSOLE_KEY_NAME = "console"

TEMPLATE = """\
# rdio-api settings, written by `make run` on first start. Every other setting, and samples of
# per-talkgroup overrides, prompts and alert rules, is documented in config.example.yaml: copy
# what you need here. Changes are picked up without a restart (file change or SIGHUP).

data_dir: ./data                    # database, audio, embedded Redis

api_keys:
  - key: "{upload_key}"
    name: "{upload_name}"                 # give this key to SDRTrunk / trunk-recorder (API Key)
    scopes: [upload]
  - key: "{console_key}"
    name: "{console_name}"                  # enter this key once in the console (/)
    scopes: [read, admin]           # read calls; re-transcribe and backfill from the console

server:
  host: 127.0.0.1                   # 0.0.0.0 to accept uploads from other machines
  port: 8080

transcription:
  model: base                       # base or tiny.en run offline; others: `rdio-api models fetch`
  language: null                    # e.g. en to skip language detection
"""


def first_config() -> str:
    """The text of a first config.yaml with two fresh random keys."""
    return TEMPLATE.format(
        upload_key=secrets.token_urlsafe(18),
        upload_name=UPLOAD_KEY_NAME,
        console_key=secrets.token_urlsafe(18),
        console_name=CONSOLE_KEY_NAME,
    )


def write_first_config(path: Path) -> bool:
    """Write ``path`` (0600: it holds keys) unless it exists; True when written."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as fh:
        fh.write(first_config())
    return True
