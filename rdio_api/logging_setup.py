"""One logging format for every rdio-api process."""

from __future__ import annotations

import logging


def configure(level: str = "INFO") -> None:
    logging.basicConfig(
        level=level.upper(),
        format="%(asctime)s %(levelname)s %(processName)s %(name)s: %(message)s",
    )
    if level.upper() != "DEBUG":
        # Seven INFO lines per start (plugin set-up, each migration) that tell an operator nothing.
        logging.getLogger("alembic").setLevel(logging.WARNING)
