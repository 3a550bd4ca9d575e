//! The `lora` binary end to end on a tiny model and tiny data: train, eval, predict, merge,
//! determinism, resume, and the errors a user meets.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use std::path::Path;
use std::process::Command;

mod common;

use common::*;

#[test]
fn train_eval_predict_merge_end_to_end() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny_model(tmp.path());
    let data = tiny_data(tmp.path());
    let run = tmp.path().join("run");
    let (m, d, r) = (model.to_str().unwrap(), data.to_str().unwrap(), run.to_str().unwrap());

    ok(lora(&train_args(m, d, r, &[])));
    for f in [
        "adapter/adapter_config.json",
        "adapter/adapter_model.safetensors",
        "checkpoints/epoch-1/optimizer.safetensors",
        "checkpoints/epoch-2/trainer_state.json",
        "metrics.jsonl",
        "summary.json",
        "curves.svg",
        "config.toml",
    ] {
        assert!(run.join(f).is_file(), "{f}");
    }
    let summary: serde_json::Value = serde_json::from_slice(&read(&run.join("summary.json"))).unwrap();
    assert_eq!(summary["epochs"].as_array().unwrap().len(), 2);
    assert!(summary["final_eval_accuracy"].as_f64().unwrap() >= 0.0);
    assert!(summary["adapter_bytes"].as_u64().unwrap() > 0);
    assert_eq!(summary["config"]["training"]["num_train_epochs"], 2);
    let metrics = String::from_utf8(read(&run.join("metrics.jsonl"))).unwrap();
    assert_eq!(metrics.lines().filter(|l| l.contains("eval_accuracy")).count(), 2);
    assert_eq!(metrics.lines().filter(|l| l.contains("\"learning_rate\"")).count(), 4, "a line every 2 of 8 steps");
    assert!(String::from_utf8(read(&run.join("curves.svg"))).unwrap().starts_with("<svg"));

    // eval: printed and written as JSON.
    let adapter = run.join("adapter");
    let a = adapter.to_str().unwrap();
    let eval: serde_json::Value = serde_json::from_str(&ok(lora(&[
        "eval",
        "--model",
        m,
        "--adapter",
        a,
        "--data",
        d,
        "--eval-size",
        "8",
        "--max-length",
        "32",
    ])))
    .unwrap();
    assert_eq!(eval["eval_samples"], 8);
    assert!(run.join("eval_results.json").is_file());
    // The same 8 reviews as training's last evaluation, so the same numbers.
    assert!((eval["eval_loss"].as_f64().unwrap() - summary["final_eval_loss"].as_f64().unwrap()).abs() < 1e-5);

    // predict: one line per text, in input order, from --text or --input.
    let lines =
        ok(lora(&["predict", "--model", m, "--adapter", a, "--text", "the film was good", "--text", "a dull plot"]));
    let rows: Vec<serde_json::Value> = lines.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(rows.len(), 2);
    for row in &rows {
        let probs: Vec<f64> = row["probs"].as_array().unwrap().iter().map(|p| p.as_f64().unwrap()).collect();
        assert!((probs.iter().sum::<f64>() - 1.0).abs() < 1e-5);
        assert!(row["label_id"].as_u64().unwrap() < 2 && row["logits"].as_array().unwrap().len() == 2);
        // The class's name: the data's labels were the integers 0 and 1.
        assert_eq!(row["label"], row["label_id"].as_u64().unwrap().to_string());
    }
    let input = tmp.path().join("texts.jsonl");
    std::fs::write(&input, "{\"text\": \"the film was good\"}\n{\"text\": \"a dull plot\"}\n").unwrap();
    let out_file = tmp.path().join("predictions.jsonl");
    ok(lora(&[
        "predict",
        "--model",
        m,
        "--adapter",
        a,
        "--input",
        input.to_str().unwrap(),
        "--output",
        out_file.to_str().unwrap(),
    ]));
    assert_eq!(String::from_utf8(read(&out_file)).unwrap(), lines);
    // Padding each batch further (for a GPU's sake) changes no logit beyond float rounding.
    let text = ["predict", "--model", m, "--adapter", a, "--text", "the film was good", "--text", "a dull plot"];
    let padded = ok(lora(&[&text[..], &["--pad-to-multiple-of", "16"]].concat()));
    for (p, q) in padded.lines().zip(lines.lines()) {
        let logits = |l: &str| -> Vec<f64> {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["logits"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()
        };
        for (x, y) in logits(p).iter().zip(logits(q)) {
            assert!((x - y).abs() < 1e-5, "{x} vs {y}");
        }
    }
    let err = failure(lora(&[&text[..], &["--pad-to-multiple-of", "1000"]].concat()));
    assert!(err.contains("--pad-to-multiple-of 1000") && err.contains("positions"), "{err}");

    // --dtype bfloat16: the base linears in bf16 where the CPU has AVX512-BF16, close to
    // float32 but not equal to it; elsewhere float32, the same numbers, and one warning.
    let bf16 = lora(&[&text[..], &["--dtype", "bfloat16"]].concat());
    let stderr = String::from_utf8_lossy(&bf16.stderr).to_string();
    let in_bf16 = ok(bf16);
    let logits = |l: &str| -> Vec<f64> {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        v["logits"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()
    };
    let worst = in_bf16
        .lines()
        .zip(lines.lines())
        .flat_map(|(p, q)| logits(p).into_iter().zip(logits(q)).map(|(x, y)| (x - y).abs()))
        .fold(0.0f64, f64::max);
    if kernels::bf16::available() {
        assert!(worst > 0.0 && worst < 2e-2, "bf16 logits differ from float32's by up to {worst}");
        assert!(!stderr.contains("warning"), "{stderr}");
    } else {
        assert_eq!(worst, 0.0);
        assert!(stderr.contains("no AVX512-BF16") && stderr.contains("float32"), "{stderr}");
    }
    let err = failure(lora(&[&text[..], &["--dtype", "bf16"]].concat()));
    assert!(err.contains("bfloat16") && err.contains("float32"), "{err}");

    // merge: a plain Hugging Face model that predicts what the adapter did.
    let merged = tmp.path().join("merged");
    ok(lora(&["merge", "--model", m, "--adapter", a, "--output", merged.to_str().unwrap()]));
    for f in ["config.json", "model.safetensors", "vocab.txt"] {
        assert!(merged.join(f).is_file(), "{f}");
    }
    let plain = encoders::from_pretrained::<burn::backend::Flex>(
        merged.to_str().unwrap(),
        &encoders::LoadOptions::default(),
        &Default::default(),
    )
    .unwrap();
    assert!(plain.report.initialized.is_empty(), "the merged model has its classifier");
    let tokenizer = plain.tokenizer(512).unwrap();
    let encoded = tokenizer.encode_batch(&["the film was good", "a dull plot"]).unwrap();
    // Predict pads per length-sorted batch; compare one text at a time.
    for (enc, row) in encoded.iter().zip(&rows) {
        let logits = plain
            .model
            .forward(tokenizer.pad(&[enc]).to_input(&Default::default()))
            .into_data()
            .into_vec::<f32>()
            .unwrap();
        for (x, y) in logits.iter().zip(row["logits"].as_array().unwrap()) {
            assert!((*x as f64 - y.as_f64().unwrap()).abs() < 1e-5, "{logits:?} vs {row}");
        }
    }
}

#[test]
fn same_seed_same_run_and_resume_is_bit_exact() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny_model(tmp.path());
    let data = tiny_data(tmp.path());
    let (m, d) = (model.to_str().unwrap(), data.to_str().unwrap());
    // Dropout on, so that resuming must also restore the dropout draws.
    let dropout = ["--set", "model.hidden_dropout_prob=0.2"];
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    ok(lora(&train_args(m, d, a.to_str().unwrap(), &dropout)));
    ok(lora(&train_args(m, d, b.to_str().unwrap(), &dropout)));
    let epochs = |dir: &Path| {
        let s: serde_json::Value = serde_json::from_slice(&read(&dir.join("summary.json"))).unwrap();
        s["epochs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| (e["train_loss"].clone(), e["eval_loss"].clone(), e["eval_accuracy"].clone()))
            .collect::<Vec<_>>()
    };
    assert_eq!(epochs(&a), epochs(&b), "two runs with one seed give identical metrics");
    assert_eq!(read(&a.join("adapter/adapter_model.safetensors")), read(&b.join("adapter/adapter_model.safetensors")));

    // Stop `b` after its first epoch: keep only that checkpoint, then resume.
    for gone in ["checkpoints/epoch-2", "adapter"] {
        std::fs::remove_dir_all(b.join(gone)).unwrap();
    }
    std::fs::remove_file(b.join("summary.json")).unwrap();
    let refused = failure(lora(&train_args(m, d, b.to_str().unwrap(), &dropout)));
    assert!(refused.contains("already holds a run") && refused.contains("--resume"), "{refused}");
    ok(lora(&["train", "--resume", "--output-dir", b.to_str().unwrap(), "--quiet"]));
    assert_eq!(
        read(&a.join("adapter/adapter_model.safetensors")),
        read(&b.join("adapter/adapter_model.safetensors")),
        "resumed run ends bit for bit where the uninterrupted one did"
    );
    assert_eq!(epochs(&a), epochs(&b));
    let metrics = |dir: &Path| {
        String::from_utf8(read(&dir.join("metrics.jsonl"))).unwrap().lines().filter(|l| l.contains("\"loss\"")).count()
    };
    assert_eq!(metrics(&a), metrics(&b), "no log line lost or repeated");
}

/// `training.bf16 = true` on the CPU: the frozen base linears in bf16 where the CPU has
/// AVX512-BF16 (the run says so, its losses differ a little from float32's, the saved adapter
/// is f32 and loads for prediction); elsewhere a warning and float32's run, to the bit.
#[test]
fn bf16_training_on_the_cpu() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny_model(tmp.path());
    let data = tiny_data(tmp.path());
    let (m, d) = (model.to_str().unwrap(), data.to_str().unwrap());
    let (f32_run, bf16_run) = (tmp.path().join("f32"), tmp.path().join("bf16"));
    ok(lora(&train_args(m, d, f32_run.to_str().unwrap(), &[])));
    let args = train_args(m, d, bf16_run.to_str().unwrap(), &["--set", "training.bf16=true"]);
    let out = lora(&args.into_iter().filter(|a| *a != "--quiet").collect::<Vec<_>>());
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    ok(out);
    let loss = |run: &Path| json(&run.join("summary.json"))["final_eval_loss"].as_f64().unwrap();
    let (ours, theirs) = (loss(&bf16_run), loss(&f32_run));
    if kernels::bf16::available() {
        assert!(stderr.contains("bf16: the frozen base linears compute in bfloat16"), "{stderr}");
        assert!(ours != theirs && (ours - theirs).abs() < 0.05, "bf16 {ours} vs f32 {theirs}");
    } else {
        assert!(stderr.contains("training.bf16 = true") && stderr.contains("no AVX512-BF16"), "{stderr}");
        assert_eq!(ours, theirs);
    }
    let saved = std::fs::read(bf16_run.join("adapter/adapter_model.safetensors")).unwrap();
    let header_len = u64::from_le_bytes(saved[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&saved[8..8 + header_len]).unwrap();
    for (name, tensor) in header.as_object().unwrap().iter().filter(|(n, _)| *n != "__metadata__") {
        assert_eq!(tensor["dtype"], "F32", "{name}");
    }
    let adapter = bf16_run.join("adapter");
    ok(lora(&["predict", "--model", m, "--adapter", adapter.to_str().unwrap(), "--text", "the film was good"]));
}

#[test]
fn user_errors_are_one_clear_line() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny_model(tmp.path());
    let data = tiny_data(tmp.path());
    let (m, d) = (model.to_str().unwrap(), data.to_str().unwrap());
    let out = tmp.path().join("run");
    let o = out.to_str().unwrap();

    let err = failure(lora(&train_args(m, d, o, &["--set", "training.lerning_rate=1e-4"])));
    assert!(err.contains("lerning_rate") && err.contains("learning_rate"), "{err}");

    let err = failure(lora(&train_args(m, d, o, &["--set", "data.train_size=100"])));
    assert!(err.contains("train") && err.contains("50") && err.contains("20"), "{err}");

    let err = failure(lora(&train_args("no/such/model/dir", d, o, &[])));
    assert!(err.contains("no/such/model/dir"), "{err}");

    // A missing local copy of a Hub model or dataset names the Hub id to use instead.
    let err = failure(lora(&train_args("../nowhere/all-MiniLM-L6-v2", d, o, &[])));
    assert!(err.contains("model.name_or_path") && err.contains("sentence-transformers/all-MiniLM-L6-v2"), "{err}");
    let err = failure(lora(&train_args(m, "../nowhere/imdb", o, &[])));
    assert!(err.contains("data.source") && err.contains("stanfordnlp/imdb"), "{err}");

    let err = failure(lora(&train_args(m, d, o, &["--device", "cuda"])));
    assert!(err.contains("cuda"), "{err}");

    let err = failure(lora(&train_args(m, d, o, &["--no-fusion"])));
    assert!(err.contains("--no-fusion") && err.contains("cuda"), "{err}");

    // A loss that turns non-finite stops the run with a clear message and no final adapter.
    let err = failure(lora(&train_args(
        m,
        d,
        o,
        &["--overwrite", "--set", "training.learning_rate=1e30", "--set", "training.max_grad_norm=0"],
    )));
    assert!(err.contains("training loss became"), "{err}");
    assert!(!out.join("adapter").exists());
    assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
}

