//! What `lora` promises when a user or the machine does something unexpected (docs/guarantees.md):
//! a run owns its directory and never destroys it by mistake, a resumed run's record is the
//! uninterrupted one's, a broken result is never reported as a success, and nothing waits
//! forever. Each test reproduces a case that once went wrong.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

mod common;

use common::*;

/// A tiny model, tiny data and a finished run in `tmp`: (model, data, run directory).
fn finished_run(tmp: &Path, extra: &[&str]) -> (PathBuf, PathBuf, PathBuf) {
    let (model, data) = (tiny_model(tmp), tiny_data(tmp));
    let run = tmp.join("run");
    ok(lora(&train_args(model.to_str().unwrap(), data.to_str().unwrap(), run.to_str().unwrap(), extra)));
    (model, data, run)
}

/// The tiny model without its classifier, as a base checkpoint (all-MiniLM-L6-v2) comes: the
/// run initialises one with `model.num_labels` rows.
fn headless_model(tmp: &Path) -> PathBuf {
    let model = tiny_model(tmp);
    let path = model.join("model.safetensors");
    let bytes = read(&path);
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let kept: Vec<(String, safetensors::tensor::TensorView)> =
        file.tensors().into_iter().filter(|(k, _)| !k.starts_with("classifier")).collect();
    let written = safetensors::serialize(kept, None).unwrap();
    std::fs::write(&path, written).unwrap();
    model
}

/// Every file under `dir` with its bytes.
fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut files = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                files.push((path.strip_prefix(dir).unwrap().to_path_buf(), std::fs::read(&path).unwrap()));
            }
        }
    }
    files.sort();
    files
}

fn spawn(args: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_lora")).args(args).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap()
}

fn signal(child: &Child, name: &str) {
    assert!(Command::new("kill").args([&format!("-{name}"), &child.id().to_string()]).status().unwrap().success());
}

