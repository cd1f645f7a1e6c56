#!/usr/bin/env bash
# The GPU worker, measured on the lent GPU machine (H100, CUDA 13, torch 2.11, no network).
#
#   bench/gpu/pack.sh                      # here, with PyPI: writes .gpu/part-00..02 (57 MiB each)
#   device call 1: bench/gpu/run.sh stage probe model      carry .gpu/part-00
#   device call 2: bench/gpu/run.sh stage                  carry .gpu/part-01
#   device call 3: bench/gpu/run.sh stage throughput correctness oom   carry .gpu/part-02
#   device call 4: bench/gpu/run.sh load
#   (issue 20: device call 3 as `stage model prepare`: threads against preparation processes)
# (the machine keeps /tmp/rdio-gpu between calls while it is held; `all` runs every step at once
# where the parts are already staged). Each step prints its figures; JSON lines go to $OUT.
set -uo pipefail
CALLER=$PWD  # the parts are carried in the caller's .gpu/; the code may run from a snapshot
cd "$(dirname "$0")/../.."
SRC=$PWD
STAGE=${RDIO_GPU_STAGE:-/tmp/rdio-gpu}
OUTDIR=${OUT:-$STAGE/out}
MODEL=$STAGE/large-v3-random
mkdir -p "$STAGE" "$OUTDIR"
export PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 PYANNOTE_METRICS_ENABLED=false
export PYTHONPATH=$SRC:$STAGE/site
PY=${PYTHON:-python3}

unpack() {  # extract whatever the staged parts hold so far (a prefix of the stream is fine)
    [ -f "$STAGE/unpacked-$(ls "$STAGE"/part-* | wc -l)" ] && return
    cat "$STAGE"/part-* | xz -dc 2>/dev/null | tar -x -C "$STAGE" 2>/dev/null
    touch "$STAGE/unpacked-$(ls "$STAGE"/part-* | wc -l)"
}

cublas12() {
    # ctranslate2 4.8.5 dlopens libcublas.so.12 / libcublasLt.so.12; the image has cuBLAS 13.
    # cuBLAS 13 keeps the entry points ctranslate2 calls, so the 12 names point at 13.
    local lib
    lib=$($PY -c "import nvidia.cublas, os; print(os.path.join(list(nvidia.cublas.__path__)[0], 'lib'))" 2>/dev/null)
    [ -d "$lib" ] || lib=$(dirname "$(find / -name 'libcublas.so.13*' -not -path '*/proc/*' 2>/dev/null | head -1)")
    mkdir -p "$STAGE/cuda12"
    ln -sf "$lib/libcublas.so.13" "$STAGE/cuda12/libcublas.so.12"
    ln -sf "$lib/libcublasLt.so.13" "$STAGE/cuda12/libcublasLt.so.12"
    export LD_LIBRARY_PATH=$STAGE/cuda12:$lib:${LD_LIBRARY_PATH:-}
}

step_stage() { cp "$CALLER"/.gpu/part-* "$STAGE"/ 2>/dev/null; ls "$STAGE"; }

step_probe() {
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
    $PY -c "import sys, torch; print(sys.version.split()[0], 'torch', torch.__version__, torch.cuda.get_device_name())"
    $PY -c "import ctranslate2 as c; print('ctranslate2', c.__version__, 'cuda devices', c.get_cuda_device_count(), sorted(c.get_supported_compute_types('cuda')))"
}

step_model() {
    [ -f "$MODEL/model.bin" ] || $PY bench/gpu/make_model.py --tokenizer-dir "$STAGE/tokenizer" --out "$MODEL"
    # A smoke pass: encode + generate one random window on the GPU.
    $PY - "$MODEL" <<'PY'
import sys, time, numpy as np, ctranslate2
m = ctranslate2.models.Whisper(sys.argv[1], device="cuda", compute_type="float16")
x = ctranslate2.StorageView.from_array(np.random.rand(1, 128, 3000).astype(np.float32))
for n in (1, 1, 8, 32):
    feats = ctranslate2.StorageView.from_array(np.random.rand(n, 128, 3000).astype(np.float32))
    t = time.perf_counter(); enc = m.encode(feats, to_cpu=False); t1 = time.perf_counter()
    r = m.generate(enc, [[50258, 50259, 50360, 50364]] * n, beam_size=5, max_length=28, return_no_speech_prob=True)
    t2 = time.perf_counter()
    print(f"batch {n}: encode {1000*(t1-t):.1f} ms, generate {1000*(t2-t1):.1f} ms, tokens {len(r[0].sequences_ids[0])}")
PY
}