#[test]
fn ctrl_c_writes_a_checkpoint_that_resume_continues_bit_for_bit() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny_model(tmp.path());
    let data = tiny_data(tmp.path());
    let (m, d) = (model.to_str().unwrap(), data.to_str().unwrap());
    let long = ["--set", "training.num_train_epochs=150", "--set", "model.hidden_dropout_prob=0.2"];
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    ok(lora(&train_args(m, d, a.to_str().unwrap(), &long)));

    let child = Command::new(env!("CARGO_BIN_EXE_lora"))
        .args(train_args(m, d, b.to_str().unwrap(), &long))
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while !b.join("checkpoints/epoch-2").exists() {
        assert!(started.elapsed().as_secs() < 60, "no checkpoint appeared");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let interrupted = Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap();
    assert!(interrupted.success());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the run ended before Ctrl-C arrived");
    assert!(stderr.contains("interrupted: wrote") && stderr.contains("--resume"), "{stderr}");
    assert!(!b.join("adapter").exists());
    ok(lora(&["train", "--resume", "--output-dir", b.to_str().unwrap(), "--quiet"]));
    assert_eq!(read(&a.join("adapter/adapter_model.safetensors")), read(&b.join("adapter/adapter_model.safetensors")));
}

#[test]
fn bench_reports_both_rows_as_json() {
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/../encoders/tests/fixtures/tiny-bert/config.json");
    let out = ok(lora(&[
        "bench",
        "--model-config",
        config,
        "--batch-size",
        "2",
        "--seq-len",
        "8",
        "--warmup",
        "1",
        "--repeats",
        "2",
        "--json",
    ]));
    let rows: Vec<serde_json::Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(rows.iter().map(|r| r["row"].as_str().unwrap()).collect::<Vec<_>>(), ["train_step", "eval_forward"]);
    for r in &rows {
        assert_eq!(r["repeats"], 2);
        assert!(r["median_seconds"].as_f64().unwrap() > 0.0 && r["tokens_per_second"].as_f64().unwrap() > 0.0);
    }
    // The evaluation forward in bf16 says so (or, on a CPU without bf16 products, float32);
    // --bf16 makes the training step bf16 too.
    let args = ["bench", "--model-config", config, "--batch-size", "2", "--seq-len", "8", "--warmup", "0"];
    let out = ok(lora(&[&args[..], &["--repeats", "1", "--dtype", "bfloat16", "--json"]].concat()));
    let dtypes = |out: &str| -> Vec<String> {
        out.lines().map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["dtype"].to_string()).collect()
    };
    let bf16 = if kernels::bf16::available() { "\"bfloat16\"" } else { "\"float32\"" };
    assert_eq!(dtypes(&out), ["\"float32\"", bf16]);
    let out = ok(lora(&[&args[..], &["--repeats", "1", "--bf16", "--json"]].concat()));
    assert_eq!(dtypes(&out), [bf16, bf16]);
    let err = failure(lora(&["bench", "--model-config", config, "--seq-len", "100"]));
    assert!(err.contains("max_position_embeddings"), "{err}");
}

