//! The GPU code path, proven without a GPU: the `wgpu` build on whatever adapter this machine has
//! (in CI, Mesa's lavapipe: a Vulkan driver that runs on the CPU). Burn's CubeCL pipeline runs
//! here as on CUDA (fusion, autotune, run-time kernels, the kernel cache, device transfers, the
//! optimizer on device tensors, reads back to the host): training, evaluation, prediction and
//! serving must give the CPU's numbers within 1e-4, and a second process on the same kernel
//! cache must compile no kernel.
//!
//! Built only with `--features wgpu` (`.ci/run` runs it). Without an adapter the tests fail in
//! CI and say why they skip elsewhere, as the asset tests do.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::server::Server;
use common::{read, tiny_data, tiny_model};
use encoders::testing::within;
use serde_json::{Value, json};

/// Losses, gradient norms, logits and metrics: wgpu against the CPU.
const BOUND: f64 = 1e-4;

/// The kernel cache the tests share (kept between runs in the target directory, as a user's
/// is kept in ~/.cache): only the cold-start test starts from an empty one.
fn shared_cache() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("wgpu-kernels")
}

/// `lora ARGS` with `LORA_KERNEL_CACHE=cache`.
fn lora_in(cache: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_lora")).args(args).env("LORA_KERNEL_CACHE", cache).output().unwrap()
}

/// The output of a command that must succeed; `None` where it failed for want of a wgpu adapter
/// outside CI (skipped, said on stderr). In CI a missing adapter fails the test.
fn succeeded(output: Output, what: &str) -> Option<Output> {
    let stderr = String::from_utf8_lossy(&output.stderr).to_string();
    if !output.status.success() && stderr.contains("adapter found") && std::env::var_os("CI").is_none() {
        eprintln!("skipped: {what}: no wgpu adapter here ({}); .ci/run installs Mesa's lavapipe", stderr.trim());
        return None;
    }
    assert!(output.status.success(), "{what} failed: {stderr}");
    assert!(!stderr.contains("panicked"), "{what}: {stderr}");
    Some(output)
}

/// A training run of tiny-bert (hidden 32, 2 layers, 4 heads) on `device`: the CLI tests' run
/// (batch 4, lr 1e-2) with texts up to 16 tokens, a log line every step and an evaluation after
/// each epoch; `extra` says how much data and how many epochs.
fn train_args<'a>(model: &'a str, data: &'a str, out: &'a str, device: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut more = vec![
        "--device",
        device,
        "--set",
        "data.max_length=16",
        "--set",
        "training.per_device_eval_batch_size=4",
        "--set",
        "training.logging_steps=1",
        "--set",
        "training.eval_strategy=\"epoch\"",
    ];
    more.extend_from_slice(extra);
    common::train_args(model, data, out, &more)
}

/// `loss` and `grad_norm` of each logged step, and the evaluations, of a run's metrics.jsonl.
fn history(run: &Path) -> (Vec<(f64, f64)>, Vec<Value>) {
    let text = String::from_utf8(read(&run.join("metrics.jsonl"))).unwrap();
    let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let steps = lines
        .iter()
        .filter(|l| l.get("loss").is_some())
        .map(|l| (l["loss"].as_f64().unwrap(), l["grad_norm"].as_f64().unwrap()))
        .collect();
    let evals = lines.iter().filter(|l| l.get("eval_loss").is_some()).cloned().collect();
    (steps, evals)
}

/// `|wgpu - cpu|` within [`BOUND`] (reported as every bound is: docs/testing.md).
fn close(what: &str, wgpu: f64, cpu: f64) {
    within(&format!("wgpu vs cpu: {what}"), (wgpu - cpu).abs(), BOUND);
}

/// Each tensor's name and shape in an adapter's safetensors.
fn shapes(adapter: &Path) -> BTreeMap<String, Vec<usize>> {
    let bytes = read(&adapter.join("adapter_model.safetensors"));
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    file.tensors().into_iter().map(|(name, view)| (name, view.shape().to_vec())).collect()
}

