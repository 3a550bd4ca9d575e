//! The subcommands, each dispatched once to the backend of `--device`.

use std::io::{BufRead, Write};
use std::path::Path;

use anyhow::{Context, Result, bail};
use bert::device::{DeviceSpec, check_available};
use burn::backend::{Autodiff, Flex};
use burn::tensor::backend::AutodiffBackend;

use crate::cli::{BenchArgs, DeviceArg, EvalArgs, ExportDataArgs, InferenceArgs, MergeArgs, PredictArgs, TrainArgs};
use crate::config::RunConfig;
use crate::eval::{argmax, evaluate, logits, probabilities};
use crate::train::{Output, TrainOptions, load_for_inference};

/// Work that runs on whichever backend the device names.
trait Job {
    fn run<B: AutodiffBackend>(self, device: &B::Device, name: &str) -> Result<()>;
}

/// Runs `job` on the backend of `device`, in fp32, or in bfloat16 where `bf16` asks for it (CUDA only).
fn dispatch(device: &DeviceArg, bf16: bool, job: impl Job) -> Result<()> {
    let spec: DeviceSpec = device.device.parse().map_err(anyhow::Error::msg)?;
    check_available(spec).map_err(anyhow::Error::msg)?;
    let mut name = spec.to_string();
    if bf16 {
        name.push_str(" bf16");
    }
    if device.no_fusion {
        name.push_str(" no-fusion");
    }
    match spec {
        DeviceSpec::Cpu if bf16 => bail!("bf16 needs --device cuda: the CPU backend computes in fp32"),
        DeviceSpec::Cpu if device.no_fusion => bail!("--no-fusion is for --device cuda: the CPU backend does not fuse"),
        DeviceSpec::Cpu => job.run::<Autodiff<Flex>>(&Default::default(), &name),
        #[cfg(feature = "cuda")]
        DeviceSpec::Cuda(n) => {
            use bert::device::CudaUnfused;
            use burn::backend::{Cuda, cuda::CudaDevice};
            use burn::tensor::bf16;
            if let Some(dir) = bert::device::use_kernel_cache().map_err(anyhow::Error::msg)? {
                eprintln!("compiled CUDA kernels are cached in {}", dir.display());
            }
            let gpu = CudaDevice::new(n);
            match (bf16, device.no_fusion) {
                (false, false) => job.run::<Autodiff<Cuda>>(&gpu, &name),
                (true, false) => job.run::<Autodiff<Cuda<bf16>>>(&gpu, &name),
                (false, true) => job.run::<Autodiff<CudaUnfused>>(&gpu, &name),
                (true, true) => job.run::<Autodiff<CudaUnfused<bf16>>>(&gpu, &name),
            }
        }
        #[cfg(not(feature = "cuda"))]
        DeviceSpec::Cuda(_) => bail!("this binary was built without the `cuda` feature"),
    }
}

pub fn train(args: TrainArgs) -> Result<()> {
    let mut overrides = args.set.clone();
    if let Some(m) = &args.model {
        overrides.push(format!("model.name_or_path={}", toml_string(m)));
    }
    if let Some(d) = &args.data {
        overrides.push(format!("data.source={}", toml_string(d)));
    }
    if let Some(o) = &args.output_dir {
        overrides.push(format!("training.output_dir={}", toml_string(&o.to_string_lossy())));
    }
    if args.config.is_none() && !args.resume {
        bail!("--config FILE is required (see configs/)");
    }
    let config = RunConfig::load(args.config.as_deref(), &overrides)?;
    let output = if args.quiet {
        Output::Quiet
    } else if args.json {
        Output::Json
    } else {
        Output::Bars
    };
    struct TrainJob(RunConfig, TrainOptions);
    impl Job for TrainJob {
        fn run<B: AutodiffBackend>(self, device: &B::Device, name: &str) -> Result<()> {
            let options = TrainOptions { device: name.to_string(), ..self.1 };
            crate::train::train::<B>(self.0, &options, device).map(|_| ())
        }
    }
    let options = TrainOptions { resume: args.resume, overwrite: args.overwrite, output, device: String::new() };
    let bf16 = config.training.bf16;
    dispatch(&args.device, bf16, TrainJob(config, options))
}

fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

