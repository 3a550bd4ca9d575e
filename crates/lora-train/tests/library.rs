//! lora-train as another program uses it: a run built in code (no config file) on a tiny
//! RoBERTa with a tokenizer of its own (`encoders`' fixture), its callbacks called at Trainer's
//! points, and an interrupt from a callback that stops the run with a checkpoint from which a
//! second trainer resumes to the uninterrupted run's adapter, bit for bit.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use std::cell::RefCell;
use std::path::Path;
use std::rc::Rc;

use burn::backend::{Autodiff, Flex};
use encoders::{HubOptions, LoadOptions};
use lora_train::report::{EpochRecord, Evaluation};
use lora_train::{Callback, Interrupt, RunData, StepOutput, TrainError, Trainer, TrainerState, TrainingArguments};
use textdata::{Labels, SourceOptions, SubsetConfig, TextBatcher, TextDataset};

type B = Autodiff<Flex>;

/// Burn's random generator (dropout, fresh weights) is one per process: runs that must repeat
/// to the bit take turns.
static ONE_RUN_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// 40 training and 20 evaluation texts of two classes, as JSON lines.
fn tiny_data(dir: &Path) -> RunData {
    let words = ["good", "great", "fine", "bad", "dull", "poor"];
    for (split, n) in [("train", 40), ("test", 20)] {
        let lines: Vec<String> = (0..n)
            .map(|i| {
                let label = i % 2;
                let word = words[(i * 7) % 3 + 3 * label];
                serde_json::json!({ "text": format!("the film was {word}, a {word} plot {i}"), "label": label })
                    .to_string()
            })
            .collect();
        std::fs::write(dir.join(format!("{split}.jsonl")), lines.join("\n") + "\n").unwrap();
    }
    let infer = Labels::Infer { problem_type: None, names: None };
    let spec = dir.to_str().unwrap();
    let (splits, labels) =
        textdata::load_labelled(spec, &SourceOptions::default(), &HubOptions::from_env(), infer).unwrap();
    let sizes = SubsetConfig { train_size: Some(40), eval_size: Some(20), ..SubsetConfig::default() };
    let subsets = textdata::draw(splits, &sizes, &labels).unwrap();
    let tokenizer = pretrained(&labels).tokenizer(64).unwrap();
    let tokenize = |examples| TextDataset::new(textdata::tokenize(examples, &tokenizer, false, |_| {}).unwrap());
    RunData { train: tokenize(&subsets.train), eval: tokenize(&subsets.eval), tokenizer: tokenizer.clone(), labels }
}

fn pretrained(labels: &textdata::LabelSpace) -> encoders::Pretrained<B> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../encoders/tests/fixtures/families/roberta/model");
    // The fixture's head has 3 rows: this task's 2 are drawn afresh, as transformers does when asked.
    let options = LoadOptions { head: Some(labels.clone()), ignore_mismatched_sizes: true, ..LoadOptions::default() };
    encoders::from_pretrained::<B>(dir.to_str().unwrap(), &options, &Default::default()).unwrap()
}

fn trainer(data: &RunData) -> Trainer<B> {
    let device = Default::default();
    kernels::random::seed::<B>(&device, 42);
    let lora = lora_adapter::LoraConfig::default().with_task_defaults();
    let (model, _) = lora_adapter::inject(pretrained(&data.labels).model, &lora, &device).unwrap();
    let args = TrainingArguments {
        num_train_epochs: 2,
        per_device_train_batch_size: 8,
        learning_rate: 1e-3,
        logging_steps: lora_train::Interval::Steps(2),
        ..TrainingArguments::default()
    };
    let batches = data.train.items().len().div_ceil(args.per_device_train_batch_size);
    let batcher = TextBatcher::new(data.tokenizer.pad_id());
    let mut trainer = Trainer::new(model, lora, args, batches, batcher, device).unwrap();
    trainer.labels = data.labels.clone();
    trainer
}

/// What a callback heard, in order.
#[derive(Default)]
struct Heard {
    steps: Vec<u64>,
    logs: Vec<serde_json::Value>,
    evaluations: Vec<u64>,
    epochs: Vec<usize>,
    saves: Vec<String>,
    ended: bool,
}

struct Recorder(Rc<RefCell<Heard>>);

impl Callback for Recorder {
    fn on_step_end(&mut self, state: &TrainerState, _step: &StepOutput, _samples: usize, _seconds: f64) {
        self.0.borrow_mut().steps.push(state.global_step);
    }

    fn on_log(&mut self, _state: &TrainerState, line: &serde_json::Value) -> lora_train::Result<()> {
        self.0.borrow_mut().logs.push(line.clone());
        Ok(())
    }

