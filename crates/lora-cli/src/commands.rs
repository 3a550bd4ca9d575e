//! The subcommands, each dispatched once to the backend of `--device`.

use std::io::BufRead;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use burn::backend::{Autodiff, Flex};
use burn::tensor::backend::{AutodiffBackend, Backend};

use crate::cli::{
    BenchArgs, DeviceArg, Dtype, EvalArgs, ExportDataArgs, InferenceArgs, InputFormat, MergeArgs, PredictArgs,
    ServeArgs, TrainArgs,
};
use crate::config::RunConfig;
use crate::device::{DeviceSpec, check_available};
use crate::eval::{evaluate, logits};
use crate::metrics::argmax;
use crate::report::write_atomic;
use crate::train::TrainOptions;
use crate::trainer::Output;
use lora_adapter::peft::Adapter;
use textdata::{LabelSpace, ProblemType};

/// Work that runs on whichever backend the device names.
trait Job {
    fn run<B: AutodiffBackend>(self, device: &B::Device, name: &str) -> Result<()>;
}

/// Runs `job` on the backend of `device`, in fp32, or in bfloat16 where `bf16` asks for it: on
/// CUDA the `Cuda<bf16>` backend; on the CPU the f32 backend, where the job holds its frozen
/// base linears in bf16 itself ([`in_dtype`]).
fn dispatch(device: &DeviceArg, bf16: bool, job: impl Job) -> Result<()> {
    let spec: DeviceSpec = device.device.parse().map_err(anyhow::Error::msg)?;
    check_available(spec)?;
    let mut name = spec.to_string();
    if bf16 && spec != DeviceSpec::Cpu {
        name.push_str(" bf16");
    }
    if device.no_fusion {
        name.push_str(" no-fusion");
    }
    match spec {
        DeviceSpec::Cpu if device.no_fusion => {
            bail!("--no-fusion is for --device cuda or wgpu: the CPU backend does not fuse")
        }
        DeviceSpec::Cpu => job.run::<Autodiff<Flex>>(&Default::default(), &name),
        #[cfg(feature = "cuda")]
        DeviceSpec::Cuda(n) => {
            use crate::device::CudaUnfused;
            use burn::backend::{Cuda, cuda::CudaDevice};
            use burn::tensor::bf16;
            let cache = crate::device::use_kernel_cache()?;
            let gpu = CudaDevice::new(n);
            let _kernels = KernelReport::start("CUDA", cache);
            match (bf16, device.no_fusion) {
                (false, false) => job.run::<Autodiff<Cuda>>(&gpu, &name),
                (true, false) => job.run::<Autodiff<Cuda<bf16>>>(&gpu, &name),
                (false, true) => job.run::<Autodiff<CudaUnfused>>(&gpu, &name),
                (true, true) => job.run::<Autodiff<CudaUnfused<bf16>>>(&gpu, &name),
            }
        }
        #[cfg(not(feature = "cuda"))]
        DeviceSpec::Cuda(_) => bail!("this binary was built without the `cuda` feature"),
        DeviceSpec::Wgpu(_) if bf16 => {
            bail!("bf16 runs on --device cpu (with AVX512-BF16) or cuda: the wgpu backend computes in fp32")
        }
        #[cfg(feature = "wgpu")]
        DeviceSpec::Wgpu(n) => {
            use crate::device::wgpu::WgpuUnfused;
            use burn::backend::Wgpu;
            // The cache is set up before the device is made (CubeCL reads its config then); the
            // report starts once there is a device, so a missing adapter is its error alone.
            let cache = crate::device::use_kernel_cache()?;
            let (gpu, adapter) = crate::device::wgpu::open(n)?;
            crate::console::err(format!("using {adapter}"));
            let _kernels = KernelReport::start("wgpu", cache);
            match device.no_fusion {
                false => job.run::<Autodiff<Wgpu>>(&gpu, &name),
                true => job.run::<Autodiff<WgpuUnfused>>(&gpu, &name),
            }
        }
        #[cfg(not(feature = "wgpu"))]
        DeviceSpec::Wgpu(_) => bail!("this binary was built without the `wgpu` feature"),
    }
}

/// `model` ready to run in `dtype` on `device_name`, and the dtype it runs in. On the CPU,
/// bfloat16 holds the base model's linear weights in bf16 where the CPU multiplies bf16
/// natively (AVX512-BF16); on one without, it stays float32 and says so once on standard error
/// (bf16 there would be slower than float32, as PyTorch's autocast is). On CUDA the backend
/// itself is bf16 ([`dispatch`]).
/// `asked` names the setting in the warning (`--dtype bfloat16`, `training.bf16 = true`).
pub(crate) fn in_dtype<B: Backend, M: lora_adapter::AdaptableModel<B>>(
    model: &mut M,
    dtype: Dtype,
    device_name: &str,
    asked: &str,
) -> Dtype {
    if dtype == Dtype::Float32 || !device_name.starts_with("cpu") {
        return dtype;
    }
    if !kernels::bf16::available() {
        crate::console::err(format!(
            "warning: {asked}: this CPU has no AVX512-BF16 (bf16 products would be slower than float32); \
             computing in float32"
        ));
        return Dtype::Float32;
    }
    lora_adapter::hold_in_bf16(model);
    Dtype::Bfloat16
}

