//! `lora serve` over HTTP on the loopback interface, with a real client (ureq): answers equal
//! `lora predict`'s for every adapter in mixed-adapter batches from concurrent clients; each bad
//! request is a 4xx with TEI's JSON error and the server goes on; adapters load and unload
//! under load; past `--max-concurrent-requests` a 429; SIGTERM answers what is in flight and
//! exits 0. Every loop is bounded.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use common::adapters::{generated_adapter, yes_no};
use common::server::Server;
use common::{lora, ok, tiny_data, tiny_model, train_args};
use serde_json::{Value, json};

/// A trained 2-class adapter, and generated ones: 3 named classes (rank 4 on query/key/value),
/// a regression and a 3-class multi-label adapter.
fn adapters(tmp: &Path, model: &Path) -> Vec<(&'static str, PathBuf)> {
    let data = tiny_data(tmp);
    let out = tmp.join("run");
    ok(lora(&train_args(model.to_str().unwrap(), data.to_str().unwrap(), out.to_str().unwrap(), &[])));
    vec![
        ("sentiment", out.join("adapter")),
        (
            "topic",
            generated_adapter(
                &tmp.join("topic"),
                4,
                &["query", "key", "value"],
                "single_label_classification",
                &["sport", "music", "news"],
                1,
            ),
        ),
        ("rating", generated_adapter(&tmp.join("rating"), 8, &["value"], "regression", &["LABEL_0"], 2)),
        (
            "tags",
            generated_adapter(&tmp.join("tags"), 2, &["query"], "multi_label_classification", &["a", "b", "c"], 3),
        ),
    ]
}

const TEXTS: [&str; 6] = [
    "the film was good , a great plot .",
    "the film was awful",
    "a dull , boring , poor plot . the film was bad , a lovely w40 w41 w42 plot",
    "great",
    "the plot was fine , the film superb . w90 w91",
    "",
];

/// `lora predict`'s logits for each text with `adapter` alone.
fn predicted(model: &Path, adapter: &Path) -> Vec<Vec<f32>> {
    let mut args = vec!["predict", "--model", model.to_str().unwrap(), "--adapter", adapter.to_str().unwrap()];
    for t in TEXTS {
        args.extend(["--text", t]);
    }
    ok(lora(&args))
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            v["logits"].as_array().unwrap().iter().map(|x| x.as_f64().unwrap() as f32).collect()
        })
        .collect()
}

/// Scores by label name, from one TEI answer.
fn by_label(answer: &Value) -> std::collections::BTreeMap<String, f32> {
    answer
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["label"].as_str().unwrap().to_string(), p["score"].as_f64().unwrap() as f32))
        .collect()
}

fn names_of(labels: &Path) -> Vec<String> {
    let v: Value = serde_json::from_slice(&std::fs::read(labels.join("labels.json")).unwrap()).unwrap();
    let n = v["num_labels"].as_u64().unwrap() as usize;
    (0..n).map(|i| v["id2label"][i.to_string()].as_str().unwrap().to_string()).collect()
}

