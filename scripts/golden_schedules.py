#!/usr/bin/env python3
"""Golden learning rates for every `lr_scheduler_type` (crates/lora-cli/src/schedule.rs's test).

For each case, transformers' own `get_scheduler(name, optimizer, num_warmup_steps,
num_training_steps, scheduler_specific_kwargs)` on a one-parameter AdamW at the case's base
rate, and the learning rate each optimizer step uses (the scheduler's `get_last_lr()` before
the step), for two steps past the end of the run. Writes
crates/lora-train/tests/fixtures/schedules.json.

Rerun (pinned versions, see docs/golden-fixtures.md):
  .venv-modern/bin/python scripts/golden_schedules.py
"""
import json
from pathlib import Path

import torch
import transformers
from transformers import get_scheduler

PINNED = {"torch": "2.8.0", "transformers": "4.57.1"}
OUT = Path(__file__).resolve().parent.parent / "crates" / "lora-train" / "tests" / "fixtures" / "schedules.json"

# (name, base lr, total steps, warm-up steps, lr_scheduler_kwargs)
CASES = [
    ("linear", 5e-5, 20, 0, {}),
    ("linear", 5e-5, 20, 6, {}),
    ("linear", 1e-3, 5, 9, {}),
    ("cosine", 5e-5, 20, 0, {}),
    ("cosine", 5e-5, 23, 4, {}),
    ("cosine", 2e-4, 17, 3, {"num_cycles": 1.5}),
    ("cosine_with_restarts", 5e-5, 20, 0, {}),
    ("cosine_with_restarts", 5e-5, 31, 5, {"num_cycles": 3}),
    ("polynomial", 5e-5, 20, 0, {}),
    ("polynomial", 1e-3, 25, 5, {"lr_end": 1e-5, "power": 2.0}),
    ("polynomial", 1e-3, 12, 3, {"lr_end": 0.0, "power": 0.5}),
    ("constant", 5e-5, 10, 4, {}),
    ("constant_with_warmup", 5e-5, 12, 5, {}),
    ("inverse_sqrt", 5e-5, 20, 0, {}),
    ("inverse_sqrt", 5e-5, 40, 8, {}),
    ("cosine_with_min_lr", 5e-5, 20, 0, {"min_lr_rate": 0.1}),
    ("cosine_with_min_lr", 1e-3, 27, 6, {"min_lr": 1e-4}),
    ("cosine_with_min_lr", 1e-3, 20, 2, {"min_lr_rate": 0.05, "num_cycles": 1.0}),
    ("warmup_stable_decay", 5e-5, 30, 5, {"num_decay_steps": 10}),
    ("warmup_stable_decay", 5e-5, 30, 5, {"num_decay_steps": 8, "num_stable_steps": 7, "min_lr_ratio": 0.1}),
    ("warmup_stable_decay", 1e-3, 24, 6, {"num_decay_steps": 9, "warmup_type": "cosine", "decay_type": "linear"}),
    ("warmup_stable_decay", 1e-3, 24, 6, {"num_decay_steps": 9, "warmup_type": "1-sqrt", "decay_type": "1-sqrt", "min_lr_ratio": 0.2}),
    ("warmup_stable_decay", 1e-3, 10, 4, {"num_decay_steps": 9, "num_cycles": 0.75}),
]


def main():
    found = {"torch": torch.__version__.split("+")[0], "transformers": transformers.__version__}
    if found != PINNED:
        raise SystemExit(f"pinned versions {PINNED}, found {found}")
    cases = []
    for name, lr, total, warmup, kwargs in CASES:
        param = torch.nn.Parameter(torch.zeros(1))
        optimizer = torch.optim.AdamW([param], lr=lr)
        scheduler = get_scheduler(name, optimizer, num_warmup_steps=warmup, num_training_steps=total,
                                  scheduler_specific_kwargs=dict(kwargs))
        lrs = []
        for _ in range(total + 2):
            lrs.append(scheduler.get_last_lr()[0])
            optimizer.step()
            scheduler.step()
        cases.append({"lr_scheduler_type": name, "learning_rate": lr, "num_training_steps": total,
                      "num_warmup_steps": warmup, "lr_scheduler_kwargs": kwargs, "lrs": lrs})
    OUT.write_text(json.dumps({"transformers": transformers.__version__, "cases": cases}, indent=1) + "\n")
    print(f"wrote {len(cases)} schedules to {OUT}")


if __name__ == "__main__":
    main()
