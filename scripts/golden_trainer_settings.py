#!/usr/bin/env python3
"""Golden figures for Trainer's settings (crates/lora-cli/tests/fidelity.rs): gradient
accumulation, the schedules and label smoothing, as Hugging Face Trainer + PEFT run them.

From the starting adapter and the 40 examples of scripts/golden_trainer.py (its fixture, so both
fixtures start equal), dropout off, a fixed batch order, each scenario below trains one epoch and
records the exact loss of every optimizer step (the sum of its micro-batches' losses, as Trainer
backpropagates them), the learning rate it used and the pre-clipping gradient norm. Writes
crates/lora-cli/tests/fixtures/trainer/settings.json.

Rerun (pinned versions, see docs/golden-fixtures.md):
  .venv-modern/bin/python scripts/golden_trainer_settings.py
"""
import json
from pathlib import Path

import peft
import torch
import transformers
from peft import PeftModel
from safetensors.torch import load_file
from transformers import BertForSequenceClassification, Trainer, TrainingArguments

from golden_trainer import Examples, collate  # scripts/ is on the path when a script in it runs

PINNED = {"torch": "2.8.0", "transformers": "4.57.1", "peft": "0.17.1"}
ROOT = Path(__file__).resolve().parent.parent
BASE = ROOT / "crates" / "encoders" / "tests" / "fixtures" / "tiny-bert"
FIXTURE = ROOT / "crates" / "lora-cli" / "tests" / "fixtures" / "trainer"

# name: TrainingArguments beyond the shared ones (golden_trainer.py's optimizer settings)
SCENARIOS = {
    "accumulation_cosine": dict(per_device_train_batch_size=2, gradient_accumulation_steps=2,
                                lr_scheduler_type="cosine", warmup_steps=2),
    "label_smoothing_wsd": dict(per_device_train_batch_size=4, label_smoothing_factor=0.1,
                                lr_scheduler_type="warmup_stable_decay", warmup_steps=2,
                                lr_scheduler_kwargs={"num_decay_steps": 4}),
    "accumulation_polynomial": dict(per_device_train_batch_size=2, gradient_accumulation_steps=3,
                                    lr_scheduler_type="polynomial", warmup_ratio=0.3,
                                    lr_scheduler_kwargs={"lr_end": 1e-4, "power": 2.0}),
}


class Recording(Trainer):
    """A fixed batch order; every micro-batch's loss (as backpropagated) and the rate in force."""

    def _get_train_sampler(self, *args, **kwargs):
        return torch.utils.data.SequentialSampler(self.train_dataset)

    def training_step(self, model, inputs, num_items_in_batch=None):
        self.micro.append(self.lr_scheduler.get_last_lr()[0])
        loss = super().training_step(model, inputs, num_items_in_batch)
        self.micro_losses.append(loss.item())
        return loss


def main():
    found = {"torch": torch.__version__.split("+")[0], "transformers": transformers.__version__, "peft": peft.__version__}
    if found != PINNED:
        raise SystemExit(f"pinned versions {PINNED}, found {found}")
    torch.set_num_threads(1)
    golden = load_file(FIXTURE / "golden.safetensors")
    data = Examples(golden["input_ids"], golden["lengths"], golden["labels"])
    out = {"transformers": transformers.__version__, "peft": peft.__version__, "scenarios": {}}
    for name, extra in SCENARIOS.items():
        base = BertForSequenceClassification.from_pretrained(BASE, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
        model = PeftModel.from_pretrained(base, FIXTURE / "init-adapter", is_trainable=True)
        args = TrainingArguments(
            output_dir=str(FIXTURE / "hf-run"), num_train_epochs=1, learning_rate=5e-3, weight_decay=0.1,
            adam_beta1=0.9, adam_beta2=0.999, adam_epsilon=1e-8, max_grad_norm=0.3, logging_steps=1,
            save_strategy="no", report_to=[], seed=0, remove_unused_columns=False, use_cpu=True, **extra,
        )
        trainer = Recording(model=model, args=args, train_dataset=data, data_collator=collate)
        trainer.micro, trainer.micro_losses = [], []
        trainer.train()
        gas = args.gradient_accumulation_steps
        # An epoch's last step takes the micro-batches that are left.
        steps = -(-len(trainer.micro) // gas)
        losses = [sum(trainer.micro_losses[i * gas:(i + 1) * gas]) for i in range(steps)]
        lrs = [trainer.micro[i * gas] for i in range(steps)]
        grad_norms = [h["grad_norm"] for h in trainer.state.log_history if "grad_norm" in h]
        assert len(grad_norms) == steps == trainer.state.global_step, (len(grad_norms), steps)
        settings = {k: v for k, v in extra.items()}
        out["scenarios"][name] = {"settings": settings, "losses": losses, "learning_rates": lrs, "grad_norms": grad_norms}
        if extra.get("label_smoothing_factor"):
            # Trainer's label smoother gives evaluation's loss too: the trained model on the 40 examples.
            out["scenarios"][name]["eval_loss"] = trainer.evaluate(eval_dataset=data)["eval_loss"]
        print(name, "losses", [round(x, 5) for x in losses])
        print(name, "lrs", lrs)
    (FIXTURE / "settings.json").write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
