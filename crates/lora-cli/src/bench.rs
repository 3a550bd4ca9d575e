//! `lora bench`: time the real code paths (a LoRA training step: forward, backward, optimizer;
//! an evaluation forward) for a model shape from a `config.json`, random weights (a shape costs
//! the same with any weights), a batch size and a sequence length; or, with a length mix, on
//! real examples: consecutive batches of a JSON Lines file, tokenized and padded to each batch's
//! longest (or a multiple, `--pad-to-multiple-of`), as training pads them.

use std::time::Instant;

use anyhow::Result;
use burn::module::AutodiffModule;
use burn::tensor::backend::AutodiffBackend;
use encoders::ModelConfig;
use serde::Serialize;
use textdata::{TextBatcher, TokenizedExample};

use crate::cli::Dtype;
use crate::config::RunConfig;
use crate::report::peak_rss_bytes;
use crate::trainer::Trainer;

#[derive(Debug, Clone)]
pub struct BenchOptions {
    pub model_config: std::path::PathBuf,
    pub batch_size: usize,
    pub seq_len: usize,
    pub warmup: usize,
    pub repeats: usize,
    pub seed: u64,
    /// Batches are padded to a multiple of this (1: to their longest).
    pub pad_to_multiple_of: usize,
    /// Real batches instead of one `batch_size x seq_len` batch: the first `warmup` of them warm
    /// up, the next `repeats` are timed (cycling through the list).
    pub mix: Option<Vec<Vec<TokenizedExample>>>,
    /// LoRA targets; unset: the family's PEFT default.
    pub target_modules: Option<lora_adapter::TargetModules>,
    /// The evaluation forward's dtype (`crate::commands::in_dtype`).
    pub dtype: Dtype,
    /// `--bf16`: the training step in bf16 too (on the CPU, the frozen base linears).
    pub bf16: bool,
}

/// One row of the table.
#[derive(Debug, Clone, Serialize)]
pub struct BenchRow {
    pub row: String,
    pub model: String,
    pub device: String,
    /// What the row computed in: `float32`, or `bfloat16` (an evaluation forward with bf16
    /// linears, or a training step on `Cuda<bf16>`).
    pub dtype: String,
    pub batch_size: usize,
    pub seq_len: usize,
    pub repeats: usize,
    pub median_seconds: f64,
    pub min_seconds: f64,
    pub max_seconds: f64,
    /// All timed steps together: what the length-mix rows compare.
    pub total_seconds: f64,
    pub samples_per_second: f64,
    pub tokens_per_second: f64,
    /// Process peak resident memory after the row (Linux `VmHWM`; it only grows).
    pub peak_rss_bytes: Option<u64>,
    /// GPU kernels compiled during the row, warm-up included (none from a warm kernel cache).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kernels_compiled: Option<usize>,
}

/// A row from the timed steps and what each processed (`[samples, padded tokens]`).
/// Throughputs are totals over total time; `seq_len` is the mean padded length.
fn row(
    name: &str,
    options: &BenchOptions,
    (device, dtype): (&str, Dtype),
    timed: Vec<(f64, [usize; 2])>,
    kernels_compiled: Option<usize>,
) -> BenchRow {
    let mut times: Vec<f64> = timed.iter().map(|(t, _)| *t).collect();
    times.sort_by(f64::total_cmp);
    let total: f64 = times.iter().sum();
    let samples: usize = timed.iter().map(|(_, [s, _])| s).sum();
    let tokens: usize = timed.iter().map(|(_, [_, t])| t).sum();
    BenchRow {
        row: name.to_string(),
        model: options.model_config.display().to_string(),
        device: device.to_string(),
        dtype: dtype.name().to_string(),
        batch_size: options.batch_size,
        seq_len: tokens.checked_div(samples).unwrap_or(0),
        repeats: times.len(),
        median_seconds: times[times.len() / 2],
        min_seconds: times[0],
        max_seconds: times[times.len() - 1],
        total_seconds: total,
        samples_per_second: samples as f64 / total,
        tokens_per_second: tokens as f64 / total,
        peak_rss_bytes: peak_rss_bytes(),
        kernels_compiled,
    }
}

/// `[samples, padded tokens]` of a batch.
fn size(batch: &[TokenizedExample], batcher: &TextBatcher) -> [usize; 2] {
    [batch.len(), batch.len() * batcher.padded_length(batch.iter().map(|r| r.encoded.len()).max().unwrap_or(0))]
}

/// The examples of a JSON Lines (or any `textdata` format) file, tokenized with the tokenizer beside
/// the model's `config.json` (or `tokenizer`), in consecutive batches of `batch_size`.
pub fn mix_batches(
    examples: &std::path::Path,
    tokenizer: &std::path::Path,
    batch_size: usize,
    max_length: usize,
) -> Result<Vec<Vec<TokenizedExample>>> {
    let examples = textdata::read_file(examples, &Default::default())?.unlabelled();
    anyhow::ensure!(!examples.is_empty(), "the length mix has no texts");
    let tokenizer = encoders::EncoderTokenizer::from_file(tokenizer, max_length)?;
    let items = textdata::tokenize(&examples, &tokenizer, false, |_| {})?;
    Ok(items.chunks(batch_size.max(1)).map(<[TokenizedExample]>::to_vec).collect())
}

