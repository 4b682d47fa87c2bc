#!/usr/bin/env bash
# The full-size model's figures on a lent GPU machine, in two prepared runs and an optional third.
#
# A session drives the GPU machine with its `run` tool, not from a shell, so this script has
# halves; `prepare` prints the exact `run` calls:
#
#   bench/gpu.sh prepare               here: downloads the pinned wheels the GPU machine lacks
#                                      into .whl/ (ignored), checks that they and the working
#                                      tree fit the 64 MiB a call carries, prints the calls
#   bash bench/gpu.sh device 1         there, run 1: S2 and S5 with go_fast off and on and the
#                                      fidelity figures (fast), S6 at batch 1, 2 and 4 (batches),
#                                      then the GPU tests, engine/tests/test_gpu_fast.py (tests)
#   bash bench/gpu.sh device 2         there, run 2: S1, S3, S4 with go_fast off and on, the
#                                      go_fast-only memory (S2), start-up cold and warm
#   bash bench/gpu.sh device 3         there, optional run 3: the 9B architecture (klein-9b:
#                                      8 + 24 blocks of 4096, Qwen3-8B; random weights), S2 and
#                                      S1 with go_fast off and on (nine_b). Runs 1 and 2 each fill
#                                      their 9 minutes, so the 9B has a run of its own; it needs
#                                      about 6 (build ~0.5, S2 ~2.5 with go_fast's compile, S1
#                                      ~3: 40 evaluations of ~75 TFLOP at 1024² per image)
#   bench/gpu.sh collect FILE.json     here: the results (what a run left in $OUT) into
#                                      bench/results/ and the README's GPU table
#
# `device` takes the parts (1, 2, 3 or 1,2) or step names (fast, batches, tests, more,
# go_fast_only, startup, nine_b), runs each step under `timeout` within KLEIN_GPU_BUDGET_S
# seconds (default 510: under 9 minutes a run), writes bench/results/<date>-<gpu>.json after every scenario (so a
# step stopped by its limit keeps what it measured) and copies it, each step's status, the
# log and the README table into $OUT. A step that did not fit is recorded as such, and a
# rerun of just that step merges into the same file.
#
# Why not a virtual environment there: the GPU machine's python3 is itself a venv
# (/opt/torch/.venv) holding PyTorch and transformers, and a venv made from it with
# --system-site-packages would see the base interpreter's packages, not those. The wheels
# are installed with --target into /tmp/klein-site and put first on PYTHONPATH instead (the
# recipe of the machine's notes). Only diffusers is missing there (transformers 5.17,
# huggingface_hub 1.33, safetensors, tokenizers, accelerate, numpy, pillow and pytest are
# installed, in versions diffusers 0.42.1 and the engine accept).
#
# KLEIN_GPU_REHEARSAL=1 runs `device` on this machine's CPU with the tiny model, the local
# engine/.venv and sizes scaled down, so that the script is tested (engine/tests/
# test_gpu_script.py) and cannot break unseen.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"

# The wheels the GPU machine lacks, pinned as engine/requirements.in pins them.
WHEELS=(diffusers==0.42.1)
WHEEL_DIR="${KLEIN_GPU_WHEEL_DIR:-.whl}"
CARRY_LIMIT=$((64 * 1024 * 1024))
PARTS_1=(fast batches tests)
PARTS_2=(more go_fast_only startup)
PARTS_3=(nine_b)