fn wait_for(path: &Path, what: &str) {
    let started = Instant::now();
    while !path.exists() {
        assert!(started.elapsed() < Duration::from_secs(60), "{what}: {} never appeared", path.display());
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A JSON value with its timings (seconds, throughputs, memory) taken out.
fn untimed(mut value: serde_json::Value) -> serde_json::Value {
    match &mut value {
        serde_json::Value::Object(map) => {
            map.retain(|k, _| !(k.contains("seconds") || k.contains("per_second") || k.contains("peak_rss")));
            for v in map.values_mut() {
                *v = untimed(v.take());
            }
        }
        serde_json::Value::Array(items) => {
            for v in items {
                *v = untimed(v.take());
            }
        }
        _ => {}
    }
    value
}

fn json_lines(path: &Path) -> Vec<serde_json::Value> {
    String::from_utf8(read(path)).unwrap().lines().map(|l| untimed(serde_json::from_str(l).unwrap())).collect()
}

fn summary(dir: &Path) -> serde_json::Value {
    untimed(serde_json::from_slice(&read(&dir.join("summary.json"))).unwrap())
}

#[test]
fn overwrite_with_a_bad_input_leaves_the_earlier_run_as_it_was() {
    let tmp = tempfile::tempdir().unwrap();
    let (model, data, run) = finished_run(tmp.path(), &[]);
    let (m, d, r) = (model.to_str().unwrap(), data.to_str().unwrap(), run.to_str().unwrap());
    let before = snapshot(&run);
    let missing = tmp.path().join("no-such-data");
    let err = failure(lora(&train_args(m, missing.to_str().unwrap(), r, &["--overwrite"])));
    assert!(err.contains("no-such-data"), "{err}");
    let err = failure(lora(&train_args("no/such/model", d, r, &["--overwrite"])));
    assert!(err.contains("no/such/model"), "{err}");
    let headless = headless_model(&tmp.path().join("headless"));
    let args = ["--overwrite", "--set", "model.num_labels=3"];
    let err = failure(lora(&train_args(headless.to_str().unwrap(), d, r, &args)));
    assert!(err.contains("num_labels"), "{err}");
    // Issue 40: TensorBoard's logging_dir that cannot be created (its parent is a file) deleted
    // the finished run and then failed; it is now checked first.
    let blocked = tmp.path().join("a-file");
    std::fs::write(&blocked, "not a directory").unwrap();
    let tb = format!("training.logging_dir=\"{}\"", blocked.join("tb").display());
    let args = ["--overwrite", "--set", "training.report_to=\"tensorboard\"", "--set", &tb];
    let err = failure(lora(&train_args(m, d, r, &args)));
    assert!(err.contains("training.logging_dir") && err.contains("nothing was changed"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "one error line: {err}");
    assert_eq!(snapshot(&run), before, "the earlier run's files are untouched");
    // With good inputs, --overwrite replaces the run.
    ok(lora(&train_args(m, d, r, &["--overwrite", "--set", "training.num_train_epochs=1"])));
    assert_eq!(summary(&run)["epochs"].as_array().unwrap().len(), 1);
    assert!(!run.join("checkpoints/epoch-2").exists(), "the replaced run's checkpoints are gone");
    // A logging_dir inside the run's directory holds the replacing run's event file alone
    // (it kept the replaced run's too), and a user's other file there stays.
    let inside = format!("training.logging_dir=\"{}\"", run.join("tb").display());
    let args = ["--overwrite", "--set", "training.report_to=\"tensorboard\"", "--set", &inside];
    ok(lora(&train_args(m, d, r, &args)));
    std::fs::write(run.join("tb/notes.txt"), "mine").unwrap();
    std::thread::sleep(Duration::from_millis(1100)); // event file names carry the second
    ok(lora(&train_args(m, d, r, &args)));
    let mut names: Vec<String> = std::fs::read_dir(run.join("tb"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names.len(), 2, "{names:?}");
    assert!(names[0].starts_with("events.out.tfevents.") && names[1] == "notes.txt", "{names:?}");
}

#[test]
fn a_second_run_into_the_same_directory_is_refused_with_the_holders_pid() {
    let tmp = tempfile::tempdir().unwrap();
    let (model, data) = (tiny_model(tmp.path()), tiny_data(tmp.path()));
    let (m, d) = (model.to_str().unwrap(), data.to_str().unwrap());
    let run = tmp.path().join("run");
    let r = run.to_str().unwrap();
    let long = ["--set", "training.num_train_epochs=200"];
    let first = spawn(&train_args(m, d, r, &long));
    wait_for(&run.join("checkpoints/epoch-1"), "the first run's checkpoint");
    let err = failure(lora(&train_args(m, d, r, &["--overwrite"])));
    assert!(err.contains("in use") && err.contains(&first.id().to_string()), "{err}");
    let err = failure(lora(&train_args(m, d, r, &["--resume"])));
    assert!(err.contains("in use"), "{err}");
    signal(&first, "INT");
    let out = first.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", String::from_utf8_lossy(&out.stderr));
    // One run's record: steps strictly increasing, nothing interleaved.
    let steps: Vec<u64> = json_lines(&run.join("metrics.jsonl"))
        .iter()
        .filter(|l| l.get("loss").is_some())
        .map(|l| l["step"].as_u64().unwrap())
        .collect();
    assert!(steps.windows(2).all(|w| w[0] < w[1]), "{steps:?}");
    // The lock went with its holder: the run can be resumed.
    assert!(!run.join(".lora.lock").exists());
}

#[test]
fn a_lock_left_by_a_killed_run_is_stale() {
    let tmp = tempfile::tempdir().unwrap();
    let (model, data) = (tiny_model(tmp.path()), tiny_data(tmp.path()));
    let (m, d) = (model.to_str().unwrap(), data.to_str().unwrap());
    let run = tmp.path().join("run");
    let r = run.to_str().unwrap();
    let mut first = spawn(&train_args(m, d, r, &["--set", "training.num_train_epochs=200"]));
    wait_for(&run.join("checkpoints/epoch-1"), "the first run's checkpoint");
    first.kill().unwrap();
    first.wait().unwrap();
    assert!(run.join(".lora.lock").exists(), "kill -9 leaves the lock file");
    ok(lora(&train_args(m, d, r, &["--resume"])));
    assert!(run.join("adapter/adapter_model.safetensors").is_file());
}

#[test]
fn merge_never_writes_over_its_inputs_or_an_existing_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let (model, _, run) = finished_run(tmp.path(), &[]);
    let adapter = run.join("adapter");
    let (m, a) = (model.to_str().unwrap(), adapter.to_str().unwrap());
    let model_files = snapshot(&model);
    let adapter_files = snapshot(&adapter);
    for output in [model.clone(), adapter.clone(), tmp.path().to_path_buf(), run.clone()] {
        let err = failure(lora(&["merge", "--model", m, "--adapter", a, "--output", output.to_str().unwrap()]));
        assert!(err.contains("is or holds an input"), "{err}");
        let err = failure(lora(&[
            "merge",
            "--model",
            m,
            "--adapter",
            a,
            "--output",
            output.to_str().unwrap(),
            "--overwrite",
        ]));
        assert!(err.contains("is or holds an input"), "{err}");
    }
    assert_eq!(snapshot(&model), model_files);
    assert_eq!(snapshot(&adapter), adapter_files);

    let out = tmp.path().join("merged");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("keep.txt"), "mine").unwrap();
    let o = out.to_str().unwrap();
    let err = failure(lora(&["merge", "--model", m, "--adapter", a, "--output", o]));
    assert!(err.contains("not empty") && err.contains("--overwrite"), "{err}");
    assert!(out.join("keep.txt").exists());
    let done = lora(&["merge", "--model", m, "--adapter", a, "--output", o, "--overwrite"]);
    let said = String::from_utf8_lossy(&done.stderr).to_string();
    ok(done);
    assert!(said.contains("target modules: query, value") && !said.contains("Names("), "{said}");
    assert!(out.join("model.safetensors").is_file() && !out.join("keep.txt").exists());
    let leftovers: Vec<_> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "no temporary directory left: {leftovers:?}");
    // An empty directory is fine without --overwrite.
    let empty = tmp.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    ok(lora(&["merge", "--model", m, "--adapter", a, "--output", empty.to_str().unwrap()]));
}

#[test]
fn a_resumed_run_records_what_the_uninterrupted_run_did() {
    let tmp = tempfile::tempdir().unwrap();
    let (model, data) = (tiny_model(tmp.path()), tiny_data(tmp.path()));
    let (m, d) = (model.to_str().unwrap(), data.to_str().unwrap());
    // Log windows of 3 steps across epochs of 4: an interruption lands inside a window.
    let args = ["--set", "training.num_train_epochs=60", "--set", "training.logging_steps=3"];
    // A space in the run's path: the suggested command quotes it (issue 40).
    let (a, b) = (tmp.path().join("a"), tmp.path().join("run b"));
    ok(lora(&train_args(m, d, a.to_str().unwrap(), &args)));
    let child = spawn(&train_args(m, d, b.to_str().unwrap(), &args));
    wait_for(&b.join("checkpoints/epoch-3"), "an epoch checkpoint");
    signal(&child, "INT");
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "the run ended before Ctrl-C arrived: {stderr}");
    let suggested = format!("lora train --resume --output-dir '{}'", b.display());
    assert!(stderr.contains(&suggested), "{stderr}");
    ok(lora(&["train", "--resume", "--output-dir", b.to_str().unwrap(), "--quiet"]));
    assert_eq!(json_lines(&b.join("metrics.jsonl")), json_lines(&a.join("metrics.jsonl")));
    // The same summary but for where each run lives.
    let (mut sa, mut sb) = (summary(&a), summary(&b));
    for s in [&mut sa, &mut sb] {
        s["config"]["training"]["output_dir"] = serde_json::Value::Null;
    }
    assert_eq!(sb, sa);
    assert_eq!(read(&a.join("adapter/adapter_model.safetensors")), read(&b.join("adapter/adapter_model.safetensors")));
}