/// The logits `lora predict` gives each text, one row a text.
fn logits(stdout: &[u8]) -> Vec<Vec<f64>> {
    let text = std::str::from_utf8(stdout).unwrap();
    let rows = text.lines().map(|l| serde_json::from_str::<Value>(l).unwrap());
    rows.map(|r| r["logits"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()).collect()
}

/// The largest difference over rows of equal shapes, within [`BOUND`].
fn close_rows(what: &str, wgpu: &[Vec<f64>], cpu: &[Vec<f64>]) {
    assert_eq!(wgpu.len(), cpu.len(), "{what}: rows");
    let mut worst = 0.0f64;
    for (i, (x, y)) in wgpu.iter().zip(cpu).enumerate() {
        assert_eq!(x.len(), y.len(), "{what}: row {i}");
        for (p, q) in x.iter().zip(y) {
            let d = (p - q).abs();
            worst = worst.max(if d.is_nan() { f64::INFINITY } else { d });
        }
    }
    within(&format!("wgpu vs cpu: {what}"), worst, BOUND);
}

const TEXTS: [&str; 3] = ["the film was good , a superb plot", "a dull plot", "the film was awful w33 w70 w21 ."];

fn predict_args<'a>(model: &'a str, adapter: &'a str, device: &'a str) -> Vec<&'a str> {
    let mut args = vec!["predict", "--model", model, "--adapter", adapter, "--device", device, "--batch-size", "2"];
    for text in TEXTS {
        args.extend(["--text", text]);
    }
    args
}

/// Dropout off: the same run on wgpu and on the CPU, step by step, then what each adapter
/// predicts and evaluates to on either device.
#[test]
fn training_evaluation_and_prediction_on_wgpu_match_the_cpu() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = shared_cache();
    let model = tiny_model(tmp.path());
    let data = tiny_data(tmp.path());
    let (m, d) = (model.to_str().unwrap(), data.to_str().unwrap());
    let no_dropout = [
        "--set",
        "model.hidden_dropout_prob=0.0",
        "--set",
        "model.attention_probs_dropout_prob=0.0",
        "--set",
        "data.train_size=16",
        "--set",
        "training.num_train_epochs=1",
    ];
    let runs = [tmp.path().join("wgpu"), tmp.path().join("cpu")];
    let [on_gpu, on_cpu] = [runs[0].to_str().unwrap(), runs[1].to_str().unwrap()];
    let Some(_) = succeeded(lora_in(&cache, &train_args(m, d, on_gpu, "wgpu", &no_dropout)), "train on wgpu") else {
        return;
    };
    succeeded(lora_in(&cache, &train_args(m, d, on_cpu, "cpu", &no_dropout)), "train on the cpu").unwrap();

    let (gpu_steps, gpu_evals) = history(&runs[0]);
    let (cpu_steps, cpu_evals) = history(&runs[1]);
    assert_eq!(gpu_steps.len(), 4, "16 examples in batches of 4, a line a step");
    assert_eq!(gpu_steps.len(), cpu_steps.len());
    let losses = |steps: &[(f64, f64)]| steps.iter().map(|s| vec![s.0]).collect::<Vec<_>>();
    let norms = |steps: &[(f64, f64)]| steps.iter().map(|s| vec![s.1]).collect::<Vec<_>>();
    close_rows("training losses, 4 steps", &losses(&gpu_steps), &losses(&cpu_steps));
    close_rows("gradient norms, 4 steps", &norms(&gpu_steps), &norms(&cpu_steps));
    assert_eq!(gpu_evals.len(), 1);
    close("eval_loss", gpu_evals[0]["eval_loss"].as_f64().unwrap(), cpu_evals[0]["eval_loss"].as_f64().unwrap());
    assert_eq!(gpu_evals[0]["eval_accuracy"], cpu_evals[0]["eval_accuracy"]);

    let adapters = [runs[0].join("adapter"), runs[1].join("adapter")];
    assert_eq!(shapes(&adapters[0]), shapes(&adapters[1]), "the same tensors, the same shapes");
    let [a_gpu, a_cpu] = [adapters[0].to_str().unwrap(), adapters[1].to_str().unwrap()];

    // The wgpu-trained adapter on the CPU, and the CPU-trained one on either device.
    let predict = |adapter: &str, device: &str| {
        let output = lora_in(&cache, &predict_args(m, adapter, device));
        logits(&succeeded(output, &format!("predict on {device}")).unwrap().stdout)
    };
    let reference = predict(a_cpu, "cpu");
    close_rows("the wgpu-trained adapter, predicted on the cpu", &predict(a_gpu, "cpu"), &reference);
    close_rows("predict on wgpu", &predict(a_cpu, "wgpu"), &reference);

    let evaluate = |device: &str| -> Value {
        let args = ["eval", "--model", m, "--adapter", a_cpu, "--data", d, "--eval-size", "12", "--max-length", "16"];
        let output = lora_in(&cache, &[&args[..], &["--device", device, "--batch-size", "5"]].concat());
        serde_json::from_slice(&succeeded(output, &format!("eval on {device}")).unwrap().stdout).unwrap()
    };
    let (gpu, cpu) = (evaluate("wgpu"), evaluate("cpu"));
    close("eval loss", gpu["eval_loss"].as_f64().unwrap(), cpu["eval_loss"].as_f64().unwrap());
    assert_eq!(gpu["eval_accuracy"], cpu["eval_accuracy"], "{gpu}\n{cpu}");
}

