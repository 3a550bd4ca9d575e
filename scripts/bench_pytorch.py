#!/usr/bin/env python3
"""The `lora bench` workload in PyTorch + PEFT, printing the same JSON rows.

A BertForSequenceClassification of the shape in --model-config with random weights, LoRA r 8 on
query/value (classifier trained, base frozen), AdamW; rows `train_step` (forward, backward,
clipping, optimizer step) and `eval_forward` (no grad), on one batch of --batch-size x --seq-len
tokens, after --warmup runs, --repeats timed runs, --threads threads.
With --length-mix FILE (JSON Lines with "text", e.g. `lora export-data`'s train.jsonl): rows
`train_mix` and `eval_mix` on consecutive batches of those reviews instead, tokenized with the
tokenizer.json beside --model-config (or --tokenizer), truncated at 512, each batch padded to its
longest: step i takes batch i (warm-up first), as `lora bench --length-mix` does.

  .venv/bin/python scripts/bench_pytorch.py --model-config ../shared/assets/all-MiniLM-L6-v2/config.json
  python3 scripts/bench_pytorch.py --model-config .../config.json --device cuda [--bf16]
--bf16 runs the step under torch.autocast(bfloat16), as Trainer's bf16=True does.
Pinned: torch 2.5.1 (CPU; on a GPU machine its own torch, recorded in the row), transformers 4.46.3,
peft 0.13.2. Not part of CI.
"""
import argparse
import json
import resource
import time

import peft
import torch
import transformers
from peft import LoraConfig, get_peft_model
from transformers import BertConfig, BertForSequenceClassification

PINNED = {"torch": "2.5.1", "transformers": "4.46.3", "peft": "0.13.2"}


def check_versions(device):
    """The pins, except torch on a GPU machine (its CUDA build is whatever that machine has)."""
    found = {"torch": torch.__version__.split("+")[0], "transformers": transformers.__version__, "peft": peft.__version__}
    pinned = dict(PINNED)
    if device != "cpu":
        pinned["torch"] = found["torch"]
    if found != pinned:
        raise SystemExit(f"pinned versions {pinned}, found {found}")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model-config", required=True)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--seq-len", type=int, default=256)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--device", default="cpu", help="cpu or cuda")
    p.add_argument("--bf16", action="store_true", help="autocast to bfloat16 (CUDA)")
    p.add_argument("--length-mix", help="JSON Lines reviews: time real, dynamically padded batches")
    p.add_argument("--tokenizer", help="tokenizer.json for --length-mix (default: beside --model-config)")
    args = p.parse_args()
    check_versions(args.device)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    config = BertConfig.from_json_file(args.model_config)
    config.num_labels = 2
    model = get_peft_model(BertForSequenceClassification(config),
                           LoraConfig(task_type="SEQ_CLS", r=8, lora_alpha=8, lora_dropout=0.0, target_modules=["query", "value"]))
    model.to(args.device)
    opt = torch.optim.AdamW([q for q in model.parameters() if q.requires_grad], lr=5e-5, weight_decay=0.01)
    batches = mix_batches(args) if args.length_mix else [fixed_batch(args, config)]
    batches = [{k: v.to(args.device) for k, v in b.items()} for b in batches]
    names = ["train_mix", "eval_mix"] if args.length_mix else ["train_step", "eval_forward"]
    autocast = torch.autocast(device_type=args.device.split(":")[0], dtype=torch.bfloat16, enabled=args.bf16)

    def sync():
        if args.device != "cpu":
            torch.cuda.synchronize()

    def train_step(batch):
        model.train()
        with autocast:
            loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_([q for q in model.parameters() if q.requires_grad], 1.0)
        opt.step()
        opt.zero_grad()

    def eval_forward(batch):
        model.eval()
        with torch.no_grad(), autocast:
            model(**{k: v for k, v in batch.items() if k != "labels"})

    for name, fn in zip(names, [train_step, eval_forward]):
        for i in range(args.warmup):
            fn(batches[i % len(batches)])
        sync()
        times, samples, tokens = [], 0, 0
        for i in range(args.warmup, args.warmup + args.repeats):
            batch = batches[i % len(batches)]
            start = time.perf_counter()
            fn(batch)
            sync()
            times.append(time.perf_counter() - start)
            samples += batch["input_ids"].shape[0]
            tokens += batch["input_ids"].numel()
        total = sum(times)
        times.sort()
        median = times[len(times) // 2]
        print(json.dumps({
            "row": name, "model": args.model_config, "device": args.device + (" bf16" if args.bf16 else ""), "framework": "pytorch",
            "batch_size": args.batch_size, "seq_len": tokens // samples, "repeats": len(times),
            "median_seconds": median, "min_seconds": times[0], "max_seconds": times[-1], "total_seconds": total,
            "samples_per_second": samples / total, "tokens_per_second": tokens / total,
            "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "threads": args.threads,
            "peak_gpu_bytes": torch.cuda.max_memory_allocated() if args.device != "cpu" else None,
            "torch": torch.__version__,
        }), flush=True)


def fixed_batch(args, config):
    """One batch of --batch-size x --seq-len ordinary word ids, no padding."""
    first = min(config.vocab_size, 1000) // 2
    ids = torch.randint(first, config.vocab_size, (args.batch_size, args.seq_len))
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids), "token_type_ids": torch.zeros_like(ids),
            "labels": torch.arange(args.batch_size) % 2}


def mix_batches(args):
    """Consecutive batches of the file's reviews, each padded to its longest (dynamic padding)."""
    from pathlib import Path
    from transformers import BertTokenizerFast
    path = args.tokenizer or str(Path(args.model_config).with_name("tokenizer.json"))
    tokenizer = BertTokenizerFast(tokenizer_file=path)
    with open(args.length_mix) as f:
        reviews = [json.loads(line) for line in f if line.strip()]
    batches = []
    for start in range(0, len(reviews), args.batch_size):
        chunk = reviews[start:start + args.batch_size]
        enc = tokenizer([r["text"] for r in chunk], truncation=True, max_length=512, padding="longest", return_tensors="pt")
        enc["labels"] = torch.tensor([int(r.get("label", 0)) for r in chunk])
        batches.append(dict(enc))
    return batches


if __name__ == "__main__":
    main()
