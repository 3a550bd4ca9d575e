#!/usr/bin/env python3
"""The reproduction recipe in Python: Hugging Face Trainer + PEFT on the same reviews as `lora`.

Trains BertForSequenceClassification with PEFT LoRA (r 8, alpha 8, dropout 0, query/value,
SEQ_CLS) for 5 epochs, batch 16, AdamW lr 5e-5, weight decay 0.01, linear decay, clipping 1.0,
fp32, max length 512 with dynamic padding, evaluating after every epoch; Trainer defaults for
everything else, as the model card. The reviews are the ones `lora` draws, exported first:

  target/release/lora export-data --config configs/imdb-minilm-lora.toml --output runs/subsets
  .venv/bin/python scripts/baseline_peft.py --model ../shared/assets/all-MiniLM-L6-v2 \\
      --data runs/subsets --seeds 42 43 44 --output runs/baseline-minilm.json

The task is the exported one: `labels.json` beside the subsets (written by `lora export-data`)
gives num_labels, problem_type and id2label, passed to `from_pretrained` as `lora train` sizes
its head; `text_pair` is tokenized as a pair; labels are class ids, multi-hot rows (multi-label)
or values (regression), as transformers takes them. Without labels.json: two classes.

Prints and writes one JSON object per seed: per-epoch eval metrics (accuracy and macro F1 for
classification; MSE, MAE, Pearson and Spearman for regression), wall time, adapter size.
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
        pairs = [r["text_pair"] for r in rows] if rows and "text_pair" in rows[0] else None
        enc = tokenizer([r["text"] for r in rows], pairs, truncation=True, max_length=max_length)
        self.items = [{"input_ids": i, "attention_mask": m, "token_type_ids": t, "labels": r["label"]}
                      for i, m, t, r in zip(enc["input_ids"], enc["attention_mask"], enc["token_type_ids"], rows)]

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


def task(data):
    path = Path(data) / "labels.json"
    if not path.exists():
        return {"num_labels": 2}
    labels = json.loads(path.read_text())
    return {"num_labels": labels["num_labels"], "problem_type": labels["problem_type"],
            "id2label": {int(k): v for k, v in labels["id2label"].items()}, "label2id": labels["label2id"]}


def f1s(truth, predicted, k):
    """Macro and micro F1 of one-hot/multi-hot boolean arrays [n, k] (scikit-learn's zero_division=0)."""
    tp = (truth & predicted).sum(0)
    fp = (~truth & predicted).sum(0)
    fn = (truth & ~predicted).sum(0)
    f1 = np.where(2 * tp + fp + fn > 0, 2 * tp / np.maximum(2 * tp + fp + fn, 1), 0.0)
    micro = 2 * tp.sum() / max(2 * tp.sum() + fp.sum() + fn.sum(), 1)
    return float(f1.mean()), float(micro)


def ranks(v):
    """Ranks with ties averaged, as scipy.stats.rankdata (scipy is not pinned here)."""
    order = np.argsort(v, kind="stable")
    r = np.empty(len(v))
    r[order] = np.arange(1, len(v) + 1)
    for value in np.unique(v):
        same = v == value
        r[same] = r[same].mean()
    return r


def metrics_for(problem_type, k):
    def compute(eval_pred):
        logits, labels = eval_pred
        if problem_type == "regression":
            x, y = logits.reshape(-1).astype(np.float64), labels.reshape(-1).astype(np.float64)
            return {"mse": float(((x - y) ** 2).mean()), "mae": float(np.abs(x - y).mean()),
                    "pearson": float(np.corrcoef(x, y)[0, 1]),
                    "spearmanr": float(np.corrcoef(ranks(x), ranks(y))[0, 1])}
        if problem_type == "multi_label_classification":
            truth, predicted = labels > 0.5, logits > 0
            macro, micro = f1s(truth, predicted, k)
            return {"accuracy": float((truth == predicted).all(1).mean()), "f1_macro": macro, "f1_micro": micro}
        predicted = np.argmax(logits, -1)
        eye = np.eye(k, dtype=bool)
        macro, micro = f1s(eye[labels], eye[predicted], k)
        return {"accuracy": float((predicted == labels).mean()), "f1_macro": macro, "f1_micro": micro}
    return compute


def run(args, seed):
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    train = Reviews(Path(args.data) / "train.jsonl", tokenizer, args.max_length, args.limit)
    evals = Reviews(Path(args.data) / "eval.jsonl", tokenizer, args.max_length, args.limit)
    transformers.set_seed(seed)
    labels = task(args.data)
    model = get_peft_model(BertForSequenceClassification.from_pretrained(args.model, **labels),
                           LoraConfig(task_type="SEQ_CLS", r=8, lora_alpha=8, lora_dropout=0.0, target_modules=["query", "value"]))
    out = tempfile.mkdtemp(prefix="baseline-")
    targs = TrainingArguments(
        output_dir=out, num_train_epochs=args.epochs, per_device_train_batch_size=16, per_device_eval_batch_size=16,
        learning_rate=args.learning_rate, weight_decay=0.01, eval_strategy="epoch", save_strategy="no", logging_steps=10,
        seed=seed, report_to=[], use_cpu=args.device == "cpu", bf16=args.bf16, dataloader_num_workers=0,
    )
    trainer = Trainer(model=model, args=targs, train_dataset=train, eval_dataset=evals,
                      data_collator=DataCollatorWithPadding(tokenizer, pad_to_multiple_of=args.pad_to_multiple_of),
                      compute_metrics=metrics_for(labels.get("problem_type"), labels["num_labels"]))
    start = time.time()
    trainer.train()
    seconds = time.time() - start
    model.save_pretrained(Path(out) / "adapter")
    epochs = [{k: v for k, v in h.items() if k == "epoch" or (k.startswith("eval_") and not k.endswith(("_runtime", "_per_second")))}
              for h in trainer.state.log_history if "eval_loss" in h]
    return {"seed": seed, "model": args.model, "problem_type": labels.get("problem_type", "single_label_classification"),
            "num_labels": labels["num_labels"], "train_size": len(train), "eval_size": len(evals), "epochs": epochs,
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