impl InferenceArgs {
    /// The model with its adapter, the tokenizer, and the batcher these arguments ask for.
    fn load<B: burn::tensor::backend::Backend>(
        &self,
        device: &B::Device,
    ) -> Result<(bert::BertForSequenceClassification<B>, bert::BertTokenizer, imdb::ReviewBatcher)> {
        load_for_inference(&self.model, &self.adapter, self.max_length, self.pad_to_multiple_of, device)
    }
}

pub fn eval(args: EvalArgs) -> Result<()> {
    struct EvalJob(EvalArgs);
    impl Job for EvalJob {
        fn run<B: AutodiffBackend>(self, device: &B::Device, name: &str) -> Result<()> {
            let a = self.0;
            let (model, tokenizer, batcher) = a.run.load::<B::InnerBackend>(device)?;
            let splits = imdb::Source::detect(&a.data)?.load(&bert::HubOptions::from_env())?;
            let subset =
                imdb::SubsetConfig { train_size: 0, eval_size: a.eval_size, seed: a.seed, ..Default::default() };
            let reviews = imdb::draw(splits, &subset)?.eval;
            let items = imdb::tokenize(&reviews, &tokenizer, false, |_| {})?;
            let metrics = evaluate(&model, &items, a.run.batch_size, batcher, device);
            let [[tn, fp], [fn_, tp]] = metrics.confusion_matrix;
            eprintln!(
                "accuracy {:.4}  loss {:.4}  F1 {:.4}  ({} reviews, {name})",
                metrics.eval_accuracy, metrics.eval_loss, metrics.eval_f1, metrics.eval_samples
            );
            eprintln!(
                "confusion matrix (rows: true neg/pos, columns: predicted neg/pos)\n  {tn:>5} {fp:>5}\n  {fn_:>5} {tp:>5}"
            );
            let json = serde_json::to_string_pretty(&metrics)?;
            println!("{json}");
            let path =
                a.output.unwrap_or_else(|| a.run.adapter.parent().unwrap_or(Path::new(".")).join("eval_results.json"));
            crate::report::write_atomic(&path, &json)?;
            Ok(())
        }
    }
    let device = args.device.clone();
    dispatch(&device, false, EvalJob(args))
}

/// Texts from `--input`: JSON Lines with a `text` field, else one plain text per line.
fn read_texts(path: &Path) -> Result<Vec<String>> {
    let file = std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut texts = Vec::new();
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.with_context(|| format!("{}:{}: not valid UTF-8 text", path.display(), i + 1))?;
        if line.trim().is_empty() {
            continue;
        }
        if line.trim_start().starts_with('{') {
            let value: serde_json::Value = serde_json::from_str(&line)
                .with_context(|| format!("{}:{}: not a JSON object", path.display(), i + 1))?;
            let text = value
                .get("text")
                .and_then(|t| t.as_str())
                .with_context(|| format!("{}:{}: no string `text` field", path.display(), i + 1))?;
            texts.push(text.to_string());
        } else {
            texts.push(line);
        }
    }
    Ok(texts)
}

pub fn predict(args: PredictArgs) -> Result<()> {
    struct PredictJob(PredictArgs);
    impl Job for PredictJob {
        fn run<B: AutodiffBackend>(self, device: &B::Device, _name: &str) -> Result<()> {
            let a = self.0;
            let texts = match &a.input {
                Some(path) => read_texts(path)?,
                None => a.text.clone(),
            };
            if texts.is_empty() {
                bail!("nothing to predict: give --text TEXT (repeatable) or --input FILE");
            }
            let (model, tokenizer, batcher) = a.run.load::<B::InnerBackend>(device)?;
            let reviews: Vec<imdb::Review> = texts.iter().map(|t| imdb::Review { text: t.clone(), label: 0 }).collect();
            let items = imdb::tokenize(&reviews, &tokenizer, false, |_| {})?;
            let all = logits(&model, &items, a.run.batch_size, batcher, device);
            let mut out: Box<dyn Write> = match &a.output {
                Some(path) => Box::new(std::io::BufWriter::new(
                    std::fs::File::create(path).with_context(|| format!("cannot write {}", path.display()))?,
                )),
                None => Box::new(std::io::stdout().lock()),
            };
            for row in &all {
                let line = serde_json::json!({ "label": argmax(row), "probs": probabilities(row), "logits": row });
                writeln!(out, "{line}")?;
            }
            out.flush()?;
            Ok(())
        }
    }
    let device = args.device.clone();
    dispatch(&device, false, PredictJob(args))
}

