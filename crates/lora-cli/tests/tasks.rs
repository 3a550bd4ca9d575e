//! Every task and data shape end to end: five string classes from a CSV with nothing but
//! `--data` and the label column, sentence pairs with a regression target, multi-label lists;
//! and each `problem_type`'s loss against transformers': a fixed batch of pair-shaped inputs
//! through a tiny BERT with a seeded head, batched by the data crate's batcher, its loss within
//! 1e-6 of `BertForSequenceClassification(..., labels=...).loss` (goldens: scripts/golden_tasks.py).

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod common;

use std::path::{Path, PathBuf};

use common::{failure, lora, ok, read, tiny_base_model, tiny_model};

use burn::backend::Flex;
use burn::data::dataloader::batcher::Batcher;
use encoders::Encoded;
use encoders::testing::{max_abs_diff, within};
use textdata::{Target, TextBatch, TextBatcher, TokenizedExample};

type B = Flex;

fn fixture(problem_type: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tasks").join(problem_type)
}

fn target(problem_type: &str, label: &serde_json::Value) -> Target {
    match problem_type {
        "single_label_classification" => Target::Class(label.as_u64().unwrap() as usize),
        "multi_label_classification" => {
            Target::MultiHot(label.as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect())
        }
        _ => Target::Value(label.as_f64().unwrap() as f32),
    }
}

#[test]
fn each_problem_types_loss_equals_transformers() {
    for problem_type in ["single_label_classification", "multi_label_classification", "regression"] {
        let dir = fixture(problem_type);
        let golden: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("golden.json")).unwrap()).unwrap();
        let ids = |key: &str| -> Vec<Vec<u32>> {
            golden[key]
                .as_array()
                .unwrap()
                .iter()
                .map(|row| row.as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect())
                .collect()
        };
        let items: Vec<TokenizedExample> = ids("input_ids")
            .into_iter()
            .zip(ids("token_type_ids"))
            .zip(golden["labels"].as_array().unwrap())
            .map(|((input_ids, token_type_ids), label)| TokenizedExample {
                encoded: Encoded { input_ids, token_type_ids },
                label: target(problem_type, label),
            })
            .collect();

        let device = Default::default();
        let pretrained =
            encoders::from_pretrained::<B>(dir.to_str().unwrap(), &encoders::LoadOptions::default(), &device).unwrap();
        assert_eq!(
            pretrained.config.labels().problem_type.as_deref(),
            Some(problem_type),
            "config.json's problem_type is read"
        );
        let batch: TextBatch<B> = TextBatcher::new(0).batch(items, &device);
        let logits = pretrained.model.forward(batch.input);
        let ours: Vec<f32> = logits.clone().into_data().into_vec().unwrap();
        let theirs: Vec<f32> = golden["logits"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|row| row.as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect::<Vec<_>>())
            .collect();
        within(&format!("{problem_type}: logits vs transformers"), max_abs_diff(&ours, &theirs), 1e-5);

        let loss: f32 = lora_cli::loss::loss(logits, batch.labels).into_scalar();
        let expected = golden["loss"].as_f64().unwrap();
        // Relative: the loss moves by at most 2|y - t| (MSE; cross-entropy and BCE: 1) times the
        // logits' difference (measured ~2e-7) plus a few ulps of itself (regression's 3.3 has an
        // ulp of 2.4e-7); a wrong reduction or loss moves it by a factor.
        let rel = (f64::from(loss) - expected).abs() / expected.abs();
        within(&format!("{problem_type}: loss vs transformers', relative"), rel, 1e-5);
    }
}

const TOPICS: [&str; 5] = ["billing", "bug report", "feature request", "login", "shipping"];

/// A support-ticket CSV: `text` and a string `category` of five classes, 120 rows, each
/// class's tickets sharing a word.
fn tickets(dir: &Path) -> PathBuf {
    let path = dir.join("tickets.csv");
    let mut csv = String::from("id,text,category\n");
    for i in 0..120 {
        let class = (i * 7) % 5;
        csv.push_str(&format!(
            "{i},\"the w{} plot , w{} w{} .\",{}\n",
            30 + class,
            30 + class,
            60 + i % 40,
            TOPICS[class]
        ));
    }
    std::fs::write(&path, csv).unwrap();
    path
}

/// `lora predict` on one input: its one output line.
fn predict_one(model: &str, adapter: &Path, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["predict", "--model", model, "--adapter", adapter.to_str().unwrap()];
    all.extend_from_slice(args);
    let out = ok(lora(&all));
    assert_eq!(out.lines().count(), 1, "{out}");
    serde_json::from_str(out.trim()).unwrap()
}

