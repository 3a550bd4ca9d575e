#!/usr/bin/env bash
# Runs on the lent GPU machine, in the repository root, after scripts/gpu/prepare.sh staged .gpu/.
#
#   phase1: carried .gpu/call1. Keeps the binary, wheels, reviews and the first part of the MiniLM
#           weights in $STASH; benches both shapes (batch 16 x 256) against PyTorch + PEFT, then the
#           bert-base protocol (1,000/500, 5 epochs, random weights of bert-base-uncased's shape),
#           `lora train` against scripts/baseline_peft.py, fp32, then bf16.
#   phase2: carried .gpu/call2, on the same (still warm) machine. Rebuilds the MiniLM weights and
#           runs configs/imdb-minilm-lora.toml (real weights, real reviews) for seeds 42, 43, 44,
#           ours and Python's.
#
#   bash scripts/gpu/run.sh phase1|phase2     (BUDGET_S: seconds before remaining steps are skipped)
#   SKIP=REGEX skips the steps whose names match (e.g. SKIP=torch when PyTorch's rows are in hand).
#   SMOKE=1 DEVICE=cpu PYTHON=.venv/bin/python LORA=target/release/lora bash scripts/gpu/run.sh phase1
#       tries the script here on tiny settings (no GPU).
# Every step has a time limit; what a step printed, its exit status and wall time go to
# $OUT/summary.txt, and its JSON results to $OUT.
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
else
    bench="--batch-size 16 --seq-len 256 --warmup 3 --repeats 10"
    tiny=()
    pytiny=()
fi
DEADLINE=$(($(date +%s) + ${BUDGET_S:-280}))
mkdir -p "$OUT" "$STASH"
export PYTHONUNBUFFERED=1 PYTHONPATH=/tmp/site HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false

log() { echo "$*" | tee -a "$OUT/summary.txt"; }

# step NAME LIMIT_S COMMAND...: runs COMMAND under the smaller of LIMIT_S and the time left.
step() {
    local name=$1 limit=$2
    shift 2
    if [[ -n "${SKIP:-}" && "$name" =~ $SKIP ]]; then
        log "== $name skipped: matches SKIP=$SKIP"
        return
    fi
    local left=$((DEADLINE - $(date +%s)))
    if ((left < 15)); then
        log "== $name skipped: budget spent"
        return
    fi
    ((limit > left)) && limit=$left
    local start rc
    start=$(date +%s.%N)
    timeout "$limit" "$@" >"$STASH/$name.out" 2>"$STASH/$name.err"
    rc=$?
    log "== $name rc=$rc wall_s=$(python3 -c "print(round($(date +%s.%N) - $start, 1))") limit_s=$limit"
    cat "$STASH/$name.out" >>"$OUT/summary.txt"
    ((rc != 0)) && tail -n 8 "$STASH/$name.err" | tee -a "$OUT/summary.txt"
    return 0
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
    step bench-bert-ours 90 "$LORA" bench --model-config "$BERT" $bench --device "$DEVICE" --json
    step bench-bert-torch 60 "$PYTHON" scripts/bench_pytorch.py --model-config "$BERT" $bench --device "$DEVICE" --threads 16
    step train-bert-ours 150 "$LORA" train --config configs/imdb-bert-base-lora.toml --model "$STASH/bert-base-random" \
        --data "$STASH/imdb" --device "$DEVICE" --output-dir "$STASH/bert-fp32" --quiet "${tiny[@]}"
    cp "$STASH/bert-fp32/summary.json" "$OUT/bert-fp32-ours.json" 2>/dev/null ||
        cp "$STASH/bert-fp32/metrics.jsonl" "$OUT/bert-fp32-ours-metrics.jsonl" 2>/dev/null
    step train-bert-torch 90 "$PYTHON" scripts/baseline_peft.py --model "$STASH/bert-base-random" --data "$STASH/imdb" \
        --device "$DEVICE" --threads 16 --output "$OUT/bert-fp32-torch.json" "${pytiny[@]}"
    step bench-minilm-ours 40 "$LORA" bench --model-config "$MINI" $bench --device "$DEVICE" --json
    step bench-minilm-torch 40 "$PYTHON" scripts/bench_pytorch.py --model-config "$MINI" $bench --device "$DEVICE" --threads 16
    step bench-bert-ours-bf16 60 "$LORA" bench --model-config "$BERT" $bench --device "$DEVICE" --bf16 --json
    step bench-bert-torch-bf16 40 "$PYTHON" scripts/bench_pytorch.py --model-config "$BERT" $bench --device "$DEVICE" --threads 16 --bf16
    step train-bert-ours-bf16 90 "$LORA" train --config configs/imdb-bert-base-lora.toml --model "$STASH/bert-base-random" \
        --data "$STASH/imdb" --device "$DEVICE" --output-dir "$STASH/bert-bf16" --set training.bf16=true --quiet "${tiny[@]}"
    cp "$STASH/bert-bf16/summary.json" "$OUT/bert-bf16-ours.json" 2>/dev/null
    step train-bert-torch-bf16 60 "$PYTHON" scripts/baseline_peft.py --model "$STASH/bert-base-random" --data "$STASH/imdb" \
        --device "$DEVICE" --threads 16 --bf16 --output "$OUT/bert-bf16-torch.json" "${pytiny[@]}"
    ;;
phase2)
    cat "$STASH/minilm/model.gz.part-a" .gpu/call2/model.gz.part-b | gunzip -c >"$STASH/minilm/model.safetensors"
    (cd "$STASH/minilm" && sha256sum -c model.safetensors.sha256) | tee -a "$OUT/summary.txt"
    run_ours() {
        step "minilm-ours-$1" 100 "$LORA" train --config configs/imdb-minilm-lora.toml --model "$STASH/minilm" \
            --data "$STASH/imdb" --device "$DEVICE" --output-dir "$STASH/minilm-$1" --set "training.seed=$1" --quiet "${tiny[@]}"
    }
    run_ours 42
    step minilm-torch 150 "$PYTHON" scripts/baseline_peft.py --model "$STASH/minilm" --data "$STASH/imdb" \
        --device "$DEVICE" --threads 16 --seeds 42 43 44 --output "$OUT/minilm-torch.json" "${pytiny[@]}"
    run_ours 43
    run_ours 44
    python3 - "$STASH" "$OUT/minilm-ours.json" <<'PY'
import json, os, sys
stash, out = sys.argv[1], sys.argv[2]
runs = {}
for seed in (42, 43, 44):
    path = f"{stash}/minilm-{seed}/summary.json"
    if os.path.exists(path):
        runs[seed] = json.load(open(path))
json.dump(runs, open(out, "w"), indent=1)
PY
    mkdir -p "$OUT/adapter-42"
    cp "$STASH/minilm-42/adapter/"* "$OUT/adapter-42/" 2>/dev/null
    ;;
*)
    echo "unknown phase $phase (phase1 or phase2)" >&2
    exit 2
    ;;
esac
log "== $phase done"