#[test]
fn resume_continues_the_directory_the_command_names() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, _, run) = finished_run(tmp.path(), &[]);
    let copy = tmp.path().join("copy");
    std::fs::create_dir_all(copy.join("checkpoints")).unwrap();
    for f in ["config.toml", "metrics.jsonl"] {
        std::fs::copy(run.join(f), copy.join(f)).unwrap();
    }
    let epoch1 = snapshot(&run.join("checkpoints/epoch-1"));
    std::fs::create_dir_all(copy.join("checkpoints/epoch-1")).unwrap();
    for (name, bytes) in &epoch1 {
        std::fs::write(copy.join("checkpoints/epoch-1").join(name), bytes).unwrap();
    }
    let original = snapshot(&run);
    // The copy's config.toml still names the original directory.
    let config = copy.join("config.toml");
    ok(lora(&["train", "--resume", "--config", config.to_str().unwrap(), "--quiet"]));
    assert_eq!(snapshot(&run), original, "the original run is untouched");
    assert_eq!(
        read(&copy.join("adapter/adapter_model.safetensors")),
        read(&run.join("adapter/adapter_model.safetensors"))
    );
}

#[test]
fn resume_refuses_a_changed_config_but_takes_more_epochs() {
    let tmp = tempfile::tempdir().unwrap();
    let (model, data, run) = finished_run(tmp.path(), &[]);
    let (m, d, r) = (model.to_str().unwrap(), data.to_str().unwrap(), run.to_str().unwrap());
    let err = failure(lora(&["train", "--resume", "--output-dir", r, "--set", "training.learning_rate=1"]));
    assert!(err.contains("training.learning_rate") && err.contains("num_train_epochs"), "{err}");
    let err = failure(lora(&["train", "--resume", "--overwrite", "--output-dir", r]));
    assert!(err.contains("--overwrite") && err.contains("--resume"), "{err}");
    let err = failure(lora(&train_args(m, d, r, &[])));
    assert!(err.contains("finished run") && err.contains("--overwrite"), "{err}");
    ok(lora(&["train", "--resume", "--output-dir", r, "--set", "training.num_train_epochs=3", "--quiet"]));
    assert_eq!(summary(&run)["epochs"].as_array().unwrap().len(), 3);
    assert!(String::from_utf8(read(&run.join("config.toml"))).unwrap().contains("num_train_epochs = 3"));
}

#[test]
fn a_run_killed_before_its_first_checkpoint_simply_starts_again() {
    let tmp = tempfile::tempdir().unwrap();
    let (model, data) = (tiny_model(tmp.path()), tiny_data(tmp.path()));
    let (m, d) = (model.to_str().unwrap(), data.to_str().unwrap());
    for resume in [false, true] {
        let run = tmp.path().join(format!("run-{resume}"));
        std::fs::create_dir_all(&run).unwrap();
        // What a run killed in its first epoch leaves.
        std::fs::write(run.join("config.toml"), "[training]\nnum_train_epochs = 2\n").unwrap();
        std::fs::write(run.join("metrics.jsonl"), "{\"step\": 2, \"loss\": 0.7}\n").unwrap();
        std::fs::write(run.join(".summary.json.tmp-99999"), "half").unwrap();
        std::fs::create_dir_all(run.join("checkpoints/.tmp-epoch-1")).unwrap();
        let r = run.to_str().unwrap();
        ok(lora(&train_args(m, d, r, if resume { &["--resume"] } else { &[] })));
        assert_eq!(summary(&run)["epochs"].as_array().unwrap().len(), 2);
        assert!(!run.join(".summary.json.tmp-99999").exists() && !run.join("checkpoints/.tmp-epoch-1").exists());
        let first = &json_lines(&run.join("metrics.jsonl"))[0];
        assert_ne!(first["loss"], 0.7, "the dead run's log is not kept");
    }
}

