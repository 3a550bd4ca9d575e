#!/usr/bin/env python3
"""Golden fixtures for PEFT interoperability (crates/encoders/tests/peft_interop.rs).

Trains a LoRA adapter for a few steps with PEFT on the tiny BERT of scripts/golden_bert.py and
writes, under crates/encoders/tests/fixtures/peft/:
  adapter/                 PeftModel.save_pretrained (adapter_config.json, adapter_model.safetensors)
  adapter-bin/             the same adapter as an older PEFT writes it (adapter_model.bin)
  adapter-rslora/          an rsLoRA adapter with rank/alpha patterns and layers_to_transform
  golden.safetensors       a padded batch and the logits PEFT computes with each adapter loaded
                           by PeftModel.from_pretrained (eval mode)

Rerun (after scripts/golden_bert.py; pinned versions, see docs/golden-fixtures.md):
  .venv/bin/python scripts/golden_peft.py
"""
import json
from pathlib import Path

import peft
import torch
import transformers
from peft import LoraConfig, PeftModel, get_peft_model
from safetensors.torch import save_file
from transformers import BertForSequenceClassification

PINNED = {"torch": "2.5.1", "transformers": "4.46.3", "peft": "0.13.2"}
ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "crates" / "encoders" / "tests" / "fixtures"
BASE = FIXTURES / "tiny-bert"
OUT = FIXTURES / "peft"


def check_versions():
    found = {"torch": torch.__version__.split("+")[0], "transformers": transformers.__version__, "peft": peft.__version__}
    if found != PINNED:
        raise SystemExit(f"pinned versions {PINNED}, found {found}")


def batch(seed, lengths, vocab=128):
    g = torch.Generator().manual_seed(seed)
    seq = max(lengths)
    ids = torch.zeros(len(lengths), seq, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, n in enumerate(lengths):
        ids[i, :n] = torch.randint(1, vocab, (n,), generator=g)
        mask[i, :n] = 1
    return ids, mask, torch.zeros_like(ids)


def train(config, name, steps=5):
    torch.manual_seed(0)
    model = get_peft_model(BertForSequenceClassification.from_pretrained(BASE), config)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    model.train()
    for step in range(steps):
        ids, mask, types = batch(100 + step, [10, 6, 8, 4])
        labels = torch.tensor([0, 1, 1, 0])
        loss = model(input_ids=ids, attention_mask=mask, token_type_ids=types, labels=labels).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
    model.save_pretrained(OUT / name)
    tidy(OUT / name)
    return model


def tidy(adapter_dir):
    """No generated model card, and no path of the machine that made the fixture."""
    (adapter_dir / "README.md").unlink(missing_ok=True)
    config_path = adapter_dir / "adapter_config.json"
    config = json.loads(config_path.read_text())
    config["base_model_name_or_path"] = "tiny-bert"
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True))


def logits_of(adapter_dir, ids, mask, types):
    base = BertForSequenceClassification.from_pretrained(BASE)
    model = PeftModel.from_pretrained(base, adapter_dir).eval()
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=mask, token_type_ids=types).logits.contiguous()


def main():
    check_versions()
    torch.set_num_threads(1)
    OUT.mkdir(parents=True, exist_ok=True)
    default = LoraConfig(task_type="SEQ_CLS", r=8, lora_alpha=16, lora_dropout=0.1, target_modules=["query", "value"])
    model = train(default, "adapter")
    model.save_pretrained(OUT / "adapter-bin", safe_serialization=False)
    tidy(OUT / "adapter-bin")

    patterned = LoraConfig(
        task_type="SEQ_CLS", r=4, lora_alpha=8, use_rslora=True, target_modules=["query", "key", "value", "dense"],
        layers_to_transform=[1], rank_pattern={"value": 2}, alpha_pattern={"key": 2.0},
    )
    train(patterned, "adapter-rslora")

    ids, mask, types = batch(7, [12, 5, 9])
    save_file({
        "input_ids": ids, "attention_mask": mask, "token_type_ids": types,
        "logits_adapter": logits_of(OUT / "adapter", ids, mask, types),
        "logits_adapter_bin": logits_of(OUT / "adapter-bin", ids, mask, types),
        "logits_adapter_rslora": logits_of(OUT / "adapter-rslora", ids, mask, types),
        "logits_base": BertForSequenceClassification.from_pretrained(BASE).eval()(
            input_ids=ids, attention_mask=mask, token_type_ids=types).logits.detach().contiguous(),
    }, OUT / "golden.safetensors", metadata={"peft": peft.__version__})
    print(f"wrote fixtures to {OUT}")


if __name__ == "__main__":
    main()
