#!/usr/bin/env python3
"""The reproduction recipe in Python: Hugging Face Trainer + PEFT on the same reviews as `lora`.

Trains BertForSequenceClassification with PEFT LoRA (r 8, alpha 8, dropout 0, query/value,
SEQ_CLS) for 5 epochs, batch 16, AdamW lr 5e-5, weight decay 0.01, linear decay, clipping 1.0,
fp32, max length 512 with dynamic padding, evaluating after every epoch; Trainer defaults for
everything else, as the model card. The reviews are the ones `lora` draws, exported first:

  target/release/lora export-data --config configs/imdb-minilm-lora.toml --output runs/subsets
  .venv/bin/python scripts/baseline_peft.py --model ../shared/assets/all-MiniLM-L6-v2 \\
      --data runs/subsets --seeds 42 43 44 --output runs/baseline-minilm.json

Prints and writes one JSON object per seed: per-epoch eval loss/accuracy, wall time, adapter size.
On a GPU machine: --device cuda [--bf16] (Trainer's bf16=True: autocast with fp32 master weights).
Pinned: torch 2.5.1 (CPU; on a GPU machine its own torch, recorded), transformers 4.46.3, peft 0.13.2
(docs/golden-fixtures.md). Not part of CI.
"""
import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import peft
import torch
import transformers
from peft import LoraConfig, get_peft_model
from transformers import AutoTokenizer, BertForSequenceClassification, DataCollatorWithPadding, Trainer, TrainingArguments

PINNED = {"torch": "2.5.1", "transformers": "4.46.3", "peft": "0.13.2"}


class Reviews(torch.utils.data.Dataset):
    def __init__(self, path, tokenizer, max_length, limit=None):
        rows = [json.loads(line) for line in open(path)][:limit]
        enc = tokenizer([r["text"] for r in rows], truncation=True, max_length=max_length)
        self.items = [{"input_ids": i, "attention_mask": m, "token_type_ids": t, "labels": r["label"]}
                      for i, m, t, r in zip(enc["input_ids"], enc["attention_mask"], enc["token_type_ids"], rows)]

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


def accuracy(eval_pred):
    logits, labels = eval_pred
    return {"accuracy": float((np.argmax(logits, -1) == labels).mean())}


def run(args, seed):
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    train = Reviews(Path(args.data) / "train.jsonl", tokenizer, args.max_length, args.limit)
    evals = Reviews(Path(args.data) / "eval.jsonl", tokenizer, args.max_length, args.limit)
    transformers.set_seed(seed)
    model = get_peft_model(BertForSequenceClassification.from_pretrained(args.model, num_labels=2),
                           LoraConfig(task_type="SEQ_CLS", r=8, lora_alpha=8, lora_dropout=0.0, target_modules=["query", "value"]))
    out = tempfile.mkdtemp(prefix="baseline-")
    targs = TrainingArguments(
        output_dir=out, num_train_epochs=args.epochs, per_device_train_batch_size=16, per_device_eval_batch_size=16,
        learning_rate=args.learning_rate, weight_decay=0.01, eval_strategy="epoch", save_strategy="no", logging_steps=10,
        seed=seed, report_to=[], use_cpu=args.device == "cpu", bf16=args.bf16, dataloader_num_workers=0,
    )
    trainer = Trainer(model=model, args=targs, train_dataset=train, eval_dataset=evals,
                      data_collator=DataCollatorWithPadding(tokenizer, pad_to_multiple_of=args.pad_to_multiple_of),
                      compute_metrics=accuracy)
    start = time.time()
    trainer.train()
    seconds = time.time() - start
    model.save_pretrained(Path(out) / "adapter")
    epochs = [{"epoch": h["epoch"], "eval_loss": h["eval_loss"], "eval_accuracy": h["eval_accuracy"]}
              for h in trainer.state.log_history if "eval_loss" in h]
    return {"seed": seed, "model": args.model, "train_size": len(train), "eval_size": len(evals), "epochs": epochs,
            "learning_rate": args.learning_rate, "pad_to_multiple_of": args.pad_to_multiple_of, "wall_seconds": seconds, "threads": torch.get_num_threads(), "device": args.device, "bf16": args.bf16,
            "adapter_bytes": os.path.getsize(Path(out) / "adapter" / "adapter_model.safetensors"),
            "versions": {"torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__}}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True)
    p.add_argument("--data", required=True, help="directory with train.jsonl and eval.jsonl from `lora export-data`")
    p.add_argument("--seeds", type=int, nargs="+", default=[42])
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--learning-rate", type=float, default=5e-5, help="the card's 5e-5 unless given (lora: --set training.learning_rate=...)")
    p.add_argument("--max-length", type=int, default=512)
    p.add_argument("--pad-to-multiple-of", type=int, help="DataCollatorWithPadding's (lora: --set data.pad_to_multiple_of=N)")
    p.add_argument("--limit", type=int, help="use only the first N reviews of each file (a smoke test)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--output")
    p.add_argument("--device", default="cpu", help="cpu, or cuda (Trainer takes the first GPU)")
    p.add_argument("--bf16", action="store_true", help="Trainer's bf16=True (autocast, fp32 master weights)")
    args = p.parse_args()
    found = {"torch": torch.__version__.split("+")[0], "transformers": transformers.__version__, "peft": peft.__version__}
    pinned = dict(PINNED, torch=found["torch"]) if args.device != "cpu" else PINNED
    if found != pinned:
        raise SystemExit(f"pinned versions {pinned}, found {found}")
    torch.set_num_threads(args.threads)
    results = [run(args, seed) for seed in args.seeds]
    for r in results:
        print(json.dumps(r))
    if args.output:
        Path(args.output).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
