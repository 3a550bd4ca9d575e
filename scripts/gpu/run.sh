#!/usr/bin/env bash
# Runs on the lent GPU machine, in the repository root, after scripts/gpu/prepare.sh staged .gpu/.
#
#   phase1: carried .gpu/call1 (and, if an earlier lease brought one back, .gpu/kernels: its
#           compiled-kernel caches). Keeps the binary, wheels, reviews and the first part of the
#           MiniLM weights in $STASH, then:
#           1. cold: four `lora bench` processes at once (MiniLM and bert-base shapes, 16 x 256,
#              with and without Burn's fusion), each filling its own kernel cache: compiling is
#              one CPU thread per process, and the machine has 16 cores;
#           2. warm: the same four again, one at a time (clean timings, kernels cached), and
#              PyTorch + PEFT's rows between them;
#           3. the bert-base protocol (1,000/500, 5 epochs, random weights of bert-base-uncased's
#              shape, max length 512, batches padded to multiples of 64) with the faster
#              variant, against scripts/baseline_peft.py; then bf16 (bench and protocol) if time is left.
#   phase2: carried .gpu/call2, on the same (still warm) machine. Rebuilds the MiniLM weights and
#           runs configs/imdb-minilm-lora.toml (real weights, real reviews) for seeds 42, 43, 44,
#           ours and Python's.
#
#   bash scripts/gpu/run.sh phase1|phase2     (BUDGET_S: seconds before remaining steps are skipped)
#   SKIP=REGEX skips the steps whose names match (e.g. SKIP=torch when PyTorch's rows are in hand).
#   COLD_S: the cold phase's limit (default 180).
#   SMOKE=1 DEVICE=cpu PYTHON=.venv/bin/python LORA=target/release/lora bash scripts/gpu/run.sh phase1
#       tries the script here on tiny settings (no GPU).
# Every step has a time limit; what a step printed, its exit status and wall time go to
# $OUT/summary.txt; its output, JSON results and the kernel caches are packed into
# $OUT/results.tar.gz and $OUT/kernels.tar.gz (the device tool brings back at most 8 files).
set -uo pipefail
cd "$(dirname "$0")/../.."
phase="${1:?phase1 or phase2}"
OUT="${OUT:-/tmp/gpu-out}"
STASH="${STASH:-/tmp/lora-stash}"
DEVICE="${DEVICE:-cuda}"
PYTHON="${PYTHON:-python3}"
if [[ -n "${SMOKE:-}" ]]; then
    bench="--batch-size 2 --seq-len 16 --warmup 1 --repeats 1"
    tiny=(--set data.train_size=16 --set data.eval_size=8 --set data.max_length=32 --set training.num_train_epochs=1)
    pytiny=(--limit 16 --epochs 1 --max-length 32)
    pad=8
else
    bench="--batch-size 16 --seq-len 256 --warmup 2 --repeats 10"
    tiny=()
    pytiny=()
    pad=64
fi
# --no-fusion is a CUDA switch: on the CPU (SMOKE) both variants run the same backend.
[[ "$DEVICE" == cpu ]] && unfused="" || unfused="--no-fusion"
DEADLINE=$(($(date +%s) + ${BUDGET_S:-280}))
mkdir -p "$OUT" "$STASH/res" "$STASH/kernels"
export PYTHONUNBUFFERED=1 PYTHONPATH=/tmp/site HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false

log() { echo "$*" | tee -a "$OUT/summary.txt"; }
left() { echo $((DEADLINE - $(date +%s))); }

