#!/usr/bin/env python3
"""Golden fixtures for ModernBERT configs as transformers 5 writes them (issue 40;
crates/encoders/tests/modern.rs, `modernbert_configs_saved_by_transformers_5_match_it`).

transformers 5 writes `layer_types` and `rope_parameters` where 4.x wrote
`global_attn_every_n_layers`, `global_rope_theta` and `local_rope_theta`. From the fixture
crates/encoders/tests/fixtures/modern/modernbert/model (made by scripts/golden_families.py with
transformers 4.57.1), its query/key/value weights multiplied by 40 (the random model's attention
is otherwise nearly uniform, and the rotary settings barely show), under
crates/encoders/tests/fixtures/modern/:
  modernbert-v5/model          the model as transformers 5 loads and saves it (its config.json),
                               with layer_types [sliding, full, sliding] against the
                               global_attn_every_n_layers = 2 transformers 5 keeps in the file
  modernbert-v5-linear/model   the same with `rope_type: "linear"`, factor 2, on the global layers
                               and factor 4 on the local ones
  modernbert-v5*/golden.safetensors
                               modernbert/golden.safetensors' batch, with transformers 5's last
                               hidden state and logits (eager attention, eval mode)

Rerun (pinned versions):
  python3 -m venv .venv-v5
  .venv-v5/bin/pip install torch==2.8.0 transformers==5.25.0 safetensors
  .venv-v5/bin/python scripts/golden_modernbert_v5.py
"""
import json
import shutil
from pathlib import Path

import torch
import transformers
from safetensors.torch import load_file, save_file
from transformers import ModernBertForSequenceClassification

PINNED = {"torch": "2.8.0", "transformers": "5.25.0"}
ROOT = Path(__file__).resolve().parent.parent
MODERN = ROOT / "crates" / "encoders" / "tests" / "fixtures" / "modern"
SHARPEN = 40.0


def main():
    found = {"torch": torch.__version__.split("+")[0], "transformers": transformers.__version__}
    if found != PINNED:
        raise SystemExit(f"pinned versions {PINNED}, found {found}")
    torch.manual_seed(0)
    golden = load_file(MODERN / "modernbert" / "golden.safetensors")
    inputs = {"input_ids": golden["input_ids"], "attention_mask": golden["attention_mask"]}
    for name, rope in [
        ("modernbert-v5", None),
        ("modernbert-v5-linear", {"full_attention": 2.0, "sliding_attention": 4.0}),
    ]:
        out = MODERN / name
        shutil.rmtree(out, ignore_errors=True)
        model = ModernBertForSequenceClassification.from_pretrained(
            MODERN / "modernbert" / "model", attn_implementation="eager"
        )
        with torch.no_grad():
            for layer in model.model.layers:
                layer.attn.Wqkv.weight.mul_(SHARPEN)
        if rope:
            for kind, factor in rope.items():
                model.config.rope_parameters[kind].update({"rope_type": "linear", "factor": factor})
        else:
            # Not what global_attn_every_n_layers = 2 (kept in the file) would give: layer_types wins.
            model.config.layer_types = ["sliding_attention", "full_attention", "sliding_attention"]
        # The rotary tables and layer kinds are set at construction: build the model again.
        state = model.state_dict()
        model = ModernBertForSequenceClassification(model.config)
        model.load_state_dict(state)
        model = model.eval()
        model.save_pretrained(out / "model")
        for f in ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json"]:
            src = MODERN / "modernbert" / "model" / f
            if src.exists():
                shutil.copy(src, out / "model" / f)
        config = json.loads((out / "model" / "config.json").read_text())
        assert "layer_types" in config and "rope_parameters" in config, config
        # transformers 5 keeps a given global_attn_every_n_layers beside layer_types (which wins).
        assert "global_rope_theta" not in config and "local_rope_theta" not in config, config
        # Loaded back as a user would, then run.
        model = ModernBertForSequenceClassification.from_pretrained(out / "model", attn_implementation="eager").eval()
        with torch.no_grad():
            result = model(**inputs)
            hidden = model.model(**inputs).last_hidden_state
        tensors = {
            "input_ids": golden["input_ids"].contiguous(),
            "attention_mask": golden["attention_mask"].contiguous(),
            "token_type_ids": torch.zeros_like(golden["input_ids"]).contiguous(),
            "last_hidden_state": hidden.contiguous(),
            "logits": result.logits.contiguous(),
        }
        save_file(tensors, out / "golden.safetensors")
        print(name, config["layer_types"], config["rope_parameters"], result.logits.tolist())


if __name__ == "__main__":
    main()
