#!/usr/bin/env python3
"""The `lora bench` workload in PyTorch + PEFT for the newer encoders (ModernBERT, DeBERTa-v3),
printing the same JSON rows as `lora bench --json`.

An AutoModelForSequenceClassification of the shape in --model-config with random weights
(transformers' SDPA attention where the family has it: ModernBERT; DeBERTa-v2 has eager only),
LoRA r 8 on --target-modules (classifier trained, base frozen), AdamW; rows `train_step`
(forward, backward, clipping, optimizer step) and `eval_forward` (no grad), on one batch of
--batch-size x --seq-len tokens, after --warmup runs, --repeats timed runs, --threads threads.

  .venv-modern/bin/python scripts/bench_pytorch_modern.py --model-config configs/shapes/modernbert-base.json \
      --target-modules Wqkv attn.Wo --batch-size 16 --seq-len 512
  .venv-modern/bin/python scripts/bench_pytorch_modern.py --model-config configs/shapes/deberta-v3-base.json \
      --target-modules query_proj value_proj

Pinned: torch 2.8.0 (CPU), transformers 4.57.1, peft 0.17.1 (docs/golden-fixtures.md). Not part of CI.
"""
import argparse
import json
import resource
import time

import peft
import torch
import transformers
from peft import LoraConfig, get_peft_model
from transformers import AutoConfig, AutoModelForSequenceClassification

PINNED = {"torch": "2.8.0", "transformers": "4.57.1", "peft": "0.17.1"}


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model-config", required=True)
    p.add_argument("--target-modules", nargs="+", required=True)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--seq-len", type=int, default=512)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    found = {"torch": torch.__version__.split("+")[0], "transformers": transformers.__version__, "peft": peft.__version__}
    if found != PINNED:
        raise SystemExit(f"pinned versions {PINNED}, found {found}")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    config = AutoConfig.from_pretrained(args.model_config, num_labels=2)
    attention = "sdpa" if config.model_type == "modernbert" else "eager"
    if config.model_type == "modernbert":
        config.reference_compile = False
    base = AutoModelForSequenceClassification.from_config(config, attn_implementation=attention)
    model = get_peft_model(base, LoraConfig(task_type="SEQ_CLS", r=8, lora_alpha=8, lora_dropout=0.0,
                                            target_modules=args.target_modules))
    opt = torch.optim.AdamW([q for q in model.parameters() if q.requires_grad], lr=5e-5, weight_decay=0.01)
    first = min(config.vocab_size, 1000) // 2
    ids = torch.randint(first, config.vocab_size, (args.batch_size, args.seq_len))
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": torch.arange(args.batch_size) % 2}

    def train_step():
        model.train()
        loss = model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_([q for q in model.parameters() if q.requires_grad], 1.0)
        opt.step()
        opt.zero_grad()

    def eval_forward():
        model.eval()
        with torch.no_grad():
            model(**{k: v for k, v in batch.items() if k != "labels"})

    for name, fn in [("train_step", train_step), ("eval_forward", eval_forward)]:
        for _ in range(args.warmup):
            fn()
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        total = sum(times)
        times.sort()
        n = args.batch_size * args.repeats
        print(json.dumps({
            "row": name, "model": args.model_config, "device": "cpu", "framework": "pytorch",
            "attention": attention, "batch_size": args.batch_size, "seq_len": args.seq_len, "repeats": len(times),
            "median_seconds": times[len(times) // 2], "min_seconds": times[0], "max_seconds": times[-1],
            "total_seconds": total, "samples_per_second": n / total, "tokens_per_second": n * args.seq_len / total,
            "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "threads": args.threads,
            "torch": torch.__version__,
        }), flush=True)


if __name__ == "__main__":
    main()