/// A full batch of `batch_size` examples of exactly `seq_len` tokens, no padding.
fn batch(options: &BenchOptions, vocab: usize) -> Vec<TokenizedExample> {
    (0..options.batch_size)
        .map(|i| {
            // Ordinary word ids: past the special tokens at the start of BERT vocabularies.
            let first = vocab.min(1000) / 2;
            let ids: Vec<u32> =
                (0..options.seq_len).map(|j| (first + (i * 7919 + j * 104_729) % (vocab - first)) as u32).collect();
            TokenizedExample {
                encoded: encoders::Encoded { token_type_ids: vec![0; ids.len()], input_ids: ids },
                label: textdata::Target::Class(i % 2),
            }
        })
        .collect()
}

pub fn run<B: AutodiffBackend>(options: &BenchOptions, device: &B::Device, device_name: &str) -> Result<Vec<BenchRow>> {
    let config = ModelConfig::from_file(&options.model_config)?;
    kernels::random::seed::<B>(device, options.seed);
    let model = encoders::random::<B>(&config, device);
    let mut run_config = RunConfig::default();
    run_config.lora.target_modules = options.target_modules.clone();
    let lora = run_config.lora.to_peft("random", &config.family)?;
    let (mut model, _) = lora_adapter::inject(model, &lora, device)?;
    let trained_in = match (device_name.contains("bf16"), options.bf16) {
        (true, _) => Dtype::Bfloat16,
        (false, true) => crate::commands::in_dtype(&mut model, Dtype::Bfloat16, device_name, "--bf16"),
        (false, false) => Dtype::Float32,
    };
    anyhow::ensure!(
        config.vocab_size() > 2,
        "{}: vocab_size {} is too small to bench",
        options.model_config.display(),
        config.vocab_size()
    );
    let batches = match &options.mix {
        Some(batches) => batches.clone(),
        None => vec![batch(options, config.vocab_size())],
    };
    anyhow::ensure!(!batches.is_empty(), "no batches to time");
    // Random token ids: any padding id will do.
    let batcher = TextBatcher { pad_id: 0, pad_to_multiple_of: options.pad_to_multiple_of.max(1) };
    let longest = batches.iter().map(|b| size(b, &batcher)[1] / b.len().max(1)).max().unwrap_or(0);
    anyhow::ensure!(
        longest <= config.max_text_positions(),
        "batches of {longest} tokens (--seq-len {}, --pad-to-multiple-of {}) are longer than the model's max_position_embeddings ({})",
        options.seq_len,
        batcher.pad_to_multiple_of,
        config.max_text_positions()
    );
    let mut trainer = Trainer::new(model, lora, run_config.training, 1_000_000, batcher, device.clone())?;

    // Step i (warm-up first) takes batch i of the list, cycling.
    let time = |f: &mut dyn FnMut(&[TokenizedExample]) -> Result<()>| -> Result<Vec<(f64, [usize; 2])>> {
        let mut steps = (0..).map(|i| &batches[i % batches.len()]);
        for items in steps.by_ref().take(options.warmup) {
            f(items)?;
        }
        steps
            .take(options.repeats.max(1))
            .map(|items| {
                let start = Instant::now();
                f(items)?;
                Ok((start.elapsed().as_secs_f64(), size(items, &batcher)))
            })
            .collect()
    };
    let names = if options.mix.is_some() { ["train_mix", "eval_mix"] } else { ["train_step", "eval_forward"] };
    let compiled = crate::device::kernels_compiled;
    let before = compiled();
    let train = time(&mut |items| {
        trainer.step(items.to_vec())?;
        Ok(())
    })?;
    let after_train = compiled();
    let since = |start: Option<usize>, end: Option<usize>| Some(end? - start?);
    let train_row = row(names[0], options, (device_name, trained_in), train, since(before, after_train));
    let mut model = trainer.model.valid();
    let dtype = match (options.dtype, trained_in) {
        (_, Dtype::Bfloat16) => Dtype::Bfloat16,
        (Dtype::Bfloat16, _) => crate::commands::in_dtype(&mut model, Dtype::Bfloat16, device_name, "--dtype bfloat16"),
        (Dtype::Float32, _) => Dtype::Float32,
    };
    let eval = time(&mut |items| {
        let logits = crate::eval::logits(&model, items, options.batch_size, batcher, device)?;
        anyhow::ensure!(logits.len() == items.len(), "evaluation returned {} rows", logits.len());
        Ok(())
    })?;
    let eval_row = row(names[1], options, (device_name, dtype), eval, since(after_train, compiled()));
    Ok(vec![train_row, eval_row])
}

/// The rows as a fixed-width table.
pub fn table(rows: &[BenchRow]) -> String {
    // GPU rows say how many kernels they compiled.
    let kernels = rows.iter().any(|r| r.kernels_compiled.is_some());
    // Rows not all in float32 say what each computed in.
    let dtypes = rows.iter().any(|r| r.dtype != Dtype::Float32.name());
    let mut out = format!(
        "{:<13}{} {:>6} {:>5} {:>10} {:>10} {:>10} {:>10} {:>11} {:>9}{}\n",
        "row",
        if dtypes { format!(" {:<9}", "dtype") } else { String::new() },
        "batch",
        "seq",
        "median s",
        "min s",
        "max s",
        "samples/s",
        "tokens/s",
        "peak MiB",
        if kernels { "   kernels" } else { "" }
    );
    for r in rows {
        let compiled = match (kernels, r.kernels_compiled) {
            (false, _) => String::new(),
            (true, n) => format!(" {:>9}", n.map_or("-".into(), |n| n.to_string())),
        };
        out += &format!(
            "{:<13}{} {:>6} {:>5} {:>10.3} {:>10.3} {:>10.3} {:>10.2} {:>11.0} {:>9}{compiled}\n",
            r.row,
            if dtypes { format!(" {:<9}", r.dtype) } else { String::new() },
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
