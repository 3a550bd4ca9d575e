//! A linear layer that can carry a LoRA adapter: `y = x W + b + (dropout(x) A B) * scaling`,
//! or with DoRA (Liu et al., 2024, as PEFT computes it) `y = x W + b + (m / n - 1) x' W + (m / n)
//! (x' A B) * scaling`, where `x'` is `dropout(x)`, `m` the trained magnitude vector and `n` the
//! column norms of `W + scaling * A B`, held constant in the backward pass.

use burn::module::{Module, Param};
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;
use kernels::{Dropout, add_scaled, linear};

/// A linear layer with an optional LoRA adapter beside it.
///
/// Without an adapter it computes exactly what `burn::nn::Linear` computes. The field names
/// are the checkpoint's (`weight`, `bias`), so a model's loader needs no remapping; `name` is
/// the module name the model's loader gave it, so that matching `target_modules` and naming
/// saved tensors read the name from where it was spelled, not from a second list.
///
/// # Shapes
/// - weight: `[d_input, d_output]` (Burn's layout: the transpose of PyTorch's `[out, in]`)
/// - input: `[..., d_input]`, output: `[..., d_output]`
#[derive(Module, Debug)]
pub struct LoraLinear<B: Backend> {
    pub weight: Param<Tensor<B, 2>>,
    pub bias: Option<Param<Tensor<B, 1>>>,
    pub adapter: Option<LoraAdapter<B>>,
    /// Its module name in PEFT's view of the model (`bert.encoder.layer.0.attention.self.query`).
    pub name: String,
    /// Whether this is the model's output layer (its rows are the labels): the head that
    /// `"all-linear"` leaves out, and the one whose rows an adapter's trained head may change.
    pub output: bool,
}

/// The trainable low-rank pair of one wrapped linear.
///
/// # Shapes
/// - lora_A: `[d_input, r]` (PEFT saves its transpose, `[r, in]`)
/// - lora_B: `[r, d_output]` (PEFT saves `[out, r]`)
#[allow(non_snake_case)]
#[derive(Module, Debug)]
pub struct LoraAdapter<B: Backend> {
    pub lora_A: Param<Tensor<B, 2>>,
    pub lora_B: Param<Tensor<B, 2>>,
    /// `lora_alpha / r`, or `lora_alpha / sqrt(r)` with rsLoRA.
    pub scaling: f64,
    /// Applied to the adapter's input only; active only on an autodiff backend (training).
    pub dropout: Dropout,
    /// DoRA's magnitude, one per output (`[d_output]`): PEFT's `lora_magnitude_vector`, set
    /// when the config has `use_dora = true`.
    pub lora_magnitude_vector: Option<Param<Tensor<B, 1>>>,
}

impl<B: Backend> LoraLinear<B> {
    /// A plain linear named `name`, from its parameters.
    pub fn new(name: impl Into<String>, weight: Param<Tensor<B, 2>>, bias: Option<Param<Tensor<B, 1>>>) -> Self {
        Self { weight, bias, adapter: None, name: name.into(), output: false }
    }

    /// This linear marked as the model's output layer.
    pub fn as_output(self) -> Self {
        Self { output: true, ..self }
    }

    /// `[d_input, d_output]`.
    pub fn dims(&self) -> [usize; 2] {
        self.weight.shape().dims()
    }

    /// The base weight in the backend's float dtype, for arithmetic beside the adapter's
    /// tensors (merging, DoRA's norms, PiSSA's factors, saving): a weight held in bf16 for
    /// serving ([`hold_in_bf16`]) is widened back; any other is itself.
    pub fn base_weight(&self) -> Tensor<B, 2> {
        let weight = self.weight.val();
        let dtype = <B::FloatElem as burn::tensor::Element>::dtype();
        if weight.dtype() == dtype { weight } else { weight.cast(dtype) }
    }

    pub fn forward<const D: usize>(&self, input: Tensor<B, D>) -> Tensor<B, D> {
        // Serving: the adapters of a mixed batch, lent for this forward (`crate::mixed`).
        if let Some(out) = crate::mixed::lent_forward(self, &input) {
            return out;
        }
        match &self.adapter {
            None => linear(input, self.weight.val(), self.bias.as_ref().map(|b| b.val())),
            Some(adapter @ LoraAdapter { lora_magnitude_vector: Some(m), .. }) => {
                self.dora_forward(adapter, m.val(), input)
            }
            Some(adapter) => {
                // PEFT's `result + lora_B(lora_A(dropout(x))) * scaling`, the scaling and the sum
                // one parallel pass on the CPU.
                let delta = adapter.product(input.clone());
                let base = linear(input, self.weight.val(), self.bias.as_ref().map(|b| b.val()));
                add_scaled(base, delta, adapter.scaling)
            }
        }
    }
}

impl<B: Backend> LoraLinear<B> {
    /// DoRA's forward, as PEFT's `DoraLinearLayer.forward` on top of the base result: without
    /// dropout (or outside training) `b + (m / n) (x W + (x A B) * scaling)`; with it the base
    /// product is taken once more, of the dropped-out input.
    fn dora_forward<const D: usize>(
        &self,
        adapter: &LoraAdapter<B>,
        magnitude: Tensor<B, 1>,
        input: Tensor<B, D>,
    ) -> Tensor<B, D> {
        let weight = self.base_weight();
        let factor = broadcast_last::<B, D>(magnitude / adapter.weight_norm(weight.clone()));
        let bias = self.bias.as_ref().map(|b| b.val());
        let dropped = adapter.dropout.forward(input.clone());
        let lora = linear(linear(dropped.clone(), adapter.lora_A.val(), None), adapter.lora_B.val(), None);
        let base = linear(input.clone(), weight.clone(), None);
        let out = if adapter.dropout.is_active(&input) {
            // PEFT: `result + (m / n - 1) * F.linear(dropout(x), W) + (m / n) * lora * scaling`.
            let dropped_base = linear(dropped, weight, None);
            base + (factor.clone() - 1.0) * dropped_base + factor * lora * adapter.scaling
        } else {
            (base + lora * adapter.scaling) * factor
        };
        match bias {
            Some(b) => out + broadcast_last::<B, D>(b),
            None => out,
        }
    }
}