/// While a GPU job runs: says where compiled kernels are kept, then every few seconds how many
/// have been compiled so far (a first run compiles hundreds; a later one reads them back), and
/// when the job ends how many it compiled.
#[cfg(any(feature = "cuda", feature = "wgpu"))]
struct KernelReport {
    done: std::sync::Arc<(std::sync::Mutex<bool>, std::sync::Condvar)>,
    ticker: Option<std::thread::JoinHandle<()>>,
    what: &'static str,
    cache: String,
}

#[cfg(any(feature = "cuda", feature = "wgpu"))]
impl KernelReport {
    /// How often the count is reported while it grows.
    const EVERY: std::time::Duration = std::time::Duration::from_secs(10);

    fn start(what: &'static str, cache: Option<std::path::PathBuf>) -> Self {
        let kernels_compiled = || crate::device::kernels_compiled().unwrap_or(0);
        let cache = match cache {
            Some(dir) => format!("cached in {}", dir.display()),
            None => "not cached (LORA_KERNEL_CACHE=off, a cache directory that cannot be written, or a CubeCL \
                     config without a cache)"
                .to_string(),
        };
        crate::console::err(format!("compiled {what} kernels are {cache}"));
        let done = std::sync::Arc::new((std::sync::Mutex::new(false), std::sync::Condvar::new()));
        let signal = done.clone();
        let line = cache.clone();
        let ticker = std::thread::Builder::new()
            .name("kernel-report".into())
            .spawn(move || {
                let (lock, wake) = &*signal;
                let mut reported = 0;
                let mut finished = lock.lock().unwrap_or_else(|e| e.into_inner());
                while !*finished {
                    finished = wake.wait_timeout(finished, Self::EVERY).unwrap_or_else(|e| e.into_inner()).0;
                    let now = kernels_compiled();
                    if !*finished && now > reported {
                        crate::console::err(format!("compiling {what} kernels: {now} so far ({line})"));
                        reported = now;
                    }
                }
            })
            .ok();
        Self { done, ticker, what, cache }
    }
}

#[cfg(any(feature = "cuda", feature = "wgpu"))]
impl Drop for KernelReport {
    fn drop(&mut self) {
        let (lock, wake) = &*self.done;
        *lock.lock().unwrap_or_else(|e| e.into_inner()) = true;
        wake.notify_all();
        if let Some(ticker) = self.ticker.take() {
            let _ = ticker.join();
        }
        let (what, cache) = (self.what, &self.cache);
        let count = crate::device::kernels_compiled()
            .map_or("not counted (CubeCL logs them elsewhere)".into(), |n| n.to_string());
        crate::console::err(format!("{what} kernels compiled by this run: {count} ({cache})"));
    }
}

/// `lora train`; `interrupt` stops it after its current step, with a checkpoint.
pub fn train(args: TrainArgs, interrupt: crate::callbacks::Interrupt) -> Result<()> {
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
    let config = if args.resume {
        crate::train::resume_config(args.config.as_deref(), &overrides, args.output_dir.as_deref())?
    } else {
        // Without --config: every key at its Hugging Face default, as `TrainingArguments()`.
        RunConfig::load(args.config.as_deref(), &overrides)?
    };
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
    let options =
        TrainOptions { resume: args.resume, overwrite: args.overwrite, output, device: String::new(), interrupt };
    let bf16 = config.training.bf16;
    dispatch(&args.device, bf16, TrainJob(config, options))
}

fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

impl InferenceArgs {
    /// The model with its adapter (dropout off), its tokenizer truncating at `--max-length`,
    /// batches padded as `--pad-to-multiple-of` asks, and the adapter's task and classes.
    fn load<B: Backend>(&self, device: &B::Device, device_name: &str) -> Result<Inference<B>> {
        // A bad adapter is reported before the (slower) model load.
        let adapter = Adapter::read(&self.adapter)?;
        let pretrained = load_for_adapter::<B>(&self.model, Some(&adapter), device)?;
        let positions = pretrained.config.max_text_positions();
        let max_length = self.max_length.unwrap_or(positions);
        if max_length > positions {
            bail!(
                "--max-length {max_length} is longer than the model's {positions} positions (max_position_embeddings)"
            );
        }
        let tokenizer = tokenizer(&pretrained, max_length)?;
        let given = self.pad_to_multiple_of;
        let pad = crate::config::padding_for(given, device_name, max_length, positions);
        crate::config::check_padding("--pad-to-multiple-of", pad, max_length, positions)?;
        if let Some(note) = crate::config::padding_note(given, pad, "--pad-to-multiple-of") {
            crate::console::err(note);
        }
        let batcher = textdata::TextBatcher { pad_id: tokenizer.pad_id(), pad_to_multiple_of: pad };
        let (mut model, _) = adapter.apply(pretrained.model, device)?;
        let labels = adapter_labels(&self.adapter, model.num_labels())?;
        let dtype = in_dtype(&mut model, self.dtype, device_name, "--dtype bfloat16");
        Ok(Inference { model, tokenizer, batcher, labels, dtype })
    }
}