#[test]
fn sigterm_writes_a_checkpoint_as_ctrl_c_does() {
    let tmp = tempfile::tempdir().unwrap();
    let (model, data) = (tiny_model(tmp.path()), tiny_data(tmp.path()));
    let (m, d) = (model.to_str().unwrap(), data.to_str().unwrap());
    let run = tmp.path().join("run");
    let child = spawn(&train_args(m, d, run.to_str().unwrap(), &["--set", "training.num_train_epochs=200"]));
    wait_for(&run.join("checkpoints/epoch-2"), "an epoch checkpoint");
    signal(&child, "TERM");
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{stderr}");
    assert!(stderr.contains("interrupted: wrote"), "{stderr}");
    assert!(!run.join("adapter").exists());
}

/// An address that accepts connections and never answers (the kernel completes the handshake
/// for a listener that never calls accept).
fn silent_endpoint() -> (TcpListener, String) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    (listener, endpoint)
}

#[test]
fn a_hub_that_never_answers_is_an_error_naming_the_endpoint_and_file() {
    let tmp = tempfile::tempdir().unwrap();
    let (_listener, endpoint) = silent_endpoint();
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_lora"))
        .args(["merge", "--model", "some-org/some-model", "--adapter", "x", "--output", "y"])
        .env("HF_ENDPOINT", &endpoint)
        .env("HF_HOME", tmp.path())
        .env("HF_HUB_DOWNLOAD_TIMEOUT", "0.5")
        .env_remove("HF_HUB_OFFLINE")
        .output()
        .unwrap();
    let err = failure(out);
    assert!(started.elapsed() < Duration::from_secs(30), "took {:?}", started.elapsed());
    assert!(err.contains(&endpoint) && err.contains("config.json") && err.contains("HF_HUB_DOWNLOAD_TIMEOUT"), "{err}");
    assert!(err.contains("3 attempts"), "{err}");
}

#[test]
fn ctrl_c_stops_commands_other_than_train_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let (_listener, endpoint) = silent_endpoint();
    let child = Command::new(env!("CARGO_BIN_EXE_lora"))
        .args(["merge", "--model", "some-org/some-model", "--adapter", "x", "--output", "y"])
        .env("HF_ENDPOINT", &endpoint)
        .env("HF_HOME", tmp.path())
        .env("HF_HUB_DOWNLOAD_TIMEOUT", "60")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    let started = Instant::now();
    signal(&child, "INT");
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130));
    assert!(started.elapsed() < Duration::from_secs(5));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("checkpoint"), "{stderr}");
}

#[test]
fn divergence_on_the_last_step_fails_and_writes_no_adapter() {
    let tmp = tempfile::tempdir().unwrap();
    let (model, data) = (tiny_model(tmp.path()), tiny_data(tmp.path()));
    let run = tmp.path().join("run");
    // One step, whose update blows the weights up: the training loss was finite, the model is not.
    let args = [
        "--set",
        "training.num_train_epochs=1",
        "--set",
        "data.train_size=4",
        "--set",
        "training.learning_rate=1e30",
        "--set",
        "training.max_grad_norm=0",
    ];
    let err = failure(lora(&train_args(model.to_str().unwrap(), data.to_str().unwrap(), run.to_str().unwrap(), &args)));
    assert!(err.contains("evaluation loss after epoch 1") && err.contains("diverged"), "{err}");
    assert!(!run.join("adapter").exists() && !run.join("checkpoints/epoch-1").exists());
}

/// Overwrites every element of one adapter tensor with `value`.
fn poison(adapter: &Path, value: f32) {
    let path = adapter.join("adapter_model.safetensors");
    let bytes = read(&path);
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut tensors: Vec<(String, Vec<usize>, Vec<u8>)> =
        file.tensors().into_iter().map(|(k, v)| (k, v.shape().to_vec(), v.data().to_vec())).collect();
    tensors.sort();
    let (_, _, data) = tensors.iter_mut().find(|(k, _, _)| k.contains("lora_B")).unwrap();
    for chunk in data.chunks_exact_mut(4) {
        chunk.copy_from_slice(&value.to_le_bytes());
    }
    let views: Vec<(String, safetensors::tensor::TensorView)> = tensors
        .iter()
        .map(|(k, s, d)| {
            (k.clone(), safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), d).unwrap())
        })
        .collect();
    std::fs::write(&path, safetensors::serialize(views, None).unwrap()).unwrap();
}

