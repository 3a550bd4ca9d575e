//! Many adapters over one base model in one batch, as PEFT's `_mixed_batch_forward`: the base
//! computation runs once for every row, each adapter's low-rank update and saved modules apply
//! to its own rows.
//!
//! Adapters are data here, not slots in the model: an [`AdapterWeights`] holds what one adapter
//! puts on a base model (its `lora_A`/`lora_B` per targeted linear, its saved modules' weights),
//! apart from the model; a [`MixedBatch`] says which rows of a batch each adapter owns; and
//! [`with_adapters`] lends the batch to every [`LoraLinear`] the forward reaches, as PEFT's
//! `_enable_peft_forward_hooks(adapter_names=...)` hands `adapter_names` to each LoRA layer.
//! So a family's forward needs no extra argument, and the base model is shared, unchanged, by
//! every adapter (N adapters cost N adapters' tensors, not N models).
//!
//! A linear's input has the batch's rows first (`[batch, ...]`), or one row that every batch
//! row shares (`[1, ...]`: DeBERTa's relative position embeddings, projected by the layer's own
//! `query_proj`/`key_proj`); such an input gets one row per batch row when the batch's adapters
//! disagree on that linear. Rows an adapter's head gives fewer labels than the widest are padded
//! with zeros on the right: [`AdapterWeights::num_labels`] says how many are its own.

use std::any::Any;
use std::cell::RefCell;
use std::collections::HashMap;
use std::ops::Range;
use std::sync::Arc;

use burn::module::Module;
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;
use kernels::linear;

use crate::config::{LoraConfig, LoraConfigError};
use crate::error::{LoraError, Result};
use crate::init::{MutatingInit, mutated_init};
use crate::linear::{AdaptableModel, LoraLinear};
use crate::peft::Adapter;

/// What one adapter changes in one linear.
#[derive(Debug, Clone)]
struct LinearWeights<B: Backend> {
    /// `lora_A` `[in, r]`, `lora_B` `[r, out]`, scaling.
    lora: Option<(Tensor<B, 2>, Tensor<B, 2>, f64)>,
    /// DoRA's `m / ||W + scaling A B||` `[out]`, constant once trained.
    dora: Option<Tensor<B, 1>>,
    /// A saved module's weight `[in, out']` and bias, in place of the base's.
    replaced: Option<(Tensor<B, 2>, Option<Tensor<B, 1>>)>,
}

/// One adapter's tensors, apart from the base model they apply to.
#[derive(Debug, Clone)]
pub struct AdapterWeights<B: Backend> {
    linears: HashMap<String, LinearWeights<B>>,
    /// The config read from the adapter directory (with the task's defaults).
    pub config: LoraConfig,
    /// The rows of the model's output layer under this adapter: its labels.
    pub num_labels: usize,
    /// The values it holds (adapters and saved modules), in bytes of f32.
    pub bytes: usize,
}