pub fn merge(args: MergeArgs) -> Result<()> {
    struct MergeJob(MergeArgs);
    impl Job for MergeJob {
        fn run<B: AutodiffBackend>(self, device: &B::Device, _name: &str) -> Result<()> {
            let a = self.0;
            let pretrained = bert::load_pretrained::<B::InnerBackend>(&a.model, None, device)?;
            let (model, lora) = lora_adapter::peft::load_adapter(pretrained.model, &a.adapter, device)?;
            let merged = lora_adapter::merge(model)?;
            let mut config = pretrained.config.clone();
            config.num_labels = Some(merged.classifier.dims()[1]);
            bert::save::save_pretrained(&merged, &config, &a.output)?;
            for file in &pretrained.files.tokenizer_files {
                if let Some(name) = file.file_name() {
                    std::fs::copy(file, a.output.join(name))
                        .with_context(|| format!("cannot copy {}", file.display()))?;
                }
            }
            eprintln!(
                "merged {} ({} target modules) into {}",
                a.adapter.display(),
                lora.target_modules.map(|t| format!("{t:?}")).unwrap_or_default(),
                a.output.display()
            );
            Ok(())
        }
    }
    let device = args.device.clone();
    dispatch(&device, false, MergeJob(args))
}

pub fn export_data(args: ExportDataArgs) -> Result<()> {
    let mut overrides = args.set.clone();
    if let Some(d) = &args.data {
        overrides.push(format!("data.source={}", toml_string(d)));
    }
    let config = RunConfig::load(Some(&args.config), &overrides)?;
    let splits = imdb::Source::detect(&config.data.source)?.load(&bert::HubOptions::from_env())?;
    let subsets = imdb::draw(splits, &config.data.subset())?;
    imdb::write_jsonl(&args.output.join("train.jsonl"), &subsets.train)?;
    imdb::write_jsonl(&args.output.join("eval.jsonl"), &subsets.eval)?;
    eprintln!(
        "wrote {} training and {} evaluation reviews to {}",
        subsets.train.len(),
        subsets.eval.len(),
        args.output.display()
    );
    Ok(())
}

pub fn bench(args: BenchArgs) -> Result<()> {
    if args.batch_size == 0 || args.seq_len < 2 || args.seq_len > 512 {
        bail!("--batch-size must be at least 1 and --seq-len in 2..=512");
    }
    struct BenchJob(BenchArgs);
    impl Job for BenchJob {
        fn run<B: AutodiffBackend>(self, device: &B::Device, name: &str) -> Result<()> {
            let a = self.0;
            let mix = match &a.length_mix {
                None => None,
                Some(reviews) => {
                    let json = a.model_config.with_file_name("tokenizer.json");
                    let beside = if json.exists() { json } else { a.model_config.with_file_name("vocab.txt") };
                    let tokenizer = a.tokenizer.clone().unwrap_or(beside);
                    // Truncated as training truncates (max_length 512), or shorter for a shorter model.
                    let positions = bert::BertConfig::from_file(&a.model_config)?.max_position_embeddings;
                    Some(crate::bench::mix_batches(reviews, &tokenizer, a.batch_size, positions.min(512))?)
                }
            };
            let options = crate::bench::BenchOptions {
                model_config: a.model_config.clone(),
                batch_size: a.batch_size,
                seq_len: a.seq_len,
                warmup: a.warmup,
                repeats: a.repeats,
                seed: 0,
                pad_to_multiple_of: a.pad_to_multiple_of,
                mix,
            };
            let rows = crate::bench::run::<B>(&options, device, name)?;
            if a.json {
                for row in &rows {
                    println!("{}", serde_json::to_string(row)?);
                }
            } else {
                print!("{}", crate::bench::table(&rows));
            }
            Ok(())
        }
    }
    let (device, bf16) = (args.device.clone(), args.bf16);
    dispatch(&device, bf16, BenchJob(args))
}