/// `[n]` as `[1, ..., 1, n]`, to scale the last axis of a rank-`D` tensor.
pub(crate) fn broadcast_last<B: Backend, const D: usize>(v: Tensor<B, 1>) -> Tensor<B, D> {
    let mut dims = [1; D];
    dims[D - 1] = v.dims()[0];
    v.reshape(dims)
}

impl<B: Backend> LoraAdapter<B> {
    /// The column norms of `weight + scaling * A B` (`weight` in Burn's `[in, out]`; PEFT's
    /// `get_weight_norm`, the row norms of its `[out, in]`), one per output; no gradient flows
    /// through them.
    pub fn weight_norm(&self, weight: Tensor<B, 2>) -> Tensor<B, 1> {
        let lora = self.lora_A.val().detach().matmul(self.lora_B.val().detach());
        column_norms(weight + lora * self.scaling).detach()
    }

    /// DoRA's `m / ||W + scaling A B||` of the base weight `weight`, one per output, where this
    /// adapter has a magnitude vector.
    pub fn dora_factor(&self, weight: Tensor<B, 2>) -> Option<Tensor<B, 1>> {
        let m = self.lora_magnitude_vector.as_ref()?;
        Some(m.val() / self.weight_norm(weight))
    }

    /// `dropout(x) A B`, the contribution before its scaling.
    pub fn product<const D: usize>(&self, input: Tensor<B, D>) -> Tensor<B, D> {
        let x = self.dropout.forward(input);
        let x = linear(x, self.lora_A.val(), None); // [..., r]
        linear(x, self.lora_B.val(), None)
    }

    pub fn rank(&self) -> usize {
        self.lora_A.shape().dims::<2>()[1]
    }
}

/// The L2 norm of each column of `[rows, cols]`, `[cols]` (`torch.linalg.norm(w, dim=1)` of the
/// transpose).
pub(crate) fn column_norms<B: Backend>(w: Tensor<B, 2>) -> Tensor<B, 1> {
    let cols = w.dims()[1];
    w.powf_scalar(2.0).sum_dim(0).sqrt().reshape([cols])
}

/// Holds the frozen base weights of `model`'s linears in bf16 (each the nearest bf16 value),
/// for inference or training on a CPU with bf16 products ([`kernels::bf16`]): the products of
/// those layers then take bf16 inputs and accumulate in f32 (and, training, so does the
/// input's gradient). The output layer (small, and what the scores are read from), linears
/// with a DoRA adapter (whose norms are taken from the weight at every forward) and weights
/// that are trained (modules to save) stay as they are; so do the adapters. Returns how many
/// weights it converted.
pub fn hold_in_bf16<B: Backend, M: AdaptableModel<B>>(model: &mut M) -> usize {
    let mut converted = 0;
    model.each_linear(&mut |linear| {
        let dora = linear.adapter.as_ref().is_some_and(|a| a.lora_magnitude_vector.is_some());
        let weight = linear.weight.val();
        if linear.output || dora || weight.is_require_grad() || weight.dtype() == burn::tensor::DType::BF16 {
            return;
        }
        let narrowed = kernels::bf16::narrow(linear.weight.val());
        linear.weight = Param::initialized(linear.weight.id, narrowed);
        converted += 1;
    });
    converted
}

/// A model (or part of one) whose linears can take adapters. Each module implements
/// [`AdaptableModel::each_linear`] by handing on its fields that hold linears; the names come
/// from the linears themselves ([`LoraLinear::name`], given by the model's loader): the names
/// PEFT matches `target_modules` against and writes into saved adapters.
pub trait AdaptableModel<B: Backend> {
    /// Calls `f` once per linear, in a fixed order (the model's).
    fn each_linear(&mut self, f: &mut dyn FnMut(&mut LoraLinear<B>));

    /// Calls `f` once per linear, in the model's order, with its name.
    fn visit_linears(&mut self, f: &mut dyn FnMut(&str, &mut LoraLinear<B>)) {
        self.each_linear(&mut |linear| {
            let name = linear.name.clone();
            f(&name, linear)
        });
    }
}

impl<B: Backend> AdaptableModel<B> for LoraLinear<B> {
    fn each_linear(&mut self, f: &mut dyn FnMut(&mut LoraLinear<B>)) {
        f(self)
    }
}

impl<B: Backend, M: AdaptableModel<B>> AdaptableModel<B> for Vec<M> {
    fn each_linear(&mut self, f: &mut dyn FnMut(&mut LoraLinear<B>)) {
        self.iter_mut().for_each(|m| m.each_linear(f))
    }
}

impl<B: Backend, M: AdaptableModel<B>> AdaptableModel<B> for Option<M> {
    fn each_linear(&mut self, f: &mut dyn FnMut(&mut LoraLinear<B>)) {
        if let Some(m) = self {
            m.each_linear(f)
        }
    }
}