prepare() {
  local download=1
  [[ "${1:-}" == "--no-download" ]] && download=0
  mkdir -p "$WHEEL_DIR"
  if ((download)); then
    # The folder is this script's: stale wheels go (two versions of one package stop the install).
    rm -f "$WHEEL_DIR"/*.whl
    local pip=(python3 -m pip)
    python3 -m pip --version >/dev/null 2>&1 || pip=(engine/.venv/bin/python -m pip)
    for w in "${WHEELS[@]}"; do
      "${pip[@]}" download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        -d "$WHEEL_DIR" "$w"
    done
  fi
  local w
  for w in "${WHEELS[@]}"; do
    if ! compgen -G "$WHEEL_DIR/${w%%==*}-${w##*==}-*.whl" >/dev/null; then
      echo "prepare: $WHEEL_DIR lacks $w" >&2
      return 1
    fi
  done
  # What travels: the tracked and untracked-not-ignored files, and the carried wheels.
  local tree wheels
  tree=$(git ls-files -z --cached --others --exclude-standard | xargs -0 -r stat -c %s 2>/dev/null | awk '{s += $1} END {print s + 0}')
  wheels=$(find "$WHEEL_DIR" -maxdepth 1 -name '*.whl' -printf '%s\n' | awk '{s += $1} END {print s + 0}')
  awk -v w="$wheels" -v t="$tree" 'BEGIN {printf "prepare: wheels %.1f MiB + working tree %.1f MiB = %.1f MiB of the 64 MiB a call carries\n", w / 1048576, t / 1048576, (w + t) / 1048576}'
  if ((tree + wheels > CARRY_LIMIT)); then
    echo "prepare: more than 64 MiB would travel" >&2
    return 1
  fi
  local date commit
  date=$(date -u +%F)
  commit=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
  cat <<EOF
prepare: ready. The two device runs (each under 9 minutes; a session has 15 minutes of device time):

  run(command="KLEIN_GPU_DATE=$date KLEIN_BENCH_COMMIT=$commit bash bench/gpu.sh device 1", carry=["$WHEEL_DIR"], timeout_s=570)
  run(command="KLEIN_GPU_DATE=$date KLEIN_BENCH_COMMIT=$commit bash bench/gpu.sh device 2", carry=["$WHEEL_DIR"], timeout_s=570)

Optional, in a session with device time left for it (about 6 minutes), the 9B's S2 and S1:

  run(command="KLEIN_GPU_DATE=$date KLEIN_BENCH_COMMIT=$commit bash bench/gpu.sh device 3", carry=["$WHEEL_DIR"], timeout_s=570)

After each: bench/gpu.sh collect <files_at>/$date-<gpu>.json (the next run merges into it; collect before it).
Give the machine back after the last run. A step that did not fit: bash bench/gpu.sh device <step>
(fast, batches, tests, more, go_fast_only, startup, nine_b), same date.
EOF
}

device() {
  local what="${1:-1}"
  local -a steps=()
  IFS=',' read -ra items <<<"$what"
  for item in "${items[@]}"; do
    case "$item" in
      1) steps+=("${PARTS_1[@]}") ;;
      2) steps+=("${PARTS_2[@]}") ;;
      3) steps+=("${PARTS_3[@]}") ;;
      fast | batches | tests | more | go_fast_only | startup | nine_b) steps+=("$item") ;;
      *) echo "device: unknown part or step '$item'" >&2; return 64 ;;
    esac
  done
  local out="${OUT:-$ROOT/bench/results/out}"
  mkdir -p "$out"
  local budget="${KLEIN_GPU_BUDGET_S:-510}"
  local t_start=$SECONDS
  local py config config_9b dev scale repeats seeds fp8 model_dir
  if [[ "${KLEIN_GPU_REHEARSAL:-}" == 1 ]]; then
    py="${KLEIN_GPU_PYTHON:-$ROOT/engine/.venv/bin/python}"
    config=tiny config_9b=tiny-9b dev=cpu scale=0.125 repeats=1 seeds=1 fp8=emulate
    model_dir="$out/model"
    export PYTHONPATH="$ROOT/engine${PYTHONPATH:+:$PYTHONPATH}"
  else
    py=python3 config=klein-4b config_9b=klein-9b dev=cuda scale=1 repeats=3 seeds=4 fp8=auto model_dir=/tmp/klein-random-4b
    if ! "$py" -c 'import diffusers, sys; sys.exit(diffusers.__version__ != "0.42.1")' 2>/dev/null; then
      "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/klein-site "$WHEEL_DIR"/*.whl
    fi
    export PYTHONPATH="/tmp/klein-site:$ROOT/engine${PYTHONPATH:+:$PYTHONPATH}"
  fi
  export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
  export KLEIN_COMPILE_CACHE_DIR="$ROOT/engine/.cache/compile"
  local gpu slug
  gpu=$("$py" -c "import torch; print(torch.cuda.get_device_name(0) if '$dev' == 'cuda' else 'cpu')")
  slug=$(echo "$gpu" | tr 'A-Z' 'a-z' | sed -E 's/^nvidia //; s/[^a-z0-9]+/-/g; s/^-|-$//g')
  [[ "$config" == tiny ]] && slug="$slug-tiny"
  local results="${KLEIN_GPU_RESULTS_DIR:-$ROOT/bench/results}"
  mkdir -p "$results"
  local name="${KLEIN_GPU_DATE:-$(date -u +%F)}-$slug.json"
  local result="$results/$name"
  local tag
  tag=$(IFS=-; echo "${items[*]}")
  local log="$out/gpu-$tag.log" status="$out/gpu-$tag-steps.jsonl"
  : >"$status"
  echo "device: $gpu; steps ${steps[*]}; budget ${budget} s; results $result" | tee -a "$log"
  local bench=("$py" bench/engine.py --config "$config" --device "$dev" --fp8 "$fp8" --repeats "$repeats" --scale "$scale"
    --out "$result" --merge)

  # step NAME MIN_S MAX_S COMMAND…: runs when at least MIN_S seconds of the budget are left,
  # for at most MAX_S of them; one JSON line of its outcome into $status either way.
  step() {
    local name="$1" min_s="$2" max_s="$3"
    shift 3
    local left=$((budget - (SECONDS - t_start) - 15))
    local cap=$((left < max_s ? left : max_s)) t0=$SECONDS rc=0 state
    if ((cap < min_s)); then
      state="skipped: $left s of the budget left, it needs $min_s"
      echo "step $name: $state" | tee -a "$log"
      printf '{"step": "%s", "state": "%s", "seconds": 0}\n' "$name" "$state" >>"$status"
      return 0
    fi
    echo "step $name (at most $cap s): $*" | tee -a "$log"
    local mark
    mark=$(wc -l <"$log")
    set +e
    timeout --signal=TERM --kill-after=10 "$cap" "$@" 2>&1 | tee -a "$log"
    rc=${PIPESTATUS[0]}
    set -e
    case $rc in
      0) state=ok ;;
      124 | 137) state="stopped at its limit of $cap s" ;;
      *) state="failed (exit $rc)" ;;
    esac
    # pytest's last line (e.g. "7 passed, 1 skipped in 95.1s") says what the tests did.
    local summary
    summary=$(tail -n +"$((mark + 1))" "$log" | grep -E '^=* ?[0-9]+ (passed|failed|skipped|error)' | tail -1 | tr -d '=' | sed -E 's/^ +| +$//g; s/"/'"'"'/g' || true)
    printf '{"step": "%s", "state": "%s", "seconds": %d%s}\n' "$name" "$state" $((SECONDS - t0)) \
      "${summary:+, \"summary\": \"$summary\"}" >>"$status"
    echo "step $name: $state after $((SECONDS - t0)) s" | tee -a "$log"
  }

  for s in "${steps[@]}"; do
    case "$s" in
      fast) step fast 90 260 "${bench[@]}" --scenarios S2,S5 --fidelity --seeds "$seeds" ;;
      batches) step batches 90 220 "${bench[@]}" --scenarios S6 --batch 1,2,4 ;;
      tests) step tests 60 600 "$py" -m pytest -q -rs -p no:cacheprovider engine/tests/test_gpu_fast.py ;;
      more) step more 90 200 "${bench[@]}" --scenarios S1,S3,S4 ;;
      go_fast_only) step go_fast_only 60 120 "${bench[@]}" --scenarios S2 --go-fast-only ;;
      startup) step startup 90 600 "${bench[@]}" --scenarios none --startup --model-dir "$model_dir" ;;
      # The later --config wins: the 9B's rows say "config": "klein-9b" and merge beside the 4B's.
      nine_b) step nine_b 240 495 "${bench[@]}" --config "$config_9b" --scenarios S2,S1 ;;
    esac
  done
  # The runs' steps, the environment and the table go with the results.
  "$py" - "$result" "$status" "$tag" <<'EOF'
import json, platform, sys
from pathlib import Path

result, status, tag = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
data = json.loads(result.read_text()) if result.exists() else {"scenarios": []}
versions = {"python": platform.python_version()}
for name in ("torch", "transformers", "diffusers", "huggingface_hub"):
    try:
        versions[name] = __import__(name).__version__
    except Exception as e:  # recorded, not fatal: the steps' own outcomes say what ran
        versions[name] = f"unavailable ({type(e).__name__})"
data.setdefault("environment", {}).update(versions)
runs = [r for r in data.get("gpu_runs", []) if r.get("run") != tag]
runs.append({"run": tag, "steps": [json.loads(line) for line in status.read_text().splitlines() if line.strip()]})
data["gpu_runs"] = runs
result.write_text(json.dumps(data, indent=2) + "\n")
EOF
  "$py" bench/gpu_table.py "$result" >"$out/gpu-table.md"
  cp "$result" "$out/$name"
  echo "device: done in $((SECONDS - t_start)) s; $out holds $name, gpu-table.md, $(basename "$log"), $(basename "$status")" | tee -a "$log"
}

collect() {
  local file
  for file in "$@"; do
    cp "$file" "bench/results/$(basename "$file")"
    echo "collect: bench/results/$(basename "$file")"
    local py=python3
    command -v python3 >/dev/null || py=engine/.venv/bin/python
    "$py" bench/gpu_table.py "bench/results/$(basename "$file")" --readme README.md
  done
}

case "${1:-}" in
  prepare) shift; prepare "$@" ;;
  device) shift; device "$@" ;;
  collect) shift; collect "$@" ;;
  *) sed -n '2,29p' "$0" >&2; exit 64 ;;
esac
