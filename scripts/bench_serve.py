"""The serving benchmark (issue #22): `lora serve` under 1, 8 and 64 concurrent clients with 1, 4
and 16 adapters, next to PyTorch + PEFT running the same mixed-adapter batches in process
(`model(**batch, adapter_names=[...])`, PEFT's mixed-batch forward), on the same machine in the
same run.

  python3 -m venv .venv-modern
  .venv-modern/bin/pip install torch==2.8.0 transformers==4.57.1 peft==0.17.1 numpy==2.2.6
  cargo build --release -p lora-cli
  .venv-modern/bin/python scripts/bench_serve.py --lora target/release/lora \
      --model ../shared/assets/all-MiniLM-L6-v2 --texts ../shared/assets/imdb/test_500.jsonl \
      --work /tmp/bench-serve [--seconds 20] [--threads 2] [--dtype bfloat16]

Steps: (1) write 16 PEFT adapters for the model (r 8 on query/value, classifier saved, random
B so that each classifies differently; seeds 0..15); (2) check that the server's logits equal
PEFT's mixed batch for 16 texts over all 16 adapters; (3) for each (adapters, clients): start
`lora serve` with that many adapters, run the clients for --seconds (each client sends one text
per request, with an adapter drawn in turn, and waits for the answer), then stop it and read
its peak memory (VmHWM); PyTorch + PEFT runs batches of `clients` texts with the same adapter
draw for as long. Texts are the first 600 characters of IMDb reviews (about 130 tokens).

With `--dtype bfloat16` the server runs `lora serve --dtype bfloat16` (its base linears in bf16),
the parity check compares it with PEFT's fp32 logits, and each row also times PyTorch + PEFT
under `torch.autocast("cpu", dtype=torch.bfloat16)` (PyTorch's bf16 inference), same batches.

Prints one JSON line per row and a Markdown table. Only the standard library is used for the
HTTP clients (threads + http.client), the same client for every row.
"""

import argparse
import http.client
import json
import os
import statistics
import subprocess
import threading
import time


def adapters(model_dir, work, n):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForSequenceClassification

    dirs = []
    for i in range(n):
        out = os.path.join(work, f"adapter-{i}")
        dirs.append(out)
        if os.path.exists(os.path.join(out, "adapter_model.safetensors")):
            continue
        torch.manual_seed(i)
        base = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=2)
        config = LoraConfig(task_type="SEQ_CLS", r=8, lora_alpha=16, target_modules=["query", "value"],
                            init_lora_weights=False)
        get_peft_model(base, config).save_pretrained(out)
    return dirs


def peft_model(model_dir, dirs):
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification

    base = AutoModelForSequenceClassification.from_pretrained(model_dir, num_labels=2)
    model = PeftModel.from_pretrained(base, dirs[0], adapter_name="a0")
    for i, d in enumerate(dirs[1:], start=1):
        model.load_adapter(d, adapter_name=f"a{i}")
    return model.eval()


class Server:
    def __init__(self, lora, model_dir, dirs, port, extra=()):
        args = [lora, "serve", "--model", model_dir, "--port", str(port), "--max-batch-tokens", "65536"]
        for i, d in enumerate(dirs):
            args += ["--adapter", f"a{i}={d}"]
        if len(dirs) > 1:
            args += ["--default-adapter", "a0"]
        self.proc = subprocess.Popen(args + list(extra), stderr=subprocess.PIPE, text=True)
        self.port = None
        for line in self.proc.stderr:
            if line.startswith("listening on http://"):
                self.port = int(line.split()[2].rsplit(":", 1)[1])
                break
        if self.port is None:
            raise SystemExit("lora serve did not start")
        threading.Thread(target=lambda: [None for _ in self.proc.stderr], daemon=True).start()

    def post(self, conn, body):
        conn.request("POST", "/predict", body=json.dumps(body), headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        data = response.read()
        if response.status != 200:
            raise RuntimeError(f"{response.status}: {data[:200]}")
        return json.loads(data)

    def peak_rss_mb(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=60)
        return self.proc.returncode


def run_clients(server, texts, n_adapters, clients, seconds):
    latencies, errors = [], []
    lock = threading.Lock()
    stop_at = time.perf_counter() + seconds

    def client(c):
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=300)
        k = c
        while time.perf_counter() < stop_at:
            body = {"inputs": texts[k % len(texts)], "adapter_id": f"a{k % n_adapters}", "truncate": True}
            t0 = time.perf_counter()
            try:
                server.post(conn, body)
            except Exception as e:  # counted, and the row says so
                with lock:
                    errors.append(str(e))
                conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=300)
                continue
            with lock:
                latencies.append(time.perf_counter() - t0)
            k += clients

    threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return latencies, errors, time.perf_counter() - t0


def run_pytorch(model, tokenizer, texts, n_adapters, batch, seconds, bf16=False):
    import torch

    latencies = []
    k = 0
    stop_at = time.perf_counter() + seconds
    t0 = time.perf_counter()
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        while time.perf_counter() < stop_at:
            rows = [texts[(k + j) % len(texts)] for j in range(batch)]
            names = [f"a{(k + j) % n_adapters}" for j in range(batch)]
            k += batch
            t1 = time.perf_counter()
            enc = tokenizer(rows, padding=True, truncation=True, max_length=512, return_tensors="pt")
            model(**enc, adapter_names=names)
            latencies.append(time.perf_counter() - t1)
    return latencies, time.perf_counter() - t0


