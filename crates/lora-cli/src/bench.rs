//! `lora bench`: time the real code paths (a LoRA training step: forward, backward, optimizer;
//! an evaluation forward) for a model shape from a `config.json`, random weights (a shape costs
//! the same with any weights), a batch size and a sequence length.

use std::time::Instant;

use anyhow::Result;
use bert::{BertConfig, BertForSequenceClassification};
use burn::module::AutodiffModule;
use burn::tensor::backend::AutodiffBackend;
use imdb::TokenizedReview;
use serde::Serialize;

use crate::config::RunConfig;
use crate::report::peak_rss_bytes;
use crate::train::Trainer;

#[derive(Debug, Clone)]
pub struct BenchOptions {
    pub model_config: std::path::PathBuf,
    pub batch_size: usize,
    pub seq_len: usize,
    pub warmup: usize,
    pub repeats: usize,
    pub seed: u64,
}

/// One row of the table.
#[derive(Debug, Clone, Serialize)]
pub struct BenchRow {
    pub row: String,
    pub model: String,
    pub device: String,
    pub batch_size: usize,
    pub seq_len: usize,
    pub repeats: usize,
    pub median_seconds: f64,
    pub min_seconds: f64,
    pub max_seconds: f64,
    pub samples_per_second: f64,
    pub tokens_per_second: f64,
    /// Process peak resident memory after the row (Linux `VmHWM`; it only grows).
    pub peak_rss_bytes: Option<u64>,
}

fn row(name: &str, options: &BenchOptions, device: &str, mut times: Vec<f64>) -> BenchRow {
    times.sort_by(f64::total_cmp);
    let median = times[times.len() / 2];
    let tokens = (options.batch_size * options.seq_len) as f64;
    BenchRow {
        row: name.to_string(),
        model: options.model_config.display().to_string(),
        device: device.to_string(),
        batch_size: options.batch_size,
        seq_len: options.seq_len,
        repeats: times.len(),
        median_seconds: median,
        min_seconds: times[0],
        max_seconds: times[times.len() - 1],
        samples_per_second: options.batch_size as f64 / median,
        tokens_per_second: tokens / median,
        peak_rss_bytes: peak_rss_bytes(),
    }
}

/// A full batch of `batch_size` reviews of exactly `seq_len` tokens, no padding.
fn batch(options: &BenchOptions, vocab: usize) -> Vec<TokenizedReview> {
    (0..options.batch_size)
        .map(|i| {
            // Ordinary word ids: past the special tokens at the start of BERT vocabularies.
            let first = vocab.min(1000) / 2;
            let ids: Vec<u32> =
                (0..options.seq_len).map(|j| (first + (i * 7919 + j * 104_729) % (vocab - first)) as u32).collect();
            TokenizedReview {
                encoded: bert::Encoded { token_type_ids: vec![0; ids.len()], input_ids: ids },
                label: (i % 2) as u8,
            }
        })
        .collect()
}

pub fn run<B: AutodiffBackend>(options: &BenchOptions, device: &B::Device, device_name: &str) -> Result<Vec<BenchRow>> {
    let config = BertConfig::from_file(&options.model_config)?;
    anyhow::ensure!(
        options.seq_len <= config.max_position_embeddings,
        "--seq-len {} is longer than the model's max_position_embeddings ({})",
        options.seq_len,
        config.max_position_embeddings
    );
    B::seed(device, options.seed);
    let model = BertForSequenceClassification::<B>::random(&config, device);
    let run_config = RunConfig::default();
    let lora = run_config.lora.to_peft("random");
    let (model, _) = lora_adapter::inject(model, &lora, device)?;
    anyhow::ensure!(
        config.vocab_size > 2,
        "{}: vocab_size {} is too small to bench",
        options.model_config.display(),
        config.vocab_size
    );
    let items = batch(options, config.vocab_size);
    let mut trainer = Trainer::new(model, lora, run_config, 1_000_000, 0, device.clone());

    let time = |f: &mut dyn FnMut() -> Result<()>| -> Result<Vec<f64>> {
        for _ in 0..options.warmup {
            f()?;
        }
        (0..options.repeats.max(1))
            .map(|_| {
                let start = Instant::now();
                f()?;
                Ok(start.elapsed().as_secs_f64())
            })
            .collect()
    };
    let train = time(&mut || trainer.step(items.clone()).map(|_| ()))?;
    let train_row = row("train_step", options, device_name, train);
    let model = trainer.model.valid();
    let eval = time(&mut || {
        let logits = crate::eval::logits(&model, &items, options.batch_size, 0, device);
        anyhow::ensure!(logits.len() == items.len(), "evaluation returned {} rows", logits.len());
        Ok(())
    })?;
    Ok(vec![train_row, row("eval_forward", options, device_name, eval)])
}

/// The rows as a fixed-width table.
pub fn table(rows: &[BenchRow]) -> String {
    let mut out = format!(
        "{:<13} {:>6} {:>5} {:>10} {:>10} {:>10} {:>10} {:>11} {:>9}\n",
        "row", "batch", "seq", "median s", "min s", "max s", "samples/s", "tokens/s", "peak MiB"
    );
    for r in rows {
        out += &format!(
            "{:<13} {:>6} {:>5} {:>10.3} {:>10.3} {:>10.3} {:>10.2} {:>11.0} {:>9}\n",
            r.row,
            r.batch_size,
            r.seq_len,
            r.median_seconds,
            r.min_seconds,
            r.max_seconds,
            r.samples_per_second,
            r.tokens_per_second,
            r.peak_rss_bytes.map_or("-".into(), |b| (b / (1 << 20)).to_string())
        );
    }
    out
}