/// Real batches: consecutive reviews of a file, padded per batch; rows say the mean padded length.
#[test]
fn bench_times_a_length_mix() {
    let dir = tempfile::tempdir().unwrap();
    let (model, data) = (tiny_model(dir.path()), tiny_data(dir.path()));
    let config = model.join("config.json");
    let reviews = data.join("train.jsonl");
    let args = |reviews: &Path| {
        let list = ["bench", "--model-config", config.to_str().unwrap(), "--length-mix", reviews.to_str().unwrap()];
        let mut list: Vec<String> = list.iter().map(|s| s.to_string()).collect();
        list.extend(["--batch-size", "4", "--warmup", "1", "--repeats", "3", "--json"].map(String::from));
        list
    };
    let run = |reviews: &Path| lora(&args(reviews).iter().map(String::as_str).collect::<Vec<_>>());
    let out = ok(run(&reviews));
    let rows: Vec<serde_json::Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(rows.iter().map(|r| r["row"].as_str().unwrap()).collect::<Vec<_>>(), ["train_mix", "eval_mix"]);
    for r in &rows {
        assert_eq!(r["repeats"], 3);
        // "[CLS] the film was W , a W plot wN . [SEP]": 12 tokens, vocab.txt beside the config.
        assert_eq!(r["seq_len"], 12, "{r}");
        assert!(r["total_seconds"].as_f64().unwrap() >= r["median_seconds"].as_f64().unwrap());
    }
    // Padded to a multiple of 16, as data.pad_to_multiple_of pads training batches.
    let mut padded = args(&reviews);
    padded.extend(["--pad-to-multiple-of", "16"].map(String::from));
    let out = ok(lora(&padded.iter().map(String::as_str).collect::<Vec<_>>()));
    for line in out.lines() {
        let r: serde_json::Value = serde_json::from_str(line).unwrap();
        assert_eq!(r["seq_len"], 16, "{r}");
    }
    let err = failure(run(&dir.path().join("missing.jsonl")));
    assert!(err.contains("missing.jsonl"), "{err}");
}