#[test]
fn answers_equal_lora_predict_for_every_adapter_in_mixed_batches() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny_model(tmp.path());
    let adapters = adapters(tmp.path(), &model);
    let expected: Vec<Vec<Vec<f32>>> = adapters.iter().map(|(_, dir)| predicted(&model, dir)).collect();
    let names: Vec<Vec<String>> = adapters.iter().map(|(_, dir)| names_of(dir)).collect();
    let specs: Vec<String> = adapters.iter().map(|(n, d)| format!("{n}={}", d.display())).collect();
    let mut args = vec!["--max-wait-ms", "300"];
    for s in &specs {
        args.extend(["--adapter", s.as_str()]);
    }
    let server = Arc::new(Server::start(&model, &args));

    // 8 clients at once, each a batch of every text with one adapter (two per adapter), raw
    // scores: the first batch holds them all, mixed.
    let barrier = Arc::new(Barrier::new(8));
    let answers: Vec<(usize, Value)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|c| {
                let (server, barrier, adapters) = (server.clone(), barrier.clone(), &adapters);
                s.spawn(move || {
                    let a = c % adapters.len();
                    let inputs: Vec<Value> = TEXTS.iter().map(|t| json!([t])).collect();
                    barrier.wait();
                    let (status, body) =
                        server.predict(json!({"inputs": inputs, "raw_scores": true, "adapter_id": adapters[a].0}));
                    assert_eq!(status, 200, "{body}");
                    (a, body)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (a, body) in answers {
        let rows = body.as_array().unwrap();
        assert_eq!(rows.len(), TEXTS.len());
        for (i, row) in rows.iter().enumerate() {
            let scores = by_label(row);
            assert_eq!(scores.len(), names[a].len(), "{}: every class", adapters[a].0);
            for (j, name) in names[a].iter().enumerate() {
                let diff = (scores[name] - expected[a][i][j]).abs();
                assert!(
                    diff <= 1e-5,
                    "{} text {i} class {name}: {} vs lora predict {}",
                    adapters[a].0,
                    scores[name],
                    expected[a][i][j]
                );
            }
            // Highest first.
            let listed: Vec<f32> =
                row.as_array().unwrap().iter().map(|p| p["score"].as_f64().unwrap() as f32).collect();
            assert!(listed.windows(2).all(|w| w[0] >= w[1]), "{row}");
        }
    }
    let (_, metrics) = server.call("GET", "/metrics", None);
    let metrics = metrics.as_str().unwrap().to_string();
    let value = |key: &str| -> f64 {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .unwrap_or_else(|| panic!("{key} in {metrics}"))
            .trim()
            .parse()
            .unwrap()
    };
    // Some forward held rows of several adapters.
    assert!(value("lora_batch_adapters_sum") > value("lora_batch_adapters_count"), "{metrics}");
    assert!(metrics.contains("lora_requests_total{adapter=\"topic\",status=\"200\"} 2"), "{metrics}");

    // Probabilities, one text and a pair, per task, as `lora predict` gives them.
    let (status, body) = server.predict(json!({"inputs": TEXTS[0], "adapter_id": "sentiment"}));
    assert_eq!(status, 200);
    let probs = by_label(&body);
    let e = &expected[0][0];
    let p1 = 1.0 / (1.0 + (e[0] - e[1]).exp());
    assert!((probs[&names[0][1]] - p1).abs() < 1e-5, "{body}");
    let (_, body) = server.predict(json!({"inputs": TEXTS[1], "adapter_id": "tags"}));
    let sig = |x: f32| 1.0 / (1.0 + (-x).exp());
    assert!((by_label(&body)["b"] - sig(expected[3][1][1])).abs() < 1e-5, "{body}");
    let (_, body) = server.predict(json!({"inputs": TEXTS[2], "adapter_id": "rating"}));
    assert!((by_label(&body)["LABEL_0"] - expected[2][2][0]).abs() < 1e-5, "regression answers the value: {body}");
    let (status, pair) = server.predict(json!({"inputs": ["the film", "was good"], "adapter_id": "topic"}));
    assert_eq!(status, 200);
    assert_eq!(pair.as_array().unwrap().len(), 3, "a flat pair is one input: {pair}");

    let (status, info) = server.call("GET", "/info", None);
    assert_eq!(status, 200);
    let listed: Vec<&str> = info["adapters"].as_array().unwrap().iter().map(|a| a["name"].as_str().unwrap()).collect();
    assert_eq!(listed, ["rating", "sentiment", "tags", "topic"]);
    let topic = &info["adapters"].as_array().unwrap()[3];
    assert_eq!((topic["r"].as_u64(), topic["num_labels"].as_u64()), (Some(4), Some(3)));
    assert_eq!(topic["labels"], json!(["sport", "music", "news"]));
    assert_eq!(info["max_input_length"], 64);
}

/// `--dtype bfloat16`: `/info` and the start line say what the model computes in, and every
/// adapter's raw scores (plain LoRA, regression, DoRA on PiSSA on every linear) are within 2e-2
/// of float32's `lora predict` (on a CPU without AVX512-BF16 the server stays in float32 and
/// answers float32's scores).
#[test]
fn serving_in_bfloat16_stays_close_to_float32() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny_model(tmp.path());
    let topic = generated_adapter(
        &tmp.path().join("topic"),
        4,
        &["query", "key", "value"],
        "single_label_classification",
        &["sport", "music", "news"],
        1,
    );
    let rating = generated_adapter(&tmp.path().join("rating"), 8, &["value"], "regression", &["LABEL_0"], 2);
    // DoRA on PiSSA's residual, on every linear: the paths that read the base weight in f32
    // (DoRA's norms, PiSSA's factors) while the served base is held in bf16.
    let data = tiny_data(tmp.path());
    let run = tmp.path().join("dora");
    let variants = [
        "--set",
        "lora.use_dora=true",
        "--set",
        "lora.init_lora_weights=\"pissa\"",
        "--set",
        "lora.target_modules=\"all-linear\"",
    ];
    ok(lora(&train_args(model.to_str().unwrap(), data.to_str().unwrap(), run.to_str().unwrap(), &variants)));
    let dora = run.join("adapter");
    let adapters = [("topic", &topic), ("rating", &rating), ("dora", &dora)];
    let specs: Vec<String> = adapters.iter().map(|(n, d)| format!("{n}={}", d.display())).collect();
    let mut args = vec!["--dtype", "bfloat16"];
    for spec in &specs {
        args.extend(["--adapter", spec.as_str()]);
    }
    let server = Server::start(&model, &args);
    let dtype = if kernels::bf16::available() { "bfloat16" } else { "float32" };
    let (_, info) = server.call("GET", "/info", None);
    assert_eq!(info["model_dtype"], dtype, "{info}");
    assert!(server.log().contains(&format!("on cpu, {dtype};")), "{}", server.log());
    let mut worst = 0.0f32;
    for (name, dir) in adapters {
        let expected = predicted(&model, dir);
        let names = names_of(dir);
        for (text, logits) in TEXTS.iter().zip(&expected) {
            let (status, body) = server.predict(json!({"inputs": text, "adapter_id": name, "raw_scores": true}));
            assert_eq!(status, 200, "{body}");
            let scores = by_label(&body);
            for (label, logit) in names.iter().zip(logits) {
                worst = worst.max((scores[label] - logit).abs());
            }
        }
    }
    match dtype {
        "bfloat16" => assert!(worst > 0.0 && worst < 2e-2, "bf16 scores differ from float32's by up to {worst}"),
        _ => assert!(worst < 1e-5, "{worst}"),
    }
}

#[test]
fn bad_requests_are_4xx_with_tei_errors_and_the_server_goes_on() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny_model(tmp.path());
    let one = yes_no(tmp.path(), "one", 5);
    let two =
        generated_adapter(&tmp.path().join("two"), 2, &["value"], "single_label_classification", &["x", "y", "z"], 6);
    let (one, two) = (format!("one={}", one.display()), format!("two={}", two.display()));
    let server = Server::start(
        &model,
        &["--adapter", &one, "--adapter", &two, "--payload-limit", "2000", "--max-client-batch-size", "4"],
    );
    let long = "good ".repeat(100);
    let cases: Vec<(&str, String, u16, &str)> = vec![
        ("not JSON", "{\"inputs\": ".into(), 400, "not valid JSON"),
        ("not an object", "[1, 2]".into(), 422, "must be an object"),
        ("a list read by position", json!([["good"]]).to_string(), 422, "must be an object"),
        ("a number body", "3".into(), 422, "invalid type"),
        ("null input", json!({"inputs": [null], "adapter_id": "one"}).to_string(), 422, "inputs[0] is null"),
        (
            "null in a batch",
            json!({"inputs": [["a"], [null]], "adapter_id": "one"}).to_string(),
            422,
            "inputs[1][0] is null",
        ),
        (
            "a pair with a number",
            json!({"inputs": ["a", 3], "adapter_id": "one"}).to_string(),
            422,
            "inputs[1] is a number",
        ),
        ("no inputs", json!({"adapter_id": "one"}).to_string(), 422, "missing field `inputs`"),
        ("empty inputs", json!({"inputs": [], "adapter_id": "one"}).to_string(), 400, "cannot be empty"),
        ("a number", json!({"inputs": 3, "adapter_id": "one"}).to_string(), 422, "a string, a pair"),
        (
            "three strings",
            json!({"inputs": ["a", "b", "c"], "adapter_id": "one"}).to_string(),
            422,
            "more than 2 strings",
        ),
        (
            "a typo",
            json!({"inputs": "a", "raw_score": true, "adapter_id": "one"}).to_string(),
            422,
            "unknown field `raw_score`",
        ),
        (
            "wrong type",
            json!({"inputs": "a", "raw_scores": "yes", "adapter_id": "one"}).to_string(),
            422,
            "invalid type",
        ),
        (
            "unknown adapter",
            json!({"inputs": "a", "adapter_id": "three"}).to_string(),
            422,
            "\"three\" is not loaded (adapters: one, two)",
        ),
        ("no adapter_id", json!({"inputs": "a"}).to_string(), 422, "`adapter_id` is required"),
        (
            "too long",
            json!({"inputs": long, "adapter_id": "one"}).to_string(),
            422,
            "has 102 tokens, more than the model's 64",
        ),
        (
            "too long in a batch",
            json!({"inputs": [["a"], [long]], "adapter_id": "one"}).to_string(),
            422,
            "`inputs[1]` has 102 tokens",
        ),
        (
            "too many inputs",
            json!({"inputs": [["a"], ["b"], ["c"], ["d"], ["e"]], "adapter_id": "one"}).to_string(),
            422,
            "batch size 5 > maximum allowed batch size 4",
        ),
        (
            "too large",
            json!({"inputs": "good ".repeat(500), "adapter_id": "one"}).to_string(),
            413,
            "larger than the limit of 2000 bytes",
        ),
    ];
    for (what, body, status, says) in &cases {
        let (got, answer) = server.call("POST", "/predict", Some(body));
        assert_eq!(got, *status, "{what}: {answer}");
        let error = answer["error"].as_str().unwrap_or_else(|| panic!("{what}: a JSON error: {answer}"));
        assert!(error.contains(says), "{what}: {error}");
        assert!(answer["error_type"].is_string(), "{what}: {answer}");
    }
    let (status, answer) = server.call("GET", "/nowhere", None);
    assert_eq!(status, 404, "{answer}");
    assert!(answer["error"].is_string(), "{answer}");
    let (status, answer) = server.call("GET", "/predict", None);
    assert_eq!(status, 405, "{answer}");
    assert!(answer["error"].as_str().unwrap().contains("POST /predict"), "{answer}");

    // Cut to the model's 64 tokens when asked, at either end.
    for direction in ["right", "left"] {
        let (status, body) = server
            .predict(json!({"inputs": long, "truncate": true, "truncation_direction": direction, "adapter_id": "one"}));
        assert_eq!(status, 200, "{direction}: {body}");
    }
    // After all that the server answers as before, and counted the errors.
    let (status, _) = server.call("GET", "/health", None);
    assert_eq!(status, 200);
    let (status, body) = server.predict(json!({"inputs": [["the film"], ["was good", "a plot"]], "adapter_id": "two"}));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body.as_array().unwrap().len(), 2);
    let (_, metrics) = server.call("GET", "/metrics", None);
    assert!(
        metrics.as_str().unwrap().contains("lora_request_errors_total{adapter=\"one\",error_type=\"Validation\"}"),
        "{metrics}"
    );
    let mut server = server;
    assert!(server.terminate().success(), "{}", server.log());
}