throughput() {  # $1 = call seconds, rest = extra args
    local secs=$1; shift
    $PY bench/throughput.py --model "$MODEL" --device cuda --compute-type float16 --language en \
        --no-align --max-new-tokens 24 --call-seconds "$secs" --matrix-tflops measure --json "$@" \
        | tee -a "$OUTDIR/throughput.txt"
}

step_throughput() {  # large-v3 shape: CTranslate2's encoder, then PyTorch's (the default on CUDA)
    for enc in ${ENCODERS:-ctranslate2 torch}; do
        throughput 5 --calls 96 --batch-size 32 --concurrency 64 --encoder "$enc"
    done
    throughput 5 --calls 128 --batch-size 64 --concurrency 128 --encoder torch
    throughput 12 --calls 96 --batch-size 32 --concurrency 64 --encoder torch
}

step_correctness() {  # the real tiny.en: per-call and batched transcripts on the corpus, on CUDA
    $PY bench/throughput.py --model "$STAGE/models/tiny.en" --device cuda --compute-type float16 \
        --calls 64 --batch-size 16 --concurrency 32 --no-align --json | tee -a "$OUTDIR/correctness.txt"
    $PY bench/throughput.py --model "$STAGE/models/tiny.en" --device cuda --compute-type float16 \
        --calls 64 --batch-size 16 --concurrency 32 --no-align --json --encoder ctranslate2 | tee -a "$OUTDIR/correctness.txt"
}

step_prepare() {  # preparation in the threads (0) against a pool of processes, same machine, same run
    for procs in ${PREPARE:-0 8}; do
        throughput 5 --calls 96 --batch-size 32 --concurrency 64 --encoder torch --prepare-processes "$procs"
    done
    throughput 5 --calls 128 --batch-size 32 --concurrency 128 --encoder torch --prepare-processes 8
    # A batch that waits for the calls still being prepared (fills on the CPU; costs a core there).
    throughput 5 --calls 96 --batch-size 32 --concurrency 64 --encoder torch --prepare-processes 8 \
        --max-prepare-wait-ms 250
    $PY bench/throughput.py --model "$STAGE/models/tiny.en" --device cuda --compute-type float16 \
        --calls 64 --batch-size 16 --concurrency 32 --no-align --json --prepare-processes 8 \
        | tee -a "$OUTDIR/correctness.txt"
}

step_oom() { $PY bench/gpu/oom.py --model "$MODEL" --calls 1024 --batch-size 1024 | tee -a "$OUTDIR/oom.txt"; }

step_load() {
    $PY bench/gpu/load.py --model "$MODEL" --device cuda --compute-type float16 --max-new-tokens 24 \
        --batch-size 32 --concurrency 64 --warmup 64 --burst 1000 --rate 100 --seconds 30 | tee -a "$OUTDIR/load.txt"
    $PY bench/gpu/load.py --model "$MODEL" --device cuda --compute-type float16 --max-new-tokens 24 \
        --batch-size 1 --concurrency 8 --warmup 16 --burst 200 --rate 0 | tee -a "$OUTDIR/load.txt"
}

unpack_all() { step_stage >/dev/null; unpack; cublas12; }

steps=("$@")
[ ${#steps[@]} -eq 0 ] && steps=(all)
for s in "${steps[@]}"; do
    echo "=== $s $(date -u +%T)"
    case $s in
        stage) step_stage; unpack; cublas12 ;;
        all) unpack_all; step_probe; step_model; step_throughput; step_correctness; step_oom; step_load ;;
        *) unpack_all; "step_$s" ;;
    esac
done
echo "=== done $(date -u +%T)"