/// What `eval` and `predict` run.
struct Inference<B: Backend> {
    model: encoders::AutoModel<B>,
    tokenizer: encoders::EncoderTokenizer,
    batcher: textdata::TextBatcher,
    labels: LabelSpace,
    /// What the model computes in (`--dtype`, or float32 where bf16 is not available).
    dtype: Dtype,
}

/// The task and class names of the adapter in `dir` ([`LabelSpace::for_adapter`]).
fn adapter_labels(dir: &Path, rows: usize) -> Result<LabelSpace> {
    Ok(LabelSpace::for_adapter(dir, rows)?)
}

pub fn eval(args: EvalArgs) -> Result<()> {
    struct EvalJob(EvalArgs);
    impl Job for EvalJob {
        fn run<B: AutodiffBackend>(self, device: &B::Device, name: &str) -> Result<()> {
            let a = self.0;
            let run = a.run.load::<B::InnerBackend>(device, name)?;
            let options = textdata::SourceOptions {
                columns: textdata::Columns {
                    text: a.text_column.clone(),
                    text_pair: a.text_pair_column.clone(),
                    label: a.label_column.clone(),
                },
                train_split: None,
                eval_split: a.eval_split.clone(),
                hub_config: None,
            };
            let raw = textdata::Source::detect(&a.data, &options)?.load(&options, &encoders::HubOptions::from_env())?;
            let splits = raw.without_train().resolve(&run.labels)?;
            let balanced = run.labels.problem_type == ProblemType::SingleLabelClassification;
            let subset = textdata::SubsetConfig {
                train_size: Some(0),
                eval_size: a.eval_size,
                seed: a.seed,
                balanced,
                ..Default::default()
            };
            let examples = textdata::draw(splits, &subset, &run.labels)?.eval;
            if examples.is_empty() {
                bail!("{}: no examples to evaluate (--eval-size 0?)", a.data);
            }
            let items = textdata::tokenize(&examples, &run.tokenizer, false, |_| {})?;
            let metrics = evaluate(&run.model, &items, &run.labels, a.run.batch_size, run.batcher, device)?;
            if !metrics.eval_loss.is_finite() {
                bail!(
                    "the adapter {} gives a non-finite loss ({}) on these examples: its logits overflow; no result is written",
                    a.run.adapter.display(),
                    metrics.eval_loss
                );
            }
            crate::console::err(format!(
                "{}  ({} examples, {}, {name}, {})",
                metrics.headline(),
                metrics.eval_samples,
                run.labels.problem_type,
                run.dtype.name()
            ));
            if let Some(matrix) = &metrics.confusion_matrix {
                crate::console::err(confusion_table(matrix, &run.labels.names));
            }
            let json = serde_json::to_string_pretty(&metrics)?;
            // The file first: a closed standard output does not lose the result.
            let path =
                a.output.unwrap_or_else(|| a.run.adapter.parent().unwrap_or(Path::new(".")).join("eval_results.json"));
            write_atomic(&path, &json)?;
            crate::console::out(&json).with_context(|| format!("the metrics are in {}", path.display()))?;
            Ok(())
        }
    }
    let device = args.device.clone();
    let dtype = args.run.dtype;
    dispatch(&device, dtype == Dtype::Bfloat16, EvalJob(args))
}

/// A confusion matrix as text: rows the true class, columns the predicted one.
fn confusion_table(matrix: &[Vec<usize>], names: &[String]) -> String {
    let width = names.iter().map(String::len).chain([5]).max().unwrap_or(5).min(16);
    let cut = |n: &str| n.chars().take(width).collect::<String>();
    let mut out = String::from("confusion matrix (rows: true class, columns: predicted)\n");
    out.push_str(&format!("{:>width$}", ""));
    for name in names {
        out.push_str(&format!(" {:>width$}", cut(name)));
    }
    for (name, row) in names.iter().zip(matrix) {
        out.push_str(&format!("\n{:>width$}", cut(name)));
        for count in row {
            out.push_str(&format!(" {count:>width$}"));
        }
    }
    out
}

/// The base model for an adapter: its trained head (if it saves one) replaces the base's,
/// whatever the base's number of labels ([`Adapter::apply`] takes the head's rows from the
/// adapter), as `from_pretrained(base, num_labels=N)` before `PeftModel.from_pretrained` does.
fn load_for_adapter<B: Backend>(
    model: &str,
    adapter: Option<&Adapter>,
    device: &B::Device,
) -> Result<encoders::Pretrained<B>> {
    let options = encoders::LoadOptions { ignore_mismatched_sizes: adapter.is_some(), ..Default::default() };
    Ok(encoders::from_pretrained::<B>(model, &options, device)?)
}