fn json(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&read(path)).unwrap()
}

fn checkpoint_names(run: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(run.join("checkpoints"))
        .map(|entries| entries.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    names.sort();
    names
}

/// Trainer's step-wise strategies end to end: evaluation and checkpoints every 2 steps, a
/// rotation that keeps 2 (never the best), early stopping (a threshold no change can beat, so
/// that it stops at the third evaluation), and `load_best_model_at_end`: `adapter/` is the best
/// checkpoint's, and `summary.json` says which. A run cut after its best checkpoint and resumed
/// ends the same, rotation and patience included.
#[test]
fn step_strategies_best_model_and_early_stopping() {
    let tmp = tempfile::tempdir().unwrap();
    let (model, data) = (tiny_model(tmp.path()), tiny_data(tmp.path()));
    let (m, d) = (model.to_str().unwrap(), data.to_str().unwrap());
    let settings = [
        "--set",
        "training.num_train_epochs=5",
        "--set",
        "training.eval_strategy=\"steps\"",
        "--set",
        "training.eval_steps=2",
        "--set",
        "training.save_strategy=\"steps\"",
        "--set",
        "training.save_steps=2",
        "--set",
        "training.save_total_limit=2",
        "--set",
        "training.load_best_model_at_end=true",
        "--set",
        "training.metric_for_best_model=\"loss\"",
        "--set",
        "training.early_stopping_patience=2",
        "--set",
        "training.early_stopping_threshold=100.0",
        "--set",
        "model.hidden_dropout_prob=0.2",
    ];
    let a = tmp.path().join("a");
    ok(lora(&train_args(m, d, a.to_str().unwrap(), &settings)));
    let summary = json(&a.join("summary.json"));
    // 16 examples in batches of 4: 4 steps an epoch; evaluations at 2, 4, 6; the first sets the
    // best, the next two do not beat it by 100, so patience 2 runs out at step 6.
    assert_eq!(summary["stopped_early_at_step"], 6, "{summary:#}");
    assert_eq!(summary["global_step"], 6);
    let evaluations = summary["evaluations"].as_array().unwrap();
    let steps: Vec<u64> = evaluations.iter().map(|e| e["step"].as_u64().unwrap()).collect();
    assert_eq!(steps, [2, 4, 6]);
    let losses: Vec<f64> = evaluations.iter().map(|e| e["eval_loss"].as_f64().unwrap()).collect();
    let best = (0..3).fold(0, |b, i| if losses[i] < losses[b] { i } else { b });
    let best_step = steps[best];
    assert_eq!(summary["best_global_step"], best_step);
    assert_eq!(summary["best_metric"].as_f64().unwrap(), losses[best]);
    assert_eq!(summary["best_model_checkpoint"], format!("step-{best_step}"));
    assert_eq!(summary["loaded_best_model_at_end"], true);
    assert_eq!(
        read(&a.join("adapter/adapter_model.safetensors")),
        read(&a.join(format!("checkpoints/step-{best_step}/adapter_model.safetensors"))),
        "adapter/ is the best checkpoint's"
    );
    // Two kept: the newest and the best (the best is never rotated out).
    let kept = if best_step == 6 {
        vec!["step-4".to_string(), "step-6".into()]
    } else {
        vec![format!("step-{best_step}"), "step-6".into()]
    };
    assert_eq!(checkpoint_names(&a), kept);
    let evals = std::fs::read_to_string(a.join("metrics.jsonl")).unwrap();
    assert_eq!(evals.lines().filter(|l| l.contains("\"eval_loss\"") && !l.contains("train_loss")).count(), 3);

    // A run cut after an earlier checkpoint (the newest gone, as if killed), resumed: the same end.
    let c = tmp.path().join("c");
    ok(lora(&train_args(m, d, c.to_str().unwrap(), &settings)));
    std::fs::remove_file(c.join("summary.json")).unwrap();
    std::fs::remove_dir_all(c.join("adapter")).unwrap();
    // The older of the two kept (the best, or step 4 when the best is the last): what
    // follows it re-runs evaluations, rotation and patience from its state.
    let names = checkpoint_names(&c);
    assert_eq!(names.len(), 2);
    std::fs::remove_dir_all(c.join("checkpoints").join(&names[1])).unwrap();
    ok(lora(&["train", "--resume", "--output-dir", c.to_str().unwrap(), "--quiet"]));
    let resumed = json(&c.join("summary.json"));
    for key in
        ["evaluations", "best_global_step", "best_metric", "best_model_checkpoint", "stopped_early_at_step", "epochs"]
    {
        let strip = |v: &serde_json::Value| -> serde_json::Value {
            let mut v = v.clone();
            for e in v.as_array_mut().into_iter().flatten() {
                if let Some(o) = e.as_object_mut() {
                    o.remove("eval_seconds");
                    o.remove("train_seconds");
                }
            }
            v
        };
        assert_eq!(strip(&resumed[key]), strip(&summary[key]), "{key}");
    }
    assert_eq!(read(&a.join("adapter/adapter_model.safetensors")), read(&c.join("adapter/adapter_model.safetensors")));
    assert_eq!(checkpoint_names(&c), checkpoint_names(&a));
}

/// `max_steps` overrides the epochs (the last one cut), accumulation counts optimizer steps,
/// `logging_first_step` logs step 1, `save_strategy = "no"` leaves no checkpoint, and each
/// refusal Trainer makes is one clear line.
#[test]
fn max_steps_accumulation_and_refusals() {
    let tmp = tempfile::tempdir().unwrap();
    let (model, data) = (tiny_model(tmp.path()), tiny_data(tmp.path()));
    let (m, d) = (model.to_str().unwrap(), data.to_str().unwrap());
    let run = tmp.path().join("run");
    let o = run.to_str().unwrap();
    let settings = [
        "--set",
        "training.max_steps=5",
        "--set",
        "training.gradient_accumulation_steps=2",
        "--set",
        "training.logging_first_step=true",
        "--set",
        "training.save_strategy=\"no\"",
        "--set",
        "training.lr_scheduler_type=\"cosine\"",
    ];
    ok(lora(&train_args(m, d, o, &settings)));
    let summary = json(&run.join("summary.json"));
    // 4 batches an epoch, 2 a step: 2 steps an epoch, 3 epochs to reach step 5 (the last cut).
    assert_eq!(summary["global_step"], 5);
    let epochs: Vec<u64> = summary["epochs"].as_array().unwrap().iter().map(|e| e["epoch"].as_u64().unwrap()).collect();
    assert_eq!(epochs, [1, 2, 3]);
    let steps: Vec<u64> =
        summary["evaluations"].as_array().unwrap().iter().map(|e| e["step"].as_u64().unwrap()).collect();
    assert_eq!(steps, [2, 4, 5], "evaluated at each epoch's end, the cut one included");
    let logged: Vec<u64> = std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v.get("loss").is_some())
        .map(|v| v["step"].as_u64().unwrap())
        .collect();
    assert_eq!(logged, [1, 2, 4], "logging_first_step, then every logging_steps");
    assert_eq!(checkpoint_names(&run), Vec::<String>::new(), "save_strategy = \"no\"");

    let refusals: [(&[&str], &[&str]); 7] = [
        (&["training.lr_scheduler_type=\"cosine_annealing\""], &["cosine_annealing", "warmup_stable_decay"]),
        (&["training.eval_steps=5"], &["eval_steps", "eval_strategy = \"steps\""]),
        (
            &["training.load_best_model_at_end=true", "training.eval_strategy=\"no\""],
            &["load_best_model_at_end", "eval_strategy"],
        ),
        (
            &["training.load_best_model_at_end=true", "training.save_strategy=\"steps\""],
            &["save and eval strategy to match"],
        ),
        (&["training.early_stopping_patience=3"], &["early_stopping_patience", "load_best_model_at_end"]),
        (&["training.save_strategy=\"best\""], &["metric_for_best_model"]),
        (&["training.lr_scheduler_type=\"cosine_with_min_lr\""], &["min_lr_rate"]),
    ];
    for (sets, said) in refusals {
        let mut args = train_args(m, d, o, &["--overwrite"]);
        for set in sets {
            args.extend(["--set", set]);
        }
        let err = failure(lora(&args));
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
        for word in said {
            assert!(err.contains(word), "{sets:?}: {err}");
        }
    }
}