impl<B: Backend> AdapterWeights<B> {
    /// What `adapter` puts on `base`. It is applied to a copy of `base` (which shares the base's
    /// tensors) with every check that loading it alone makes ([`Adapter::apply`]: targets,
    /// ranks, shapes, finite values), and only what it changes is kept.
    ///
    /// A PiSSA or OLoRA adapter trained on the residual of the base weight, `W - scaling A0 B0`
    /// (its starting factors): it is kept as the plain adapter of rank 2r that applies to `W`
    /// itself, `[A | A0]`, `[B ; -B0]`, which is PEFT's `path_initial_model_for_weight_conversion`.
    pub fn new<M: Module<B> + AdaptableModel<B>>(base: &M, adapter: Adapter, device: &B::Device) -> Result<Self> {
        let (mut applied, config) = adapter.apply(base.clone(), device)?;
        let mut starts = HashMap::new();
        if let Some(method) = MutatingInit::of(&config.init_lora_weights) {
            let mut base_weights = HashMap::new();
            base.clone().visit_linears(&mut |name, linear| {
                base_weights.insert(name.to_string(), linear.base_weight());
            });
            let mut failure = None;
            applied.visit_linears(&mut |name, linear| {
                let (Some(a), Some(w), true) = (&linear.adapter, base_weights.remove(name), failure.is_none()) else {
                    return;
                };
                match mutated_init(w, a.rank(), a.scaling, method) {
                    Ok((a0, b0, _)) => drop(starts.insert(name.to_string(), (a0, b0))),
                    Err(e) => failure = Some(e),
                }
            });
            if let Some(e) = failure {
                return Err(e);
            }
        }
        let mut linears = HashMap::new();
        let (mut num_labels, mut bytes) = (None, 0);
        applied.visit_linears(&mut |name, linear| {
            let lora = linear.adapter.as_ref().map(|a| match starts.remove(name) {
                Some((a0, b0)) => {
                    (Tensor::cat(vec![a.lora_A.val(), a0], 1), Tensor::cat(vec![a.lora_B.val(), -b0], 0), a.scaling)
                }
                None => (a.lora_A.val(), a.lora_B.val(), a.scaling),
            });
            let dora = linear.adapter.as_ref().and_then(|a| a.dora_factor(linear.base_weight()));
            let replaced =
                config.saves_module(name).then(|| (linear.base_weight(), linear.bias.as_ref().map(|b| b.val())));
            if linear.output {
                num_labels = Some(linear.dims()[1]);
            }
            bytes += lora.as_ref().map_or(0, |(a, b, _)| a.shape().num_elements() + b.shape().num_elements()) * 4;
            bytes += dora.as_ref().map_or(0, |d| d.shape().num_elements()) * 4;
            bytes += replaced
                .as_ref()
                .map_or(0, |(w, b)| w.shape().num_elements() + b.as_ref().map_or(0, |b| b.shape().num_elements()))
                * 4;
            if lora.is_some() || replaced.is_some() {
                linears.insert(name.to_string(), LinearWeights { lora, dora, replaced });
            }
        });
        let num_labels = num_labels.ok_or_else(|| LoraError::Config {
            path: None,
            source: LoraConfigError::Unsupported(
                "the model has no output layer to read the adapter's labels from".into(),
            ),
        })?;
        Ok(Self { linears, config, num_labels, bytes })
    }
}

/// A batch's rows and the adapter each belongs to: contiguous runs, in row order.
#[derive(Debug, Clone)]
pub struct MixedBatch<B: Backend> {
    runs: Vec<(Range<usize>, Arc<AdapterWeights<B>>)>,
    rows: usize,
}

impl<B: Backend> MixedBatch<B> {
    /// From each row's adapter, in row order; neighbouring rows of one adapter form one run.
    pub fn new(rows: &[Arc<AdapterWeights<B>>]) -> Self {
        let mut runs: Vec<(Range<usize>, Arc<AdapterWeights<B>>)> = Vec::new();
        for (i, adapter) in rows.iter().enumerate() {
            match runs.last_mut() {
                Some((range, last)) if Arc::ptr_eq(last, adapter) => range.end = i + 1,
                _ => runs.push((i..i + 1, adapter.clone())),
            }
        }
        Self { runs, rows: rows.len() }
    }

    /// The widest head among the batch's adapters: the width of the logits.
    pub fn num_labels(&self) -> usize {
        self.runs.iter().map(|(_, a)| a.num_labels).max().unwrap_or(0)
    }

