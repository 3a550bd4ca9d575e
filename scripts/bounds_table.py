#!/usr/bin/env python3
"""Turns the `bound ...` lines the tests print (kernels::testing::within and the kernels'
assert_close, with --nocapture) into docs/testing.md's table: one row per test and bound, with
how many checks it makes, the worst value measured on each CPU path, and the margin (bound over
the worst of them).

Standard library only. Collect the lines natively and on the AVX2 path (QEMU, as .ci/run does),
then feed both files:
  cargo test --workspace -- --nocapture 2>&1 | grep '^bound ' > /tmp/bounds-native.txt
  CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUNNER='env LORA_TEST_CPU=avx2 qemu-x86_64 -cpu max' \\
    cargo test --workspace --lib --test fidelity --test parity --test peft_interop \\
    --test families --test modern --test tasks --test mixed -- --nocapture 2>&1 \\
    | grep '^bound ' > /tmp/bounds-avx2.txt
  python3 scripts/bounds_table.py /tmp/bounds-native.txt /tmp/bounds-avx2.txt
"""
import re
import sys

LINE = re.compile(
    r"^bound (?P<what>.*): (?P<worst>\S+) <= (?P<bound>\S+) \(margin [^)]*\) "
    r"\[(?P<file>[^:\]]+):\d+ (?P<test>[^\]]+)\] (?P<cpu>\S+)$"
)


def main(paths):
    rows = {}  # (file: test, bound) -> {"n": checks, "cpu": {cpu: (worst, what)}}
    cpus = []
    for path in paths:
        with open(path, encoding="utf-8") as f:
            for raw in f:
                m = LINE.match(raw.strip())
                if not m:
                    continue
                worst, bound, cpu = float(m["worst"]), float(m["bound"]), m["cpu"]
                if cpu not in cpus:
                    cpus.append(cpu)
                name = m["file"].split("crates/", 1)[-1] + ": `" + m["test"].rsplit("::", 1)[-1] + "`"
                row = rows.setdefault((name, bound), {"n": 0, "cpu": {}})
                row["n"] += 1
                best = row["cpu"].get(cpu)
                if best is None or not worst <= best[0]:
                    row["cpu"][cpu] = (worst, m["what"])
    head = "| test | checks | bound | " + " | ".join(f"worst ({c})" for c in cpus) + " | margin | worst case |"
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    for (name, bound), row in sorted(rows.items()):
        worsts = [row["cpu"].get(c, (None, ""))[0] for c in cpus]
        top = max((w for w in worsts if w is not None), default=0.0)
        what = max(row["cpu"].values(), key=lambda v: v[0])[1]
        margin = "-" if top == 0 else f"{bound / top:.0f}x"
        cells = " | ".join("-" if w is None else f"{w:.1e}" for w in worsts)
        what = what.replace("|", "\\|")
        print(f"| {name} | {row['n']} | {bound:.0e} | {cells} | {margin} | {what} |")


if __name__ == "__main__":
    main(sys.argv[1:])
