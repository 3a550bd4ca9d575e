#!/usr/bin/env bash
# Our adapters for each family, read by PEFT: for the tiny RoBERTa, XLM-R, DistilBERT and ELECTRA of
# scripts/golden_families.py (heads removed, as a base checkpoint comes), `lora train` an adapter on
# tiny sentiment data, `lora predict` 8 texts, `lora merge`; then scripts/peft_check.py loads the
# adapter with PeftModel.from_pretrained and the merged directory with transformers, and compares
# the logits with ours (tolerance 1e-5). Results: docs/peft-compatibility.md. Not part of CI.
#
#   scripts/peft_check_families.sh [WORKDIR]     (needs .venv of docs/golden-fixtures.md, a built lora)
set -euo pipefail
W="$(cd "$(dirname "$0")/.." && pwd)"
LORA="${LORA:-$W/target/debug/lora}"
PY="${PYTHON:-$W/.venv/bin/python}"
mkdir -p "${1:-/tmp/peft-families}" && cd "${1:-/tmp/peft-families}"
$PY - <<'PY'
import json
texts = ["The film was good, a great plot.", "A dull and boring film; the plot was poor.",
         "Superb music, lovely photography, awful dialogue!", "Was it worth it? Not really.",
         "Ein schöner Film über das Meer.", "Une histoire simple, des acteurs remarquables.",
         "1999 was the year; 42 minutes in, nothing had happened.", "Don't watch it late at night — it's scary."]
open("texts.jsonl", "w").write("".join(json.dumps({"text": t}) + "\n" for t in texts))
PY
mkdir -p data
"$PY" - <<'PY'
import json, random
random.seed(0)
pos=["good","great","fine","superb","lovely"]; neg=["bad","awful","dull","poor","boring"]
for split,n in [("train",40),("test",20)]:
    with open(f"data/{split}.jsonl","w") as f:
        for i in range(n):
            label=i%2; w=random.choice(pos if label else neg)
            f.write(json.dumps({"text":f"the film was {w}, a {w} plot.","label":label})+"\n")
PY
for fam in roberta xlm-roberta distilbert electra; do
  rm -rf base-$fam run-$fam merged-$fam ours-$fam.jsonl
  cp -r "$W"/crates/encoders/tests/fixtures/families/$fam/model base-$fam
  "$PY" - base-$fam <<'PY'
import sys
from safetensors.torch import load_file, save_file
p=sys.argv[1]+"/model.safetensors"; t=load_file(p)
save_file({k:v for k,v in t.items() if not k.startswith(("classifier","pre_classifier"))}, p, metadata={"format":"pt"})
PY
  targets='["query","value"]'; [ $fam = distilbert ] && targets='["q_lin","v_lin"]'
  "$LORA" train --config "$W"/configs/imdb-minilm-lora.toml --model base-$fam --data data --output-dir run-$fam --quiet \
    --set data.train_size=16 --set data.eval_size=8 --set data.max_length=32 --set training.num_train_epochs=2 \
    --set training.per_device_train_batch_size=4 --set training.learning_rate=1e-2 --set "lora.target_modules=$targets"
  "$LORA" predict --model base-$fam --adapter run-$fam/adapter --input texts.jsonl --output ours-$fam.jsonl
  "$LORA" merge --model base-$fam --adapter run-$fam/adapter --output merged-$fam
  $PY "$W/scripts/peft_check.py" --base base-$fam --adapter run-$fam/adapter --texts texts.jsonl --ours ours-$fam.jsonl \
    --merged merged-$fam --tol 1e-5 2>/dev/null
done