/// PEFT's variants from the config (DoRA, PiSSA, `all-linear`, LoRA+) with TensorBoard: the
/// adapter carries DoRA's magnitudes under PEFT's names; `lora eval` on it (which recomputes the
/// PiSSA residual from the base) gives the run's last evaluation; a resume from an earlier
/// checkpoint ends bit for bit where the whole run did; the event file holds every number of
/// every log line under Trainer's tags; and a misspelt variant is one clear line.
#[test]
fn peft_variants_and_tensorboard_from_the_config() {
    use tfrecord::protobuf::{Event, event::What, summary::value::Value as SummaryValue};
    let tmp = tempfile::tempdir().unwrap();
    let (model, data) = (tiny_model(tmp.path()), tiny_data(tmp.path()));
    let (m, d) = (model.to_str().unwrap(), data.to_str().unwrap());
    let settings = [
        "--set",
        "lora.use_dora=true",
        "--set",
        "lora.init_lora_weights=\"pissa\"",
        "--set",
        "lora.target_modules=\"all-linear\"",
        "--set",
        "training.loraplus_lr_ratio=16.0",
        "--set",
        "training.report_to=\"tensorboard\"",
    ];
    let run = tmp.path().join("run");
    let r = run.to_str().unwrap();
    ok(lora(&train_args(m, d, r, &settings)));
    let bytes = read(&run.join("adapter/adapter_model.safetensors"));
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let names: Vec<String> = file.names().into_iter().map(str::to_string).collect();
    let adapted: Vec<&String> = names.iter().filter(|n| n.ends_with(".lora_A.weight")).collect();
    assert_eq!(adapted.len(), 13, "all-linear on the tiny BERT: 6 linears a layer and the pooler");
    for a in &adapted {
        let m = a.replace(".lora_A.weight", ".lora_magnitude_vector");
        assert_eq!(file.tensor(&m).unwrap().shape().len(), 1, "{m}");
    }
    let config = json(&run.join("adapter/adapter_config.json"));
    assert_eq!((config["use_dora"].as_bool(), config["init_lora_weights"].as_str()), (Some(true), Some("pissa")));
    let summary = json(&run.join("summary.json"));
    let eval: serde_json::Value = serde_json::from_str(&ok(lora(&[
        "eval",
        "--model",
        m,
        "--adapter",
        &format!("{r}/adapter"),
        "--data",
        d,
        "--eval-size",
        "8",
        "--max-length",
        "32",
    ])))
    .unwrap();
    let (ours, run_loss) = (eval["eval_loss"].as_f64().unwrap(), summary["final_eval_loss"].as_f64().unwrap());
    assert!((ours - run_loss).abs() < 1e-5, "eval {ours} vs the run's {run_loss}");

    // Resumed from epoch 1's checkpoint: the same adapter, to the bit.
    let c = tmp.path().join("c");
    ok(lora(&train_args(m, d, c.to_str().unwrap(), &settings)));
    std::fs::remove_file(c.join("summary.json")).unwrap();
    std::fs::remove_dir_all(c.join("adapter")).unwrap();
    std::fs::remove_dir_all(c.join("checkpoints/epoch-2")).unwrap();
    ok(lora(&["train", "--resume", "--output-dir", c.to_str().unwrap(), "--quiet"]));
    assert_eq!(read(&c.join("adapter/adapter_model.safetensors")), bytes);

    // TensorBoard: every number of every line of metrics.jsonl, at its step, under Trainer's tag.
    let events: Vec<std::path::PathBuf> =
        std::fs::read_dir(run.join("runs")).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(events.len(), 1, "{events:?}");
    assert!(events[0].file_name().unwrap().to_string_lossy().starts_with("events.out.tfevents."));
    let mut seen = std::collections::BTreeMap::new();
    let reader = tfrecord::RecordIter::<Event, _>::open(&events[0], Default::default()).unwrap();
    for (i, event) in reader.enumerate() {
        let event = event.unwrap();
        match event.what {
            Some(What::FileVersion(v)) => assert_eq!((i, v.as_str()), (0, "brain.Event:2")),
            Some(What::Summary(s)) => {
                for v in s.value {
                    let Some(SummaryValue::SimpleValue(x)) = v.value else { panic!("{}: not a scalar", v.tag) };
                    seen.insert((v.tag, event.step), x);
                }
            }
            other => panic!("unexpected event {other:?}"),
        }
    }
    let mut expected = std::collections::BTreeMap::new();
    for line in std::fs::read_to_string(run.join("metrics.jsonl")).unwrap().lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let step = v["step"].as_i64().unwrap();
        for (k, x) in v.as_object().unwrap() {
            if let (Some(x), false) = (x.as_f64(), k == "step") {
                expected.insert((lora_cli::tensorboard::tag(k), step), x as f32);
            }
        }
    }
    assert_eq!(seen, expected);
    for tag in ["train/loss", "train/learning_rate", "train/grad_norm", "eval/loss", "eval/accuracy"] {
        assert!(seen.keys().any(|(t, _)| t == tag), "no {tag}");
    }
    let svg = String::from_utf8(read(&run.join("curves.svg"))).unwrap();
    assert!(svg.contains("learning rate") && svg.contains("eval accuracy"));

    for (set, said) in [
        ("lora.init_lora_weights=\"loftq\"", "\"loftq\" is not supported"),
        ("training.report_to=\"wandb\"", "only \"tensorboard\""),
        ("training.loraplus_lr_ratio=0.0", "loraplus_lr_ratio"),
    ] {
        let err = failure(lora(&train_args(m, d, r, &["--overwrite", "--set", set])));
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
        assert!(err.contains(said), "{set}: {err}");
    }
}