# step NAME LIMIT_S COMMAND...: runs COMMAND under the smaller of LIMIT_S and the time left.
step() {
    local name=$1 limit=$2
    shift 2
    if [[ -n "${SKIP:-}" && "$name" =~ $SKIP ]]; then
        log "== $name skipped: matches SKIP=$SKIP"
        return
    fi
    local left
    left=$(left)
    if ((left < 15)); then
        log "== $name skipped: budget spent"
        return
    fi
    ((limit > left)) && limit=$left
    local start rc
    start=$(date +%s.%N)
    timeout "$limit" "$@" >"$STASH/res/$name.out" 2>"$STASH/res/$name.err"
    rc=$?
    log "== $name rc=$rc wall_s=$(python3 -c "print(round($(date +%s.%N) - $start, 1))") limit_s=$limit"
    cat "$STASH/res/$name.out" >>"$OUT/summary.txt"
    ((rc != 0)) && tail -n 8 "$STASH/res/$name.err" | tee -a "$OUT/summary.txt"
    return 0
}

# What a LORA_KERNEL_CACHE directory holds: CubeCL's cache files have a line per entry, compiled
# kernels (PTX) under cuda/, autotune results under autotune/.
entries() { find "$1" -type f -path "*/$2/*" -name '*.json.log' -exec cat {} + 2>/dev/null | wc -l; }
kernels() { echo "$(entries "$1" cuda) kernels, $(entries "$1" autotune) autotune results"; }

# The rows in hand, as a short table at the end of the output (the device tool returns its tail).
report() {
    python3 - "$STASH/res" <<'PY' | tee -a "$OUT/summary.txt"
import glob, json, os, sys
res = sys.argv[1]
print(f"{'step':<34} {'row':<13} {'median s':>9} {'samples/s':>10}")
for path in sorted(glob.glob(f"{res}/*.out")):
    for line in open(path):
        if line.startswith("{") and '"median_seconds"' in line:
            r = json.loads(line)
            name = os.path.basename(path)[:-4]
            print(f"{name:<34} {r['row']:<13} {r['median_seconds']:>9.4f} {r['samples_per_second']:>10.1f}")
for path in sorted(glob.glob(f"{res}/*-summary.json")):
    r = json.load(open(path))
    print(f"{os.path.basename(path)}: whole run {r['total_seconds']:.1f} s, training {r['train_seconds']:.1f} s,"
          f" eval accuracy {r['final_eval_accuracy']:.3f}")
for path in sorted(glob.glob(f"{res}/*-torch.json")):
    for r in json.load(open(path)):
        print(f"{os.path.basename(path)} seed {r['seed']}: trainer.train() {r['wall_seconds']:.1f} s,"
              f" eval accuracy {r['epochs'][-1]['eval_accuracy']:.3f}")
PY
}

# Packs what the steps wrote: the device tool brings back a few files, none over 16 MiB.
pack() {
    tar -czf "$OUT/results.tar.gz" -C "$STASH" res 2>/dev/null
    tar -czf "$OUT/kernels.tar.gz" -C "$STASH" kernels 2>/dev/null
    local size
    size=$(stat -c %s "$OUT/kernels.tar.gz" 2>/dev/null || echo 0)
    ((size > 16000000)) && rm -f "$OUT/kernels.tar.gz" && log "kernel caches: $size bytes packed, too big to bring back"
}

LORA="${LORA:-$STASH/lora}"
# Burn compiles its kernels at run time with NVRTC and the toolkit's headers (BURN_NOTES.md).
for d in /usr/local/cuda /opt/cuda /usr/local/cuda-*; do
    [[ -d "$d/include" ]] && export CUDA_PATH="${CUDA_PATH:-$d}" && break
done
nvrtc=$(ls "${CUDA_PATH:-/nonexistent}"/lib64/libnvrtc.so* 2>/dev/null | head -n 1)
[[ -n "$nvrtc" ]] || nvrtc=$(find /usr /opt -xdev -name 'libnvrtc.so*' 2>/dev/null | head -n 1)
[[ -n "$nvrtc" ]] && export LD_LIBRARY_PATH="$(dirname "$nvrtc"):${LD_LIBRARY_PATH:-}"
[[ "$DEVICE" == cpu ]] || log "CUDA_PATH=${CUDA_PATH:-unset} nvrtc=${nvrtc:-not found}"
case "$phase" in
phase1)
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader | tee -a "$OUT/summary.txt"
    C=.gpu/call1
    cp -r "$C/imdb" "$C/minilm" "$C/bert-base-uncased" "$STASH/"
    # Caches an earlier lease brought back (scripts/gpu/prepare.sh unpacks them into .gpu/kernels).
    [[ -d .gpu/kernels ]] && cp -r .gpu/kernels/. "$STASH/kernels/" && log "carried kernel caches: $(du -sh "$STASH/kernels" | cut -f1)"
    [[ -x "$LORA" ]] || { gunzip -c "$C/lora.gz" >"$LORA" && chmod +x "$LORA"; }
    [[ -n "${SMOKE:-}" ]] || python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$C"/whl/*.whl ||
        log "wheel install failed"
    "$PYTHON" - "$STASH" <<'PY' 2>&1 | tee -a "$OUT/summary.txt"
