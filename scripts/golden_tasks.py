"""Golden values for `lora`'s tasks: the loss transformers computes for each `problem_type`, and
the pair tokenization of bert-base-uncased's tokenizer.

Pinned: torch 2.5.1, transformers 4.46.3, tokenizers 0.20.3 (the versions in
docs/golden-fixtures.md). Run from the repository root:

    .venv/bin/python scripts/golden_tasks.py

Writes
- crates/lora-cli/tests/fixtures/tasks/<problem_type>/{config.json, model.safetensors, golden.json}:
  tiny-bert's encoder (crates/encoders/tests/fixtures/tiny-bert) with a seeded classification head
  of 3 rows (single- and multi-label) or 1 (regression); a fixed batch of pair-shaped inputs
  (token types 0 then 1, unequal lengths, padded by the model's batcher), its labels, and the
  logits and `outputs.loss` of `BertForSequenceClassification(..., labels=...)` in eval mode;
- crates/textdata/tests/fixtures/pair_tokens.json: pairs of texts truncated `longest_first` at a
  few max_lengths by `AutoTokenizer` (the fast tokenizer) from ../shared/assets/bert-base-uncased.
"""
import json
import os

import torch
from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = os.path.join(ROOT, "crates/encoders/tests/fixtures/tiny-bert")
OUT = os.path.join(ROOT, "crates/lora-cli/tests/fixtures/tasks")

# Four pair-shaped examples over tiny-bert's 128-token vocabulary ([CLS] = 2, [SEP] = 3).
FIRST = [[10, 11, 12], [20, 21], [30, 31, 32, 33, 34], [40]]
SECOND = [[13, 14], [22, 23, 24, 25], [35], [41, 42, 43, 44, 45, 46]]
LABELS = {
    "single_label_classification": (3, [0, 2, 1, 2]),
    "multi_label_classification": (3, [[1.0, 0.0, 1.0], [0.0, 0.0, 0.0], [1.0, 1.0, 1.0], [0.0, 1.0, 0.0]]),
    "regression": (1, [0.5, -1.25, 3.0, 2.0]),
}


def batch():
    ids, types = [], []
    for a, b in zip(FIRST, SECOND):
        ids.append([2] + a + [3] + b + [3])
        types.append([0] * (len(a) + 2) + [1] * (len(b) + 1))
    longest = max(map(len, ids))
    pad = lambda rows: torch.tensor([r + [0] * (longest - len(r)) for r in rows])
    mask = torch.tensor([[1] * len(r) + [0] * (longest - len(r)) for r in ids])
    return ids, types, pad(ids), pad(types), mask


def tasks():
    ids, types, input_ids, token_type_ids, mask = batch()
    for seed, (problem_type, (num_labels, labels)) in enumerate(LABELS.items()):
        config = BertConfig.from_pretrained(TINY, num_labels=num_labels, problem_type=problem_type)
        model = BertForSequenceClassification.from_pretrained(TINY, config=config, ignore_mismatched_sizes=True).eval()
        torch.manual_seed(seed)
        with torch.no_grad():
            model.classifier.weight.normal_(0.0, 1.0)
            model.classifier.bias.normal_(0.0, 0.5)
        dtype = torch.long if problem_type == "single_label_classification" else torch.float32
        with torch.no_grad():
            out = model(input_ids=input_ids, token_type_ids=token_type_ids, attention_mask=mask,
                        labels=torch.tensor(labels, dtype=dtype))
        directory = os.path.join(OUT, problem_type)
        model.save_pretrained(directory, safe_serialization=True)
        golden = {"problem_type": problem_type, "num_labels": num_labels, "input_ids": ids, "token_type_ids": types,
                  "labels": labels, "logits": out.logits.tolist(), "loss": out.loss.item()}
        with open(os.path.join(directory, "golden.json"), "w") as f:
            json.dump(golden, f, indent=1)
        print(problem_type, "loss", out.loss.item())


PAIRS = [
    ("A short question?", "And a much longer passage that goes on and on, well past the limit of tokens it may keep."),
    ("A first passage that is long enough to be cut when the limit is small, with commas, and more words.", "Short."),
    ("Both passages here are long: the first one rambles about the film's plot and its actors.",
     "The second one answers at length about the soundtrack, the lighting and the ending, which nobody liked."),
    ("Odd lengths: one two three four five.", "six seven eight nine ten eleven twelve thirteen"),
]


def pair_tokens():
    assets = os.path.join(ROOT, "..", "shared", "assets", "bert-base-uncased")
    tok = AutoTokenizer.from_pretrained(assets)
    rows = []
    for max_length in (12, 17, 24, 512):
        for a, b in PAIRS:
            enc = tok(a, b, truncation="longest_first", max_length=max_length)
            rows.append({"text": a, "text_pair": b, "max_length": max_length,
                         "input_ids": enc["input_ids"], "token_type_ids": enc["token_type_ids"]})
    with open(os.path.join(ROOT, "crates/textdata/tests/fixtures/pair_tokens.json"), "w") as f:
        json.dump(rows, f, indent=1)


if __name__ == "__main__":
    tasks()
    pair_tokens()