/// The model's tokenizer truncating at `max_length`, with a warning on standard error for
/// each thing that does not fit between them ([`encoders::Pretrained::tokenizer_warnings`]).
pub fn tokenizer<B: Backend>(
    pretrained: &encoders::Pretrained<B>,
    max_length: usize,
) -> Result<encoders::EncoderTokenizer> {
    let tokenizer = pretrained.tokenizer(max_length)?;
    for warning in pretrained.tokenizer_warnings(&tokenizer) {
        crate::console::err(format!("warning: {warning}"));
    }
    Ok(tokenizer)
}

/// One text (or pair) to classify and where it came from: its line in `--input` (and its `id`
/// field, if JSON Lines), or its place among the `--text`s.
#[derive(Debug, Clone, PartialEq)]
struct Input {
    line: usize,
    id: Option<serde_json::Value>,
    text: String,
    text_pair: Option<String>,
    /// Only the line's first bytes were read (see [`read_inputs`]).
    cut: bool,
}

/// Texts from `--input`, one per line, in `format` (`Auto`: by the file's extension). A plain
/// text line longer than `keep` bytes is read only that far (the rest is skipped, never held):
/// predict truncates at the end, so its first `keep` bytes give the tokens `max_length` keeps.
fn read_inputs(path: &Path, format: InputFormat, keep: usize) -> Result<impl Iterator<Item = Result<Input>>> {
    let jsonl = match format {
        InputFormat::Jsonl => true,
        InputFormat::Text => false,
        InputFormat::Auto => {
            path.extension().is_some_and(|e| e.eq_ignore_ascii_case("jsonl") || e.eq_ignore_ascii_case("json"))
        }
    };
    let file = std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let path = path.to_path_buf();
    let mut reader = std::io::BufReader::new(file);
    let mut n = 0;
    Ok(std::iter::from_fn(move || {
        n += 1;
        let line = if jsonl {
            let mut line = String::new();
            match reader.read_line(&mut line) {
                Ok(0) => return None,
                Ok(_) => Ok((trim_newline(line), false)),
                Err(e) => Err(e),
            }
        } else {
            match read_line_head(&mut reader, keep) {
                Ok(None) => return None,
                Ok(Some(line)) => Ok(line),
                Err(e) => Err(e),
            }
        };
        Some(input_line(&path, n, line, jsonl))
    }))
}

fn trim_newline(mut line: String) -> String {
    if line.ends_with('\n') {
        line.pop();
        if line.ends_with('\r') {
            line.pop();
        }
    }
    line
}

/// The next line of `reader` (as `BufRead::lines` gives it), of which at most its first `keep`
/// bytes are held (cut back to a whole character), and whether it was longer: the rest of a
/// longer line is read past, never held.
fn read_line_head(reader: &mut impl BufRead, keep: usize) -> std::io::Result<Option<(String, bool)>> {
    let mut head = Vec::new();
    let mut total = 0;
    let mut any = false;
    loop {
        let available = match reader.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if available.is_empty() {
            break;
        }
        any = true;
        let newline = available.iter().position(|&b| b == b'\n');
        let part = &available[..newline.unwrap_or(available.len())];
        head.extend_from_slice(&part[..part.len().min(keep.saturating_sub(head.len()))]);
        total += part.len();
        let used = part.len() + usize::from(newline.is_some());
        reader.consume(used);
        if newline.is_some() {
            break;
        }
    }
    if !any {
        return Ok(None);
    }
    let cut = total > keep;
    if !cut && head.ends_with(b"\r") {
        head.pop();
    }
    let invalid = |e| std::io::Error::new(std::io::ErrorKind::InvalidData, e);
    let text = match String::from_utf8(head) {
        Ok(text) => text,
        // A character cut at `keep`: the whole characters before it.
        Err(e) if cut && e.utf8_error().error_len().is_none() => {
            let valid = e.utf8_error().valid_up_to();
            let mut bytes = e.into_bytes();
            bytes.truncate(valid);
            String::from_utf8(bytes).map_err(invalid)?
        }
        Err(e) => return Err(invalid(e)),
    };
    Ok(Some((text, cut)))
}