#[test]
fn eval_predict_and_merge_refuse_a_broken_adapter() {
    let tmp = tempfile::tempdir().unwrap();
    let (model, data, run) = finished_run(tmp.path(), &[]);
    let adapter = run.join("adapter");
    poison(&adapter, f32::NAN);
    let (m, a, d) = (model.to_str().unwrap(), adapter.to_str().unwrap(), data.to_str().unwrap());
    let merged = tmp.path().join("merged");
    for args in [
        vec!["eval", "--model", m, "--adapter", a, "--data", d, "--eval-size", "8"],
        vec!["predict", "--model", m, "--adapter", a, "--text", "a good film"],
        vec!["merge", "--model", m, "--adapter", a, "--output", merged.to_str().unwrap()],
    ] {
        let err = failure(lora(&args));
        assert!(err.contains("lora_B") && err.contains("NaN or infinite"), "{}: {err}", args[0]);
    }
    assert!(!merged.exists() && !run.join("eval_results.json").exists());

    // Finite but overflowing: logits that are not numbers are not a prediction either.
    poison(&adapter, 3e38);
    let err = failure(lora(&["predict", "--model", m, "--adapter", a, "--text", "a good film"]));
    assert!(err.contains("non-finite logits") && err.contains("--text:1"), "{err}");
    let err = failure(lora(&["eval", "--model", m, "--adapter", a, "--data", d, "--eval-size", "8"]));
    assert!(err.contains("non-finite loss"), "{err}");
}

#[test]
fn num_labels_must_fit_the_data() {
    let tmp = tempfile::tempdir().unwrap();
    let (model, data) = (headless_model(tmp.path()), tiny_data(tmp.path()));
    let run = tmp.path().join("run");
    let args = train_args(
        model.to_str().unwrap(),
        data.to_str().unwrap(),
        run.to_str().unwrap(),
        &["--set", "model.num_labels=3"],
    );
    let err = failure(lora(&args));
    assert!(err.contains("model.num_labels = 3") && err.contains("2 classes (0, 1)"), "{err}");
    assert!(!run.exists(), "a run that failed before its first write leaves nothing");
}

