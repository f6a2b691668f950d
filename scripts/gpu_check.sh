#!/usr/bin/env bash
# The GPU check, one command on a lent GPU machine within GPU_CHECK_SECONDS (default 420, so a
# rerun still fits in a short loan): finds a Python whose torch sees CUDA, runs the tests marked
# cuda, then the bundled Spot with and without normals at the defaults (first preview, gaps
# between previews, whole run), Spot on the machine's CPU at 2 to 16 threads, the benchmark's
# step and speed-settings tables and one full unoriented reconstruction (with its float32
# reference for the Chamfer), most wanted first;
# a step that would outrun the budget is cut short or skipped, saying so. Every log and JSON goes
# under $OUT (default out/gpu_check).
#
#     OUT=/some/dir GPU_CHECK_SECONDS=300 scripts/gpu_check.sh
#     GPU_CHECK_STEPS="time_to_quality benchmark_full_run" scripts/gpu_check.sh   # those steps only
#
# Steps (by their log's name): cuda_tests, time_to_quality, cpu_threads, benchmark_steps,
# benchmark_full_run.
# Where Open3D is missing, the Chamfer figures come from evaluation/closest_point.py.
#
# It uses .venv when its torch sees CUDA, else a system python3 whose torch does (importing the
# project from this tree, with any wheels carried in .whl/), else sets up .venv and tries the CUDA
# wheel of its torch version; without any, it says so and stops.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-out/gpu_check}"
mkdir -p "$OUT"
log() { echo "[gpu_check $(date +%H:%M:%S)] $*" | tee -a "$OUT/gpu_check.log" >&2; }
DEADLINE=$((SECONDS + ${GPU_CHECK_SECONDS:-420}))
# seconds a step may take: its own limit, or what is left of the budget (0: skip it)
allow() { local left=$((DEADLINE - SECONDS - 5)); if [ "$left" -lt 30 ]; then echo 0; elif [ "$left" -lt "$1" ]; then echo "$left"; else echo "$1"; fi; }
skipped() { log "skipped: $1 (the budget of ${GPU_CHECK_SECONDS:-420} s is spent)"; }
sees_cuda() { "$1" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' >/dev/null 2>&1; }

nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1 || log "nvidia-smi not found"
PY=""
if [ -x .venv/bin/python ] && sees_cuda .venv/bin/python; then
    PY=.venv/bin/python
elif command -v python3 >/dev/null && sees_cuda python3; then
    # a GPU image with its own CUDA torch and no network: import the project from this tree
    # (a folder of links that gives backend/ and protocol/ their package names), and take the
    # packages the image lacks from wheels carried in .whl/, if any (see docs/scaling.md)
    PY=python3
    log "using $(command -v python3) (torch $(python3 -c 'import torch; print(torch.__version__)'))"
    shim=/tmp/siren_shim/siren_recon
    mkdir -p "$shim" /tmp/siren_site
    for entry in backend/*; do ln -sfn "$PWD/$entry" "$shim/"; done
    ln -sfn "$PWD/protocol" "$shim/protocol"
    if compgen -G ".whl/*.whl" >/dev/null; then
        python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/siren_site .whl/*.whl \
            >> "$OUT/setup.log" 2>&1 || log "installing the carried wheels failed (see setup.log)"
    fi
    export PYTHONPATH="/tmp/siren_shim:/tmp/siren_site${PYTHONPATH:+:$PYTHONPATH}"
else
    [ -x .venv/bin/python ] || scripts/setup_env.sh >> "$OUT/setup.log" 2>&1 || log "setup_env.sh failed (see setup.log)"
    if [ -x .venv/bin/python ]; then
        version="$(.venv/bin/python -c 'import torch; print(torch.__version__.split("+")[0])' 2>/dev/null)"
        log "no CUDA torch found; trying torch==$version from the cu128 index"
        limit=$(allow 240)
        if [ "$limit" -gt 0 ] && timeout "$limit" .venv/bin/python -m pip install -q "torch==$version" \
            --index-url https://download.pytorch.org/whl/cu128 >> "$OUT/setup.log" 2>&1 && sees_cuda .venv/bin/python; then
            PY=.venv/bin/python
        fi
    fi
fi
if [ -z "$PY" ]; then
    log "NO CUDA: no Python here has a torch that sees a GPU, and the CUDA wheel could not be installed (offline?)."
    log "Install a CUDA build of torch into .venv (pip install torch --index-url https://download.pytorch.org/whl/cu128) and rerun."
    exit 3
fi
"$PY" -c 'import siren_recon.engine.pipeline' || { log "the project does not import with $PY"; exit 4; }
"$PY" -c 'import torch; print(torch.__version__, torch.version.cuda, torch.cuda.get_device_name(0))' | tee "$OUT/torch.txt"

# step NAME SECONDS LOG COMMAND...: COMMAND under what the budget allows of SECONDS, its output in
# $OUT/LOG.log; false when the budget is spent or GPU_CHECK_STEPS leaves LOG out (and the step skipped)
step() {
    local name=$1 limit; limit=$(allow "$2"); local file="$OUT/$3.log"
    if [ -n "${GPU_CHECK_STEPS:-}" ] && [[ " $GPU_CHECK_STEPS " != *" $3 "* ]]; then log "not asked: $3"; return 1; fi
    shift 3
    if [ "$limit" -eq 0 ]; then skipped "$name"; return 1; fi
    log "$name"
    timeout "$limit" "$@" > "$file" 2>&1
    log "$name exit $? (tail: $(tail -1 "$file"))"
}

step "cuda tests" 180 cuda_tests "$PY" -m pytest -q -m cuda tests/test_cuda.py tests/test_training.py \
    tests/test_fused_gradient.py --junitxml="$OUT/cuda_tests.xml"

step "time to quality: first preview, gaps and whole run at the defaults (the bundled Spot)" 150 time_to_quality \
    "$PY" scripts/benchmark_time_to_quality.py --data /nonexistent --inputs oriented,unoriented --variant today \
    --json "$OUT/time_to_quality.json" && tail -3 "$OUT/time_to_quality.log" | tee -a "$OUT/gpu_check.log"

# the same Spot on this machine's CPU at 2, 4, 8 and 16 threads (400 steps each, after a short run
# that fills the compile cache): the speed-up from more cores, which a 2-core machine cannot show
step "CPU threads: the bundled Spot on 2, 4, 8 and 16 threads" 150 cpu_threads \
    "$PY" scripts/benchmark_time_to_quality.py --data /nonexistent --inputs oriented \
    --variant "warm-up:train.device=cpu,train.iterations=20" \
    --variant "threads-2:train.device=cpu,train.iterations=400,train.threads=2" \
    --variant "threads-4:train.device=cpu,train.iterations=400,train.threads=4" \
    --variant "threads-8:train.device=cpu,train.iterations=400,train.threads=8" \
    --variant "threads-16:train.device=cpu,train.iterations=400,train.threads=16" \
    --json "$OUT/cpu_threads.json" && tail -4 "$OUT/cpu_threads.log" | tee -a "$OUT/gpu_check.log"

step "benchmark: step and speed-settings tables" 200 benchmark_steps \
    "$PY" scripts/benchmark_engine.py --device cuda --quick --no-mesh --speed-settings 200 \
    --json "$OUT/benchmark_steps.json"

step "benchmark: full run and its float32 reference" 300 benchmark_full_run \
    "$PY" scripts/benchmark_engine.py --device cuda --quick --no-mesh --repeats 1 --full-run \
    --full-run-reference --json "$OUT/benchmark_full_run.json" \
    && grep -h "full_run\|Chamfer" "$OUT/benchmark_full_run.log" | tee -a "$OUT/gpu_check.log"
