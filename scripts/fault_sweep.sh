#!/usr/bin/env bash
# Fault injection over a whole short `lora train` and a `lora merge` (issue #24): for each of
# write, fsync and rename, the N-th call is made to fail (strace -e inject=SYSCALL:error=E:when=N)
# for every N the uninterrupted command makes. At every N the command must exit non-zero with
# one clear error line (or succeed, where the failed call was one it may lose: a message on
# stderr), leave no torn file, and a `--resume` (a second merge) must end with the adapter (the
# merged weights) of the uninterrupted run, byte for byte.
#
#   scripts/fault_sweep.sh [target/debug/lora] [STEP]
#
# STEP tests every STEP-th N (default 1: all). Needs strace (Debian: strace), python3, the tiny
# fixtures in crates/. Prints a Markdown table (docs/guarantees.md has the last one) and exits
# non-zero if any N broke a promise.
set -uo pipefail
cd "$(dirname "$0")/.."
LORA=$(realpath "${1:-target/debug/lora}")
STEP=${2:-1}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

# The tests' tiny model and data (crates/lora-cli/tests/common).
python3 - "$WORK" <<'EOF'
import json, os, shutil, sys
work = sys.argv[1]
words = ["good", "great", "fine", "superb", "lovely", "bad", "awful", "dull", "poor", "boring"]
model = os.path.join(work, "model"); os.makedirs(model)
for f in ["config.json", "model.safetensors"]:
    shutil.copy(os.path.join("crates/encoders/tests/fixtures/tiny-bert", f), model)
vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", ",", "the", "film", "was", "a", "plot"] + words
vocab += ["w%d" % i for i in range(len(vocab), 128)]
open(os.path.join(model, "vocab.txt"), "w").write("\n".join(vocab) + "\n")
data = os.path.join(work, "data"); os.makedirs(data)
for split, n in [("train", 40), ("test", 20)]:
    with open(os.path.join(data, split + ".jsonl"), "w") as f:
        for i in range(n):
            label = i % 2
            word = words[(i * 7 + 3) % 5 + 5 * (1 - label)]
            text = "the film was %s , a %s plot w%d ." % (word, word, 20 + (i * 13) % 90)
            f.write(json.dumps({"text": text, "label": label}) + "\n")
EOF

train() { # OUT [extra args...]
    local out=$1; shift
    "$LORA" train --config configs/imdb-minilm-lora.toml --model "$WORK/model" --data "$WORK/data" \
        --output-dir "$out" --quiet --set data.train_size=16 --set data.eval_size=8 --set data.max_length=32 \
        --set training.num_train_epochs=2 --set training.per_device_train_batch_size=4 \
        --set training.learning_rate=1e-2 --set training.logging_steps=2 "$@"
}
merge() { # ADAPTER OUT
    "$LORA" merge --model "$WORK/model" --adapter "$1" --output "$2"
}
sha() { sha256sum "$1" | cut -d' ' -f1; }