/// Issue 40: an interrupted `predict --output F` left `.F.tmp-PID` behind, one per interrupt
/// (the Ctrl-C handler exits without running destructors); now neither it nor F is left.
#[test]
fn an_interrupted_predict_leaves_no_temporary() {
    let tmp = tempfile::tempdir().unwrap();
    let (model, _, run) = finished_run(tmp.path(), &[]);
    let (m, a) = (model.to_str().unwrap(), run.join("adapter"));
    let texts = tmp.path().join("many.txt");
    std::fs::write(&texts, "the film was good and the plot was dull\n".repeat(400_000)).unwrap();
    let out = tmp.path().join("out dir");
    std::fs::create_dir_all(&out).unwrap();
    let target = out.join("predictions.jsonl");
    let args = ["predict", "--model", m, "--adapter", a.to_str().unwrap(), "--input", texts.to_str().unwrap()];
    let child = spawn(&[&args[..], &["--output", target.to_str().unwrap()]].concat());
    let temporary = out.join(format!(".predictions.jsonl.tmp-{}", child.id()));
    wait_for(&temporary, "predict's temporary output");
    std::thread::sleep(Duration::from_millis(200));
    signal(&child, "INT");
    let done = child.wait_with_output().unwrap();
    assert_eq!(done.status.code(), Some(130), "{}", String::from_utf8_lossy(&done.stderr));
    let left: Vec<_> = std::fs::read_dir(&out).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[test]
fn predict_answers_every_input_line_in_order() {
    let tmp = tempfile::tempdir().unwrap();
    let (model, _, run) = finished_run(tmp.path(), &[]);
    let (m, a) = (model.to_str().unwrap(), run.join("adapter"));
    let a = a.to_str().unwrap();
    let texts = tmp.path().join("texts.txt");
    std::fs::write(&texts, "the film was good\n\n{ not json, just braces\na dull plot\n").unwrap();
    let lines = ok(lora(&["predict", "--model", m, "--adapter", a, "--input", texts.to_str().unwrap()]));
    let rows: Vec<serde_json::Value> = lines.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(rows.iter().map(|r| r["line"].as_u64().unwrap()).collect::<Vec<_>>(), [1, 2, 3, 4]);

    let jsonl = tmp.path().join("texts.jsonl");
    std::fs::write(&jsonl, "{\"id\": \"a7\", \"text\": \"the film was good\"}\n{\"text\": \"a dull plot\"}\n").unwrap();
    let lines = ok(lora(&["predict", "--model", m, "--adapter", a, "--input", jsonl.to_str().unwrap()]));
    let rows: Vec<serde_json::Value> = lines.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(rows[0]["id"], "a7");
    assert_eq!((rows[1]["line"].as_u64(), rows[1].get("id")), (Some(2), None));
    // The same file read as plain text: two texts that happen to look like JSON.
    let plain = ok(lora(&[
        "predict",
        "--model",
        m,
        "--adapter",
        a,
        "--input",
        jsonl.to_str().unwrap(),
        "--input-format",
        "text",
    ]));
    assert_eq!(plain.lines().count(), 2);
    std::fs::write(&jsonl, "{\"text\": \"good\"}\n\n{\"text\": \"bad\"}\n").unwrap();
    let err = failure(lora(&["predict", "--model", m, "--adapter", a, "--input", jsonl.to_str().unwrap()]));
    assert!(err.contains("texts.jsonl:2") && err.contains("blank"), "{err}");

    let err = failure(lora(&["predict", "--model", m, "--adapter", a, "--text", "x", "--batch-size", "0"]));
    assert!(err.contains("--batch-size") && err.contains("at least 1"), "{err}");
    let err = failure(lora(&["predict", "--model", m, "--adapter", a, "--text", "x", "--max-length", "100000"]));
    assert!(err.contains("--max-length 100000") && err.contains("64 positions"), "{err}");
    for bad in ["1.5", "-0.1", "nan"] {
        let err = failure(lora(&["predict", "--model", m, "--adapter", a, "--text", "x", "--threshold", bad]));
        assert!(err.contains("--threshold") && err.contains("not a probability"), "{bad}: {err}");
    }
}

#[test]
fn errors_say_each_cause_once_and_name_what_failed() {
    let tmp = tempfile::tempdir().unwrap();
    let (model, _, run) = finished_run(tmp.path(), &[]);
    let (m, a) = (model.to_str().unwrap(), run.join("adapter"));
    let a = a.to_str().unwrap();
    let err = failure(lora(&["predict", "--model", m, "--adapter", "no/such/adapter", "--text", "x"]));
    assert_eq!(err.matches("No such file or directory").count(), 1, "{err}");
    assert!(err.contains("no/such/adapter/adapter_config.json"), "{err}");
    // A merge that cannot write says so.
    let blocker = tmp.path().join("a-file");
    std::fs::write(&blocker, "").unwrap();
    let out = blocker.join("merged");
    let err = failure(lora(&["merge", "--model", m, "--adapter", a, "--output", out.to_str().unwrap()]));
    assert!(err.contains("cannot create") && !err.contains("cannot read"), "{err}");
}

#[test]
fn a_second_merge_into_the_same_output_is_refused_while_the_first_writes() {
    let tmp = tempfile::tempdir().unwrap();
    let (model, _, run) = finished_run(tmp.path(), &[]);
    let (m, a) = (model.to_str().unwrap(), run.join("adapter"));
    let merged = tmp.path().join("merged");
    // Another merge holds the output's lock (beside it: the output does not exist yet).
    let held = std::fs::File::create(tmp.path().join(".merged.lock")).unwrap();
    held.lock().unwrap();
    let err =
        failure(lora(&["merge", "--model", m, "--adapter", a.to_str().unwrap(), "--output", merged.to_str().unwrap()]));
    assert!(err.contains("is being written by another `lora merge`"), "{err}");
    assert!(!merged.exists());
    held.unlock().unwrap();
    drop(held);
    ok(lora(&["merge", "--model", m, "--adapter", a.to_str().unwrap(), "--output", merged.to_str().unwrap()]));
    assert!(merged.join("config.json").is_file());
    assert!(!tmp.path().join(".merged.lock").exists(), "the lock goes with the merge");

    // What a killed merge left beside the output is removed by the next merge into it.
    for left in [".merged.tmp-999999", ".merged.old-999999"] {
        std::fs::create_dir_all(tmp.path().join(left).join("x")).unwrap();
    }
    ok(lora(&[
        "merge",
        "--model",
        m,
        "--adapter",
        a.to_str().unwrap(),
        "--output",
        merged.to_str().unwrap(),
        "--overwrite",
    ]));
    let names: Vec<String> =
        std::fs::read_dir(tmp.path()).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert!(!names.iter().any(|n| n.starts_with(".merged.")), "{names:?}");
}

#[test]
fn a_second_export_into_the_same_directory_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tiny_data(tmp.path());
    let out = tmp.path().join("export");
    std::fs::create_dir_all(&out).unwrap();
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/../../configs/imdb-minilm-lora.toml");
    let args = [
        "export-data",
        "--config",
        config,
        "--data",
        data.to_str().unwrap(),
        "--set",
        "data.train_size=8",
        "--set",
        "data.eval_size=4",
        "--output",
        out.to_str().unwrap(),
    ];
    let held = std::fs::File::create(out.join(".lora-export.lock")).unwrap();
    held.lock().unwrap();
    let err = failure(lora(&args));
    assert!(err.contains("is being written by another `lora export-data`"), "{err}");
    assert!(!out.join("train.jsonl").exists());
    held.unlock().unwrap();
    drop(held);
    ok(lora(&args));
    assert!(out.join("train.jsonl").is_file() && !out.join(".lora-export.lock").exists());
}

/// `lora train --resume` on `run` with `extra`, not quiet (what it says about checkpoints is on stderr).
fn resume(run: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["train", "--resume", "--output-dir", run.to_str().unwrap()];
    args.extend_from_slice(extra);
    lora(&args)
}

#[test]
fn resume_never_starts_a_finished_run_over_when_its_checkpoints_are_damaged() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, _, run) = finished_run(tmp.path(), &[]);
    for epoch in [1, 2] {
        std::fs::remove_file(run.join(format!("checkpoints/epoch-{epoch}/trainer_state.json"))).unwrap();
    }
    let before = snapshot(&run);
    let err = failure(resume(&run, &["--set", "training.num_train_epochs=3"]));
    assert!(err.contains("no checkpoint") && err.contains("trainer_state.json is missing"), "{err}");
    assert!(err.contains("epoch-1") && err.contains("epoch-2") && err.contains("nothing was changed"), "{err}");
    assert_eq!(snapshot(&run), before, "the finished run is as it was");
    // No checkpoints at all beside a finished run: refused too, never a fresh run.
    std::fs::remove_dir_all(run.join("checkpoints")).unwrap();
    let err = failure(resume(&run, &["--set", "training.num_train_epochs=3"]));
    assert!(err.contains("finished run but no checkpoint"), "{err}");
}