/// How many kernels a run says it compiled (its last report line on stderr).
fn kernels_compiled(output: &Output) -> usize {
    let stderr = String::from_utf8_lossy(&output.stderr);
    let line = stderr.lines().rfind(|l| l.starts_with("wgpu kernels compiled by this run: "));
    let line = line.unwrap_or_else(|| panic!("no kernel count in: {stderr}"));
    line["wgpu kernels compiled by this run: ".len()..].split_whitespace().next().unwrap().parse().unwrap()
}

/// Dropout on: a run on wgpu is the same run again from the same seed, and learns. The first run
/// starts from an empty kernel cache; the second, a new process on that cache, compiles nothing.
#[test]
fn dropout_on_wgpu_is_reproducible_learns_and_a_second_process_compiles_no_kernel() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("kernels");
    let model = tiny_model(tmp.path());
    let data = tiny_data(tmp.path());
    let (m, d) = (model.to_str().unwrap(), data.to_str().unwrap());
    let extra = ["--set", "data.train_size=32", "--set", "training.num_train_epochs=3"];
    let runs = [tmp.path().join("first"), tmp.path().join("second")];
    let mut outputs = Vec::new();
    for run in &runs {
        let args = train_args(m, d, run.to_str().unwrap(), "wgpu", &extra);
        let Some(output) = succeeded(lora_in(&cache, &args), "train on wgpu with dropout") else { return };
        outputs.push(output);
    }
    let (first, first_evals) = history(&runs[0]);
    let (second, _) = history(&runs[1]);
    assert_eq!(first.len(), 24, "32 examples in batches of 4, 3 epochs");
    assert_eq!(first, second, "the same seed, the same dropout masks, the same losses");

    // It learns: the last epoch's training loss and the evaluation loss fall.
    let mean = |steps: &[(f64, f64)]| steps.iter().map(|s| s.0).sum::<f64>() / steps.len() as f64;
    assert!(mean(&first[16..]) < mean(&first[..8]), "losses {first:?}");
    let eval_loss = |i: usize| first_evals[i]["eval_loss"].as_f64().unwrap();
    assert!(eval_loss(2) < eval_loss(0), "evaluations {first_evals:?}");

    let (cold, warm) = (kernels_compiled(&outputs[0]), kernels_compiled(&outputs[1]));
    eprintln!("kernels compiled: {cold} by the first process, {warm} by the second");
    assert!(cold > 0, "the first run compiles its kernels");
    assert_eq!(warm, 0, "the second process reads every kernel from the cache");
}

