#!/usr/bin/env python3
"""Golden fixture for the trainer's fidelity test (crates/lora-cli/tests/fidelity.rs).

Hugging Face Trainer + PEFT train the tiny BERT of scripts/golden_bert.py for 10 optimizer steps
with dropout off, on a fixed batch order (sequential sampler), with the run's Trainer settings:
AdamW (lr 5e-3, weight decay 0.1 except biases/LayerNorm, betas 0.9/0.999, eps 1e-8), global
gradient clipping at 0.3 (low enough to act on 4 of the 10 steps), linear decay to zero, no warm-up. Writes, under
crates/lora-cli/tests/fixtures/trainer/:
  init-adapter/          the starting adapter (PEFT init, seed 0), so both sides start equal
  final-adapter/         the adapter after 10 steps
  golden.safetensors     the 40 examples (ids padded with 0, lengths, labels), the exact loss of
                         each step, the pre-clipping gradient norm of each step

Rerun (after scripts/golden_bert.py; pinned versions, see docs/golden-fixtures.md):
  .venv/bin/python scripts/golden_trainer.py
"""
from pathlib import Path

import peft
import torch
import transformers
from peft import LoraConfig, get_peft_model
from safetensors.torch import save_file
from transformers import BertForSequenceClassification, Trainer, TrainingArguments

from golden_peft import tidy  # scripts/ is on the path when a script in it runs

PINNED = {"torch": "2.5.1", "transformers": "4.46.3", "peft": "0.13.2"}
ROOT = Path(__file__).resolve().parent.parent
BASE = ROOT / "crates" / "encoders" / "tests" / "fixtures" / "tiny-bert"
OUT = ROOT / "crates" / "lora-cli" / "tests" / "fixtures" / "trainer"
N, BATCH, STEPS = 40, 4, 10


class Examples(torch.utils.data.Dataset):
    def __init__(self, ids, lengths, labels):
        self.ids, self.lengths, self.labels = ids, lengths, labels

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        n = int(self.lengths[i])
        return {"input_ids": self.ids[i, :n], "labels": self.labels[i]}


def collate(items):
    seq = max(len(x["input_ids"]) for x in items)
    ids = torch.zeros(len(items), seq, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, x in enumerate(items):
        ids[i, : len(x["input_ids"])] = x["input_ids"]
        mask[i, : len(x["input_ids"])] = 1
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": torch.zeros_like(ids),
            "labels": torch.stack([x["labels"] for x in items])}


class SequentialTrainer(Trainer):
    """A fixed batch order, and the exact loss of every step (Trainer's logs round to 4 places)."""
    losses = []

    def _get_train_sampler(self):
        return torch.utils.data.SequentialSampler(self.train_dataset)

    def training_step(self, model, inputs, num_items_in_batch=None):
        loss = super().training_step(model, inputs, num_items_in_batch)
        self.losses.append(loss.item())
        return loss


def main():
    found = {"torch": torch.__version__.split("+")[0], "transformers": transformers.__version__, "peft": peft.__version__}
    if found != PINNED:
        raise SystemExit(f"pinned versions {PINNED}, found {found}")
    torch.set_num_threads(1)
    OUT.mkdir(parents=True, exist_ok=True)

    g = torch.Generator().manual_seed(3)
    lengths = torch.randint(3, 17, (N,), generator=g)
    ids = torch.zeros(N, 16, dtype=torch.long)
    for i in range(N):
        ids[i, : lengths[i]] = torch.randint(1, 128, (int(lengths[i]),), generator=g)
    labels = torch.randint(0, 2, (N,), generator=g)

    torch.manual_seed(0)
    base = BertForSequenceClassification.from_pretrained(BASE, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    model = get_peft_model(base, LoraConfig(task_type="SEQ_CLS", r=8, lora_alpha=16, lora_dropout=0.0, target_modules=["query", "value"]))
    model.save_pretrained(OUT / "init-adapter")
    tidy(OUT / "init-adapter")

    args = TrainingArguments(
        output_dir=str(OUT / "hf-run"), per_device_train_batch_size=BATCH, num_train_epochs=1,
        learning_rate=5e-3, weight_decay=0.1, adam_beta1=0.9, adam_beta2=0.999, adam_epsilon=1e-8,
        max_grad_norm=0.3, lr_scheduler_type="linear", warmup_steps=0, logging_steps=1, save_strategy="no",
        report_to=[], seed=0, remove_unused_columns=False, dataloader_drop_last=False, use_cpu=True,
    )
    trainer = SequentialTrainer(model=model, args=args, train_dataset=Examples(ids, lengths, labels), data_collator=collate)
    trainer.train()
    grad_norms = [h["grad_norm"] for h in trainer.state.log_history if "grad_norm" in h]
    assert len(SequentialTrainer.losses) == STEPS and len(grad_norms) == STEPS
    model.save_pretrained(OUT / "final-adapter")
    tidy(OUT / "final-adapter")
    save_file({
        "input_ids": ids, "lengths": lengths, "labels": labels,
        "losses": torch.tensor(SequentialTrainer.losses, dtype=torch.float64),
        "grad_norms": torch.tensor(grad_norms, dtype=torch.float64),
    }, OUT / "golden.safetensors", metadata={"transformers": transformers.__version__, "peft": peft.__version__})
    print("losses", SequentialTrainer.losses)
    print("grad_norms", grad_norms)


if __name__ == "__main__":
    main()