/// Line `n` of `--input` as a text to classify.
fn input_line(path: &Path, n: usize, line: std::io::Result<(String, bool)>, jsonl: bool) -> Result<Input> {
    let (line, cut) = line.with_context(|| format!("{}:{n}: not valid UTF-8 text", path.display()))?;
    if !jsonl {
        return Ok(Input { line: n, id: None, text: line, text_pair: None, cut });
    }
    if line.trim().is_empty() {
        bail!(
            "{}:{n}: a blank line; JSON Lines needs one object per line (or use --input-format text)",
            path.display()
        );
    }
    let value: serde_json::Value = serde_json::from_str(&line).with_context(|| {
        format!("{}:{n}: not a JSON object (read as JSON Lines; --input-format text reads plain text)", path.display())
    })?;
    // The columns as training finds them: `text` (+ `text_pair`), `sentence1` + `sentence2`, ...
    let object = value.as_object().with_context(|| format!("{}:{n}: not a JSON object", path.display()))?;
    let keys: Vec<String> = object.keys().cloned().collect();
    let (text_key, pair_key) = textdata::Columns::default().find_texts(&keys, path).map_err(|_| {
        anyhow::anyhow!(
            "{}:{n}: no text field; expected `text` (and `text_pair`), or a pair such as `sentence1` + `sentence2`, found {keys:?}",
            path.display()
        )
    })?;
    let string = |key: &str| -> Result<String> {
        match object.get(key) {
            Some(serde_json::Value::String(s)) => Ok(s.clone()),
            _ => bail!("{}:{n}: `{key}` is not a string", path.display()),
        }
    };
    let text = string(&text_key)?;
    let text_pair = pair_key.as_deref().map(string).transpose()?;
    Ok(Input { line: n, id: value.get("id").cloned(), text, text_pair, cut: false })
}

pub fn predict(args: PredictArgs) -> Result<()> {
    struct PredictJob(PredictArgs);
    impl Job for PredictJob {
        fn run<B: AutodiffBackend>(self, device: &B::Device, name: &str) -> Result<()> {
            let a = self.0;
            if !a.text_pair.is_empty() && a.text_pair.len() != a.text.len() {
                bail!(
                    "--text-pair is given {} times for {} --text: one pair per text",
                    a.text_pair.len(),
                    a.text.len()
                );
            }
            if a.input.is_none() && a.text.is_empty() {
                bail!("nothing to predict: give --text TEXT (repeatable) or --input FILE");
            }
            let run = a.run.load::<B::InnerBackend>(device, name)?;
            // Four pieces' worth: more than `max_length` tokens of any prose (see
            // `EncoderTokenizer::window`).
            let keep = run.tokenizer.window().saturating_mul(4);
            let inputs: Box<dyn Iterator<Item = Result<Input>>> = match &a.input {
                Some(path) => Box::new(read_inputs(path, a.input_format, keep)?),
                None => Box::new(a.text.iter().enumerate().map(|(i, t)| {
                    let text_pair = a.text_pair.get(i).cloned();
                    Ok(Input { line: i + 1, id: None, text: t.clone(), text_pair, cut: false })
                })),
            };
            // Answers stream out a window at a time (length-sorted within it), so memory is
            // bounded by the window, not by the input; `--output` is written whole or not at all.
            let mut file = a.output.as_deref().map(tensor_file::AtomicFile::create).transpose()?;
            let window = a.run.batch_size.saturating_mul(16).max(1);
            let from = a.input.as_ref().map_or("--text".to_string(), |p| p.display().to_string());
            let mut chunk: Vec<Input> = Vec::with_capacity(window);
            let mut answered = 0;
            let mut inputs = inputs.peekable();
            while let Some(input) = inputs.next() {
                chunk.push(input?);
                if chunk.len() < window && inputs.peek().is_some() {
                    continue;
                }
                let examples: Vec<textdata::Example> = chunk
                    .iter()
                    .map(|t| textdata::Example {
                        text_pair: t.text_pair.clone(),
                        ..textdata::Example::new(t.text.clone(), 0)
                    })
                    .collect();
                let items = textdata::tokenize(&examples, &run.tokenizer, false, |_| {})?;
                for (input, item) in chunk.iter().zip(&items) {
                    if input.cut && item.encoded.len() < run.tokenizer.max_length() {
                        crate::console::err(format!(
                            "warning: {from}:{}: only the line's first {keep} bytes were read, and they make fewer than max_length ({}) tokens: its prediction may differ from the whole line's",
                            input.line,
                            run.tokenizer.max_length()
                        ));
                    }
                }
                let all = logits(&run.model, &items, a.run.batch_size, run.batcher, device)?;
                let mut lines = String::new();
                for (input, row) in chunk.iter().zip(&all) {
                    if !row.iter().all(|x| x.is_finite()) {
                        bail!(
                            "{from}:{}: the adapter {} gives non-finite logits; no prediction is written from here on",
                            input.line,
                            a.run.adapter.display()
                        );
                    }
                    let mut line = prediction(row, &run.labels, a.threshold);
                    if let Some(f) = a.function_to_apply {
                        line["scores"] = lora_serve::FunctionToApply::from(f).apply(row).into();
                    }
                    line["line"] = input.line.into();
                    if let Some(id) = &input.id {
                        line["id"] = id.clone();
                    }
                    lines.push_str(&format!("{line}\n"));
                }
                match file.as_mut() {
                    Some(f) => f.write_all(lines.as_bytes())?,
                    None => crate::console::out_raw(&lines)?,
                }
                answered += chunk.len();
                chunk.clear();
            }
            if answered == 0 {
                bail!("nothing to predict: give --text TEXT (repeatable) or --input FILE");
            }
            if let Some(f) = file {
                f.commit()?;
            }
            Ok(())
        }
    }
    let device = args.device.clone();
    let dtype = args.run.dtype;
    dispatch(&device, dtype == Dtype::Bfloat16, PredictJob(args))
}

