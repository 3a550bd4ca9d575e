#!/usr/bin/env bash
# Runs `lora bench` and scripts/bench_pytorch.py on the same shapes, alternating, and prints the
# ratio ours / PyTorch of the median step time per row (below 1.0: we are faster).
#
#   [WARMUP=2] [REPEATS=5] [LENGTH_MIX=FILE] [MODELS="all-MiniLM-L6-v2 bert-base-uncased"] \
#     scripts/bench_compare.sh [PYTHON] [LORA]
#   defaults: .venv/bin/python, target/release/lora
# Shapes: bert-base-uncased's and all-MiniLM-L6-v2's config.json from ../shared/assets, batch 16,
# sequence 256; with LENGTH_MIX (e.g. runs/subsets/train.jsonl from `lora export-data`), real
# dynamically padded batches of those reviews instead, compared by total time over the same
# batches. Record the table in docs/benchmarks.md with the machine and date.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${1:-.venv/bin/python}"
LORA="${2:-target/release/lora}"
ASSETS="${SHARED_ASSETS:-../shared/assets}"
for model in ${MODELS:-all-MiniLM-L6-v2 bert-base-uncased}; do
    config="$ASSETS/$model/config.json"
    mix=()
    if [[ -n "${LENGTH_MIX:-}" ]]; then mix=(--length-mix "$LENGTH_MIX"); fi
    ours=$("$LORA" bench --model-config "$config" --batch-size 16 --seq-len 256 --warmup "${WARMUP:-2}" --repeats "${REPEATS:-5}" "${mix[@]}" --json)
    theirs=$("$PYTHON" scripts/bench_pytorch.py --model-config "$config" --batch-size 16 --seq-len 256 --warmup "${WARMUP:-2}" --repeats "${REPEATS:-5}" "${mix[@]}" 2>/dev/null)
    "$PYTHON" - "$model" "$ours" "$theirs" <<'PY'
import json, sys
model, ours, theirs = sys.argv[1], sys.argv[2], sys.argv[3]
ours = {r["row"]: r for r in map(json.loads, ours.splitlines())}
theirs = {r["row"]: r for r in map(json.loads, theirs.splitlines())}
for row in ours:
    o, t = ours[row], theirs[row]
    key = "total_seconds" if row.endswith("_mix") else "median_seconds"
    print(f"{model:<18} {row:<13} {key.split('_')[0]} ours {o[key]:8.3f} s  pytorch {t[key]:8.3f} s  "
          f"ratio {o[key] / t[key]:5.2f}  seq {o['seq_len']}/{t['seq_len']}  "
          f"peak MiB ours {o['peak_rss_bytes'] >> 20} pytorch {t['peak_rss_bytes'] >> 20}")
PY
done
