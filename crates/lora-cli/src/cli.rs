//! The command line: `lora train | eval | predict | merge`.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Parser, Debug)]
#[command(
    name = "lora",
    version = crate::device::VERSION,
    about = "LoRA fine-tuning of encoder classifiers (BERT, RoBERTa, XLM-R, DistilBERT, ELECTRA, ModernBERT, DeBERTa-v3, CamemBERT, MPNet), with adapters in Hugging Face PEFT's format"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Args, Debug, Clone)]
pub struct DeviceArg {
    /// `cpu`, `cuda` or `cuda:N` (the `cuda` build), `wgpu` or `wgpu:N` (the `wgpu` build:
    /// Vulkan, Metal; `wgpu` alone picks a GPU before a CPU driver).
    #[arg(long, default_value = "cpu", global = true)]
    pub device: String,
    /// A GPU without Burn's operation fusion: one generic kernel per operation (fewer kernels
    /// to compile at run time, more launches). Compiled kernels are cached in
    /// LORA_KERNEL_CACHE (default ~/.cache/lora/kernels) either way.
    #[arg(long, global = true)]
    pub no_fusion: bool,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Fine-tune: the run's config, checkpoints, metrics and final adapter go to the output directory.
    Train(TrainArgs),
    /// The metrics of an adapter's task on held-out examples (accuracy, F1s, confusion matrix; MSE, correlations).
    Eval(EvalArgs),
    /// One JSON line per text: label name and probabilities (scores for multi-label, the value for regression), logits.
    Predict(PredictArgs),
    /// Fold the adapter into the base weights and write a plain Hugging Face model.
    Merge(MergeArgs),
    /// Write a config's training and evaluation subsets as JSON Lines (for other tools).
    ExportData(ExportDataArgs),
    /// Time a LoRA training step and an evaluation forward for a model shape (random weights).
    Bench(BenchArgs),
    /// An HTTP server over one base model and many adapters (text-embeddings-inference's
    /// POST /predict, with `adapter_id`), batching requests across clients and adapters.
    Serve(ServeArgs),
}