fn json_file(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&read(path)).unwrap()
}

/// The promise: a CSV with `text` and a string label of five classes trains with only
/// `--data` and the label's column; the classes are named everywhere a user looks.
#[test]
fn five_string_classes_from_a_csv_with_only_the_label_column() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny_base_model(tmp.path());
    let data = tickets(tmp.path());
    let run = tmp.path().join("run");
    let (m, d, r) = (model.to_str().unwrap(), data.to_str().unwrap(), run.to_str().unwrap());
    ok(lora(&[
        "train",
        "--model",
        m,
        "--data",
        d,
        "--set",
        "data.label_column=category",
        "--output-dir",
        r,
        "--quiet",
    ]));

    let summary = json_file(&run.join("summary.json"));
    assert_eq!(summary["problem_type"], "single_label_classification");
    assert_eq!(summary["label_names"], serde_json::json!(TOPICS), "sorted, as datasets' class_encode_column");
    assert_eq!(summary["metric_for_best_model"], "accuracy");
    let last = summary["epochs"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["eval_samples"], 30, "a quarter of one file held out");
    let matrix = last["confusion_matrix"].as_array().unwrap();
    assert_eq!(matrix.len(), 5);
    assert_eq!(matrix.iter().flat_map(|r| r.as_array().unwrap()).map(|v| v.as_u64().unwrap()).sum::<u64>(), 30);
    assert_eq!(last["per_class"].as_array().unwrap().len(), 5);
    assert!(last["eval_f1_macro"].as_f64().is_some() && last.get("eval_f1").is_none(), "{last}");

    let adapter = run.join("adapter");
    let labels = json_file(&adapter.join("labels.json"));
    assert_eq!((labels["num_labels"].as_u64(), labels["label2id"]["login"].as_u64()), (Some(5), Some(3)));
    let a = adapter.to_str().unwrap();
    let row = predict_one(m, &adapter, &["--text", "the w33 plot , w33 ."]);
    assert!(TOPICS.contains(&row["label"].as_str().unwrap()), "{row}");
    assert_eq!(row["probs"].as_array().unwrap().len(), 5);

    // eval reads the CSV's string labels with the adapter's classes.
    let eval: serde_json::Value = serde_json::from_str(&ok(lora(&[
        "eval",
        "--model",
        m,
        "--adapter",
        a,
        "--data",
        d,
        "--label-column",
        "category",
    ])))
    .unwrap();
    assert_eq!(eval["eval_samples"], 120);

    // merge: transformers finds the names in config.json.
    let merged = tmp.path().join("merged");
    ok(lora(&["merge", "--model", m, "--adapter", a, "--output", merged.to_str().unwrap()]));
    let config = json_file(&merged.join("config.json"));
    assert_eq!(config["id2label"]["4"], "shipping");
    assert_eq!(config["label2id"]["billing"], 0);
    assert_eq!(config["problem_type"], "single_label_classification");

    // The label column's name, misspelt: one line naming the key and what the file has.
    let err = failure(lora(&[
        "train",
        "--model",
        m,
        "--data",
        d,
        "--set",
        "data.label_column=categroy",
        "--output-dir",
        r,
        "--overwrite",
    ]));
    assert!(err.contains("data.label_column") && err.contains("categroy") && err.contains("category"), "{err}");
    // A checkpoint whose head has two labels, for five classes: refused, with what to set.
    let two_rows = tiny_model(&tmp.path().join("with-head"));
    let err = failure(lora(&[
        "train",
        "--model",
        two_rows.to_str().unwrap(),
        "--data",
        d,
        "--set",
        "data.label_column=category",
        "--output-dir",
        r,
        "--overwrite",
    ]));
    assert!(err.contains("2 labels") && err.contains("ignore_mismatched_sizes"), "{err}");
    // A num_labels that does not fit the data.
    let err = failure(lora(&[
        "train",
        "--model",
        m,
        "--data",
        d,
        "--set",
        "data.label_column=category",
        "--set",
        "model.num_labels=2",
        "--output-dir",
        r,
        "--overwrite",
    ]));
    assert!(err.contains("model.num_labels = 2") && err.contains("5 classes (billing, bug report"), "{err}");
}

fn quick<'a>(m: &'a str, d: &'a str, r: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "train",
        "--model",
        m,
        "--data",
        d,
        "--output-dir",
        r,
        "--quiet",
        "--set",
        "training.num_train_epochs=2",
        "--set",
        "training.per_device_train_batch_size=4",
        "--set",
        "training.learning_rate=1e-2",
        // tiny-bert's head has two rows: a new one for this task.
        "--set",
        "model.ignore_mismatched_sizes=true",
    ];
    args.extend_from_slice(extra);
    args
}