#[test]
fn a_damaged_latest_checkpoint_falls_back_to_an_intact_older_one_and_says_so() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, _, run) = finished_run(tmp.path(), &[]);
    let finished = read(&run.join("adapter/adapter_model.safetensors"));
    let optimizer = run.join("checkpoints/epoch-2/optimizer.safetensors");
    let bytes = read(&optimizer);
    std::fs::write(&optimizer, &bytes[..bytes.len() / 2]).unwrap();
    // Under --quiet too (issue 40: it was not mentioned): the same run copied, resumed quietly.
    let quiet = tmp.path().join("quiet");
    assert!(
        Command::new("cp").args(["-a", run.to_str().unwrap(), quiet.to_str().unwrap()]).status().unwrap().success()
    );
    let out = resume(&quiet, &["--quiet"]);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("skipped checkpoint") && stderr.contains("epoch-2: optimizer.safetensors has"), "{stderr}");
    let out = resume(&run, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("skipped checkpoint") && stderr.contains("epoch-2: optimizer.safetensors has"), "{stderr}");
    assert!(stderr.contains("resuming from") && stderr.contains("epoch-1"), "{stderr}");
    // Epoch 2 trained again from epoch 1 is the epoch 2 that was lost.
    assert_eq!(read(&run.join("adapter/adapter_model.safetensors")), finished);
    assert_eq!(summary(&run)["epochs"].as_array().unwrap().len(), 2);
}

#[test]
fn resume_refuses_a_checkpoint_of_another_config_or_other_data_before_changing_anything() {
    let tmp = tempfile::tempdir().unwrap();
    let (model, data, run) = finished_run(tmp.path(), &[]);
    // A whole checkpoint of another run (rank 4) in place of this run's latest.
    let other = tmp.path().join("other");
    let (m, d) = (model.to_str().unwrap(), data.to_str().unwrap());
    ok(lora(&train_args(m, d, other.to_str().unwrap(), &["--set", "lora.r=4"])));
    std::fs::remove_dir_all(run.join("checkpoints/epoch-2")).unwrap();
    std::fs::rename(other.join("checkpoints/epoch-2"), run.join("checkpoints/epoch-2")).unwrap();
    let before = snapshot(&run);
    let err = failure(resume(&run, &["--set", "training.num_train_epochs=3"]));
    assert!(err.contains("another config") && err.contains("lora.r"), "{err}");
    assert_eq!(snapshot(&run), before, "config.toml and the rest untouched");

    // The run's own checkpoints, but the data changed since.
    let (_, data, run) = finished_run(&tmp.path().join("second"), &[]);
    let train = data.join("train.jsonl");
    let text = String::from_utf8(read(&train)).unwrap().replace("the film", "a film");
    std::fs::write(&train, text).unwrap();
    let before = snapshot(&run);
    let err = failure(resume(&run, &["--set", "training.num_train_epochs=3"]));
    assert!(err.contains("the data is not the run's") && err.contains("training subset"), "{err}");
    assert_eq!(snapshot(&run), before);
}

