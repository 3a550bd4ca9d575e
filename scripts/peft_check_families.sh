#!/usr/bin/env bash
# Our adapters for every family (BERT's real-weights checks open docs/peft-compatibility.md), read by PEFT 0.17.1: for
# the tiny models of scripts/golden_families.py (ModernBERT as its masked-LM checkpoint, the others as
# their base model with the tokenizer beside it: the shapes the Hub has), `lora train` an adapter on tiny sentiment data,
# `lora predict` 8 texts, `lora merge`; then scripts/peft_check.py loads the adapter with
# PeftModel.from_pretrained and the merged directory with transformers, and compares the logits
# with ours (tolerance 1e-5). Results: docs/peft-compatibility.md. Not part of CI.
#
#   PYTHON=.venv-modern/bin/python [FAMILIES="camembert ..."] scripts/peft_check_families.sh [WORKDIR]   (a built lora)
set -euo pipefail
W="$(cd "$(dirname "$0")/.." && pwd)"
LORA="${LORA:-$W/target/debug/lora}"
PY="${PYTHON:-$W/.venv-modern/bin/python}"
FIXTURES="$W/crates/encoders/tests/fixtures"
mkdir -p "${1:-/tmp/peft-families}" && cd "${1:-/tmp/peft-families}"
"$PY" - <<'PY'
import json, random
texts = ["The film was good, a great plot.", "A dull and boring film; the plot was poor.",
         "Superb music, lovely photography, awful dialogue!", "Was it worth it? Not really.",
         "Ein schöner Film über das Meer.", "Une histoire simple, des acteurs remarquables.",
         "1999 was the year; 42 minutes in, nothing had happened.", "Don't watch it late at night — it's scary."]
open("texts.jsonl", "w").write("".join(json.dumps({"text": t}) + "\n" for t in texts))
random.seed(0)
pos = ["good", "great", "fine", "superb", "lovely"]; neg = ["bad", "awful", "dull", "poor", "boring"]
import os; os.makedirs("data", exist_ok=True)
for split, n in [("train", 40), ("test", 20)]:
    with open(f"data/{split}.jsonl", "w") as f:
        for i in range(n):
            label = i % 2; w = random.choice(pos if label else neg)
            f.write(json.dumps({"text": f"the film was {w}, a {w} plot.", "label": label}) + "\n")
PY
rm -rf base-* run-* merged-* ours-*.jsonl
for fam in ${FAMILIES:-bert roberta xlm-roberta distilbert electra modernbert deberta-v3 camembert mpnet}; do
  F="$FIXTURES/modern"
  case $fam in
    bert|roberta|xlm-roberta|electra) targets='["query","value"]'; F="$FIXTURES/families" ;;
    distilbert) targets='["q_lin","v_lin"]'; F="$FIXTURES/families" ;;
    modernbert) targets='["Wqkv","attn.Wo"]' ;;
    deberta-v3) targets='["query_proj","value_proj"]' ;;
    camembert) targets='["query","value"]' ;;
    mpnet) targets='["q","v"]' ;;
    *) echo "unknown family $fam" >&2; exit 2 ;;
  esac
  if [ $fam = modernbert ]; then
    cp -r "$F/modernbert/mlm" base-modernbert
  else
    mkdir base-$fam && cp "$F/$fam/base-bin/"* "$F/$fam/model/"tok* "$F/$fam/model/special_tokens_map.json" base-$fam/
  fi
  "$LORA" train --config "$W"/configs/imdb-minilm-lora.toml --model base-$fam --data data --output-dir run-$fam --quiet \
    --set data.train_size=16 --set data.eval_size=8 --set data.max_length=32 --set training.num_train_epochs=2 \
    --set training.per_device_train_batch_size=4 --set training.learning_rate=1e-2 --set "lora.target_modules=$targets"
  "$LORA" predict --model base-$fam --adapter run-$fam/adapter --input texts.jsonl --output ours-$fam.jsonl
  "$LORA" merge --model base-$fam --adapter run-$fam/adapter --output merged-$fam
  "$PY" "$W/scripts/peft_check.py" --base base-$fam --adapter run-$fam/adapter --texts texts.jsonl --ours ours-$fam.jsonl \
    --merged merged-$fam --tol 1e-5 2>/dev/null
done
