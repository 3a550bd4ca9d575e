//! TEI's whole classifier API on `lora serve`, over HTTP on the loopback interface: `POST /` and
//! `/invocations` as `/predict`, the Hugging Face clients' `parameters`, `GET /` and `/ping`,
//! `/rerank` with a one-output adapter (scores equal `lora predict`'s), `/tokenize`, `/decode`,
//! the timing headers, JSON bodies only, CORS, the OpenAPI document and `/docs`, and
//! huggingface_hub's `InferenceClient` when a Python with it is given (`LORA_TEST_PYTHON`).

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod common;

use std::collections::BTreeMap;
use std::path::Path;

use common::adapters::{generated_adapter, yes_no};
use common::server::Server;
use common::{lora, ok, tiny_model};
use serde_json::{Value, json};

const JSON: (&str, &str) = ("Content-Type", "application/json");

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

fn close(a: f32, b: f32, what: &str) {
    assert!((a - b).abs() <= 1e-5 * (1.0 + b.abs()), "{what}: {a} vs {b}");
}

/// `lora predict`'s logits of each (query, text) pair with `adapter`.
fn pair_logits(model: &Path, adapter: &Path, query: &str, texts: &[&str]) -> Vec<f32> {
    let mut args = vec!["predict", "--model", model.to_str().unwrap(), "--adapter", adapter.to_str().unwrap()];
    for t in texts {
        args.extend(["--text", query, "--text-pair", t]);
    }
    args.extend(["--function-to-apply", "sigmoid"]);
    ok(lora(&args))
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            let logit = v["logits"][0].as_f64().unwrap() as f32;
            // `--function-to-apply sigmoid` writes what /rerank scores.
            close(v["scores"][0].as_f64().unwrap() as f32, sigmoid(logit), "predict's sigmoid score");
            logit
        })
        .collect()
}

fn scores(answer: &Value) -> BTreeMap<String, f32> {
    answer
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["label"].as_str().unwrap().to_string(), p["score"].as_f64().unwrap() as f32))
        .collect()
}