/// One prediction as a JSON object, per task: the class name, its id, its probability and
/// every class's (single-label); the classes whose sigmoid passes `threshold` and every
/// class's score (multi-label); the value (regression). The logits always.
fn prediction(row: &[f32], labels: &LabelSpace, threshold: f32) -> serde_json::Value {
    let name = |i: usize| labels.names.get(i).cloned().unwrap_or_else(|| format!("LABEL_{i}"));
    match labels.problem_type {
        ProblemType::SingleLabelClassification => {
            let probs = labels.problem_type.scores(row);
            let best = argmax(row);
            serde_json::json!({ "label": name(best), "label_id": best, "score": probs[best], "probs": probs, "logits": row })
        }
        ProblemType::MultiLabelClassification => {
            let scores = labels.problem_type.scores(row);
            let chosen: Vec<String> = (0..row.len()).filter(|&i| scores[i] > threshold).map(name).collect();
            serde_json::json!({ "labels": chosen, "scores": scores, "logits": row })
        }
        ProblemType::Regression => serde_json::json!({ "value": row.first(), "logits": row }),
    }
}

/// `path` made absolute with symbolic links resolved, as far as it exists.
fn resolved(path: &Path) -> PathBuf {
    if let Ok(p) = path.canonicalize() {
        return p;
    }
    match (path.parent(), path.file_name()) {
        (Some(parent), Some(name)) => {
            let parent = if parent.as_os_str().is_empty() { Path::new(".") } else { parent };
            resolved(parent).join(name)
        }
        _ => path.to_path_buf(),
    }
}

pub fn merge(args: MergeArgs) -> Result<()> {
    struct MergeJob(MergeArgs);
    impl Job for MergeJob {
        fn run<B: AutodiffBackend>(self, device: &B::Device, _name: &str) -> Result<()> {
            let a = self.0;
            // The model first: an adapter that cannot be read is reported after it.
            let adapter = Adapter::read(&a.adapter);
            let pretrained = load_for_adapter::<B::InnerBackend>(&a.model, adapter.as_ref().ok(), device)?;
            // Refused before anything is written: an output that is or holds an input.
            let output = resolved(&a.output);
            let mut inputs = vec![resolved(&a.adapter)];
            inputs.extend(pretrained.files.config.parent().map(resolved));
            inputs.extend(
                pretrained.files.tokenizer_files.iter().chain([&pretrained.files.weights]).map(|f| resolved(f)),
            );
            if let Some(input) = inputs.iter().find(|i| i.starts_with(&output)) {
                bail!(
                    "--output {} is or holds an input ({}); write the merged model to a new directory",
                    a.output.display(),
                    input.display()
                );
            }
            let occupied = std::fs::read_dir(&a.output).is_ok_and(|mut d| d.next().is_some());
            if occupied && !a.overwrite {
                bail!("--output {} exists and is not empty; pass --overwrite to replace it", a.output.display());
            }
            if a.output.exists() && !a.output.is_dir() {
                bail!("--output {} exists and is not a directory", a.output.display());
            }
            let adapter = adapter?;
            let (model, lora) = adapter.apply(pretrained.model, device)?;
            let labels = adapter_labels(&a.adapter, model.num_labels())?;
            let merged = lora_adapter::merge(model)?;
            // The adapter's labels (checked against its head's rows) name the merged head.
            let mut config = pretrained.config.clone();
            config.set_head(&labels);

            // Written whole beside the output, then renamed into place.
            let name = output.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let parent = output.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."));
            std::fs::create_dir_all(&parent).with_context(|| format!("cannot create {}", parent.display()))?;
            // One merge into an output at a time (the output may not exist yet: the lock is beside it).
            let lock_path = parent.join(format!(".{name}.lock"));
            let in_use = |who: String| {
                format!("--output {} is being written by another `lora merge` ({who})", a.output.display())
            };
            let lock = crate::run_dir::lock_file(&lock_path, in_use)?;
            // Checked again under the lock: a merge that finished meanwhile filled it.
            let occupied = std::fs::read_dir(&a.output).is_ok_and(|mut d| d.next().is_some());
            if occupied && !a.overwrite {
                bail!("--output {} exists and is not empty; pass --overwrite to replace it", a.output.display());
            }
            // What a killed merge into this output left (its pid's temporary and set-aside
            // directories): no live merge owns them while we hold the lock.
            if let Ok(entries) = std::fs::read_dir(&parent) {
                let (tmp_prefix, old_prefix) = (format!(".{name}.tmp-"), format!(".{name}.old-"));
                for entry in entries.flatten() {
                    let file_name = entry.file_name().to_string_lossy().into_owned();
                    if file_name.starts_with(&tmp_prefix) || file_name.starts_with(&old_prefix) {
                        let _ = std::fs::remove_dir_all(entry.path());
                    }
                }
            }
            // Removed (while still locked) and released on every way out of the merge.
            let _unlock = Unlock(lock_path, lock);
            let tmp = parent.join(format!(".{name}.tmp-{}", std::process::id()));
            let written = (|| -> Result<()> {
                encoders::save_pretrained(&merged, &config, &tmp)?;
                for file in &pretrained.files.tokenizer_files {
                    if let Some(file_name) = file.file_name() {
                        std::fs::copy(file, tmp.join(file_name)).with_context(|| {
                            format!("cannot copy {} to {}", file.display(), tmp.join(file_name).display())
                        })?;
                    }
                }
                Ok(())
            })();
            if let Err(e) = written {
                let _ = std::fs::remove_dir_all(&tmp);
                return Err(e);
            }
            let old = parent.join(format!(".{name}.old-{}", std::process::id()));
            if output.exists() {
                std::fs::rename(&output, &old).with_context(|| format!("cannot replace {}", output.display()))?;
            }
            if let Err(e) = std::fs::rename(&tmp, &output) {
                let _ = std::fs::rename(&old, &output);
                let _ = std::fs::remove_dir_all(&tmp);
                return Err(e).with_context(|| format!("cannot move the merged model into {}", output.display()));
            }
            let _ = std::fs::remove_dir_all(&old);
            let targets = match &lora.target_modules {
                Some(lora_adapter::TargetModules::Names(names)) => names.join(", "),
                Some(lora_adapter::TargetModules::Regex(pattern)) => pattern.clone(),
                None => "none".to_string(),
            };
            crate::console::err(format!(
                "merged {} (target modules: {targets}) into {}",
                a.adapter.display(),
                a.output.display()
            ));
            Ok(())
        }
    }
    let device = args.device.clone();
    dispatch(&device, false, MergeJob(args))
}

