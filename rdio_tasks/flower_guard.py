"""Flower must not run open: basic auth from settings, persistent state in data_dir.

Used by ``rdio-api flower`` and, through ``rdio_tasks/__init__``, by a plain
``celery -A rdio_tasks flower`` (Flower reads ``FLOWER_*`` environment variables).
"""

from __future__ import annotations

import ipaddress
import os

from rdio_core.settings import Settings

LOOPBACK_NAMES = {"localhost"}


def _is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def flower_options(settings: Settings, host: str | None, port: int | None, no_auth: bool) -> dict[str, str]:
    """Flower options as FLOWER_* values; ValueError when it would run without credentials."""
    address = host or settings.flower.host
    options = {
        "FLOWER_ADDRESS": address,
        "FLOWER_PORT": str(port if port is not None else settings.flower.port),
        "FLOWER_PERSISTENT": "True",
        "FLOWER_DB": str((settings.data_dir / "flower.db").resolve()),
    }
    user, password = settings.flower.user, settings.flower.password
    if user and password:
        options["FLOWER_BASIC_AUTH"] = f"{user}:{password}"
    elif not no_auth:
        raise ValueError(
            "Flower needs credentials: set flower.user and flower.password (RDIO_FLOWER__USER / "
            "RDIO_FLOWER__PASSWORD), or pass --no-auth to run it open on a loopback address"
        )
    elif not _is_loopback(address):
        raise ValueError(f"--no-auth is only allowed on a loopback address, not {address}")
    return options


def flower_argv(settings: Settings, host: str | None, port: int | None, no_auth: bool) -> list[str]:
    options = flower_options(settings, host, port, no_auth)
    (settings.data_dir).mkdir(parents=True, exist_ok=True)
    argv = [
        "flower",
        f"--address={options['FLOWER_ADDRESS']}",
        f"--port={options['FLOWER_PORT']}",
        "--persistent=True",
        f"--db={options['FLOWER_DB']}",
    ]
    # Credentials stay off the command line (ps shows it to every user): Flower reads
    # FLOWER_BASIC_AUTH from the environment, which rdio-api flower sets before exec.
    if settings.log_level.upper() != "DEBUG":
        argv.append("--logging=error")  # "Inspect method ... failed" while workers start, per method
    return argv


def guard_plain_celery_flower(argv: list[str]) -> None:
    """Called when ``celery -A rdio_tasks flower`` starts: enforce auth from settings via FLOWER_*."""
    program = argv[0] if argv else ""
    if "celery" not in program or "flower" not in argv[1:]:
        return
    from rdio_core.settings import load_settings
    from rdio_tasks.celery_app import NO_BROKER

    settings = load_settings()
    if not any(a.startswith("--basic_auth") for a in argv):
        no_auth = os.environ.get("RDIO_FLOWER_NO_AUTH", "") in ("1", "true", "yes")
        try:
            options = flower_options(settings, os.environ.get("FLOWER_ADDRESS"), None, no_auth)
        except ValueError as exc:
            raise SystemExit(f"rdio-api: {exc}") from None
        for key, value in options.items():
            os.environ.setdefault(key, value)
    if not settings.broker_url:  # Celery's own default would be AMQP on localhost: a guess
        raise SystemExit(f"rdio-api flower: {NO_BROKER}")