#[test]
fn every_tei_route_answers_as_tei_does() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny_model(tmp.path());
    let yes = yes_no(tmp.path(), "yes", 11);
    let rank = generated_adapter(&tmp.path().join("rank"), 4, &["query", "value"], "regression", &["LABEL_0"], 12);
    let (yes_arg, rank_arg) = (format!("yes={}", yes.display()), format!("rank={}", rank.display()));
    let server = Server::start(
        &model,
        &["--adapter", &yes_arg, "--adapter", &rank_arg, "--default-adapter", "yes", "--max-client-batch-size", "4"],
    );
    let post = |path: &str, body: Value| server.exchange("POST", path, Some(&body.to_string()), &[JSON]);
    let text = "the film was good , a great plot .";

    // `POST /` and `/invocations` are `/predict`; `GET /` and `/ping` are health checks.
    let (status, headers, predicted) = post("/predict", json!({"inputs": text}));
    assert_eq!(status, 200, "{predicted}");
    assert_eq!(predicted.as_array().unwrap().len(), 2, "TEI's shape: one list for one input");
    for path in ["/", "/invocations"] {
        let (status, _, answer) = post(path, json!({"inputs": text}));
        assert_eq!((status, &answer), (200, &predicted), "POST {path}");
    }
    for path in ["/", "/ping", "/health"] {
        assert_eq!(server.exchange("GET", path, None, &[]).0, 200, "GET {path}");
    }

    // TEI's headers: sizes exact, times whole milliseconds.
    let (_, _, tokens) = post("/tokenize", json!({"inputs": text}));
    let n_tokens = tokens[0].as_array().unwrap().len();
    assert_eq!(headers["x-compute-tokens"], n_tokens.to_string());
    assert_eq!(headers["x-compute-characters"], text.chars().count().to_string());
    assert_eq!(headers["x-compute-type"], "cpu");
    for name in ["x-compute-time", "x-total-time", "x-tokenization-time", "x-queue-time", "x-inference-time"] {
        let ms: u64 = headers[name].parse().unwrap_or_else(|_| panic!("{name}: {:?}", headers[name]));
        assert!(ms < 60_000, "{name} {ms}");
    }

    // The Hugging Face clients' `parameters`: one list per input, top_k, function_to_apply.
    let (status, _, raw) = post("/predict", json!({"inputs": text, "raw_scores": true}));
    assert_eq!(status, 200);
    let raw = scores(&raw);
    let (status, _, all) = post("/", json!({"inputs": text, "parameters": {}}));
    assert_eq!(status, 200, "{all}");
    assert_eq!(all, json!([predicted.clone()]), "the Inference API's shape, [[...]]");
    let (_, _, top) = post("/", json!({"inputs": text, "parameters": {"top_k": 1}}));
    assert_eq!(top, json!([[predicted[0].clone()]]));
    let (_, _, sig) = post("/", json!({"inputs": text, "parameters": {"function_to_apply": "sigmoid", "top_k": null}}));
    for (label, score) in scores(&sig[0]) {
        close(score, sigmoid(raw[&label]), &format!("sigmoid of {label}"));
    }
    let (_, _, none) = post("/", json!({"inputs": [["a"], ["b", "c"]], "parameters": {"function_to_apply": "none"}}));
    assert_eq!(none.as_array().unwrap().len(), 2, "a batch stays a list per input");
    let (_, _, batch_raw) = post("/predict", json!({"inputs": [["a"], ["b", "c"]], "raw_scores": true}));
    assert_eq!(none, batch_raw, "`none` is the logits");
    for (body, says) in [
        (json!({"inputs": "a", "parameters": {"top_k": 0}}), "top_k` must be at least 1"),
        (json!({"inputs": "a", "parameters": {"function_to_apply": "tanh"}}), "unknown variant `tanh`"),
        (json!({"inputs": "a", "parameters": {"top_n": 2}}), "unknown field `top_n`"),
        (json!({"inputs": "a", "raw_scores": true, "parameters": {"function_to_apply": "softmax"}}), "send one"),
    ] {
        let (status, _, e) = post("/", body.clone());
        assert_eq!(status, 422, "{body}: {e}");
        assert!(e["error"].as_str().unwrap().contains(says), "{body}: {e}");
    }

    // /rerank: the sigmoid of each pair's logit, as `lora predict` gives it, highest first.
    let query = "the film was";
    let texts = ["good , a great plot .", "awful", "a dull , boring plot", "superb"];
    let logits = pair_logits(&model, &rank, query, &texts);
    let (status, headers, ranks) =
        post("/rerank", json!({"query": query, "texts": texts, "adapter_id": "rank", "return_text": true}));
    assert_eq!(status, 200, "{ranks}");
    assert!(headers.contains_key("x-inference-time"));
    let ranks = ranks.as_array().unwrap();
    assert_eq!(ranks.len(), 4);
    let mut last = f32::INFINITY;
    for r in ranks {
        let i = r["index"].as_u64().unwrap() as usize;
        let score = r["score"].as_f64().unwrap() as f32;
        close(score, sigmoid(logits[i]), &format!("texts[{i}]"));
        assert_eq!(r["text"], texts[i]);
        assert!(score <= last, "highest first");
        last = score;
    }
    let (_, _, raw_ranks) =
        post("/rerank", json!({"query": query, "texts": texts, "adapter_id": "rank", "raw_scores": true}));
    for r in raw_ranks.as_array().unwrap() {
        let i = r["index"].as_u64().unwrap() as usize;
        close(r["score"].as_f64().unwrap() as f32, logits[i], &format!("raw texts[{i}]"));
        assert!(r.get("text").is_none(), "no text unless asked");
    }
    let long = "w50 ".repeat(200);
    for (body, status, says) in [
        (json!({"query": query, "texts": ["a"]}), 422, "adapter \"yes\" has 2 labels"),
        (json!({"query": query, "texts": [], "adapter_id": "rank"}), 400, "`texts` cannot be empty"),
        (
            json!({"query": query, "texts": vec!["a"; 5], "adapter_id": "rank"}),
            422,
            "batch size 5 > maximum allowed batch size 4",
        ),
        (json!({"query": query, "texts": ["a", long], "adapter_id": "rank"}), 422, "`texts[1]` with the query has"),
        (json!({"query": query, "texts": ["a"], "adapter_id": "nope"}), 422, "\"nope\" is not loaded"),
        (json!({"query": query, "text": ["a"], "adapter_id": "rank"}), 422, "unknown field `text`"),
    ] {
        let (got, _, e) = post("/rerank", body.clone());
        assert_eq!(got, status, "{body}: {e}");
        assert!(e["error"].as_str().unwrap().contains(says), "{body}: {e}");
    }
    let (status, _, cut) =
        post("/rerank", json!({"query": query, "texts": ["a", long], "adapter_id": "rank", "truncate": true}));
    assert_eq!(status, 200, "{cut}");

    // /tokenize: every token, never cut, with its place in the text; /decode gives it back.
    let sample = "The film was GOOD, a w50 plot";
    let (status, _, tokens) = post("/tokenize", json!({"inputs": sample}));
    assert_eq!(status, 200, "{tokens}");
    let tokens = tokens[0].as_array().unwrap();
    assert_eq!(tokens.first().unwrap()["text"], "[CLS]");
    assert!(tokens.first().unwrap()["special"].as_bool().unwrap() && tokens.first().unwrap()["start"].is_null());
    for t in &tokens[1..tokens.len() - 1] {
        let (start, stop) = (t["start"].as_u64().unwrap() as usize, t["stop"].as_u64().unwrap() as usize);
        assert_eq!(t["text"], &sample[start..stop], "{t}");
        assert!(!t["special"].as_bool().unwrap());
    }
    let ids: Vec<u64> = tokens.iter().map(|t| t["id"].as_u64().unwrap()).collect();
    let (status, _, decoded) = post("/decode", json!({"ids": ids}));
    assert_eq!((status, decoded), (200, json!(["the film was good, a w50 plot"])));
    let (_, _, with_special) =
        post("/decode", json!({"ids": [ids.clone(), ids[1..3].to_vec()], "skip_special_tokens": false}));
    assert_eq!(with_special, json!(["[CLS] the film was good, a w50 plot [SEP]", "the film"]));
    let (_, _, plain) = post("/tokenize", json!({"inputs": [sample, long], "add_special_tokens": false}));
    assert_eq!(plain[0].as_array().unwrap().len(), tokens.len() - 2);
    assert_eq!(plain[1].as_array().unwrap().len(), 200, "a text past the model's length is not cut");
    for (path, body, status, says) in [
        ("/tokenize", json!({"inputs": []}), 400, "`inputs` cannot be empty"),
        ("/tokenize", json!({"inputs": vec!["a"; 5]}), 422, "batch size 5 >"),
        ("/tokenize", json!({"inputs": "a", "prompt_name": "query"}), 422, "no prompts"),
        ("/tokenize", json!({"inputs": 3}), 422, "a string or a list of strings"),
        ("/decode", json!({"ids": [5, 128]}), 422, "token id 128 is not in the vocabulary"),
        ("/decode", json!({"ids": [[5], []]}), 400, "`ids[1]` cannot be empty"),
        ("/decode", json!({"ids": [-1]}), 422, "a list of token ids"),
    ] {
        let (got, _, e) = post(path, body.clone());
        assert_eq!(got, status, "{path} {body}: {e}");
        assert!(e["error"].as_str().unwrap().contains(says), "{path} {body}: {e}");
    }

    // Bodies must say they are JSON (TEI's routes do): a plain form post is refused.
    for path in ["/predict", "/", "/rerank", "/tokenize", "/adapters"] {
        let (status, _, e) =
            server.exchange("POST", path, Some(r#"{"inputs": "a"}"#), &[("Content-Type", "text/plain")]);
        assert_eq!(status, 415, "{path}: {e}");
        assert_eq!(e["error_type"], "Validation");
    }

    // The OpenAPI document names every route, and every route it names is served.
    let (status, _, doc) = server.exchange("GET", "/api-doc/openapi.json", None, &[]);
    assert_eq!(status, 200);
    assert!(doc["info"]["description"].as_str().unwrap().contains("at most 4 inputs"));
    let paths = doc["paths"].as_object().unwrap();
    for route in [
        "/",
        "/invocations",
        "/predict",
        "/rerank",
        "/tokenize",
        "/decode",
        "/health",
        "/ping",
        "/info",
        "/metrics",
        "/adapters",
        "/adapters/{name}",
        "/docs",
    ] {
        assert!(paths.contains_key(route), "{route} is not in the document");
    }
    for (path, methods) in paths {
        for method in methods.as_object().unwrap().keys() {
            let path = path.replace("{name}", "nope");
            let body = (method != "get" && method != "delete").then_some("{}");
            let (status, _, e) = server.exchange(&method.to_uppercase(), &path, body, &[JSON]);
            assert!(status != 405 && (status != 404 || path == "/adapters/nope"), "{method} {path}: {status} {e}");
        }
    }
    let (status, _, page) = server.exchange("GET", "/docs", None, &[]);
    assert_eq!(status, 200);
    assert!(page.as_str().unwrap().contains("/api-doc/openapi.json") && !page.as_str().unwrap().contains("https://"));
    let (status, _, e) = server.exchange("GET", "/embed", None, &[]);
    assert_eq!(status, 404);
    assert!(e["error"].as_str().unwrap().contains("/rerank"), "{e}");

    // huggingface_hub's InferenceClient, unchanged, when a Python with it is given.
    match std::env::var("LORA_TEST_PYTHON") {
        Err(_) => eprintln!("skipped: huggingface_hub's InferenceClient (set LORA_TEST_PYTHON to a Python with it)"),
        Ok(python) => {
            let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/tei_client_check.py");
            let run = std::process::Command::new(python).arg(script).arg(&server.base).arg(text).output().unwrap();
            assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
            let seen: Value = serde_json::from_slice(&run.stdout).unwrap();
            assert_eq!(seen["text_classification"], predicted, "every class, as /predict: {seen}");
            assert_eq!(seen["top_k_1"], json!([predicted[0].clone()]));
            for p in seen["sigmoid"].as_array().unwrap() {
                let label = p["label"].as_str().unwrap();
                close(
                    p["score"].as_f64().unwrap() as f32,
                    sigmoid(raw[label]),
                    &format!("client's sigmoid of {label}"),
                );
            }
        }
    }

    // Without --cors-allow-origin, no CORS headers: browsers keep other sites' pages out.
    let (_, headers, _) = server.exchange("GET", "/info", None, &[("Origin", "http://evil.example")]);
    assert!(!headers.contains_key("access-control-allow-origin"), "{headers:?}");
}

#[test]
fn cors_and_the_api_key_as_tei_has_them() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny_model(tmp.path());
    let yes = yes_no(tmp.path(), "yes", 21);
    let server = Server::start_with(
        &model,
        &["--adapter", yes.to_str().unwrap(), "--cors-allow-origin", "http://localhost:3000,https://app.example"],
        &[("LORA_API_KEY", "s3cret")],
    );
    // A browser's preflight is answered for a listed origin, before the key is asked for.
    let preflight = [
        ("Origin", "http://localhost:3000"),
        ("Access-Control-Request-Method", "POST"),
        ("Access-Control-Request-Headers", "content-type,authorization"),
    ];
    let (status, headers, _) = server.exchange("OPTIONS", "/predict", None, &preflight);
    assert_eq!(status, 200, "{headers:?}");
    assert_eq!(headers["access-control-allow-origin"], "http://localhost:3000");
    let allowed = headers["access-control-allow-headers"].to_ascii_lowercase();
    assert!(allowed.contains("authorization") && allowed.contains("content-type"), "{allowed}");
    let (_, headers, _) =
        server.exchange("OPTIONS", "/predict", None, &[("Origin", "http://evil.example"), preflight[1]]);
    assert!(!headers.contains_key("access-control-allow-origin"), "an origin not listed: {headers:?}");
    // The key: health checks and the API's description are open, everything else is not.
    for path in ["/", "/ping", "/health", "/docs", "/api-doc/openapi.json"] {
        assert_eq!(server.exchange("GET", path, None, &[]).0, 200, "GET {path}");
    }
    let body = json!({"inputs": "the film"}).to_string();
    for path in ["/", "/invocations", "/predict", "/rerank", "/tokenize", "/decode", "/info"] {
        let method = if path == "/info" { "GET" } else { "POST" };
        let (status, _, e) =
            server.exchange(method, path, Some(&body).filter(|_| method == "POST").map(|s| s.as_str()), &[JSON]);
        assert_eq!(status, 401, "{method} {path}: {e}");
    }
    let (status, headers, answer) = server.exchange(
        "POST",
        "/",
        Some(&body),
        &[JSON, ("Authorization", "Bearer s3cret"), ("Origin", "https://app.example")],
    );
    assert_eq!(status, 200, "{answer}");
    assert_eq!(headers["access-control-allow-origin"], "https://app.example");
    drop(server);

    // A malformed origin does not start.
    let out = lora(&[
        "serve",
        "--model",
        model.to_str().unwrap(),
        "--adapter",
        yes.to_str().unwrap(),
        "--port",
        "0",
        "--cors-allow-origin",
        "localhost:3000",
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--cors-allow-origin \"localhost:3000\"") && err.contains("scheme://host"), "{err}");
}