#[derive(Args, Debug)]
pub struct ServeArgs {
    /// Base model directory or Hub id.
    #[arg(long)]
    pub model: String,
    /// An adapter to serve, as NAME=DIR (repeatable), DIR a directory or a Hub id; a bare DIR
    /// is named after its directory (a run's `runs/imdb/adapter` is `imdb`).
    #[arg(long, value_name = "NAME=DIR")]
    pub adapter: Vec<String>,
    /// The adapter of requests without `adapter_id` (default: the one given at start, when one is).
    #[arg(long, value_name = "NAME")]
    pub default_adapter: Option<String>,
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Past this many predict requests at once, answer 429 (TEI's flag).
    #[arg(long, default_value_t = 512, value_parser = at_least_one)]
    pub max_concurrent_requests: usize,
    /// Inputs one request may hold (TEI's flag).
    #[arg(long, default_value_t = 32, value_parser = at_least_one)]
    pub max_client_batch_size: usize,
    /// Padded tokens (rows x longest) in one forward (TEI's flag).
    #[arg(long, default_value_t = 16384, value_parser = at_least_one)]
    pub max_batch_tokens: usize,
    /// How long the first request of a batch waits for others to join it, in milliseconds.
    #[arg(long, default_value_t = 2)]
    pub max_wait_ms: u64,
    /// The largest request body in bytes (TEI's flag).
    #[arg(long, default_value_t = 2_000_000, value_parser = at_least_one)]
    pub payload_limit: usize,
    /// Pad each batch to a multiple of this many tokens (default: 1 on the CPU, 64 on a GPU:
    /// fewer shapes to compile kernels for).
    #[arg(long, value_name = "N", value_parser = at_least_one)]
    pub pad_to_multiple_of: Option<usize>,
    /// Serve no POST /adapters or DELETE /adapters/NAME: the adapters are the ones given here.
    #[arg(long)]
    pub no_adapter_api: bool,
    /// Every route but GET /health, /, /ping, /docs and /api-doc/openapi.json requires
    /// `Authorization: Bearer KEY` (TEI's flag; 401 otherwise). Prefer the environment variable: a flag shows in `ps`.
    #[arg(long, env = "LORA_API_KEY", hide_env_values = true, value_name = "KEY")]
    pub api_key: Option<String>,
    /// POST /adapters loads only directories under DIR (relative paths are taken from it;
    /// symlinks are resolved before the check); Hub ids are refused.
    #[arg(long, value_name = "DIR")]
    pub adapter_root: Option<PathBuf>,
    /// Close a connection that sends no complete request head for this many seconds: a new one
    /// sending nothing (or too slowly), or a kept-alive one left idle.
    #[arg(long, value_name = "SECONDS", default_value_t = 30, value_parser = at_least_one_u64)]
    pub idle_timeout: u64,
    /// Answer 504 to a request not answered within this many seconds (default: no deadline).
    #[arg(long, value_name = "SECONDS", value_parser = at_least_one_u64)]
    pub request_timeout: Option<u64>,
    /// Connections held at once; more wait to be accepted (default: the open-file limit less 64).
    #[arg(long, value_name = "N", value_parser = at_least_one)]
    pub max_connections: Option<usize>,
    /// Origins whose web pages may call the API from a browser (TEI's flag; repeatable or
    /// comma-separated; `*`: any). Without it, no CORS headers: browsers keep other sites out.
    #[arg(long, value_name = "ORIGIN", value_delimiter = ',', env = "CORS_ALLOW_ORIGIN")]
    pub cors_allow_origin: Vec<String>,
    /// `bfloat16`: the base model's linear layers in bf16 (about twice as fast on a CPU with
    /// AVX512-BF16; scores within about 1e-2 of float32's). TEI's flag.
    #[arg(long, value_enum, default_value_t = Dtype::Float32)]
    pub dtype: Dtype,
    #[command(flatten)]
    pub device: DeviceArg,
}

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// A Hugging Face config.json giving the model's shape.
    #[arg(long)]
    pub model_config: PathBuf,
    #[arg(long, default_value_t = 16)]
    pub batch_size: usize,
    #[arg(long, default_value_t = 256)]
    pub seq_len: usize,
    #[arg(long, default_value_t = 2)]
    pub warmup: usize,
    #[arg(long, default_value_t = 5)]
    pub repeats: usize,
    /// Time real batches instead: consecutive batches of the texts in this file (JSON Lines
    /// with `text`, or any format `--data` reads, e.g. `lora export-data`'s train.jsonl), each
    /// padded to its longest text; rows `train_mix` and `eval_mix`.
    #[arg(long, value_name = "FILE")]
    pub length_mix: Option<PathBuf>,
    /// Pad each batch to a multiple of this many tokens (as `data.pad_to_multiple_of`).
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub pad_to_multiple_of: usize,
    /// The tokenizer for `--length-mix` (default: tokenizer.json, else vocab.txt, beside --model-config).
    #[arg(long, value_name = "FILE")]
    pub tokenizer: Option<PathBuf>,
    /// LoRA targets, comma-separated (as `lora.target_modules`); default: PEFT's for the
    /// family (ModernBERT and DistilBERT have none and must be told, e.g. `Wqkv,attn.Wo`).
    #[arg(long, value_name = "NAMES", value_delimiter = ',')]
    pub target_modules: Vec<String>,
    /// JSON lines instead of a table.
    #[arg(long)]
    pub json: bool,
    /// The training step (and the evaluation forward) in bfloat16: on the CPU the frozen base
    /// linears in bf16 with f32 accumulation (AVX512-BF16), as `training.bf16 = true`; on
    /// cuda, weights, activations and optimiser state.
    #[arg(long)]
    pub bf16: bool,
    /// The evaluation forward's dtype (`bfloat16`: the base linears in bf16, as `lora eval
    /// --dtype bfloat16`); the training step is float32 either way.
    #[arg(long, value_enum, default_value_t = Dtype::Float32)]
    pub dtype: Dtype,
    #[command(flatten)]
    pub device: DeviceArg,
}

