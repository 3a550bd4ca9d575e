"""Peak memory of `lora serve` per dtype under one load (issue #43): the adapters, texts, server and
clients of `scripts/bench_serve.py`, ours only, one server process per dtype in turn.

  .venv-modern/bin/python scripts/serve_memory.py --lora target/release/lora \
      --model ../shared/assets/all-MiniLM-L6-v2 --texts ../shared/assets/imdb/test_500.jsonl \
      --work /tmp/bench-serve [--adapters 16] [--clients 64] [--seconds 20] [--dtypes float32,bfloat16]

The adapters are bench_serve.py's (made with PEFT in --work if missing, so the same venv). Run it
again with MIMALLOC_PURGE_DELAY=0 in the environment to see what the allocator keeps: the server
passes that setting to mimalloc (crates/lora-cli/src/alloc.rs). Prints one JSON line per dtype:
texts answered, errors, the server's peak RSS (VmHWM).
"""

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_serve  # noqa: E402


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--lora", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--texts", required=True)
    p.add_argument("--work", default="/tmp/bench-serve")
    p.add_argument("--adapters", type=int, default=16)
    p.add_argument("--clients", type=int, default=64)
    p.add_argument("--seconds", type=float, default=20)
    p.add_argument("--dtypes", default="float32,bfloat16")
    a = p.parse_args()
    os.makedirs(a.work, exist_ok=True)
    with open(a.texts) as f:
        texts = [json.loads(line)["text"][:600] for line in f][:256]
    dirs = bench_serve.adapters(a.model, a.work, a.adapters)
    for dtype in a.dtypes.split(","):
        server = bench_serve.Server(a.lora, a.model, dirs, 0, ["--dtype", dtype])
        lat, errors, took = bench_serve.run_clients(server, texts, a.adapters, a.clients, a.seconds)
        row = {"dtype": dtype, "adapters": a.adapters, "clients": a.clients, "seconds": round(took, 1),
               "texts": len(lat), "errors": len(errors), "peak_rss_mb": round(server.peak_rss_mb()),
               "mimalloc_purge_delay": os.environ.get("MIMALLOC_PURGE_DELAY", "program default (-1)")}
        row["exit"] = server.stop()
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