#[test]
fn ambiguous_data_is_refused_and_inferred_tasks_are_said() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny_model(tmp.path());
    let m = model.to_str().unwrap();
    let run = tmp.path().join("run");
    let r = run.to_str().unwrap();
    // train.jsonl beside train.csv.
    let data = tiny_data(tmp.path());
    std::fs::write(data.join("train.csv"), "text,label\nthe film was good,1\n").unwrap();
    let err = failure(lora(&train_args(m, data.to_str().unwrap(), r, &[])));
    assert!(err.contains("train.jsonl") && err.contains("train.csv") && err.contains("2 files"), "{err}");
    std::fs::remove_file(data.join("train.csv")).unwrap();

    // A CSV whose header names `text` twice.
    let csv = tmp.path().join("dup.csv");
    let rows: Vec<String> = (0..40).map(|i| format!("the film was good,w{i},{}", i % 2)).collect();
    std::fs::write(&csv, format!("text,text,label\n{}\n", rows.join("\n"))).unwrap();
    let err = failure(lora(&train_args(m, csv.to_str().unwrap(), r, &[])));
    assert!(err.contains("dup.csv:1") && err.contains("`text` twice") && err.contains("columns 1 and 2"), "{err}");

    // A title column picked as the label: 40 rows, 40 classes.
    let titles = tmp.path().join("titles.jsonl");
    let lines: Vec<String> = (0..40)
        .map(|i| serde_json::json!({"text": "the film was good", "label": format!("title {i}")}).to_string())
        .collect();
    std::fs::write(&titles, lines.join("\n") + "\n").unwrap();
    let err = failure(lora(&train_args(m, titles.to_str().unwrap(), r, &[])));
    assert!(err.contains("40 distinct values in 40 training rows") && err.contains("data.label_column"), "{err}");
    assert!(!run.exists(), "nothing written");

    // Issue 40: twelve short topic names over 96 rows are classes (were refused as a text
    // column by their count alone); twelve sentences are still a text column.
    let topics = tmp.path().join("topics.jsonl");
    let names = [
        "billing",
        "bug report",
        "login",
        "shipping",
        "refund",
        "account",
        "privacy",
        "pricing",
        "api",
        "mobile app",
        "security",
        "other",
    ];
    let lines: Vec<String> = (0..96)
        .map(|i| serde_json::json!({"text": format!("the film was w{}", 20 + i), "label": names[i % 12]}).to_string())
        .collect();
    std::fs::write(&topics, lines.join("\n") + "\n").unwrap();
    let few = [
        "--set",
        "data.train_size=48",
        "--set",
        "data.eval_size=8",
        "--set",
        "training.max_steps=1",
        "--set",
        "data.balanced=false",
        "--set",
        "model.ignore_mismatched_sizes=true",
    ];
    let sentences = tmp.path().join("sentences.jsonl");
    let lines: Vec<String> = (0..96)
        .map(|i| serde_json::json!({"text": format!("the film w{}", 20 + i), "label": format!("this is what the reviewer said about film number {}", i % 12)}).to_string())
        .collect();
    std::fs::write(&sentences, lines.join("\n") + "\n").unwrap();
    let err = failure(lora(&train_args(m, sentences.to_str().unwrap(), r, &few)));
    assert!(err.contains("looks like a text column"), "{err}");
    let out = lora(&train_args(m, topics.to_str().unwrap(), r, &few));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    std::fs::remove_dir_all(&run).unwrap();

    // Labels written 0.0 / 1.0: a regression, said; and the task and classes said otherwise.
    let decimals = tmp.path().join("decimals.jsonl");
    let lines: Vec<String> = (0..40)
        .map(|i| {
            serde_json::json!({"text": format!("the film was w{}", 20 + i), "label": (i % 2) as f64 + 0.0}).to_string()
        })
        .collect();
    std::fs::write(&decimals, lines.join("\n") + "\n").unwrap();
    let out = lora(&train_args(
        m,
        decimals.to_str().unwrap(),
        r,
        &[
            "--set",
            "training.num_train_epochs=1",
            "--set",
            "data.balanced=false",
            "--set",
            "model.ignore_mismatched_sizes=true",
        ],
    ));
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("written as decimals (0.0, 1.0)") && stderr.contains("regression"), "{stderr}");
    assert_eq!(summary(&run)["problem_type"], "regression");
    assert!(summary(&run)["data_notes"][0].as_str().unwrap().contains("decimals"));

    let (_, _, classified) = finished_run(&tmp.path().join("c"), &[]);
    assert_eq!(summary(&classified)["class_counts"]["train"], serde_json::json!([8, 8]));
}

/// A `config.json` of one family over another's weights or tokenizer: `bert.` tensors under a
/// RoBERTa config are an error naming both families; bare BERT tensors with a WordPiece
/// vocabulary and BERT's padding id under a RoBERTa config train, each misfit said.
#[test]
fn a_config_of_another_family_than_its_weights_or_tokenizer_is_said() {
    let tmp = tempfile::tempdir().unwrap();
    let model = tiny_model(tmp.path());
    let data = tiny_data(tmp.path());
    let config_path = model.join("config.json");
    let mut config: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&config_path).unwrap()).unwrap();
    config["model_type"] = "roberta".into();
    config["architectures"] = serde_json::json!(["RobertaForSequenceClassification"]);
    config["pad_token_id"] = 1.into();
    std::fs::write(&config_path, config.to_string()).unwrap();
    let (m, d) = (model.to_str().unwrap(), data.to_str().unwrap());
    let run = tmp.path().join("run");
    let err = failure(lora(&train_args(m, d, run.to_str().unwrap(), &["--set", "training.num_train_epochs=1"])));
    assert!(err.contains("a bert checkpoint") && err.contains("a roberta model's"), "{err}");
    assert!(!run.exists(), "nothing written");

    // The same tensors as a bare BertModel saves them (no `bert.`, no classifier).
    let weights = model.join("model.safetensors");
    let tensors = tensor_file::read_safetensors(&weights, |_| false).unwrap();
    let bare: std::collections::BTreeMap<_, _> =
        tensors.into_iter().filter_map(|(k, t)| k.strip_prefix("bert.").map(|k| (k.to_string(), t))).collect();
    tensor_file::write_safetensors(&weights, &bare, &[]).unwrap();
    let out = lora(&train_args(m, d, run.to_str().unwrap(), &["--set", "training.num_train_epochs=1"]));
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "warned, not refused: {stderr}");
    assert!(
        stderr.contains("is a WordPiece tokenizer") && stderr.contains("roberta model, whose checkpoints ship BPE"),
        "{stderr}"
    );
    assert!(stderr.contains("pads with token id 0") && stderr.contains("pad_token_id 1"), "{stderr}");

    // BERT's own config over them: nothing said.
    let plain = tmp.path().join("plain");
    std::fs::create_dir_all(&plain).unwrap();
    let (model, data) = (tiny_model(&plain), tiny_data(&plain));
    let out = lora(&train_args(
        model.to_str().unwrap(),
        data.to_str().unwrap(),
        plain.join("run").to_str().unwrap(),
        &["--set", "training.num_train_epochs=1"],
    ));
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success() && !stderr.contains("warning"), "{stderr}");
}