import shutil, sys, torch, transformers, peft
from transformers import BertConfig, BertForSequenceClassification
stash = sys.argv[1]
print("torch", torch.__version__, "transformers", transformers.__version__, "peft", peft.__version__)
torch.manual_seed(0)
config = BertConfig.from_json_file(f"{stash}/bert-base-uncased/config.json")
config.num_labels = 2
BertForSequenceClassification(config).save_pretrained(f"{stash}/bert-base-random")
for f in ["tokenizer.json", "tokenizer_config.json", "vocab.txt"]:
    shutil.copy(f"{stash}/bert-base-uncased/{f}", f"{stash}/bert-base-random/{f}")
PY
    BERT="$STASH/bert-base-uncased/config.json"
    MINI="$STASH/minilm/config.json"
    # variant NAME: the `lora` flags of a variant; each model x variant has its own kernel cache.
    flags() { [[ $1 == unfused ]] && echo "$unfused"; }
    ours_bench() { # ours_bench STEP LIMIT MODEL_CONFIG VARIANT
        LORA_KERNEL_CACHE="$STASH/kernels/$(basename "$(dirname "$3")")-$4" \
            step "$1" "$2" "$LORA" bench --model-config "$3" $bench --device "$DEVICE" $(flags "$4") --json
    }

    # 1. Cold: all four at once.
    cold=${COLD_S:-180}
    for model in "$MINI" "$BERT"; do
        for v in fused unfused; do
            m=$(basename "$(dirname "$model")")
            ours_bench "cold-$m-$v" "$cold" "$model" "$v" &
        done
    done
    wait
    for d in "$STASH"/kernels/*/; do log "kernels cached in $(basename "$d"): $(kernels "$d")"; done

    # 2. Warm, one at a time, PyTorch's rows beside ours.
    ours_bench warm-minilm-fused 60 "$MINI" fused
    ours_bench warm-minilm-unfused 60 "$MINI" unfused
    step torch-minilm 40 "$PYTHON" scripts/bench_pytorch.py --model-config "$MINI" $bench --device "$DEVICE" --threads 16
    ours_bench warm-bert-base-uncased-fused 60 "$BERT" fused
    ours_bench warm-bert-base-uncased-unfused 60 "$BERT" unfused
    step torch-bert 40 "$PYTHON" scripts/bench_pytorch.py --model-config "$BERT" $bench --device "$DEVICE" --threads 16

    # 3. The protocol with the variant whose warm bert-base training step was faster.
    best=$(python3 - "$STASH/res" <<'PY'
import json, sys
best = ("unfused", float("inf"))
for v in ("fused", "unfused"):
    try:
        rows = [json.loads(l) for l in open(f"{sys.argv[1]}/warm-bert-base-uncased-{v}.out") if l.startswith("{")]
        t = next(r["median_seconds"] for r in rows if r["row"] == "train_step")
        best = min(best, (v, t), key=lambda x: x[1])
    except (OSError, StopIteration, ValueError):
        pass
print(best[0])
PY
)
    log "protocol variant: $best"
    echo "$best" >"$STASH/best"
    protocol() { # protocol STEP LIMIT OUTPUT_DIR CACHE [--set training.bf16=true]
        local name=$1 limit=$2 dir=$3 cache=$4
        shift 4
        LORA_KERNEL_CACHE="$STASH/kernels/$cache" step "$name" "$limit" "$LORA" train \
            --config configs/imdb-bert-base-lora.toml --model "$STASH/bert-base-random" --data "$STASH/imdb" \
            --device "$DEVICE" $(flags "$best") --output-dir "$dir" --set "data.pad_to_multiple_of=$pad" --quiet "${tiny[@]}" "$@"
        cp "$dir/summary.json" "$STASH/res/$name-summary.json" 2>/dev/null ||
            cp "$dir/metrics.jsonl" "$STASH/res/$name-metrics.jsonl" 2>/dev/null
    }
    protocol train-bert-ours 150 "$STASH/bert-fp32" "bert-base-uncased-$best"
    step train-bert-torch 90 "$PYTHON" scripts/baseline_peft.py --model "$STASH/bert-base-random" --data "$STASH/imdb" \
        --device "$DEVICE" --threads 16 --pad-to-multiple-of "$pad" --output "$STASH/res/bert-fp32-torch.json" "${pytiny[@]}"
    if [[ "$DEVICE" != cpu ]]; then
        LORA_KERNEL_CACHE="$STASH/kernels/bert-base-uncased-$best-bf16" step bench-bert-ours-bf16 60 "$LORA" bench \
            --model-config "$BERT" $bench --device "$DEVICE" $(flags "$best") --bf16 --json
        step bench-bert-torch-bf16 40 "$PYTHON" scripts/bench_pytorch.py --model-config "$BERT" $bench --device "$DEVICE" --threads 16 --bf16
        protocol train-bert-ours-bf16 120 "$STASH/bert-bf16" "bert-base-uncased-$best-bf16" --set training.bf16=true
        step train-bert-torch-bf16 60 "$PYTHON" scripts/baseline_peft.py --model "$STASH/bert-base-random" --data "$STASH/imdb" \
            --device "$DEVICE" --threads 16 --bf16 --pad-to-multiple-of "$pad" --output "$STASH/res/bert-bf16-torch.json" "${pytiny[@]}"
    fi
    for d in "$STASH"/kernels/*/; do log "kernels cached in $(basename "$d") at the end: $(kernels "$d")"; done
    report
    pack
    ;;
