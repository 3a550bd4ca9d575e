//! Builds the model's parameters, from a checkpoint or freshly initialised as transformers'
//! `BertPreTrainedModel._init_weights` does.
//!
//! Modules ask for their tensors by checkpoint key (`encoder.layer.0.attention.self.query`),
//! built one segment at a time with [`Key::pp`] as the modules nest (candle's
//! `vb.pp("attention").pp("self")`), so the loader is the model's own structure and there is
//! no separate mapping to keep true.

use std::collections::BTreeSet;
use std::fmt;

use burn::module::Param;
use burn::nn::Embedding;
use burn::tensor::backend::Backend;
use burn::tensor::{Distribution, Tensor, TensorData};
use kernels::LayerNorm;
use lora_adapter::LoraLinear;

use crate::checkpoint::{Checkpoint, RawTensor};
use crate::error::{EncoderError, Result};

/// A checkpoint key built one segment at a time: `Key::root().pp("encoder").pp("layer").pp(0)`
/// is `encoder.layer.0`. Each segment is a field name of the module that holds it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Key(String);

impl Key {
    /// The empty key, above the model's top-level modules.
    pub fn root() -> Self {
        Self::default()
    }

    /// This key with `segment` appended ("push prefix").
    pub fn pp(&self, segment: impl fmt::Display) -> Self {
        if self.0.is_empty() { Self(segment.to_string()) } else { Self(format!("{}.{segment}", self.0)) }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// How a tensor absent from the checkpoint is initialised.
#[derive(Debug, Clone, Copy)]
enum Init {
    Normal,
    Zeros,
    Ones,
}

/// What loading did besides reading tensors: the tensors it had to initialise.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LoadReport {
    /// Keys created fresh (a classifier on a checkpoint that has none), in creation order.
    pub initialized: Vec<String>,
}

/// The source of a model's parameters while it is being built.
pub struct Weights<B: Backend> {
    checkpoint: Option<Checkpoint>,
    device: B::Device,
    initializer_range: f64,
    /// Key prefixes that may be missing from a checkpoint and are then initialised.
    may_initialize: Vec<String>,
    /// An output layer of another number of labels is initialised anew instead of refused
    /// (transformers' `ignore_mismatched_sizes`).
    ignore_mismatched_sizes: bool,
    /// Checkpoint keys read past: an output layer of another size, initialised anew.
    replaced: BTreeSet<String>,
    /// The standard deviation of normal draws, when a module asks for its own
    /// ([`Self::with_std`]); else `initializer_range`.
    std: Option<f64>,
    /// Normal draws cut at this many standard deviations (`trunc_normal_`, ModernBERT's
    /// `initializer_cutoff_factor`); `None`: a plain normal.
    truncation: Option<f64>,
    used: BTreeSet<String>,
    report: LoadReport,
}

impl<B: Backend> Weights<B> {
    /// Every tensor freshly initialised (a random model of a config).
    pub fn random(initializer_range: f64, device: &B::Device) -> Self {
        Self {
            checkpoint: None,
            device: device.clone(),
            initializer_range,
            may_initialize: Vec::new(),
            ignore_mismatched_sizes: false,
            replaced: BTreeSet::new(),
            std: None,
            truncation: None,
            used: BTreeSet::new(),
            report: LoadReport::default(),
        }
    }

    /// An output layer whose rows differ from the labels asked for is initialised anew (and
    /// reported) rather than refused.
    pub fn ignoring_mismatched_sizes(self, ignore: bool) -> Self {
        Self { ignore_mismatched_sizes: ignore, ..self }
    }

    /// Every tensor from `checkpoint`, except keys under `may_initialize` that it lacks.
    pub fn from_checkpoint(
        checkpoint: Checkpoint,
        initializer_range: f64,
        may_initialize: &[&str],
        device: &B::Device,
    ) -> Self {
        Self {
            checkpoint: Some(checkpoint),
            device: device.clone(),
            initializer_range,
            may_initialize: may_initialize.iter().map(|s| s.to_string()).collect(),
            ignore_mismatched_sizes: false,
            replaced: BTreeSet::new(),
            std: None,
            truncation: None,
            used: BTreeSet::new(),
            report: LoadReport::default(),
        }
    }

    pub fn device(&self) -> &B::Device {
        &self.device
    }

    /// Fresh normal draws cut at ±`cutoff` standard deviations from now on (ModernBERT's
    /// `trunc_normal_`), or plain normal ones (`None`).
    pub fn truncate_normal_at(&mut self, cutoff: Option<f64>) {
        self.truncation = cutoff;
    }

    /// A checkpoint tensor the model has no use for (DeBERTa-v3's unused absolute positions,
    /// which transformers ignores): read past, if present.
    pub fn skip(&mut self, key: &Key) {
        self.used.insert(key.to_string());
    }

