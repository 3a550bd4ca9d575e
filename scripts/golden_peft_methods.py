#!/usr/bin/env python3
"""Golden figures for PEFT's LoRA variants (crates/lora-cli/tests/fidelity.rs): DoRA, the PiSSA
and OLoRA initialisations, LoRA+ and `target_modules="all-linear"`, as Hugging Face Trainer +
PEFT train them.

For each scenario below: PEFT makes the starting adapter on the tiny BERT of
scripts/golden_bert.py (seed 0; PiSSA and OLoRA also change the base weights, from their SVD and
QR), Trainer trains it on the 40 examples of scripts/golden_trainer.py (its fixture) for one
epoch of 10 steps, dropout off, a fixed batch order, golden_trainer.py's optimizer settings
(LoRA+ through `peft.optimizers.create_loraplus_optimizer`). Writes, under
crates/lora-cli/tests/fixtures/trainer/methods/:
  NAME/init-adapter/       the starting adapter (PiSSA/OLoRA: the SVD/QR factors; the residual
                           base is not saved: loading recomputes it, as PEFT's loading does)
  NAME/final-adapter/      the adapter after 10 steps
  methods.json             per scenario: its settings, each step's loss, learning rate, gradient norm
  logits.safetensors       a padded batch; for each final adapter the logits of
                           `PeftModel.from_pretrained(original base, adapter)` in eval mode (for
                           PiSSA and OLoRA PEFT recomputes the residual base as it loads)

PEFT 0.17.1's `save_pretrained(path_initial_model_for_weight_conversion=...)`, which turns a
PiSSA/OLoRA adapter into a plain rank-2r one, drops `modules_to_save`: the converted adapter of a
SEQ_CLS model has no classifier and PEFT cannot load it (KeyError on `classifier.weight`), so
no fixture is made of it (docs/peft-compatibility.md).

Rerun (after scripts/golden_trainer.py; pinned versions, see docs/golden-fixtures.md):
  .venv-modern/bin/python scripts/golden_peft_methods.py
"""
import json
import shutil
from pathlib import Path

import peft
import torch
import transformers
from peft import LoraConfig, PeftModel, get_peft_model
from peft.optimizers import create_loraplus_optimizer
from safetensors.torch import load_file, save_file
from transformers import BertForSequenceClassification, TrainingArguments

from golden_peft import batch, tidy  # scripts/ is on the path when a script in it runs
from golden_trainer import Examples, collate
from golden_trainer_settings import Recording

PINNED = {"torch": "2.8.0", "transformers": "4.57.1", "peft": "0.17.1"}
ROOT = Path(__file__).resolve().parent.parent
BASE = ROOT / "crates" / "encoders" / "tests" / "fixtures" / "tiny-bert"
TRAINER = ROOT / "crates" / "lora-cli" / "tests" / "fixtures" / "trainer"
OUT = TRAINER / "methods"
# Large enough that the adapters, not the classifier alone, move the loss: each variant's losses
# must differ from plain LoRA's by far more than the tests' tolerance (checked below).
LR, ALPHA = 5e-2, 32

# name: (LoraConfig keys beyond r=4, alpha=ALPHA, query/value, SEQ_CLS; [training] keys: LoRA+'s
# kwargs or the learning rate, or None)
SCENARIOS = {
    "lora": (dict(), None),  # the baseline the others must differ from
    "dora": (dict(use_dora=True), None),
    "pissa": (dict(init_lora_weights="pissa"), None),
    "olora": (dict(init_lora_weights="olora"), None),
    "pissa_dora": (dict(init_lora_weights="pissa", use_dora=True, lora_alpha=4), None),
    "loraplus": (dict(), dict(loraplus_lr_ratio=16.0, loraplus_weight_decay=0.05)),
    # PEFT's `_maybe_include_all_linear_layers`: every linear but a SEQ_CLS model's `classifier`;
    # at golden_trainer.py's rate: at LR, Adam's normalisation of the FFN adapters' near-zero
    # gradients makes two PyTorch runs on 1 and 2 threads differ by 6e-5 at step 5 already.
    "all_linear": (dict(target_modules="all-linear"), dict(learning_rate=5e-3)),
}


