#!/usr/bin/env python3
"""Reverse-direction PEFT check: an adapter written by this project, loaded by Python PEFT.

Loads ADAPTER onto BASE with `PeftModel.from_pretrained` (as the model card does; any BERT-family
base, `AutoModelForSequenceClassification` with as many labels as the adapter's head), computes
the logits of the first N texts of --texts (JSON Lines with `text`; default test_500.jsonl), gets
this project's logits for the same texts (`cargo run --release -p lora-cli --example classify --
--model BASE --adapter ADAPTER --text ...`, or `--ours FILE` with its JSON lines), and prints the
largest absolute difference and whether the predicted labels agree. With --merged DIR (what
`lora merge` wrote), transformers loads that directory too and its logits are compared with the
same. Exit status 1 when any differs by more than --tol.

  .venv/bin/python scripts/peft_check.py --base ../shared/assets/all-MiniLM-L6-v2 --adapter runs/x/adapter
Pinned: torch 2.5.1, transformers 4.46.3, peft 0.13.2 (docs/golden-fixtures.md). Not part of CI.
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

PINNED = {"torch": "2.5.1", "transformers": "4.46.3", "peft": "0.13.2"}
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
    if found != PINNED:
        sys.exit(f"pinned versions {PINNED}, found {found}")

    with open(args.texts) as f:
        texts = [json.loads(line)["text"] for _, line in zip(range(args.n), f)]

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
    base = AutoModelForSequenceClassification.from_pretrained(args.base, **labels)
    model = PeftModel.from_pretrained(base, args.adapter).eval()
    enc = tokenizer(texts, padding="longest", truncation=True, max_length=args.max_length, return_tensors="pt")
    with torch.no_grad():
        theirs = model(**enc).logits
    result = {"texts": len(texts), "model_type": base.config.model_type, "max_abs_diff": (ours - theirs).abs().max().item(),
              "label_agreement": (ours.argmax(-1) == theirs.argmax(-1)).float().mean().item(),
              "peft": peft.__version__, "adapter": args.adapter, "base": args.base}
    worst = result["max_abs_diff"]
    if args.merged:
        merged = AutoModelForSequenceClassification.from_pretrained(args.merged).eval()
        with torch.no_grad():
            result["merged_max_abs_diff"] = (ours - merged(**enc).logits).abs().max().item()
        worst = max(worst, result["merged_max_abs_diff"])
    print(json.dumps(result))
    sys.exit(0 if worst <= args.tol else 1)


if __name__ == "__main__":
    main()