    /// Runs `build` with fresh normal draws of standard deviation `std` (a family's own
    /// initialisation for some modules, as ModernBERT's `_init_weights`).
    pub fn with_std<T>(&mut self, std: f64, build: impl FnOnce(&mut Self) -> Result<T>) -> Result<T> {
        let before = self.std.replace(std);
        let out = build(self);
        self.std = before;
        out
    }

    /// Ends loading: a checkpoint tensor that nothing asked for is an error, since it means the
    /// checkpoint and the config describe different models.
    pub fn finish(self) -> Result<LoadReport> {
        if let Some(checkpoint) = &self.checkpoint {
            let unused: Vec<String> =
                checkpoint.tensors.keys().filter(|key| !self.used.contains(*key)).cloned().collect();
            if !unused.is_empty() {
                return Err(EncoderError::UnexpectedTensors { path: checkpoint.path.clone(), keys: unused });
            }
        }
        Ok(self.report)
    }

    fn raw(&mut self, key: &Key, shape: &[usize], init: Init) -> Result<RawTensor> {
        let key = key.as_str();
        let Some(checkpoint) = &self.checkpoint else {
            return self.initialize(shape, init);
        };
        if self.replaced.contains(key) {
            self.report.initialized.push(key.to_string());
            return self.initialize(shape, init);
        }
        match checkpoint.tensors.get(key) {
            Some(tensor) if tensor.shape == shape => {
                self.used.insert(key.to_string());
                Ok(tensor.clone())
            }
            Some(tensor) => Err(EncoderError::ShapeMismatch {
                key: key.to_string(),
                path: checkpoint.path.clone(),
                expected: shape.to_vec(),
                found: tensor.shape.clone(),
            }),
            None if self.may_initialize.iter().any(|p| key.starts_with(p.as_str())) => {
                self.report.initialized.push(key.to_string());
                self.initialize(shape, init)
            }
            None => Err(EncoderError::MissingTensor {
                key: key.to_string(),
                path: checkpoint.path.clone(),
                expected: shape.to_vec(),
            }),
        }
    }

    fn initialize(&self, shape: &[usize], init: Init) -> Result<RawTensor> {
        let n = shape.iter().product();
        let data = match init {
            Init::Zeros => vec![0.0; n],
            Init::Ones => vec![1.0; n],
            Init::Normal => {
                // Drawn on the host's seeded generator (`kernels::random::seed`), so runs repeat
                // and do not depend on the device.
                let std = self.std.unwrap_or(self.initializer_range);
                let draw = |n: usize| {
                    kernels::read::f32s(kernels::random::random::<B, 1>(
                        [n],
                        Distribution::Normal(0.0, std),
                        &self.device,
                    ))
                };
                let mut values = draw(n)?;
                if let Some(cutoff) = self.truncation {
                    // `trunc_normal_`: a value outside ±cutoff·std is drawn again.
                    let bound = (cutoff * std) as f32;
                    loop {
                        let outside: Vec<usize> = (0..n).filter(|&i| values[i].abs() > bound).collect();
                        if outside.is_empty() {
                            break;
                        }
                        for (i, v) in outside.iter().zip(draw(outside.len())?) {
                            values[*i] = v;
                        }
                    }
                }
                values
            }
        };
        Ok(RawTensor { shape: shape.to_vec(), data })
    }

    fn tensor<const D: usize>(&mut self, key: &Key, shape: [usize; D], init: Init) -> Result<Tensor<B, D>> {
        let raw = self.raw(key, &shape, init)?;
        Ok(Tensor::from_data(TensorData::new(raw.data, shape), &self.device))
    }

    /// `{at}.weight` (`[out, in]` in the checkpoint) and `{at}.bias`: a linear named `at`.
    pub fn linear(&mut self, at: &Key, d_input: usize, d_output: usize) -> Result<LoraLinear<B>> {
        self.linear_with(at, d_input, d_output, true)
    }

    /// A linear with a bias or without one (ModernBERT's, DeBERTa's configs choose).
    pub fn linear_with(&mut self, at: &Key, d_input: usize, d_output: usize, bias: bool) -> Result<LoraLinear<B>> {
        let raw = self.raw(&at.pp("weight"), &[d_output, d_input], Init::Normal)?;
        let weight = Tensor::from_data(
            TensorData::new(transpose(&raw.data, d_output, d_input), [d_input, d_output]),
            &self.device,
        );
        let bias =
            if bias { Some(Param::from_tensor(self.tensor(&at.pp("bias"), [d_output], Init::Zeros)?)) } else { None };
        Ok(LoraLinear::new(at.as_str(), Param::from_tensor(weight), bias))
    }