#[derive(Args, Debug)]
pub struct ExportDataArgs {
    /// The run config whose [data] section draws the subsets.
    #[arg(long)]
    pub config: PathBuf,
    /// Dataset source (overrides data.source).
    #[arg(long)]
    pub data: Option<String>,
    #[arg(long = "set", value_name = "SECTION.KEY=VALUE")]
    pub set: Vec<String>,
    /// Directory for train.jsonl and eval.jsonl.
    #[arg(long)]
    pub output: PathBuf,
}

#[derive(Args, Debug)]
pub struct TrainArgs {
    /// TOML config with [model], [lora], [data], [training] (see configs/). Without one,
    /// every key has its Hugging Face default (TrainingArguments', LoraConfig's).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Model directory or Hub id (overrides model.name_or_path).
    #[arg(long)]
    pub model: Option<String>,
    /// Dataset source (overrides data.source).
    #[arg(long)]
    pub data: Option<String>,
    /// Override any config key: `--set training.learning_rate=1e-4`.
    #[arg(long = "set", value_name = "SECTION.KEY=VALUE")]
    pub set: Vec<String>,
    /// Output directory (overrides training.output_dir).
    #[arg(long)]
    pub output_dir: Option<PathBuf>,
    /// Continue the run in the output directory from its latest checkpoint, with the config it
    /// started with (only `--set training.num_train_epochs=N` may change it).
    #[arg(long, conflicts_with = "overwrite")]
    pub resume: bool,
    /// Replace a run already in the output directory (once every input has been checked).
    #[arg(long)]
    pub overwrite: bool,
    /// No progress output.
    #[arg(long, conflicts_with = "json")]
    pub quiet: bool,
    /// Log lines as JSON on standard output.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub device: DeviceArg,
}

/// The model and adapter `eval` and `predict` run, and how they cut and batch the texts.
#[derive(Args, Debug)]
pub struct InferenceArgs {
    /// Base model directory or Hub id.
    #[arg(long)]
    pub model: String,
    /// Adapter directory (PEFT's adapter_config.json and adapter_model.safetensors).
    #[arg(long)]
    pub adapter: PathBuf,
    /// Truncate texts to this many tokens: at most the model's max_position_embeddings, which
    /// is the default (512 for BERT).
    #[arg(long, value_parser = at_least_one)]
    pub max_length: Option<usize>,
    #[arg(long, default_value_t = 16, value_parser = at_least_one)]
    pub batch_size: usize,
    /// Pad each batch to a multiple of this many tokens (as data.pad_to_multiple_of; 1: to the
    /// batch's longest). Default: 1 on the CPU, 64 on a GPU (fewer shapes to compile kernels for).
    #[arg(long, value_name = "N", value_parser = at_least_one)]
    pub pad_to_multiple_of: Option<usize>,
    /// `bfloat16`: the base model's linear layers in bf16 (about twice as fast on a CPU with
    /// AVX512-BF16; scores within about 1e-2 of float32's).
    #[arg(long, value_enum, default_value_t = Dtype::Float32)]
    pub dtype: Dtype,
}

/// What a model computes in (TEI's and transformers' `--dtype` names).
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Dtype {
    #[default]
    Float32,
    /// The base model's linear layers take bf16 inputs and weights and accumulate in f32, as
    /// PyTorch's autocast: on a CPU with AVX512-BF16 (elsewhere float32, with a warning), or
    /// everything in bf16 on `cuda`.
    Bfloat16,
}

impl Dtype {
    /// The name `/info` and the messages use.
    pub fn name(self) -> &'static str {
        match self {
            Self::Float32 => "float32",
            Self::Bfloat16 => "bfloat16",
        }
    }
}

/// A probability: a number from 0 to 1.
fn probability(value: &str) -> Result<f32, String> {
    match value.parse::<f32>() {
        Ok(p) if (0.0..=1.0).contains(&p) => Ok(p),
        Ok(p) => Err(format!("{p} is not a probability: give a number from 0 to 1")),
        Err(e) => Err(e.to_string()),
    }
}

/// A count that must be at least 1.
fn at_least_one(value: &str) -> Result<usize, String> {
    match value.parse::<usize>() {
        Ok(0) => Err("must be at least 1".into()),
        Ok(n) => Ok(n),
        Err(e) => Err(e.to_string()),
    }
}

