#!/usr/bin/env bash
# What `make test` needs from the system besides Python: Chromium (the console's browser tests,
# tests/browser.py), promtool (deploy/prometheus/alerts.yml, tests/test_health_transcription.py) and
# PostgreSQL's server programs (tests/test_spool.py runs its own instance, initdb as nobody in a temp
# dir, stopped and started mid-stream: the programs, not a service).
# Installs them with apt-get when missing; not root, it stops at once with the one command to run.
# Called by the Makefile's `test` target and so by .ci/run.
set -euo pipefail

missing=()
steps=()
if [ ! -x "${RDIO_CHROMIUM:-/usr/bin/chromium}" ]; then
  missing+=(chromium chromium-driver)
  steps+=("apt-get install -y chromium chromium-driver")  # with its fonts: screenshots need them
fi
if ! command -v promtool >/dev/null 2>&1; then
  missing+=(prometheus)
  # Debian's `prometheus` without recommends is ~20 MB and ~10 s; it brings promtool.
  steps+=("apt-get install -y --no-install-recommends prometheus")
fi
if ! command -v initdb >/dev/null 2>&1 && ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
  missing+=(postgresql)
  steps+=("apt-get install -y --no-install-recommends postgresql")
fi
[ ${#missing[@]} -eq 0 ] && exit 0

install=$(printf ' && DEBIAN_FRONTEND=noninteractive %s' "${steps[@]}")
if [ "$(id -u)" != 0 ]; then
  echo "make test needs ${missing[*]}; install them once with:" >&2
  echo "  sudo sh -c 'apt-get update$install'" >&2
  exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "make test needs ${missing[*]} (Chromium at /usr/bin/chromium or RDIO_CHROMIUM, and promtool);" \
    "this machine has no apt-get: install them with its package manager" >&2
  exit 1
fi
echo "installing ${missing[*]} for the test suite (apt-get)"
sh -c "apt-get update -qq$install"