/// A cross-encoder reranker trained by `lora train` from pairs with a numeric label
/// (`num_labels` 1), served through `/rerank` with `lora predict`'s scores.
#[test]
fn a_reranker_trained_on_pairs_is_served_through_rerank() {
    let tmp = tempfile::tempdir().unwrap();
    // A base without a classifier, as from the Hub: the run draws a one-output head.
    let model = common::tiny_base_model(tmp.path());
    let data = tmp.path().join("pairs");
    std::fs::create_dir_all(&data).unwrap();
    let words = common::WORDS;
    for (split, n) in [("train", 32), ("test", 8)] {
        let lines: Vec<String> = (0..n)
            .map(|i| {
                let relevant = i % 2 == 0;
                let word = words[(i * 3) % 5 + if relevant { 0 } else { 5 }];
                json!({"query": "a good film", "passage": format!("the film was {word} w{}", 20 + i), "relevance": if relevant { 1.0 } else { 0.0 }})
                    .to_string()
            })
            .collect();
        std::fs::write(data.join(format!("{split}.jsonl")), lines.join("\n") + "\n").unwrap();
    }
    let out = tmp.path().join("reranker");
    let (model_s, data_s, out_s) = (model.to_str().unwrap(), data.to_str().unwrap(), out.to_str().unwrap());
    let mut args = common::train_args(model_s, data_s, out_s, &[]);
    args.extend([
        "--set",
        "data.text_column=query",
        "--set",
        "data.text_pair_column=passage",
        "--set",
        "data.label_column=relevance",
        "--set",
        "model.num_labels=1",
        "--set",
        "data.balanced=false",
    ]);
    ok(lora(&args));
    let adapter = out.join("adapter");
    let labels: Value = serde_json::from_slice(&std::fs::read(adapter.join("labels.json")).unwrap()).unwrap();
    assert_eq!((labels["num_labels"].as_u64(), labels["problem_type"].as_str()), (Some(1), Some("regression")));

    let texts = ["the film was great w70", "the film was awful w71", "the film was superb w72"];
    let logits = pair_logits(&model, &adapter, "a good film", &texts);
    let server = Server::start(&model, &["--adapter", adapter.to_str().unwrap()]);
    let (status, ranks) =
        server.call("POST", "/rerank", Some(&json!({"query": "a good film", "texts": texts}).to_string()));
    assert_eq!(status, 200, "{ranks}");
    for r in ranks.as_array().unwrap() {
        let i = r["index"].as_u64().unwrap() as usize;
        close(r["score"].as_f64().unwrap() as f32, sigmoid(logits[i]), &format!("texts[{i}]"));
    }
}