fn at_least_one_u64(value: &str) -> Result<u64, String> {
    at_least_one(value).map(|n| n as u64)
}

#[derive(Args, Debug)]
pub struct EvalArgs {
    #[command(flatten)]
    pub run: InferenceArgs,
    /// Dataset source; examples are drawn from its evaluation split as training draws them,
    /// their labels read with the adapter's labels.json.
    #[arg(long)]
    pub data: String,
    /// The text's column (default: `text`, `sentence` or `review`, unless the data has a pair).
    #[arg(long)]
    pub text_column: Option<String>,
    /// The second text's column (default: found for `sentence1`/`sentence2` and the like).
    #[arg(long)]
    pub text_pair_column: Option<String>,
    /// The label's column (default: `label`, `labels` or `sentiment`).
    #[arg(long)]
    pub label_column: Option<String>,
    /// The split to evaluate on (default: `test`, else `validation`, else `eval`).
    #[arg(long)]
    pub eval_split: Option<String>,
    /// Examples drawn from the split (balanced over the classes); default: all of it.
    #[arg(long)]
    pub eval_size: Option<usize>,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Where the JSON goes (default: eval_results.json beside the adapter directory).
    #[arg(long)]
    pub output: Option<PathBuf>,
    #[command(flatten)]
    pub device: DeviceArg,
}

#[derive(Args, Debug)]
pub struct PredictArgs {
    #[command(flatten)]
    pub run: InferenceArgs,
    /// A text to classify (repeatable).
    #[arg(long, conflicts_with = "input")]
    pub text: Vec<String>,
    /// The second text of a pair, one per --text, in order.
    #[arg(long, conflicts_with = "input")]
    pub text_pair: Vec<String>,
    /// Multi-label: a class is predicted when its sigmoid score passes this.
    #[arg(long, default_value_t = 0.5, value_parser = probability, allow_negative_numbers = true)]
    pub threshold: f32,
    /// Also write `scores`: the logits through this function (transformers' pipeline argument):
    /// `sigmoid` gives a reranker's score as `lora serve`'s /rerank does.
    #[arg(long, value_enum, value_name = "FUNCTION")]
    pub function_to_apply: Option<FunctionToApply>,
    /// One text per line, or JSON Lines with a `text` field (and optional `text_pair` and
    /// `id`; or the columns training finds, e.g. `sentence1` + `sentence2`); one output line
    /// per input line.
    #[arg(long)]
    pub input: Option<PathBuf>,
    /// How `--input` is read: by its extension (`.jsonl`/`.json`: JSON Lines), or as said.
    #[arg(long, value_enum, default_value_t = InputFormat::Auto)]
    pub input_format: InputFormat,
    /// Write the JSON lines here instead of standard output.
    #[arg(long)]
    pub output: Option<PathBuf>,
    #[command(flatten)]
    pub device: DeviceArg,
}

/// transformers' `function_to_apply`.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum FunctionToApply {
    Softmax,
    Sigmoid,
    None,
}

impl From<FunctionToApply> for lora_serve::FunctionToApply {
    fn from(f: FunctionToApply) -> Self {
        match f {
            FunctionToApply::Softmax => Self::Softmax,
            FunctionToApply::Sigmoid => Self::Sigmoid,
            FunctionToApply::None => Self::None,
        }
    }
}

/// How `lora predict --input` is read.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputFormat {
    /// `.jsonl` or `.json`: JSON Lines; anything else: plain text.
    Auto,
    /// One text per line, whatever it looks like.
    Text,
    /// One JSON object per line, with a `text` field.
    Jsonl,
}

#[derive(Args, Debug)]
pub struct MergeArgs {
    #[arg(long)]
    pub model: String,
    #[arg(long)]
    pub adapter: PathBuf,
    /// A new directory for config.json, model.safetensors and the tokenizer files; it must not
    /// be or hold the model or the adapter.
    #[arg(long)]
    pub output: PathBuf,
    /// Replace the output directory if it exists and is not empty.
    #[arg(long)]
    pub overwrite: bool,
    #[command(flatten)]
    pub device: DeviceArg,
}
