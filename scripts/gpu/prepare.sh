#!/usr/bin/env bash
# Builds the `cuda` binary here (a GPU machine has no Rust toolchain and no network) and stages
# what scripts/gpu/run.sh needs under .gpu/ (ignored by git; add `/.gpu/` to .git/info/exclude):
#
#   .gpu/call1/  lora.gz (the stripped binary; gzip: the GPU machine has no zstd), whl/ (pinned transformers/peft/tokenizers/hub wheels),
#                imdb/ (the 1,000/500 reviews), bert-base-uncased/ (config + tokenizer, no weights),
#                minilm/ (config, tokenizer and the first part of the weights)
#   .gpu/call2/  the rest of the MiniLM weights
#   .gpu/kernels/  only with KERNELS=FILE: the kernels.tar.gz an earlier lease brought back (compiled
#                kernels and autotune results per model and variant; carry it with call1, and
#                lower PART_A_MIB by its size so that the call stays under 64 MiB)
#
# The device tool carries at most 64 MiB per call, and all-MiniLM-L6-v2's weights (91 MB) with the
# binary do not fit, so the weights travel in two calls (run.sh phase1 keeps part one). To make them
# smaller, word-embedding rows of tokens that none of the 1,500 reviews uses are zeroed: a frozen
# embedding row that is never looked up changes no number of the run (nor of the Python baseline).
#
#   [KERNELS=kernels.tar.gz] [PART_A_MIB=28] scripts/gpu/prepare.sh [PYTHON]
#   then: device run ... (see docs/benchmarks.md, "GPU")
# Needs: the venv of docs/golden-fixtures.md (PYTHON), runs/subsets from
#   lora export-data --config configs/imdb-minilm-lora.toml --output runs/subsets
set -euo pipefail
cd "$(dirname "$0")/../.."
PYTHON="${1:-.venv/bin/python}"
ASSETS="${SHARED_ASSETS:-../shared/assets}"
TARGET="${CUDA_TARGET_DIR:-target/cuda}"

# CUDA 13 driver on the lent machines (BURN_NOTES.md): cudarc must be built for it.
CUDARC_CUDA_VERSION=13000 CARGO_TARGET_DIR="$TARGET" CARGO_PROFILE_RELEASE_DEBUG=0 CARGO_PROFILE_RELEASE_STRIP=true \
    cargo build --release -p lora-cli --features cuda

rm -rf .gpu/call1 .gpu/call2 .gpu/kernels
[[ -n "${KERNELS:-}" ]] && tar -xzf "$KERNELS" -C .gpu && du -sh .gpu/kernels
mkdir -p .gpu/call1/whl .gpu/call1/imdb .gpu/call1/bert-base-uncased .gpu/call1/minilm .gpu/call2
gzip -9 -c "$TARGET/release/lora" > .gpu/call1/lora.gz
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .gpu/call1/whl \
    transformers==4.46.3 peft==0.13.2 tokenizers==0.20.3 huggingface_hub==0.36.2
# Our data source reads train/test files, the Python baseline train/eval files: the same reviews.
cp runs/subsets/train.jsonl .gpu/call1/imdb/train.jsonl
cp runs/subsets/eval.jsonl .gpu/call1/imdb/test.jsonl
cp runs/subsets/eval.jsonl .gpu/call1/imdb/eval.jsonl
cp "$ASSETS"/bert-base-uncased/{config.json,tokenizer.json,tokenizer_config.json,vocab.txt} .gpu/call1/bert-base-uncased/
m="$ASSETS/all-MiniLM-L6-v2"
cp "$m"/{config.json,tokenizer.json,tokenizer_config.json,vocab.txt,special_tokens_map.json} .gpu/call1/minilm/

"$PYTHON" - "$m" <<'PY'
import json, sys
import numpy as np
from safetensors.numpy import load_file, save_file
from transformers import AutoTokenizer
model = sys.argv[1]
tokenizer = AutoTokenizer.from_pretrained(model)
used = set(tokenizer.all_special_ids)
for f in ["runs/subsets/train.jsonl", "runs/subsets/eval.jsonl"]:
    texts = [json.loads(line)["text"] for line in open(f)]
    for ids in tokenizer(texts, truncation=True, max_length=512)["input_ids"]:
        used.update(ids)
weights = load_file(f"{model}/model.safetensors")
e = weights["embeddings.word_embeddings.weight"].copy()
keep = np.zeros(e.shape[0], bool)
keep[sorted(used)] = True
e[~keep] = 0
weights["embeddings.word_embeddings.weight"] = e
save_file(weights, "/tmp/minilm-pruned.safetensors", metadata={"format": "pt"})
print(f"kept {keep.sum()} of {e.shape[0]} embedding rows")
PY
echo "$(sha256sum /tmp/minilm-pruned.safetensors | cut -d' ' -f1)  model.safetensors" > .gpu/call1/minilm/model.safetensors.sha256
gzip -9 -c /tmp/minilm-pruned.safetensors > /tmp/minilm.gz
first=$(( ${PART_A_MIB:-28} * 1024 * 1024 ))
head -c "$first" /tmp/minilm.gz > .gpu/call1/minilm/model.gz.part-a
tail -c +$((first + 1)) /tmp/minilm.gz > .gpu/call2/model.gz.part-b
du -sh .gpu/call1 .gpu/call2 ${KERNELS:+.gpu/kernels}