/// The peak resident memory of process `pid` in MiB (`VmHWM`), where /proc has it.
fn peak_mib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse::<u64>().ok().map(|kib| kib / 1024)
}

/// Issue 40: texts the server refuses (`truncate: false`, far more tokens than the model takes)
/// are read only one token past the model's limit, in pieces, so they cost no more than an
/// accepted text. Before, each was tokenized whole first: 24 requests of under 2 MB took the
/// server from 0.25 to 4.7 GB, and 64 aborted it. Here 24 of 1.9 MB, alone, in a batch and as
/// a pair, are each refused with the model's limit named, the server's peak memory grows by less
/// than one whole tokenization of one of them would take (~200 MB), and it answers after.
#[test]
fn refused_long_texts_cost_what_an_accepted_one_does() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny_model(tmp.path());
    let one = yes_no(tmp.path(), "one", 5);
    let mut server = Server::start(&model, &["--adapter", &format!("one={}", one.display())]);
    let (status, _) = server.predict(json!({"inputs": "warm up", "adapter_id": "one"}));
    assert_eq!(status, 200);
    let before = peak_mib(server.child.id());
    let long = "good film ".repeat(190_000);
    for i in 0..24 {
        let (inputs, says) = match i % 3 {
            0 => (json!(long), "`inputs` has more tokens than the model's 64"),
            1 => (json!([["short"], [long]]), "`inputs[1]` has more tokens than the model's 64"),
            _ => (json!([["short", long]]), "`inputs[0]` has more tokens than the model's 64"),
        };
        let (status, answer) = server.predict(json!({"inputs": inputs, "adapter_id": "one", "truncate": false}));
        assert_eq!(status, 422, "{answer}");
        assert!(answer["error"].as_str().unwrap().contains(says), "{answer}");
    }
    // A text just over the limit but short is counted exactly.
    let (status, answer) = server.predict(json!({"inputs": "good ".repeat(100), "adapter_id": "one"}));
    assert_eq!(status, 422);
    assert!(answer["error"].as_str().unwrap().contains("has 102 tokens, more than the model's 64"), "{answer}");
    // The same long text, cut, is answered.
    let (status, answer) = server.predict(json!({"inputs": long, "adapter_id": "one", "truncate": true}));
    assert_eq!(status, 200, "{answer}");
    if let (Some(before), Some(after)) = (before, peak_mib(server.child.id())) {
        assert!(after < before + 100, "peak memory went from {before} to {after} MiB");
    }
    assert!(server.terminate().success(), "{}", server.log());
}

