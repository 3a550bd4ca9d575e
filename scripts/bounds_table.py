#!/usr/bin/env python3
"""Turns the `bound ...` lines the tests print (kernels::testing::within and assert_close, with
--nocapture) into docs/testing.md's table: one row per checking site (file:line), with the bound,
the worst value measured there on each CPU path, and the margin (bound / worst).

Standard library only. Collect the lines natively and on the AVX2 path (QEMU, as .ci/run does),
then feed both files:
  cargo test --workspace -- --nocapture 2>&1 | grep '^bound ' > /tmp/bounds-native.txt
  CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUNNER='env LORA_TEST_CPU=avx2 qemu-x86_64 -cpu max' \\
    cargo test -p lora-cli --test fidelity -- --nocapture 2>&1 | grep '^bound ' > /tmp/bounds-avx2.txt
  python3 scripts/bounds_table.py /tmp/bounds-native.txt /tmp/bounds-avx2.txt
"""
import re
import sys

LINE = re.compile(r"^bound (?P<what>.*): (?P<worst>\S+) <= (?P<bound>\S+) \(margin [^)]*\) \[(?P<site>[^\]]+)\] (?P<cpu>\S+)$")


def main(paths):
    sites = {}  # site -> {"bound", "what", "cpu" -> (worst, what), "n"}
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
                site = sites.setdefault(m["site"], {"bound": bound, "n": 0, "cpu": {}})
                site["bound"] = max(site["bound"], bound)
                site["n"] += 1
                best = site["cpu"].get(cpu)
                if best is None or worst > best[0] or worst != worst:
                    site["cpu"][cpu] = (worst, m["what"])
    head = "| site | checks | bound | " + " | ".join(f"worst ({c})" for c in cpus) + " | margin | worst case |"
    print(head)
    print("|" + "---|" * (head.count("|") - 1))
    for site in sorted(sites):
        s = sites[site]
        worsts = [s["cpu"].get(c, (None, ""))[0] for c in cpus]
        top = max((w for w in worsts if w is not None), default=0.0)
        what = max((v for v in s["cpu"].values()), key=lambda v: v[0])[1]
        margin = "inf" if top == 0 else f"{s['bound'] / top:.0f}x"
        cells = " | ".join("-" if w is None else f"{w:.1e}" for w in worsts)
        short = site.split("crates/", 1)[-1]
        print(f"| `{short}` | {s['n']} | {s['bound']:.0e} | {cells} | {margin} | {what} |")


if __name__ == "__main__":
    main(sys.argv[1:])