    /// The output layer of a classification head: `num_labels` rows. A checkpoint's output
    /// layer with another number of rows is refused, or with [`Self::ignoring_mismatched_sizes`]
    /// initialised anew, as `from_pretrained(..., num_labels=N, ignore_mismatched_sizes=True)`.
    pub fn output_linear(&mut self, at: &Key, d_input: usize, num_labels: usize, bias: bool) -> Result<LoraLinear<B>> {
        let (weight, bias_key) = (at.pp("weight").to_string(), at.pp("bias").to_string());
        let found =
            self.checkpoint.as_ref().and_then(|c| Some((c.path.clone(), c.tensors.get(&weight)?.shape.clone())));
        if let Some((path, shape)) = found
            && shape.len() == 2
            && shape[1] == d_input
            && shape[0] != num_labels
        {
            if !self.ignore_mismatched_sizes {
                return Err(EncoderError::HeadSize { path, module: at.to_string(), rows: shape[0], asked: num_labels });
            }
            for key in [weight, bias_key] {
                self.used.insert(key.clone());
                self.replaced.insert(key);
            }
        }
        Ok(self.linear_with(at, d_input, num_labels, bias)?.as_output())
    }

    /// `{at}.weight` and `{at}.bias` of a LayerNorm.
    pub fn layer_norm(&mut self, at: &Key, d_model: usize, epsilon: f64) -> Result<LayerNorm<B>> {
        self.layer_norm_with(at, d_model, epsilon, true)
    }

    /// A LayerNorm with a bias or without one (ModernBERT's `norm_bias`).
    pub fn layer_norm_with(&mut self, at: &Key, d_model: usize, epsilon: f64, bias: bool) -> Result<LayerNorm<B>> {
        let gamma = Param::from_tensor(self.tensor(&at.pp("weight"), [d_model], Init::Ones)?);
        let beta =
            if bias { Some(Param::from_tensor(self.tensor(&at.pp("bias"), [d_model], Init::Zeros)?)) } else { None };
        Ok(LayerNorm { gamma, beta, epsilon })
    }

    /// `{at}.weight`; a fresh table has its `padding_idx` row zeroed, as torch does.
    pub fn embedding(
        &mut self,
        at: &Key,
        n: usize,
        d_model: usize,
        padding_idx: Option<usize>,
    ) -> Result<Embedding<B>> {
        let mut raw = self.raw(&at.pp("weight"), &[n, d_model], Init::Normal)?;
        if self.checkpoint.is_none()
            && let Some(pad) = padding_idx.filter(|&p| p < n)
        {
            raw.data[pad * d_model..(pad + 1) * d_model].fill(0.0);
        }
        let weight = Tensor::from_data(TensorData::new(raw.data, [n, d_model]), &self.device);
        Ok(Embedding { weight: Param::from_tensor(weight) })
    }
}

impl<B: Backend> Weights<B> {
    /// A model built by `load` with every weight drawn as transformers initialises it.
    ///
    /// # Panics
    /// Never for a validated config: a random build reads no file.
    pub fn build_random<M>(initializer_range: f64, device: &B::Device, load: impl FnOnce(&mut Self) -> Result<M>) -> M {
        let mut w = Self::random(initializer_range, device);
        match load(&mut w) {
            Ok(model) => model,
            Err(e) => unreachable!("random init of a validated config failed: {e}"),
        }
    }

    /// A model built by `load` from `checkpoint`, where only keys under `may_initialize` may be
    /// missing (initialised and reported); any other missing, unexpected or mis-shaped tensor
    /// is an error.
    pub fn build_from_checkpoint<M>(
        checkpoint: Checkpoint,
        initializer_range: f64,
        may_initialize: &[&str],
        ignore_mismatched_sizes: bool,
        device: &B::Device,
        load: impl FnOnce(&mut Self) -> Result<M>,
    ) -> Result<(M, LoadReport)> {
        let mut w = Self::from_checkpoint(checkpoint, initializer_range, may_initialize, device)
            .ignoring_mismatched_sizes(ignore_mismatched_sizes);
        let model = load(&mut w)?;
        Ok((model, w.finish()?))
    }

    /// `{at}.weight` of DistilBERT's `sinusoidal_pos_embds` position table: from the checkpoint,
    /// or when fresh, transformers' `create_sinusoidal_embeddings` (sin on even columns, cos on
    /// odd ones, of `pos / 10000^(2 (j / 2) / dim)`).
    pub fn sinusoidal_embedding(&mut self, at: &Key, n: usize, d_model: usize) -> Result<Embedding<B>> {
        if self.checkpoint.is_some() {
            return self.embedding(at, n, d_model, None);
        }
        let mut data = vec![0.0f32; n * d_model];
        for pos in 0..n {
            for j in 0..d_model {
                let angle = pos as f64 / 10000f64.powf(2.0 * (j / 2) as f64 / d_model as f64);
                data[pos * d_model + j] = if j % 2 == 0 { angle.sin() } else { angle.cos() } as f32;
            }
        }
        let weight = Tensor::from_data(TensorData::new(data, [n, d_model]), &self.device);
        Ok(Embedding { weight: Param::from_tensor(weight) })
    }
}

/// Row-major `[rows, cols]` to row-major `[cols, rows]`.
fn transpose(data: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0.0; data.len()];
    for r in 0..rows {
        for c in 0..cols {
            out[c * rows + r] = data[r * cols + c];
        }
    }
    out
}