/// `lora serve --device wgpu` answers requests for two adapters, sent at once so that they share
/// batches, as the CPU server does.
#[test]
fn serving_on_wgpu_matches_the_cpu_server_in_mixed_adapter_batches() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = shared_cache();
    let model = tiny_model(tmp.path());
    let data = tiny_data(tmp.path());
    let (m, d) = (model.to_str().unwrap(), data.to_str().unwrap());
    let mut adapters = Vec::new();
    for (name, seed) in [("one", "1"), ("two", "2")] {
        let run = tmp.path().join(name);
        let seed = format!("training.seed={seed}");
        let extra = ["--set", "data.train_size=8", "--set", "training.num_train_epochs=1", "--set", &seed];
        succeeded(lora_in(&cache, &train_args(m, d, run.to_str().unwrap(), "cpu", &extra)), "train").unwrap();
        adapters.push(format!("{name}={}", run.join("adapter").display()));
    }
    let answers = |device: &str| -> Option<Vec<Value>> {
        let args = ["--device", device, "--adapter", &adapters[0], "--adapter", &adapters[1], "--max-wait-ms", "50"];
        let env = [("LORA_KERNEL_CACHE", cache.to_str().unwrap())];
        let server = match std::panic::catch_unwind(|| Server::start_with(&model, &args, &env)) {
            Ok(server) => server,
            Err(_) if device == "wgpu" && std::env::var_os("CI").is_none() => {
                eprintln!("skipped: lora serve --device wgpu did not start (no wgpu adapter here?)");
                return None;
            }
            Err(panic) => std::panic::resume_unwind(panic),
        };
        // Warm-up: the first batch compiles the server's kernels.
        let (status, _) = server.predict(json!({"inputs": TEXTS[0], "adapter_id": "one"}));
        assert_eq!(status, 200, "{}", server.log());
        let requests: Vec<Value> = (0..6)
            .map(|i| {
                let adapter = ["one", "two"][i % 2];
                // TEI's batch of two single texts (two strings alone would be one pair).
                json!({"inputs": [[TEXTS[i % 3]], [TEXTS[(i + 1) % 3]]], "adapter_id": adapter, "raw_scores": true})
            })
            .collect();
        let answers = std::thread::scope(|s| {
            let handles: Vec<_> = requests.iter().map(|r| s.spawn(|| server.predict(r.clone()))).collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect::<Vec<_>>()
        });
        Some(
            answers
                .into_iter()
                .map(|(status, body)| {
                    assert_eq!(status, 200, "{body}");
                    body
                })
                .collect(),
        )
    };
    let Some(gpu) = answers("wgpu") else { return };
    let cpu = answers("cpu").unwrap();
    for (i, (g, c)) in gpu.iter().zip(&cpu).enumerate() {
        let scores = |answer: &Value| -> Vec<Vec<f64>> {
            let inputs = answer.as_array().unwrap();
            let by_label = |input: &Value| {
                let mut pairs: Vec<(String, f64)> = input
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|p| (p["label"].as_str().unwrap().to_string(), p["score"].as_f64().unwrap()))
                    .collect();
                pairs.sort_by(|a, b| a.0.cmp(&b.0));
                pairs.into_iter().map(|p| p.1).collect::<Vec<f64>>()
            };
            inputs.iter().map(by_label).collect()
        };
        close_rows(&format!("request {i}"), &scores(g), &scores(c));
    }
}

/// An adapter that is not there is one error naming what was looked for and what was found,
/// never Burn's panic: an index past the list, and no driver at all.
#[test]
fn a_missing_adapter_is_one_clear_error() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny_model(tmp.path());
    let m = model.to_str().unwrap();
    let args = ["bench", "--model-config", "", "--device", "wgpu:9", "--repeats", "1"];
    let config = model.join("config.json");
    let args: Vec<&str> = args.iter().map(|a| if a.is_empty() { config.to_str().unwrap() } else { a }).collect();
    let output = lora_in(&shared_cache(), &args);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success() && !stderr.contains("panicked"), "{stderr}");
    assert!(
        stderr.contains("--device wgpu:9: there is only 1 ")
            || stderr.contains("--device wgpu:9: there are ")
            || stderr.contains("adapter found"),
        "names the index and the adapters found: {stderr}"
    );

    // No Vulkan driver at all (the loader pointed at none).
    let output = Command::new(env!("CARGO_BIN_EXE_lora"))
        .args(["predict", "--model", m, "--adapter", m, "--device", "wgpu", "--text", "a"])
        .env("VK_ICD_FILENAMES", tmp.path().join("none.json"))
        .env("VK_DRIVER_FILES", tmp.path().join("none.json"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success() && !stderr.contains("panicked"), "{stderr}");
    assert!(stderr.contains("adapter found for --device wgpu"), "{stderr}");
}