def percentile(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--lora", required=True)
    p.add_argument("--model", required=True)
    p.add_argument("--texts", required=True)
    p.add_argument("--work", default="/tmp/bench-serve")
    p.add_argument("--seconds", type=float, default=20)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--adapters", default="1,4,16")
    p.add_argument("--clients", default="1,8,64")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    a = p.parse_args()
    bf16 = a.dtype == "bfloat16"
    extra = ["--dtype", a.dtype]

    import torch
    from transformers import AutoTokenizer

    torch.set_num_threads(a.threads)
    os.makedirs(a.work, exist_ok=True)
    with open(a.texts) as f:
        texts = [json.loads(line)["text"][:600] for line in f][:256]
    counts = [int(x) for x in a.adapters.split(",")]
    dirs = adapters(a.model, a.work, max(counts))
    tokenizer = AutoTokenizer.from_pretrained(a.model)

    # Parity: the server's logits against PEFT's mixed batch, 16 texts over every adapter.
    model = peft_model(a.model, dirs)
    server = Server(a.lora, a.model, dirs, a.port, extra)
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=300)
    rows = texts[:16]
    names = [f"a{i % len(dirs)}" for i in range(16)]
    with torch.inference_mode():
        theirs = model(**tokenizer(rows, padding=True, truncation=True, return_tensors="pt"), adapter_names=names).logits
    worst = 0.0
    for i, (text, name) in enumerate(zip(rows, names)):
        answer = server.post(conn, {"inputs": text, "adapter_id": name, "raw_scores": True})
        ours = {p["label"]: p["score"] for p in answer}
        for j in range(2):
            worst = max(worst, abs(ours[f"LABEL_{j}"] - float(theirs[i, j])))
    server.stop()
    print(json.dumps({"parity_max_abs_logit_diff": worst, "texts": 16, "adapters": len(dirs), "dtype": a.dtype,
                      "against": "PEFT fp32"}), flush=True)

    results = []
    for n in counts:
        model = peft_model(a.model, dirs[:n])
        for clients in [int(x) for x in a.clients.split(",")]:
            server = Server(a.lora, a.model, dirs[:n], a.port, extra)
            # Warm-up: one round of requests.
            run_clients(server, texts, n, clients, 1.0)
            lat, errors, took = run_clients(server, texts, n, clients, a.seconds)
            rss = server.peak_rss_mb()
            code = server.stop()
            plat, ptook = run_pytorch(model, tokenizer, texts, n, clients, 1.0)
            plat, ptook = run_pytorch(model, tokenizer, texts, n, clients, a.seconds)
            row = {
                "adapters": n, "clients": clients,
                "ours_requests_per_s": len(lat) / took, "ours_texts_per_s": len(lat) / took,
                "ours_p50_ms": 1e3 * percentile(lat, 0.5), "ours_p99_ms": 1e3 * percentile(lat, 0.99),
                "ours_errors": len(errors), "ours_exit": code, "ours_peak_rss_mb": rss,
                "pytorch_batch": clients, "pytorch_texts_per_s": len(plat) * clients / ptook,
                "pytorch_batch_p50_ms": 1e3 * percentile(plat, 0.5), "pytorch_batch_p99_ms": 1e3 * percentile(plat, 0.99),
            }
            row["speedup"] = row["ours_texts_per_s"] / row["pytorch_texts_per_s"]
            row["dtype"] = a.dtype
            if bf16:
                run_pytorch(model, tokenizer, texts, n, clients, 1.0, bf16=True)
                blat, btook = run_pytorch(model, tokenizer, texts, n, clients, a.seconds, bf16=True)
                row["pytorch_bf16_texts_per_s"] = len(blat) * clients / btook
                row["speedup_bf16"] = row["ours_texts_per_s"] / row["pytorch_bf16_texts_per_s"]
            results.append(row)
            print(json.dumps(row), flush=True)

    extra_head = " PyTorch bf16 autocast texts/s | ours / PyTorch bf16 |" if bf16 else ""
    print(f"\n| adapters | clients | ours ({a.dtype}) req/s = texts/s | ours p50 / p99 ms | PyTorch+PEFT fp32 texts/s (batch = clients) | PyTorch batch p50 / p99 ms | ours / PyTorch fp32 |{extra_head} ours peak RSS MB |")
    print("|---|---|---|---|---|---|---|" + ("---|---|" if bf16 else "") + "---|")
    for r in results:
        extra_cells = f" {r['pytorch_bf16_texts_per_s']:.1f} | {r['speedup_bf16']:.2f} |" if bf16 else ""
        print(f"| {r['adapters']} | {r['clients']} | {r['ours_texts_per_s']:.1f} | {r['ours_p50_ms']:.0f} / {r['ours_p99_ms']:.0f} | "
              f"{r['pytorch_texts_per_s']:.1f} | {r['pytorch_batch_p50_ms']:.0f} / {r['pytorch_batch_p99_ms']:.0f} | "
              f"{r['speedup']:.2f} |{extra_cells} {r['ours_peak_rss_mb']:.0f} |")


if __name__ == "__main__":
    main()