    /// `linear` applied to `input` with each run's adapter on its rows; `None` where no adapter
    /// of the batch changes this linear (its plain forward is the answer).
    ///
    /// # Shapes
    /// - input: `[rows, ..., in]` or `[1, ..., in]`; output: `[rows or 1, ..., out]`
    fn forward<const D: usize>(&self, layer: &LoraLinear<B>, input: Tensor<B, D>) -> Option<Tensor<B, D>> {
        let parts: Vec<(Range<usize>, Option<&LinearWeights<B>>)> =
            self.runs.iter().map(|(range, a)| (range.clone(), a.linears.get(&layer.name))).collect();
        if parts.iter().all(|(_, w)| w.is_none()) {
            return None;
        }
        let lead = input.dims()[0];
        let per_row = lead == self.rows;
        assert!(
            per_row || lead == 1,
            "{}: a mixed batch of {} rows reached this linear with {lead} leading rows",
            layer.name,
            self.rows
        );
        let bias = || layer.bias.as_ref().map(|b| b.val());
        let replaces = parts.iter().any(|(_, w)| w.is_some_and(|w| w.replaced.is_some()));
        // The base product once for every row, when every run uses the base weight.
        let base = (!replaces).then(|| linear(input.clone(), layer.weight.val(), bias()));
        if !per_row && parts.len() == 1 {
            // One adapter for the whole batch: the shared row stays one row.
            let x = input;
            let weights = parts[0].1;
            let out = match (base, weights.and_then(|w| w.replaced.as_ref())) {
                (_, Some((w, b))) => linear(x.clone(), w.clone(), b.clone()),
                (Some(base), None) => base,
                (None, None) => linear(x.clone(), layer.weight.val(), bias()),
            };
            return Some(add_lora(out, x, weights, bias()));
        }
        let mut outs = Vec::with_capacity(parts.len());
        for (range, weights) in &parts {
            let rows = range.len();
            let x = if per_row { input.clone().narrow(0, range.start, rows) } else { input.clone() };
            let out = match (&base, weights.and_then(|w| w.replaced.as_ref())) {
                (_, Some((w, b))) => linear(x.clone(), w.clone(), b.clone()),
                (Some(base), None) if per_row => base.clone().narrow(0, range.start, rows),
                (Some(base), None) => base.clone(),
                (None, None) => linear(x.clone(), layer.weight.val(), bias()),
            };
            let out = add_lora(out, x, *weights, bias());
            outs.push(if per_row { out } else { out.repeat_dim(0, rows) });
        }
        let width = outs.iter().map(|o| o.dims()[D - 1]).max().unwrap_or(0);
        let outs = outs
            .into_iter()
            .map(|o| {
                let mut dims = o.dims();
                let short = width - dims[D - 1];
                if short == 0 {
                    return o;
                }
                dims[D - 1] = short;
                let zeros = Tensor::zeros(dims, &o.device());
                Tensor::cat(vec![o, zeros], D - 1)
            })
            .collect();
        Some(Tensor::cat(outs, 0))
    }
}

/// `out + (x A B) * scaling` where `weights` has a LoRA pair, as [`LoraLinear::forward`]
/// computes it (no dropout: serving is inference); with DoRA's factor `f`,
/// `f (out - bias + (x A B) * scaling) + bias`, as [`LoraLinear::forward`] computes it.
fn add_lora<B: Backend, const D: usize>(
    out: Tensor<B, D>,
    x: Tensor<B, D>,
    weights: Option<&LinearWeights<B>>,
    bias: Option<Tensor<B, 1>>,
) -> Tensor<B, D> {
    let Some((a, b, scaling)) = weights.and_then(|w| w.lora.as_ref()) else { return out };
    let product = linear(linear(x, a.clone(), None), b.clone(), None);
    match weights.and_then(|w| w.dora.clone()) {
        None => kernels::add_scaled(out, product, *scaling),
        Some(factor) => {
            let lora = product * *scaling;
            let unbiased = match &bias {
                Some(bias) => out - crate::linear::broadcast_last::<B, D>(bias.clone()),
                None => out,
            };
            let scaled = (unbiased + lora) * crate::linear::broadcast_last::<B, D>(factor);
            match bias {
                Some(bias) => scaled + crate::linear::broadcast_last::<B, D>(bias),
                None => scaled,
            }
        }
    }
}

thread_local! {
    /// The batch lent to the forward running on this thread, if any.
    static LENT: RefCell<Option<Arc<dyn Any + Send + Sync>>> = const { RefCell::new(None) };
}

/// Runs `f` (a model's forward) with `batch` lent to every [`LoraLinear`] it calls on this
/// thread; the loan ends with `f`, also when `f` panics.
pub fn with_adapters<B: Backend, R>(batch: &Arc<MixedBatch<B>>, f: impl FnOnce() -> R) -> R {
    struct Return(Option<Arc<dyn Any + Send + Sync>>);
    impl Drop for Return {
        fn drop(&mut self) {
            let previous = self.0.take();
            LENT.with(|lent| *lent.borrow_mut() = previous);
        }
    }
    let lent: Arc<dyn Any + Send + Sync> = batch.clone();
    let _restore = Return(LENT.with(|l| l.borrow_mut().replace(lent)));
    f()
}

/// The mixed forward of `layer`, when a batch is lent on this thread and changes it.
pub(crate) fn lent_forward<B: Backend, const D: usize>(
    layer: &LoraLinear<B>,
    input: &Tensor<B, D>,
) -> Option<Tensor<B, D>> {
    let lent = LENT.with(|l| l.borrow().clone())?;
    let batch = lent.downcast_ref::<MixedBatch<B>>()?;
    batch.forward(layer, input.clone())
}