pub fn serve(args: ServeArgs) -> Result<()> {
    struct ServeJob(ServeArgs);
    impl Job for ServeJob {
        fn run<B: AutodiffBackend>(self, device: &B::Device, name: &str) -> Result<()> {
            let a = self.0;
            let adapters: Vec<(String, PathBuf)> = a
                .adapter
                .iter()
                .map(|spec| match spec.split_once('=') {
                    Some((name, dir)) => (name.to_string(), PathBuf::from(dir)),
                    None => (lora_serve::adapter_name(Path::new(spec)), PathBuf::from(spec)),
                })
                .collect();
            if adapters.is_empty() && a.no_adapter_api {
                bail!("nothing to serve: give --adapter NAME=DIR, or leave the adapter API on to load them later");
            }
            // The base's own head is never used: each adapter brings its trained one.
            let options = encoders::LoadOptions { ignore_mismatched_sizes: true, ..Default::default() };
            let pretrained = encoders::from_pretrained::<B::InnerBackend>(&a.model, &options, device)?;
            let positions = pretrained.config.max_text_positions();
            let tokenizer = tokenizer(&pretrained, positions)?;
            let pad = crate::config::padding_for(a.pad_to_multiple_of, name, positions, positions);
            if let Some(note) = crate::config::padding_note(a.pad_to_multiple_of, pad, "--pad-to-multiple-of") {
                crate::console::err(note);
            }
            let mut model = pretrained.model;
            let dtype = in_dtype(&mut model, a.dtype, name, "--dtype bfloat16");
            let base = lora_serve::Base {
                model,
                dtype: dtype.name().to_string(),
                tokenizer,
                model_id: a.model.clone(),
                model_type: pretrained.config.family.model_type.to_string(),
                device: device.clone(),
                device_name: name.to_string(),
            };
            let options = lora_serve::ServeOptions {
                host: a.host,
                port: a.port,
                max_concurrent_requests: a.max_concurrent_requests,
                max_client_batch_size: a.max_client_batch_size,
                payload_limit: a.payload_limit,
                batch: lora_serve::BatchLimits {
                    max_batch_tokens: a.max_batch_tokens,
                    max_wait: std::time::Duration::from_millis(a.max_wait_ms),
                    pad_to_multiple_of: pad,
                },
                default_adapter: a.default_adapter,
                adapter_api: !a.no_adapter_api,
                api_key: a.api_key,
                adapter_root: a.adapter_root,
                idle_timeout: std::time::Duration::from_secs(a.idle_timeout),
                request_timeout: a.request_timeout.map(std::time::Duration::from_secs),
                max_connections: a.max_connections,
                cors_allow_origin: (!a.cors_allow_origin.is_empty()).then_some(a.cors_allow_origin),
            };
            Ok(lora_serve::serve(base, &adapters, options)?)
        }
    }
    let (device, dtype) = (args.device.clone(), args.dtype);
    dispatch(&device, dtype == Dtype::Bfloat16, ServeJob(args))
}

