#!/usr/bin/env python3
"""Golden fixtures for the BERT crate's parity tests (crates/encoders/tests/).

Writes, under crates/encoders/tests/fixtures/:
  tiny-bert/                 a random BertForSequenceClassification (2 layers, hidden 32), as
                             transformers saves it (config.json, model.safetensors with `bert.` keys)
  tiny_golden.safetensors    a padded batch (input_ids, attention_mask, token_type_ids) and
                             transformers' embedding output, last hidden state, pooler output, logits
  minilm_golden.safetensors  all-MiniLM-L6-v2 on 4 real reviews of different lengths from
                             test_500.jsonl: inputs, last hidden state, pooler output
  tiny-bert-legacy/          the same encoder as a legacy pytorch_model.bin (gamma/beta, cls.*,
                             position_ids, no classifier)
  tokenizer_ids.jsonl        BertTokenizerFast ids (truncation at 512) for the first 200 reviews
                             of test_500.jsonl with bert-base-uncased's tokenizer.json

Rerun (pinned versions; see docs/golden-fixtures.md):
  python3 -m venv .venv && .venv/bin/pip install torch==2.5.1 transformers==4.46.3 peft==0.13.2 numpy==1.26.4
  .venv/bin/python scripts/golden_bert.py [--assets ../shared/assets]
"""
import argparse
import json
import re
import os
from pathlib import Path

import torch
import transformers
from safetensors.torch import save_file
from transformers import BertConfig, BertForSequenceClassification, BertModel, BertTokenizerFast

PINNED = {"torch": "2.5.1", "transformers": "4.46.3"}
ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "crates" / "encoders" / "tests" / "fixtures"


def check_versions():
    found = {"torch": torch.__version__.split("+")[0], "transformers": transformers.__version__}
    if found != PINNED:
        raise SystemExit(f"pinned versions {PINNED}, found {found}")


def tiny_model():
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=128, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=64, max_position_embeddings=64, type_vocab_size=2, num_labels=2,
        hidden_act="gelu", layer_norm_eps=1e-12,
    )
    model = BertForSequenceClassification(config).eval()
    # Non-zero biases and LayerNorm parameters, so that every tensor is exercised.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias") or "LayerNorm" in name:
                p.add_(torch.randn_like(p) * 0.1)
    model.save_pretrained(OUT / "tiny-bert", safe_serialization=True)
    legacy_checkpoint(model)

    lengths = [12, 7, 3]
    seq = max(lengths)
    g = torch.Generator().manual_seed(1)
    input_ids = torch.zeros(len(lengths), seq, dtype=torch.long)
    attention_mask = torch.zeros_like(input_ids)
    token_type_ids = torch.zeros_like(input_ids)
    for i, n in enumerate(lengths):
        input_ids[i, :n] = torch.randint(1, config.vocab_size, (n,), generator=g)
        attention_mask[i, :n] = 1
        token_type_ids[i, n // 2 : n] = 1
    with torch.no_grad():
        out = model(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
                    output_hidden_states=True)
        pooled = model.bert.pooler(out.hidden_states[-1])
    save_file({
        "input_ids": input_ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids,
        "embedding_output": out.hidden_states[0].contiguous(),
        "last_hidden_state": out.hidden_states[-1].contiguous(),
        "pooler_output": pooled.contiguous(),
        "logits": out.logits.contiguous(),
    }, OUT / "tiny_golden.safetensors", metadata={"transformers": transformers.__version__})


def legacy_checkpoint(model):
    """The same encoder as an old pre-training checkpoint: `pytorch_model.bin` only, LayerNorm
    `gamma`/`beta`, `cls.*` heads, a `position_ids` buffer, and no classifier (as bert-base-uncased)."""
    state = {}
    for key, value in model.state_dict().items():
        if key.startswith("classifier."):
            continue
        key = re.sub(r"LayerNorm\.weight$", "LayerNorm.gamma", key)
        key = re.sub(r"LayerNorm\.bias$", "LayerNorm.beta", key)
        state[key] = value.clone()
    state["bert.embeddings.position_ids"] = torch.arange(64).unsqueeze(0)
    state["cls.predictions.bias"] = torch.zeros(model.config.vocab_size)
    legacy = OUT / "tiny-bert-legacy"
    legacy.mkdir(exist_ok=True)
    torch.save(state, legacy / "pytorch_model.bin")
    model.config.to_json_file(legacy / "config.json")


def read_reviews(assets, n):
    with open(assets / "imdb" / "test_500.jsonl") as f:
        return [json.loads(line)["text"] for _, line in zip(range(n), f)]


def minilm(assets):
    path = assets / "all-MiniLM-L6-v2"
    tokenizer = BertTokenizerFast.from_pretrained(path)
    model = BertModel.from_pretrained(path).eval()
    reviews = read_reviews(assets, 500)
    # Four short reviews of clearly different lengths keep the fixture small.
    by_length = sorted(range(len(reviews)), key=lambda i: len(reviews[i]))
    chosen = [by_length[0], by_length[3], by_length[8], by_length[20]]
    texts = [reviews[i] for i in chosen]
    enc = tokenizer(texts, padding="longest", truncation=True, max_length=512, return_tensors="pt")
    with torch.no_grad():
        out = model(**enc)
    save_file({
        "input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"],
        "token_type_ids": enc["token_type_ids"],
        "last_hidden_state": out.last_hidden_state.contiguous(),
        "pooler_output": out.pooler_output.contiguous(),
    }, OUT / "minilm_golden.safetensors",
        metadata={"transformers": transformers.__version__, "test_500_lines": json.dumps(chosen)})


def tokenizer_ids(assets):
    tokenizer = BertTokenizerFast(tokenizer_file=str(assets / "bert-base-uncased" / "tokenizer.json"))
    with open(OUT / "tokenizer_ids.jsonl", "w") as f:
        for text in read_reviews(assets, 200):
            ids = tokenizer(text, truncation=True, max_length=512)["input_ids"]
            f.write(json.dumps(ids, separators=(",", ":")) + "\n")


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--assets", default=os.environ.get("SHARED_ASSETS", ROOT.parent / "shared" / "assets"))
    args = parser.parse_args()
    check_versions()
    torch.set_num_threads(1)
    OUT.mkdir(parents=True, exist_ok=True)
    tiny_model()
    minilm(Path(args.assets))
    tokenizer_ids(Path(args.assets))
    print(f"wrote fixtures to {OUT}")


if __name__ == "__main__":
    main()
