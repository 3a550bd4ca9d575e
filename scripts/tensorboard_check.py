#!/usr/bin/env python3
"""TensorBoard's own reader on a run's event files (`report_to = "tensorboard"`).

Loads LOGDIR (default RUN/runs) with `tensorboard`'s EventAccumulator, the reader behind
TensorBoard's scalar dashboard, and checks it against the run's `metrics.jsonl`: every number of
every log line is a scalar under Trainer's tag (`eval_loss` as `eval/loss`, `loss` as
`train/loss`, ...) at the line's step, with the line's value (as f32). Prints the tags with their
number of points; exit status 1 on any difference or a tag TensorBoard does not see.

  .venv-modern/bin/python scripts/tensorboard_check.py runs/x
Pinned: tensorboard 2.21.0 (any recent one reads the same format). Not part of CI.
"""
import argparse
import json
import struct
import sys
from collections import defaultdict
from pathlib import Path

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator


def tag(key):
    for prefix, group in (("eval_", "eval/"), ("test_", "test/")):
        if key.startswith(prefix):
            return group + key[len(prefix):]
    return "train/" + key


def f32(x):
    return struct.unpack("f", struct.pack("f", x))[0]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run", help="the run's output directory (holds metrics.jsonl)")
    p.add_argument("--logdir", help="the event files' directory (default RUN/runs)")
    args = p.parse_args()
    run = Path(args.run)
    logdir = Path(args.logdir) if args.logdir else run / "runs"
    files = sorted(logdir.glob("events.out.tfevents.*"))
    if not files:
        sys.exit(f"no event file in {logdir}")

    # Every point of every file, as TensorBoard's reader gives them.
    seen = defaultdict(dict)
    for f in files:
        acc = EventAccumulator(str(f), size_guidance={"scalars": 0})
        acc.Reload()
        for t in acc.Tags()["scalars"]:
            for e in acc.Scalars(t):
                seen[t][e.step] = e.value

    expected = defaultdict(dict)
    for line in (run / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        for k, v in record.items():
            if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool):
                expected[tag(k)][record["step"]] = f32(float(v))

    bad = 0
    for t in sorted(expected):
        for step, value in sorted(expected[t].items()):
            got = seen.get(t, {}).get(step)
            if got is None or got != value:
                bad += 1
                if bad <= 10:
                    print(f"{t} at step {step}: metrics.jsonl {value}, TensorBoard {got}")
    for t in sorted(seen):
        print(f"{t}: {len(seen[t])} points")
    extra = sorted(set(seen) - set(expected))
    if extra:
        print(f"tags TensorBoard has that metrics.jsonl does not: {extra}")
        bad += 1
    print(f"{len(files)} event file(s), {sum(len(v) for v in expected.values())} points expected, {bad} differences")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