/// A held lock file, removed (while still locked) and released when dropped.
struct Unlock(PathBuf, std::fs::File);

impl Drop for Unlock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
        let _ = self.1.unlock();
    }
}

pub fn export_data(args: ExportDataArgs) -> Result<()> {
    let mut overrides = args.set.clone();
    if let Some(d) = &args.data {
        overrides.push(format!("data.source={}", toml_string(d)));
    }
    let config = RunConfig::load(Some(&args.config), &overrides)?;
    let (subsets, labels) = crate::train::read_data(&config)?;
    std::fs::create_dir_all(&args.output).with_context(|| format!("cannot create {}", args.output.display()))?;
    // One export into a directory at a time.
    let lock_path = args.output.join(".lora-export.lock");
    let in_use = |who: String| {
        format!("--output {} is being written by another `lora export-data` ({who})", args.output.display())
    };
    let lock = crate::run_dir::lock_file(&lock_path, in_use)?;
    let _unlock = Unlock(lock_path, lock);
    textdata::write_jsonl(&args.output.join("train.jsonl"), &subsets.train)?;
    textdata::write_jsonl(&args.output.join("eval.jsonl"), &subsets.eval)?;
    labels.write(&args.output)?;
    crate::console::err(format!(
        "wrote {} training and {} evaluation examples ({}, {} labels) and labels.json to {}",
        subsets.train.len(),
        subsets.eval.len(),
        labels.problem_type,
        labels.num_labels(),
        args.output.display()
    ));
    Ok(())
}

pub fn bench(args: BenchArgs) -> Result<()> {
    if args.batch_size == 0 || args.seq_len < 2 {
        bail!("--batch-size must be at least 1 and --seq-len at least 2");
    }
    struct BenchJob(BenchArgs);
    impl Job for BenchJob {
        fn run<B: AutodiffBackend>(self, device: &B::Device, name: &str) -> Result<()> {
            let a = self.0;
            let mix = match &a.length_mix {
                None => None,
                Some(examples) => {
                    let json = a.model_config.with_file_name("tokenizer.json");
                    let beside = if json.exists() { json } else { a.model_config.with_file_name("vocab.txt") };
                    let tokenizer = a.tokenizer.clone().unwrap_or(beside);
                    // Truncated as training truncates (max_length 512), or shorter for a shorter model.
                    let positions = encoders::ModelConfig::from_file(&a.model_config)?.max_text_positions();
                    Some(crate::bench::mix_batches(examples, &tokenizer, a.batch_size, positions.min(512))?)
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
                target_modules: (!a.target_modules.is_empty())
                    .then(|| lora_adapter::TargetModules::Names(a.target_modules.clone())),
                dtype: a.dtype,
                bf16: a.bf16,
            };
            let rows = crate::bench::run::<B>(&options, device, name)?;
            if a.json {
                for row in &rows {
                    crate::console::out(serde_json::to_string(row)?)?;
                }
            } else {
                crate::console::out_raw(&crate::bench::table(&rows))?;
            }
            Ok(())
        }
    }
    let (device, bf16) = (args.device.clone(), args.bf16);
    if args.dtype == Dtype::Bfloat16 && !device.device.starts_with("cpu") {
        bail!("--dtype bfloat16 is the CPU's bf16 evaluation forward: on cuda, --bf16 computes both rows in bf16");
    }
    dispatch(&device, bf16, BenchJob(args))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Lines as `BufRead::lines` reads them (`\n` or `\r\n` ends one, the last may lack it), of
    /// which only the first `keep` bytes are held, cut back to a whole character.
    #[test]
    fn a_line_is_held_only_to_its_first_bytes() {
        let text = "short\r\nlong line é here\n\nno newline at the end";
        let mut reader = std::io::BufReader::with_capacity(4, text.as_bytes());
        let mut lines = Vec::new();
        while let Some(line) = read_line_head(&mut reader, 11).unwrap() {
            lines.push(line);
        }
        let expected = [("short", false), ("long line ", true), ("", false), ("no newline ", true)];
        assert_eq!(lines, expected.map(|(t, cut)| (t.to_string(), cut)));
        let mut reader = std::io::BufReader::new("é\nx".as_bytes());
        assert_eq!(read_line_head(&mut reader, 1).unwrap(), Some((String::new(), true)), "a cut character is dropped");
        assert_eq!(read_line_head(&mut reader, 1).unwrap(), Some(("x".to_string(), false)));
        assert_eq!(read_line_head(&mut reader, 1).unwrap(), None);
        let mut reader = std::io::BufReader::new(&b"ok\n\xff\xfe\n"[..]);
        assert_eq!(read_line_head(&mut reader, 100).unwrap(), Some(("ok".to_string(), false)));
        assert!(read_line_head(&mut reader, 100).is_err(), "invalid UTF-8 is an error");
    }
}
