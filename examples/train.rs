//! Trains a LoRA classifier from Rust with no config file, and saves the adapter in PEFT's format.
//! DATA: anything `lora train --data` reads; its labels size the head. Run it with
//! `cargo run --release -p lora-train --example train -- ../shared/assets/all-MiniLM-L6-v2 DATA OUT`

use burn::backend::{Autodiff, Flex};
use encoders::{HubOptions, LoadOptions};
use lora_train::{Output, ProgressBars, RunData, Trainer, TrainingArguments};
use textdata::{Labels, SourceOptions, SubsetConfig, TextBatcher, TextDataset};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [model, data, out] = &args[..] else { anyhow::bail!("usage: train MODEL DATA OUTPUT_DIR") };
    let (device, out) = (Default::default(), std::path::Path::new(out));
    let infer = Labels::Infer { problem_type: None, names: None };
    let (splits, labels) = textdata::load_labelled(data, &SourceOptions::default(), &HubOptions::from_env(), infer)?;
    let sizes = SubsetConfig { train_size: Some(256), eval_size: Some(128), ..SubsetConfig::default() };
    let subsets = textdata::draw(splits, &sizes, &labels)?;
    let options = LoadOptions { head: Some(labels.clone()), ..LoadOptions::default() };
    let pretrained = encoders::from_pretrained::<Autodiff<Flex>>(model, &options, &device)?;
    let tokenizer = pretrained.tokenizer(256)?;
    let lora = lora_adapter::LoraConfig::default().with_task_defaults(); // r 8 on query and value
    let (model, _) = lora_adapter::inject(pretrained.model, &lora, &device)?;
    let tokenize = |examples| textdata::tokenize(examples, &tokenizer, false, |_| {});
    let (train, eval) = (TextDataset::new(tokenize(&subsets.train)?), TextDataset::new(tokenize(&subsets.eval)?));
    let data = RunData { train, eval, tokenizer: tokenizer.clone(), labels: labels.clone() };
    let args = TrainingArguments { num_train_epochs: 2, learning_rate: 1e-3, ..Default::default() };
    let batches = data.train.items().len().div_ceil(args.per_device_train_batch_size);
    let mut trainer = Trainer::new(model, lora, args, batches, TextBatcher::new(tokenizer.pad_id()), device)?;
    trainer.labels = labels.clone();
    trainer.callbacks.push(Box::new(ProgressBars::new(Output::Bars)));
    std::fs::create_dir_all(out)?;
    trainer.train(&data, out)?;
    lora_adapter::peft::save_adapter(&mut trainer.model, &trainer.lora, &out.join("adapter"))?;
    labels.write(&out.join("adapter"))?;
    println!("{}", serde_json::to_string(&trainer.state.evaluations.last().map(|e| &e.metrics))?);
    Ok(())
}
