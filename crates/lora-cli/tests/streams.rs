//! Closed and full standard streams (issue #24): a result that cannot be written to standard
//! output is an error naming it (the result file, where there is one, is written first); training
//! with `--json` into a closed pipe stops as Ctrl-C does, with a checkpoint `--resume` continues;
//! a full standard error loses messages, never the command. No case panics.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

mod common;

use std::fs::File;
use std::process::{Command, Stdio};

use common::{lora, ok, tiny_data, tiny_model, train_args};

fn lora_cmd() -> Command {
    Command::new(env!("CARGO_BIN_EXE_lora"))
}

#[test]
fn json_training_into_a_closed_pipe_checkpoints_and_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny_model(tmp.path());
    let data = tiny_data(tmp.path());
    let out = tmp.path().join("run");
    let (m, d, o) = (model.to_str().unwrap(), data.to_str().unwrap(), out.to_str().unwrap());
    let args: Vec<&str> =
        train_args(m, d, o, &[]).into_iter().map(|a| if a == "--quiet" { "--json" } else { a }).collect();
    // `lora train --json | head -0`: the pipe's reading end is closed before the first line.
    let mut child = lora_cmd().args(&args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    drop(child.stdout.take());
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(130), "stopped as by Ctrl-C: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(stderr.contains("cannot write to standard output"), "{stderr}");
    assert!(stderr.contains("continue with `lora train --resume"), "{stderr}");
    assert!(std::fs::read_dir(out.join("checkpoints")).unwrap().count() >= 1);
    assert!(!out.join("adapter").exists(), "the run did not finish");
    ok(lora(&["train", "--resume", "--output-dir", o, "--quiet"]));
    assert!(out.join("adapter/adapter_model.safetensors").is_file());
}

/// The tiny model, its data, and an adapter trained on them, under `dir`.
fn trained(dir: &std::path::Path) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    let model = tiny_model(dir);
    let data = tiny_data(dir);
    let out = dir.join("run");
    ok(lora(&train_args(model.to_str().unwrap(), data.to_str().unwrap(), out.to_str().unwrap(), &[])));
    (model, data, out.join("adapter"))
}

#[test]
fn a_full_stdout_is_an_error_naming_it_and_a_full_stderr_loses_only_messages() {
    let tmp = tempfile::tempdir().unwrap();
    let (model, data, adapter) = trained(tmp.path());
    let (m, d, a) = (model.to_str().unwrap(), data.to_str().unwrap(), adapter.to_str().unwrap());
    let full = || File::options().write(true).open("/dev/full").unwrap();

    let results = tmp.path().join("eval.json");
    for args in [
        vec!["eval", "--model", m, "--adapter", a, "--data", d, "--output", results.to_str().unwrap()],
        vec!["predict", "--model", m, "--adapter", a, "--text", "the film was good"],
    ] {
        let output = lora_cmd().args(&args).stdout(full()).output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{args:?}: {stderr}");
        assert!(stderr.contains("cannot write to standard output"), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    assert!(results.is_file(), "eval wrote its file before standard output");

    // Messages only on stderr: the command does its work and says 0.
    let merged = tmp.path().join("merged");
    let output = lora_cmd()
        .args(["merge", "--model", m, "--adapter", a, "--output", merged.to_str().unwrap()])
        .stderr(full())
        .output()
        .unwrap();
    assert!(output.status.success());
    assert!(merged.join("config.json").is_file());
    // And an error with a full stderr still exits 1.
    let output = lora_cmd()
        .args(["predict", "--model", m, "--adapter", "/nowhere", "--text", "x"])
        .stderr(full())
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
}

#[test]
fn predict_answers_as_it_reads_and_its_output_file_is_whole_or_absent() {
    use std::io::{BufRead, BufReader, Write};
    use std::time::Duration;
    let tmp = tempfile::tempdir().unwrap();
    let (model, _, adapter) = trained(tmp.path());
    let (m, a) = (model.to_str().unwrap(), adapter.to_str().unwrap());

    // Input from a pipe that stays open: the first window (16 lines at --batch-size 1) is
    // answered before the rest of the input exists.
    let fifo = tmp.path().join("texts.fifo");
    assert!(Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let mut child = lora_cmd()
        .args(["predict", "--model", m, "--adapter", a, "--input", fifo.to_str().unwrap(), "--batch-size", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut writer = File::options().write(true).open(&fifo).unwrap();
    for i in 0..16 {
        writeln!(writer, "the film was good w{i}").unwrap();
    }
    writer.flush().unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let first = rx.recv_timeout(Duration::from_secs(120)).expect("an answer before the input ends");
    assert!(first.contains("\"line\":1"), "{first}");
    writeln!(writer, "a dull plot").unwrap();
    drop(writer);
    let status = child.wait().unwrap();
    assert!(status.success());
    let mut lines = vec![first];
    lines.extend(rx.iter());
    assert_eq!(lines.len(), 17);
    assert!(lines[16].contains("\"line\":17"), "{}", lines[16]);

    // An input error part-way: `--output` is not written at all (nor left as a temporary).
    let texts = tmp.path().join("texts.jsonl");
    let mut body = String::new();
    for i in 0..40 {
        body.push_str(&format!("{{\"text\": \"good {i}\"}}\n"));
    }
    body.push_str("not json\n");
    std::fs::write(&texts, body).unwrap();
    let result = tmp.path().join("out/predictions.jsonl");
    std::fs::create_dir_all(result.parent().unwrap()).unwrap();
    let stderr = common::failure(lora(&[
        "predict",
        "--model",
        m,
        "--adapter",
        a,
        "--input",
        texts.to_str().unwrap(),
        "--batch-size",
        "1",
        "--output",
        result.to_str().unwrap(),
    ]));
    assert!(stderr.contains("texts.jsonl:41"), "{stderr}");
    assert_eq!(std::fs::read_dir(result.parent().unwrap()).unwrap().count(), 0, "no file, no temporary");
}

/// A line far longer than the model reads is read only as far as truncation needs (see
/// docs/guarantees.md for its memory): its answer is its first words' answer; a line whose
/// first bytes make too few tokens to be sure of that is answered with a warning naming it.
#[test]
fn predict_reads_a_huge_line_only_as_far_as_the_model_reads() {
    let tmp = tempfile::tempdir().unwrap();
    let (model, _, adapter) = trained(tmp.path());
    let (m, a) = (model.to_str().unwrap(), adapter.to_str().unwrap());
    let words = "the film was good , a superb plot w21 . ";
    let input = tmp.path().join("huge.txt");
    let huge = words.repeat(3_000_000 / words.len());
    let no_spaces = "w".repeat(400_000);
    std::fs::write(&input, format!("{huge}\n{}\n{no_spaces}\n", words.repeat(10))).unwrap();
    let out = lora_cmd()
        .args(["predict", "--model", m, "--adapter", a, "--input", input.to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let answers: Vec<serde_json::Value> =
        String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(answers.len(), 3);
    assert_eq!(answers[0]["logits"], answers[1]["logits"], "3 MB of text answers as its first 32 tokens do");
    assert!(stderr.contains("huge.txt:3: only the line's first") && !stderr.contains("huge.txt:1"), "{stderr}");
}
