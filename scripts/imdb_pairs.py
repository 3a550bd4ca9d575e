#!/usr/bin/env python3
"""A constructed sentence-pair task from real reviews: do two passages come from the same review?

No real sentence-pair dataset is reachable from this machine, so this builds one from the IMDb
release in ../shared/assets/imdb: each example is the opening of one review (`sentence1`) and
the continuation of either the same review (`label` "same") or another review of the same split
(`label` "different"), half and half, seeded. Passages are at most 48 words each. The text is
real; the task is made up (it is not GLUE, and no published number applies to it).

    python3 scripts/imdb_pairs.py --output runs/imdb-pairs      # train.jsonl 1,000, test.jsonl 500
    lora train --config configs/imdb-same-review-minilm-lora.toml

Standard library only.
"""
import argparse
import json
import random
from pathlib import Path

WORDS = 48


def halves(text):
    words = text.replace("<br />", " ").split()
    cut = len(words) // 2
    return " ".join(words[:cut][:WORDS]), " ".join(words[cut:][:WORDS])


def build(reviews, n, rng):
    picked = rng.sample(reviews, 2 * n)
    firsts, others = picked[:n], picked[n:]
    rows = []
    for i, review in enumerate(firsts):
        opening, continuation = halves(review)
        if i % 2 == 0:
            rows.append({"sentence1": opening, "sentence2": continuation, "label": "same"})
        else:
            rows.append({"sentence1": opening, "sentence2": halves(others[i])[1], "label": "different"})
    rng.shuffle(rows)
    return rows


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--assets", default=str(Path(__file__).resolve().parents[2] / "shared" / "assets" / "imdb"))
    p.add_argument("--output", required=True)
    p.add_argument("--train-size", type=int, default=1000)
    p.add_argument("--test-size", type=int, default=500)
    p.add_argument("--seed", type=int, default=42)
    args = p.parse_args()
    rng = random.Random(args.seed)
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    for split, n in [("train", args.train_size), ("test", args.test_size)]:
        reviews = [json.loads(line)["text"] for line in open(Path(args.assets) / f"{split}.jsonl")]
        reviews = [r for r in reviews if len(r.split()) >= 40]
        rows = build(reviews, n, rng)
        (out / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        print(f"{out / (split + '.jsonl')}: {len(rows)} pairs")


if __name__ == "__main__":
    main()