# No torn file: every JSON parses, every JSON Lines line parses, every safetensors header parses
# and its data is as long as the header says.
intact() { # DIR
    python3 - "$1" <<'EOF'
import json, os, struct, sys
bad = []
for root, _, files in os.walk(sys.argv[1]):
    for f in files:
        p = os.path.join(root, f)
        try:
            if f.endswith(".json"):
                json.load(open(p))
            elif f.endswith(".jsonl"):
                for line in open(p):
                    json.loads(line)
            elif f.endswith(".safetensors"):
                b = open(p, "rb").read()
                n = struct.unpack("<Q", b[:8])[0]
                header = json.loads(b[8:8 + n])
                end = max([v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"] or [0])
                assert len(b) == 8 + n + end, "length"
        except Exception as e:
            if not f.startswith("."):  # a temporary beside its target is not a result
                bad.append("%s (%s)" % (os.path.relpath(p, sys.argv[1]), e))
print("; ".join(bad))
EOF
}

train "$WORK/reference" || { echo "the uninterrupted run failed"; exit 1; }
ADAPTER_SHA=$(sha "$WORK/reference/adapter/adapter_model.safetensors")
merge "$WORK/reference/adapter" "$WORK/merged" || { echo "the uninterrupted merge failed"; exit 1; }
MERGED_SHA=$(sha "$WORK/merged/model.safetensors")

# One command under test, in OUT, behind PREFIX (strace ...).
under_test() { # CMD OUT PREFIX...
    local cmd=$1 out=$2; shift 2
    if [ "$cmd" = train ]; then
        "$@" "$LORA" train --config configs/imdb-minilm-lora.toml --model "$WORK/model" --data "$WORK/data" \
            --output-dir "$out" --quiet --set data.train_size=16 --set data.eval_size=8 --set data.max_length=32 \
            --set training.num_train_epochs=2 --set training.per_device_train_batch_size=4 \
            --set training.learning_rate=1e-2 --set training.logging_steps=2
    else
        "$@" "$LORA" merge --model "$WORK/model" --adapter "$WORK/reference/adapter" --output "$out"
    fi
}

broken=0
echo "| command | syscalls (error) | calls | N tried | failed, one clear line | succeeded | torn files | finished as uninterrupted |"
echo "|---|---|---|---|---|---|---|---|"
for cmd in train merge; do
    for spec in write,pwrite64,writev:ENOSPC fsync,fdatasync:EIO rename,renameat,renameat2:EIO; do
        syscalls=${spec%%:*}
        error=${spec##*:}
        # Calls are counted (and injected) per thread: N runs to the most any thread makes.
        under_test "$cmd" "$WORK/count-out" strace -f -o "$WORK/count" -e trace="$syscalls" -e signal=none >/dev/null 2>&1
        n=$(awk '$2 ~ /^[a-z0-9_]+\(/ {c[$1]++} END {m = 0; for (p in c) if (c[p] > m) m = c[p]; print m}' "$WORK/count")
        rm -rf "$WORK/count-out"
        tried=0 failed_clear=0 succeeded=0 torn=0 same=0
        for ((i = 1; i <= n; i += STEP)); do
            tried=$((tried + 1))
            out="$WORK/$cmd-$i"
            under_test "$cmd" "$out" strace -f -o /dev/null -e trace="$syscalls" \
                -e inject="$syscalls:error=$error:when=$i" -e signal=none >"$out.stdout" 2>"$out.stderr"
            rc=$?
            lines=$(grep -c . "$out.stderr")
            if [ $rc -eq 0 ]; then
                succeeded=$((succeeded + 1))
            elif [ "$lines" -eq 1 ] && grep -q "^error: " "$out.stderr" && ! grep -q panicked "$out.stderr"; then
                failed_clear=$((failed_clear + 1))
            else
                echo "  $cmd $syscalls N=$i: exit $rc, stderr: $(head -c 400 "$out.stderr")" >&2
                broken=1
            fi
            if [ -d "$out" ]; then
                t=$(intact "$out")
                if [ -n "$t" ]; then
                    torn=$((torn + 1)); broken=1
                    echo "  $cmd $syscalls N=$i: torn: $t" >&2
                fi
            fi
            # Finish what the fault interrupted, without faults: --resume where a run began
            # (a fresh run where it left nothing), a second merge.
            if [ "$cmd" = train ]; then
                if [ $rc -ne 0 ]; then
                    if [ -f "$out/config.toml" ]; then
                        train "$out" --resume >/dev/null 2>"$out.resume"
                    else
                        train "$out" >/dev/null 2>"$out.resume"
                    fi
                fi
                result="$out/adapter/adapter_model.safetensors"; expected=$ADAPTER_SHA
            else
                [ $rc -ne 0 ] && merge "$WORK/reference/adapter" "$out" >/dev/null 2>"$out.resume"
                result="$out/model.safetensors"; expected=$MERGED_SHA
            fi
            if [ -f "$result" ] && [ "$(sha "$result")" = "$expected" ]; then
                same=$((same + 1))
            else
                echo "  $cmd $syscalls N=$i: the finished result differs: $(head -c 400 "$out.resume" 2>/dev/null)" >&2
                broken=1
            fi
            rm -rf "$out" "$out".*
        done
        echo "| $cmd | $syscalls ($error) | $n | $tried | $failed_clear | $succeeded | $torn | $same of $tried |"
    done
done
exit $broken