/// STS-B's shape: `sentence1`, `sentence2` and a decimal score: a regression on pairs, found
/// without a word of config.
#[test]
fn sentence_pairs_with_a_score_are_a_regression() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny_model(tmp.path());
    let dir = tmp.path().join("sts");
    std::fs::create_dir_all(&dir).unwrap();
    for (split, n) in [("train", 40), ("validation", 12)] {
        let lines: Vec<String> = (0..n)
            .map(|i| {
                let score = (i % 6) as f64 * 0.75;
                serde_json::json!({ "sentence1": format!("the w{} plot", 20 + i % 6), "sentence2": format!("a w{} film", 20 + (i * 5) % 6), "label": score }).to_string()
            })
            .collect();
        std::fs::write(dir.join(format!("{split}.jsonl")), lines.join("\n") + "\n").unwrap();
    }
    let run = tmp.path().join("run");
    let (m, d, r) = (model.to_str().unwrap(), dir.to_str().unwrap(), run.to_str().unwrap());
    ok(lora(&quick(m, d, r, &[])));
    let summary = json_file(&run.join("summary.json"));
    assert_eq!(summary["problem_type"], "regression");
    assert_eq!(summary["metric_for_best_model"], "loss");
    let last = summary["epochs"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["eval_samples"], 12, "all of the validation split");
    assert!(last["eval_mse"].as_f64().unwrap() == last["eval_loss"].as_f64().unwrap());
    assert!(last["eval_mae"].is_number() && last.get("eval_accuracy").is_none(), "{last}");
    assert_eq!(json_file(&run.join("adapter/labels.json"))["problem_type"], "regression");

    let row = predict_one(m, &run.join("adapter"), &["--text", "the w21 plot", "--text-pair", "a w23 film"]);
    // The training file's own columns work as predict's input: the same pair, the same value.
    let input = tmp.path().join("pairs.jsonl");
    std::fs::write(&input, "{\"sentence1\": \"the w21 plot\", \"sentence2\": \"a w23 film\", \"label\": 0.5}\n")
        .unwrap();
    let from_file = predict_one(m, &run.join("adapter"), &["--input", input.to_str().unwrap()]);
    assert_eq!(from_file["value"], row["value"]);
    assert!(row["value"].as_f64().unwrap().is_finite() && row["logits"].as_array().unwrap().len() == 1, "{row}");

    // Balancing a regression is refused with what to set.
    let err = failure(lora(&quick(m, d, r, &["--overwrite", "--set", "data.balanced=true"])));
    assert!(err.contains("data.balanced = false"), "{err}");
}

/// Labels as lists: multi-label classification, sigmoid scores and a threshold in predict.
#[test]
fn label_lists_are_multi_label() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny_model(tmp.path());
    let path = tmp.path().join("tagged.jsonl");
    let tags = ["acting", "music", "plot"];
    let lines: Vec<String> = (0..60)
        .map(|i| {
            let on: Vec<&str> = tags.iter().enumerate().filter(|(t, _)| (i >> t) & 1 == 1).map(|(_, n)| *n).collect();
            let words: Vec<String> =
                (0..3).map(|t| if (i >> t) & 1 == 1 { format!("w{}", 40 + t) } else { "the".into() }).collect();
            serde_json::json!({ "text": words.join(" "), "labels": on }).to_string()
        })
        .collect();
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    let run = tmp.path().join("run");
    let (m, d, r) = (model.to_str().unwrap(), path.to_str().unwrap(), run.to_str().unwrap());
    ok(lora(&quick(m, d, r, &["--set", "training.metric_for_best_model=f1_micro"])));
    let summary = json_file(&run.join("summary.json"));
    assert_eq!(summary["problem_type"], "multi_label_classification");
    assert_eq!(summary["label_names"], serde_json::json!(tags));
    assert_eq!(summary["metric_for_best_model"], "f1_micro");
    let last = summary["epochs"].as_array().unwrap().last().unwrap().clone();
    for key in ["eval_accuracy", "eval_f1_micro", "eval_f1_macro"] {
        assert!(last[key].as_f64().is_some_and(|v| (0.0..=1.0).contains(&v)), "{key}: {last}");
    }
    let row = predict_one(m, &run.join("adapter"), &["--text", "w40 w41 the", "--threshold", "0.0"]);
    assert_eq!(row["labels"], serde_json::json!(tags), "every class passes a threshold of 0: {row}");
    assert_eq!(row["scores"].as_array().unwrap().len(), 3);
}