def tidy_targets(adapter_dir):
    """PEFT writes all-linear's expanded set in arbitrary order: sorted, the fixture is stable."""
    path = adapter_dir / "adapter_config.json"
    config = json.loads(path.read_text())
    if isinstance(config["target_modules"], list):
        config["target_modules"] = sorted(config["target_modules"])
    path.write_text(json.dumps(config, indent=2, sort_keys=True))


def base_model():
    return BertForSequenceClassification.from_pretrained(BASE, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)


def logits_of(adapter_dir, ids, mask, types):
    model = PeftModel.from_pretrained(BertForSequenceClassification.from_pretrained(BASE), adapter_dir).eval()
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=mask, token_type_ids=types).logits.contiguous()


def main():
    found = {"torch": torch.__version__.split("+")[0], "transformers": transformers.__version__, "peft": peft.__version__}
    if found != PINNED:
        raise SystemExit(f"pinned versions {PINNED}, found {found}")
    torch.set_num_threads(1)
    shutil.rmtree(OUT, ignore_errors=True)
    OUT.mkdir(parents=True)
    golden = load_file(TRAINER / "golden.safetensors")
    data = Examples(golden["input_ids"], golden["lengths"], golden["labels"])
    ids, mask, types = batch(7, [12, 5, 9])
    tensors = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
    out = {"transformers": transformers.__version__, "peft": peft.__version__, "scenarios": {}}
    for name, (lora_keys, loraplus) in SCENARIOS.items():
        torch.manual_seed(0)
        keys = dict(task_type="SEQ_CLS", r=4, lora_alpha=ALPHA, lora_dropout=0.0, target_modules=["query", "value"])
        keys.update(lora_keys)
        model = get_peft_model(base_model(), LoraConfig(**keys))
        model.save_pretrained(OUT / name / "init-adapter")
        tidy(OUT / name / "init-adapter")
        tidy_targets(OUT / name / "init-adapter")
        args = TrainingArguments(
            output_dir=str(OUT / "hf-run"), num_train_epochs=1, per_device_train_batch_size=4, learning_rate=LR,
            weight_decay=0.1, adam_beta1=0.9, adam_beta2=0.999, adam_epsilon=1e-8, max_grad_norm=0.3,
            logging_steps=1, save_strategy="no", report_to=[], seed=0, remove_unused_columns=False, use_cpu=True,
        )
        optimizers = (None, None)
        if loraplus and "learning_rate" in loraplus:
            args.learning_rate = loraplus["learning_rate"]
        elif loraplus:
            opt = create_loraplus_optimizer(model, torch.optim.AdamW, lr=LR, betas=(0.9, 0.999), eps=1e-8,
                                            weight_decay=0.1, **loraplus)
            optimizers = (opt, None)
        trainer = Recording(model=model, args=args, train_dataset=data, data_collator=collate, optimizers=optimizers)
        trainer.micro, trainer.micro_losses = [], []
        trainer.train()
        lrs, losses = trainer.micro, trainer.micro_losses  # one micro-batch a step
        grad_norms = [h["grad_norm"] for h in trainer.state.log_history if "grad_norm" in h]
        assert len(grad_norms) == len(losses) == 10, (len(grad_norms), len(losses))
        model.save_pretrained(OUT / name / "final-adapter")
        tidy(OUT / name / "final-adapter")
        tidy_targets(OUT / name / "final-adapter")
        tensors[f"logits_{name}"] = logits_of(OUT / name / "final-adapter", ids, mask, types)
        settings = {"lora": lora_keys, "training": loraplus or {}}
        out["scenarios"][name] = {"settings": settings, "losses": losses, "learning_rates": lrs,
                                  "grad_norms": grad_norms}
        print(name, "losses", [round(x, 5) for x in losses])
    shutil.rmtree(OUT / "hf-run", ignore_errors=True)
    plain = out["scenarios"]["lora"]["losses"]
    for name, scenario in out["scenarios"].items():
        gap = max(abs(a - b) / abs(b) for a, b in zip(scenario["losses"], plain))
        print(f"{name}: largest relative gap to plain LoRA's losses {gap:.2e}")
        assert name in ("lora", "all_linear") or gap > 1e-2, f"{name} trains as plain LoRA does: the fixture could not tell them apart"
    save_file(tensors, OUT / "logits.safetensors", metadata={"peft": peft.__version__})
    (OUT / "methods.json").write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