phase2)
    cat "$STASH/minilm/model.gz.part-a" .gpu/call2/model.gz.part-b | gunzip -c >"$STASH/minilm/model.safetensors"
    (cd "$STASH/minilm" && sha256sum -c model.safetensors.sha256) | tee -a "$OUT/summary.txt"
    best=$(cat "$STASH/best" 2>/dev/null || echo fused)
    run_ours() {
        LORA_KERNEL_CACHE="$STASH/kernels/minilm-$best" step "minilm-ours-$1" 100 "$LORA" train \
            --config configs/imdb-minilm-lora.toml --model "$STASH/minilm" --data "$STASH/imdb" --device "$DEVICE" \
            $( [[ $best == unfused ]] && echo "$unfused") --output-dir "$STASH/minilm-$1" --set "training.seed=$1" \
            --set "data.pad_to_multiple_of=$pad" --quiet "${tiny[@]}"
        cp "$STASH/minilm-$1/summary.json" "$STASH/res/minilm-ours-$1-summary.json" 2>/dev/null
    }
    run_ours 42
    step minilm-torch 150 "$PYTHON" scripts/baseline_peft.py --model "$STASH/minilm" --data "$STASH/imdb" \
        --device "$DEVICE" --threads 16 --seeds 42 43 44 --learning-rate 1e-3 --pad-to-multiple-of "$pad" --output "$STASH/res/minilm-torch.json" "${pytiny[@]}"
    run_ours 43
    run_ours 44
    mkdir -p "$OUT/adapter-42"
    cp "$STASH/minilm-42/adapter/"* "$OUT/adapter-42/" 2>/dev/null
    report
    pack
    ;;
*)
    echo "unknown phase $phase (phase1 or phase2)" >&2
    exit 2
    ;;
esac
log "== $phase done"
