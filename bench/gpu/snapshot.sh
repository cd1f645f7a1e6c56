#!/usr/bin/env bash
# Copy the committed tree plus the named working files into DEST (a clean source for the device
# when other work is in progress in this checkout).  Usage: bench/gpu/snapshot.sh DEST [FILE...]
set -euo pipefail
dest=$1; shift
rm -rf "$dest"; mkdir -p "$dest"
git archive HEAD | tar -x -C "$dest"
for f in "$@"; do mkdir -p "$dest/$(dirname "$f")"; cp "$f" "$dest/$f"; done
