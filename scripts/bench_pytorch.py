#!/usr/bin/env python3
"""The `lora bench` workload in PyTorch + PEFT, printing the same JSON rows.

A BertForSequenceClassification of the shape in --model-config with random weights, LoRA r 8 on
query/value (classifier trained, base frozen), AdamW; rows `train_step` (forward, backward,
clipping, optimizer step) and `eval_forward` (no grad), on one batch of --batch-size x --seq-len
tokens, after --warmup runs, --repeats timed runs, --threads threads.

  .venv/bin/python scripts/bench_pytorch.py --model-config ../shared/assets/all-MiniLM-L6-v2/config.json
Pinned: torch 2.5.1, transformers 4.46.3, peft 0.13.2. Not part of CI.
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


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model-config", required=True)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--seq-len", type=int, default=256)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    found = {"torch": torch.__version__.split("+")[0], "transformers": transformers.__version__, "peft": peft.__version__}
    if found != PINNED:
        raise SystemExit(f"pinned versions {PINNED}, found {found}")
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    config = BertConfig.from_json_file(args.model_config)
    config.num_labels = 2
    model = get_peft_model(BertForSequenceClassification(config),
                           LoraConfig(task_type="SEQ_CLS", r=8, lora_alpha=8, lora_dropout=0.0, target_modules=["query", "value"]))
    opt = torch.optim.AdamW([q for q in model.parameters() if q.requires_grad], lr=5e-5, weight_decay=0.01)
    first = min(config.vocab_size, 1000) // 2
    ids = torch.randint(first, config.vocab_size, (args.batch_size, args.seq_len))
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "token_type_ids": torch.zeros_like(ids),
             "labels": torch.arange(args.batch_size) % 2}

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
        times.sort()
        median = times[len(times) // 2]
        print(json.dumps({
            "row": name, "model": args.model_config, "device": "cpu", "framework": "pytorch",
            "batch_size": args.batch_size, "seq_len": args.seq_len, "repeats": len(times),
            "median_seconds": median, "min_seconds": times[0], "max_seconds": times[-1],
            "samples_per_second": args.batch_size / median, "tokens_per_second": args.batch_size * args.seq_len / median,
            "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "threads": args.threads,
        }), flush=True)


if __name__ == "__main__":
    main()