/// Issue 40: `--api-key` (here from `LORA_API_KEY`) closes every route but `/health` to a
/// client without `Authorization: Bearer KEY` (401, TEI's JSON error), the adapter API
/// included; `--adapter-root` confines `POST /adapters` to directories under it, after
/// resolving `..` and symlinks (403 naming the root); an empty key does not start.
#[test]
fn an_api_key_and_an_adapter_root_keep_clients_out() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny_model(tmp.path());
    let root = tmp.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    let one = yes_no(&root, "one", 5);
    let outside = yes_no(tmp.path(), "outside", 6);
    std::os::unix::fs::symlink(&outside, root.join("link")).unwrap();
    let server = Server::start_with(
        &model,
        &["--adapter", &format!("one={}", one.display()), "--adapter-root", root.to_str().unwrap()],
        &[("LORA_API_KEY", "s3cret key")],
    );
    let key = Some("Bearer s3cret key");
    let predict = json!({"inputs": "good", "adapter_id": "one"}).to_string();
    assert_eq!(server.call("GET", "/health", None).0, 200, "/health stays open");
    for (method, path, body) in [
        ("POST", "/predict", Some(predict.as_str())),
        ("GET", "/info", None),
        ("GET", "/metrics", None),
        ("GET", "/adapters", None),
        ("POST", "/adapters", Some(r#"{"name": "x", "path": "one"}"#)),
        ("DELETE", "/adapters/one", None),
        ("GET", "/nowhere", None),
    ] {
        for auth in [
            None,
            Some("Bearer wrong"),
            Some("s3cret key"),
            Some("Bearer s3cret ke"),
            Some("Bearer s3cret keyy"),
            Some("Basic s3cret key"),
        ] {
            let (status, answer) = server.call_as(auth, method, path, body);
            assert_eq!(status, 401, "{method} {path} with {auth:?}: {answer}");
            assert_eq!(answer["error_type"], "Unauthorized", "{answer}");
        }
    }
    let (status, answer) = server.call_as(key, "POST", "/predict", Some(&predict));
    assert_eq!(status, 200, "{answer}");
    let (status, answer) = server.call_as(Some("bearer s3cret key"), "POST", "/predict", Some(&predict));
    assert_eq!(status, 200, "the scheme is case-insensitive: {answer}");
    // The adapter root: inside it loads (relative to it, or absolute), outside is refused.
    let load = |name: &str, path: &str| {
        server.call_as(key, "POST", "/adapters", Some(&json!({"name": name, "path": path}).to_string()))
    };
    assert_eq!(load("two", "one").0, 201, "a path relative to the root");
    assert_eq!(load("three", one.to_str().unwrap()).0, 201, "an absolute path inside it");
    for (name, path) in [
        ("a", outside.to_str().unwrap().to_string()),
        ("b", "../outside".to_string()),
        ("c", "link".to_string()),
        ("d", "sentence-transformers/all-MiniLM-L6-v2".to_string()),
        ("e", "/etc".to_string()),
    ] {
        let (status, answer) = load(name, &path);
        assert_eq!(status, 403, "{path}: {answer}");
        assert!(answer["error"].as_str().unwrap().contains("--adapter-root"), "{path}: {answer}");
    }
    // An adapter_config.json that never ends (/dev/zero) was read until memory ran out.
    std::fs::create_dir_all(root.join("zero")).unwrap();
    std::os::unix::fs::symlink("/dev/zero", root.join("zero/adapter_config.json")).unwrap();
    let (status, answer) = load("zero", "zero");
    assert_eq!(status, 422, "{answer}");
    assert!(answer["error"].as_str().unwrap().contains("not a regular file"), "{answer}");
    let (_, listed) = server.call_as(key, "GET", "/adapters", None);
    assert_eq!(listed["adapters"].as_array().unwrap().len(), 3, "one, two, three: {listed}");

    // An empty key is refused at start, before anything listens.
    let out = lora(&["serve", "--model", model.to_str().unwrap(), "--port", "0", "--api-key", ""]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--api-key is empty"), "{out:?}");
}

/// Issue 40: 1,100 idle connections on a server allowed 1,024 files blocked every client until
/// they closed. Connections that send no complete request head within `--idle-timeout` (idle,
/// or sending a header a byte at a time) are closed; past `--max-connections` new ones wait
/// their turn instead of failing for want of files; `--request-timeout` answers 504 in time.
#[test]
fn idle_and_slow_clients_cannot_starve_the_others() {
    use std::io::{Read, Write};
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny_model(tmp.path());
    let one = yes_no(tmp.path(), "one", 5);
    let spec = format!("one={}", one.display());
    let server = Server::start(&model, &["--adapter", &spec, "--idle-timeout", "1", "--max-connections", "8"]);
    let addr = server.base.trim_start_matches("http://").to_string();
    // Twenty connections that send nothing, and one sending its header a byte at a time.
    let mut idle: Vec<std::net::TcpStream> = (0..20).map(|_| std::net::TcpStream::connect(&addr).unwrap()).collect();
    let mut slow = std::net::TcpStream::connect(&addr).unwrap();
    let started = Instant::now();
    // A real client is answered once the idle ones are cut (one second), well before they
    // would have gone away by themselves.
    let (status, answer) = server.predict(json!({"inputs": "good", "adapter_id": "one"}));
    assert_eq!(status, 200, "{answer}");
    assert!(started.elapsed() < Duration::from_secs(20), "answered after {:?}", started.elapsed());
    for byte in b"POST /predict HTTP/1.1\r\nHost: x\r\n".iter().take(12) {
        if slow.write_all(&[*byte]).is_err() {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    // Every idle connection was closed by the server: a read sees the end (or a reset).
    for stream in idle.iter_mut().chain([&mut slow]) {
        stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut buf = [0u8; 256];
        // The server may answer the slow one's half header with a 408 before it closes.
        let mut read = stream.read(&mut buf);
        if matches!(read, Ok(n) if n > 0) {
            read = stream.read(&mut buf);
        }
        let closed = match &read {
            Ok(0) => true,
            Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
            Ok(_) => false,
        };
        assert!(closed, "a connection is still open after 10 s: {read:?}");
    }
    drop(server);

    // A request held past --request-timeout: 504 with TEI's body (the batcher waits 3 s).
    let server = Server::start(&model, &["--adapter", &spec, "--request-timeout", "1", "--max-wait-ms", "3000"]);
    let (status, answer) = server.predict(json!({"inputs": "good", "adapter_id": "one"}));
    assert_eq!(status, 504, "{answer}");
    assert!(answer["error"].as_str().unwrap().contains("--request-timeout 1 s"), "{answer}");
    drop(server);
    // More connections than the process may open files for does not start.
    let m = model.to_str().unwrap();
    let stderr = common::failure(lora(&[
        "serve",
        "--model",
        m,
        "--adapter",
        &spec,
        "--port",
        "0",
        "--max-connections",
        "100000000",
    ]));
    assert!(stderr.contains("--max-connections 100000000 is more than"), "{stderr}");
}

#[test]
fn adapters_load_and_unload_while_requests_run() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny_model(tmp.path());
    let a = yes_no(tmp.path(), "a", 7);
    let b =
        generated_adapter(&tmp.path().join("b"), 8, &["key"], "single_label_classification", &["p", "q", "r", "s"], 8);
    let server = Arc::new(Server::start(&model, &["--adapter", &format!("a={}", a.display()), "--max-wait-ms", "5"]));

    std::thread::scope(|s| {
        // Clients on `a` the whole time: none of their requests may fail.
        let clients: Vec<_> = (0..4)
            .map(|c| {
                let server = server.clone();
                s.spawn(move || {
                    for i in 0..25 {
                        let (status, body) = server.predict(json!({"inputs": TEXTS[(c + i) % TEXTS.len()]}));
                        assert_eq!(status, 200, "{body}");
                    }
                })
            })
            .collect();
        let load = json!({"name": "b", "path": b.display().to_string()}).to_string();
        let (status, body) = server.call("POST", "/adapters", Some(&load));
        assert_eq!(status, 201, "{body}");
        assert_eq!(body["num_labels"], 4);
        let (status, again) = server.call("POST", "/adapters", Some(&load));
        assert_eq!(status, 409, "{again}");
        // Two adapters now; the one given at start stays the default.
        let (status, body) = server.predict(json!({"inputs": "good", "adapter_id": "b"}));
        assert_eq!(status, 200, "{body}");
        assert_eq!(body.as_array().unwrap().len(), 4);
        let (status, body) = server.predict(json!({"inputs": "good"}));
        assert_eq!(status, 200, "{body}");
        assert_eq!(body.as_array().unwrap().len(), 2);
        let missing = json!({"name": "c", "path": tmp.path().join("nothing").display().to_string()}).to_string();
        let (status, body) = server.call("POST", "/adapters", Some(&missing));
        assert_eq!(status, 422, "{body}");
        assert!(body["error"].as_str().unwrap().contains("adapter_config.json"), "{body}");
        let (status, body) = server.call("POST", "/adapters", Some(&json!({"name": "../x", "path": "b"}).to_string()));
        assert_eq!(status, 422, "{body}");
        let (status, body) = server.call("DELETE", "/adapters/b", None);
        assert_eq!(status, 200, "{body}");
        let (status, body) = server.predict(json!({"inputs": "good", "adapter_id": "b"}));
        assert_eq!(status, 422, "{body}");
        let (status, _) = server.call("DELETE", "/adapters/b", None);
        assert_eq!(status, 404);
        for c in clients {
            c.join().unwrap();
        }
    });
    let (_, info) = server.call("GET", "/adapters", None);
    assert_eq!(info["adapters"].as_array().unwrap().len(), 1);
}

#[test]
fn overload_is_429_and_sigterm_answers_what_is_in_flight() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny_model(tmp.path());
    let a = yes_no(tmp.path(), "a", 9);
    let spec = format!("a={}", a.display());
    let server = Arc::new(Server::start(
        &model,
        &["--adapter", &spec, "--max-wait-ms", "1500", "--max-concurrent-requests", "2"],
    ));
    let statuses: Vec<u16> = std::thread::scope(|s| {
        // Two requests wait in the batcher for 1.5 s; a third meanwhile is refused.
        let waiting: Vec<_> = (0..2)
            .map(|i| {
                let server = server.clone();
                s.spawn(move || server.predict(json!({"inputs": TEXTS[i]})).0)
            })
            .collect();
        std::thread::sleep(Duration::from_millis(400));
        let (status, body) = server.predict(json!({"inputs": "good"}));
        assert_eq!(status, 429, "{body}");
        assert_eq!(body["error_type"], "Overloaded");
        // SIGTERM while the two are in flight: both are answered, then the process ends with 0.
        let pid = server.child.id().to_string();
        assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
        waiting.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(statuses, [200, 200]);
    let mut server = Arc::try_unwrap(server).ok().unwrap();
    let status = server.wait();
    assert!(status.success(), "exit status {status}: {}", server.log());
    assert!(server.log().contains("stopped after answering 2 predict requests"), "{}", server.log());
    // Nothing listens any more.
    assert!(std::net::TcpStream::connect(server.base.trim_start_matches("http://")).is_err());
}

#[test]
fn startup_errors_name_the_problem() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny_model(tmp.path());
    let m = model.to_str().unwrap();
    let missing = format!("x={}", tmp.path().join("missing").display());
    let stderr = common::failure(lora(&["serve", "--model", m, "--adapter", &missing, "--port", "0"]));
    assert!(stderr.contains("adapter x") && stderr.contains("adapter_config.json"), "{stderr}");
    let a = generated_adapter(&tmp.path().join("a"), 4, &["query"], "single_label_classification", &["no", "yes"], 10);
    let spec = format!("a={}", a.display());
    let stderr = common::failure(lora(&["serve", "--model", m, "--adapter", &spec, "--adapter", &spec, "--port", "0"]));
    assert!(stderr.contains("--adapter a is given twice"), "{stderr}");
    let stderr =
        common::failure(lora(&["serve", "--model", m, "--adapter", &spec, "--default-adapter", "b", "--port", "0"]));
    assert!(stderr.contains("--default-adapter b is not among the adapters (a)"), "{stderr}");
    // Issue 40: padding every request past the model's 64 positions started, then answered 424.
    for pad in ["1000", "7"] {
        let stderr = common::failure(lora(&[
            "serve",
            "--model",
            m,
            "--adapter",
            &spec,
            "--pad-to-multiple-of",
            pad,
            "--port",
            "0",
        ]));
        assert!(
            stderr.contains(&format!("--pad-to-multiple-of {pad} pads an input of the model's 64 tokens")),
            "{stderr}"
        );
    }
    // A port already taken.
    let server = Server::start(&model, &["--adapter", &spec]);
    let port = server.base.rsplit(':').next().unwrap().to_string();
    let stderr = common::failure(lora(&["serve", "--model", m, "--adapter", &spec, "--port", &port]));
    assert!(stderr.contains(&format!("cannot listen on 127.0.0.1:{port}")), "{stderr}");
}

#[test]
fn an_adapter_comes_from_the_hub_by_its_id() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny_model(tmp.path());
    let served = tmp.path().join("hub");
    generated_adapter(
        &served.join("someone/tiny-topic"),
        4,
        &["query", "value"],
        "single_label_classification",
        &["sport", "music", "news"],
        12,
    );
    let hub = encoders::testing::FakeHub::serve(&served).unwrap();
    let home = tmp.path().join("hf-home");
    let env = [("HF_ENDPOINT", hub.endpoint.as_str()), ("HF_HOME", home.to_str().unwrap())];
    let server = Server::start_with(&model, &["--adapter", "topic=someone/tiny-topic"], &env);
    let (status, body) = server.predict(json!({"inputs": "the film"}));
    assert_eq!(status, 200, "{body}");
    let labels: Vec<&str> = body.as_array().unwrap().iter().map(|p| p["label"].as_str().unwrap()).collect();
    assert_eq!(labels.len(), 3);
    assert!(labels.contains(&"music"), "labels.json came too: {body}");
    // Through the API as well; a repository without an adapter is a 422 naming the file.
    let load = json!({"name": "again", "path": "someone/tiny-topic"}).to_string();
    let (status, body) = server.call("POST", "/adapters", Some(&load));
    assert_eq!(status, 201, "{body}");
    let missing = json!({"name": "none", "path": "someone/missing"}).to_string();
    let (status, body) = server.call("POST", "/adapters", Some(&missing));
    assert_eq!(status, 422, "{body}");
    assert!(body["error"].as_str().unwrap().contains("adapter_config.json"), "{body}");
}

#[test]
fn a_slow_client_holds_shutdown_until_a_second_signal() {
    use std::io::Write;
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny_model(tmp.path());
    let a = yes_no(tmp.path(), "a", 13);
    let mut server = Server::start(&model, &["--adapter", &format!("a={}", a.display())]);
    // A request whose body never comes.
    let mut slow = std::net::TcpStream::connect(server.base.trim_start_matches("http://")).unwrap();
    slow.write_all(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"inputs\"")
        .unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let pid = server.child.id().to_string();
    assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    std::thread::sleep(Duration::from_millis(700));
    assert!(server.child.try_wait().unwrap().is_none(), "it waits for the request it holds: {}", server.log());
    let status = server.terminate();
    assert!(!status.success(), "an unanswered request is not a clean stop: {}", server.log());
    assert!(server.log().contains("stopped with connections still open at a second signal"), "{}", server.log());
    drop(slow);
}