    fn on_evaluate(&mut self, _state: &mut TrainerState, evaluation: &Evaluation, _value: f64, _epoch_record: bool) {
        self.0.borrow_mut().evaluations.push(evaluation.step);
    }

    fn on_epoch_end(&mut self, _state: &TrainerState, record: &EpochRecord) {
        self.0.borrow_mut().epochs.push(record.epoch);
    }

    fn on_save(&mut self, _state: &TrainerState, dir: &Path) {
        self.0.borrow_mut().saves.push(dir.file_name().unwrap().to_string_lossy().into_owned());
    }

    fn on_train_end(&mut self) {
        self.0.borrow_mut().ended = true;
    }
}

/// Requests a stop once the run reaches `at`.
struct StopAt(u64, Interrupt);

impl Callback for StopAt {
    fn on_step_end(&mut self, state: &TrainerState, _step: &StepOutput, _samples: usize, _seconds: f64) {
        if state.global_step == self.0 {
            self.1.request(Some("stopped by a callback".into()));
        }
    }
}

#[test]
fn a_run_in_code_calls_its_callbacks_at_trainers_points() {
    let _turn = ONE_RUN_AT_A_TIME.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let tmp = tempfile::tempdir().unwrap();
    let data = tiny_data(tmp.path());
    let out = tmp.path().join("run");
    std::fs::create_dir_all(&out).unwrap();
    let mut trainer = trainer(&data);
    let heard = Rc::new(RefCell::new(Heard::default()));
    trainer.callbacks.push(Box::new(Recorder(heard.clone())));
    trainer.train(&data, &out).unwrap();

    let heard = heard.borrow();
    assert_eq!(heard.steps, (1..=10).collect::<Vec<u64>>(), "5 steps an epoch, 2 epochs");
    assert_eq!(heard.evaluations, [5, 10], "eval_strategy epoch");
    assert_eq!(heard.epochs, [1, 2]);
    assert_eq!(heard.saves, ["epoch-1", "epoch-2"], "save_strategy epoch");
    assert!(heard.ended);
    for name in &heard.saves {
        assert!(out.join("checkpoints").join(name).join("adapter_model.safetensors").is_file(), "{name}");
    }
    // Every log line the callbacks heard is the run's record, in order: metrics.jsonl and the state.
    let written: Vec<serde_json::Value> = std::fs::read_to_string(out.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(heard.logs, written);
    assert_eq!(heard.logs, trainer.state.log_history);
    let steps_logged: Vec<u64> =
        heard.logs.iter().filter(|l| l.get("grad_norm").is_some()).map(|l| l["step"].as_u64().unwrap()).collect();
    assert_eq!(steps_logged, [2, 4, 6, 8, 10], "logging_steps 2");
    let last = trainer.state.evaluations.last().unwrap();
    assert!(last.metrics.eval_loss.is_finite() && last.metrics.get("accuracy").is_some());
}

#[test]
fn an_interrupt_stops_the_run_with_a_checkpoint_that_resumes_to_the_same_adapter() {
    let _turn = ONE_RUN_AT_A_TIME.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let tmp = tempfile::tempdir().unwrap();
    let data = tiny_data(tmp.path());
    let (whole, cut) = (tmp.path().join("whole"), tmp.path().join("cut"));
    for dir in [&whole, &cut] {
        std::fs::create_dir_all(dir).unwrap();
    }
    let mut straight = trainer(&data);
    straight.train(&data, &whole).unwrap();

    let mut first = trainer(&data);
    first.callbacks.push(Box::new(StopAt(3, first.interrupt.clone())));
    let err = first.train(&data, &cut).unwrap_err();
    let TrainError::Interrupted(stop) = &err else { panic!("not an interrupt: {err}") };
    assert!(stop.starts_with("stopped by a callback: wrote ") && stop.contains("step-3"), "{stop}");
    assert_eq!(first.state.global_step, 3);

    let found = lora_train::checkpoint::find(&cut).unwrap();
    let checkpoint = found.chosen.unwrap();
    assert!(checkpoint.dir.ends_with("checkpoints/step-3"), "{}", checkpoint.dir.display());
    let mut resumed = trainer(&data);
    resumed.resume(checkpoint).unwrap();
    resumed.train(&data, &cut).unwrap();
    assert_eq!(resumed.state.global_step, 10);
    let adapter = |dir: &Path| std::fs::read(dir.join("checkpoints/epoch-2/adapter_model.safetensors")).unwrap();
    assert!(adapter(&whole) == adapter(&cut), "the resumed run's last checkpoint is the uninterrupted one's");
}
