#!/usr/bin/env python3
"""Reverse-direction PEFT check: an adapter written by this project, loaded by Python PEFT.

Loads ADAPTER onto BASE with `PeftModel.from_pretrained` (as the model card does; any BERT-family
base, `AutoModelForSequenceClassification` with as many labels as the adapter's head), computes
the logits of the first N texts of --texts (JSON Lines with `text`, and `text_pair` for a pair
task, or `sentence1` and `sentence2`; default test_500.jsonl), gets
this project's logits for the same texts (`cargo run --release -p lora-cli --example classify --
--model BASE --adapter ADAPTER --text ...`, or `--ours FILE` with its JSON lines), and prints the
largest absolute difference and whether the predicted labels agree. With --merged DIR (what
`lora merge` wrote), transformers loads that directory too and its logits are compared with the
same. The adapter's `labels.json` (written by `lora train`), when there, is passed to
`from_pretrained` whole (num_labels, problem_type, id2label, label2id), and the merged model's
`config.json` must carry the same names. Exit status 1 when any differs by more than --tol.

  .venv/bin/python scripts/peft_check.py --base ../shared/assets/all-MiniLM-L6-v2 --adapter runs/x/adapter
Pinned: torch 2.5.1, transformers 4.46.3, peft 0.13.2, or (for ModernBERT and DeBERTa-v3, which
need a newer transformers) torch 2.8.0, transformers 4.57.1, peft 0.17.1 (docs/golden-fixtures.md).
Not part of CI.
"""
import argparse
import json
import subprocess
import sys
from pathlib import Path

import peft
import torch
import transformers
from peft import PeftModel
from safetensors.torch import load_file
from transformers import AutoModelForSequenceClassification, AutoTokenizer

PINNED = [{"torch": "2.5.1", "transformers": "4.46.3", "peft": "0.13.2"},
          {"torch": "2.8.0", "transformers": "4.57.1", "peft": "0.17.1"}]
ROOT = Path(__file__).resolve().parent.parent


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--base", required=True)
    p.add_argument("--adapter", required=True)
    p.add_argument("--texts", default=str(ROOT.parent / "shared/assets/imdb/test_500.jsonl"))
    p.add_argument("--n", type=int, default=8)
    p.add_argument("--ours", help="JSON lines with `logits` per text, instead of running cargo")
    p.add_argument("--merged", help="a directory `lora merge` wrote: transformers loads it and its logits are compared too")
    p.add_argument("--max-length", type=int, default=512)
    p.add_argument("--tol", type=float, default=1e-4)
    args = p.parse_args()
    found = {"torch": torch.__version__.split("+")[0], "transformers": transformers.__version__, "peft": peft.__version__}
    if found not in PINNED:
        sys.exit(f"pinned versions {PINNED}, found {found}")

    with open(args.texts) as f:
        rows = [json.loads(line) for _, line in zip(range(args.n), f)]
    a, b = ("sentence1", "sentence2") if rows and "sentence1" in rows[0] else ("text", "text_pair")
    texts = [r[a] for r in rows]
    pairs = [r[b] for r in rows] if rows and b in rows[0] else None

    if args.ours:
        lines = Path(args.ours).read_text().splitlines()
    else:
        cmd = ["cargo", "run", "-q", "--release", "-p", "lora-cli", "--example", "classify", "--",
               "--model", args.base, "--adapter", args.adapter]
        for t in texts:
            cmd += ["--text", t]
        lines = subprocess.run(cmd, cwd=ROOT, check=True, capture_output=True, text=True).stdout.splitlines()
    ours = torch.tensor([json.loads(line)["logits"] for line in lines])

    tokenizer = AutoTokenizer.from_pretrained(args.base)
    head = [t for k, t in load_file(f"{args.adapter}/adapter_model.safetensors").items()
            if k.endswith(("classifier.weight", "classifier.out_proj.weight")) and "pre_classifier" not in k]
    labels = {"num_labels": head[0].shape[0]} if head else {}
    labels_file = Path(args.adapter) / "labels.json"
    if labels_file.exists():
        labels = json.loads(labels_file.read_text())
        labels["id2label"] = {int(k): v for k, v in labels["id2label"].items()}
    base = AutoModelForSequenceClassification.from_pretrained(args.base, **labels)
    model = PeftModel.from_pretrained(base, args.adapter).eval()
    enc = tokenizer(texts, pairs, padding="longest", truncation=True, max_length=args.max_length, return_tensors="pt")
    with torch.no_grad():
        theirs = model(**enc).logits
    result = {"texts": len(texts), "pairs": pairs is not None, "problem_type": base.config.problem_type,
              "num_labels": base.config.num_labels, "model_type": base.config.model_type,
              "max_abs_diff": (ours - theirs).abs().max().item(),
              "label_agreement": (ours.argmax(-1) == theirs.argmax(-1)).float().mean().item(),
              "peft": peft.__version__, "adapter": args.adapter, "base": args.base}
    worst = result["max_abs_diff"]
    if args.merged:
        merged = AutoModelForSequenceClassification.from_pretrained(args.merged).eval()
        result["merged_names_agree"] = (merged.config.id2label == base.config.id2label
                                        and merged.config.problem_type == base.config.problem_type)
        if not result["merged_names_agree"]:
            worst = float("inf")
        with torch.no_grad():
            result["merged_max_abs_diff"] = (ours - merged(**enc).logits).abs().max().item()
        worst = max(worst, result["merged_max_abs_diff"])
    print(json.dumps(result))
    sys.exit(0 if worst <= args.tol else 1)


if __name__ == "__main__":
    main()
