#!/usr/bin/env bash
# The kernels a first GPU run compiles, counted on Mesa's lavapipe (a Vulkan driver on the CPU):
# `lora bench --device wgpu` rows (a LoRA training step, then an evaluation forward) from an
# empty kernel cache, one process a row of docs/benchmarks.md's table, with its own cache.
#
#   cargo build --release -p lora-cli --features wgpu
#   LORA=target/release/lora bash scripts/wgpu-kernels.sh [NAME ...]   # all rows, or the named
#
# Each row prints `lora bench --json`'s two rows (kernels_compiled, times) and the process's
# wall time. Needs ../shared/assets (the models' config.json, IMDb reviews for the length mix).
set -euo pipefail
cd "$(dirname "$0")/.."
LORA="${LORA:-target/release/lora}"
ASSETS="${ASSETS:-../shared/assets}"
MINILM="$ASSETS/all-MiniLM-L6-v2/config.json"
BERT="$ASSETS/bert-base-uncased/config.json"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
# 4 real reviews, 2 batches of 2: lengths as training meets them (dynamic padding), short enough
# for lavapipe (16 reviews in batches of 8 had compiled 131 kernels after 9 minutes).
head -n 4 "$ASSETS/imdb/train_1000.jsonl" > "$WORK/mix.jsonl"

# name | environment | bench arguments
ROWS=(
  "minilm-64|-|--model-config $MINILM --batch-size 2 --seq-len 64"
  "minilm-64-unfused|-|--model-config $MINILM --batch-size 2 --seq-len 64 --no-fusion"
  "minilm-64-autotune-minimal|CUBECL_AUTOTUNE_LEVEL=minimal|--model-config $MINILM --batch-size 2 --seq-len 64"
  "minilm-64-autotune-seeded|seeded|--model-config $MINILM --batch-size 2 --seq-len 64"
  "minilm-128|-|--model-config $MINILM --batch-size 2 --seq-len 128"
  "minilm-mix-dynamic|-|--model-config $MINILM --batch-size 2 --length-mix $WORK/mix.jsonl"
  "minilm-mix-pad64|-|--model-config $MINILM --batch-size 2 --length-mix $WORK/mix.jsonl --pad-to-multiple-of 64"
  "bert-base-64|-|--model-config $BERT --batch-size 2 --seq-len 64"
  "bert-base-128|-|--model-config $BERT --batch-size 2 --seq-len 128"
)
wanted=("$@")
for row in "${ROWS[@]}"; do
  IFS='|' read -r name env args <<<"$row"
  if [ ${#wanted[@]} -gt 0 ] && [[ ! " ${wanted[*]} " == *" $name "* ]]; then continue; fi
  cache="$WORK/$name"
  mkdir -p "$cache"
  vars=(LORA_KERNEL_CACHE="$cache")
  if [ "$env" = seeded ]; then
    # Autotune results from an earlier process (kept in the cache directory beside the
    # kernels), compiled kernels not: what shipping autotune results would give.
    # shellcheck disable=SC2086
    env LORA_KERNEL_CACHE="$cache" "$LORA" bench --device wgpu $args --warmup 0 --repeats 1 --json >/dev/null 2>&1
    find "$cache" -path '*spirv*' -prune -exec rm -rf {} +
  elif [ "$env" != - ]; then
    vars+=("$env")
  fi
  start=$(date +%s%N)
  # shellcheck disable=SC2086
  out=$(env "${vars[@]}" "$LORA" bench --device wgpu $args --warmup 0 --repeats 2 --json 2>"$WORK/$name.err")
  end=$(date +%s%N)
  echo "== $name: $(( (end - start) / 1000000 )) ms in all"
  echo "$out" | python3 -c '
import json, sys
for line in sys.stdin:
    r = json.loads(line)
    print("   %s: kernels %s, slowest %.2f s, fastest %.2f s, seq %d"
          % (r["row"], r.get("kernels_compiled"), r["max_seconds"], r["min_seconds"], r["seq_len"]))'
  grep -E "kernels compiled by this run" "$WORK/$name.err" | sed 's/^/   /'
done
