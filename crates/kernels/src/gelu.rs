//! GELU (the exact, erf form: `hidden_act = "gelu"`), forward and backward fused on the CPU
//! backend: parallel chunks through a polynomial `erf` and `exp` that vectorise
//! ([`crate::math`]), one recorded op under autodiff that keeps its input, as Burn's does
//! (burn-flex computes GELU one element at a time with libm). Other backends and dtypes get
//! Burn's `gelu`.

use burn::backend::Flex;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, unary};
use burn::backend::flex::FlexTensor;
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, activation};
use multiversion::multiversion;
use rayon::prelude::*;

use crate::host::{Host, dispatch, owned_contiguous, primitive, record, tensor};
use crate::math::{erf, exp_nonpositive};

/// Elements per parallel task.
const CHUNK: usize = 1 << 13;

/// `x * Φ(x)`, what `burn::tensor::activation::gelu` and `torch.nn.functional.gelu` compute.
pub fn gelu<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    let Some(host) = Host::of_f32::<B>(&[x.dtype()]) else {
        return activation::gelu(x);
    };
    dispatch(
        host,
        [primitive(x)],
        |[x]| gelu_in_place(x),
        |inputs| {
            record(
                GeluOp,
                inputs,
                |[x]| {
                    let out = gelu_values(&x.primitive);
                    (out, x.primitive)
                },
                |[x]| gelu_in_place(x.primitive),
            )
        },
    )
}

/// The recorded op: its state is the input.
#[derive(Debug)]
struct GeluOp;

impl Backward<Flex, 1> for GeluOp {
    type State = FlexTensor;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let x = ops.state;
        unary::<Flex, _>(ops.parents, ops.node, grads, |grad| gelu_backward(&x, grad));
    }
}

/// GELU over `x`'s own buffer when nothing else holds it (inference).
fn gelu_in_place(x: FlexTensor) -> FlexTensor {
    let mut x = owned_contiguous(x);
    x.storage_mut::<f32>().par_chunks_mut(CHUNK).for_each(gelu_chunk_in_place);
    x
}

/// GELU into a new tensor (training keeps `x` for the backward).
fn gelu_values(x: &FlexTensor) -> FlexTensor {
    let x = x.to_contiguous();
    let mut out = vec![0.0f32; x.layout().num_elements()];
    out.par_chunks_mut(CHUNK).zip(x.storage::<f32>().par_chunks(CHUNK)).for_each(|(o, x)| gelu_chunk(x, o));
    tensor(out, x.layout().shape().to_vec())
}

/// `grad * (Φ(x) + x φ(x))`, written over `grad`'s buffer.
fn gelu_backward(x: &FlexTensor, grad: FlexTensor) -> FlexTensor {
    let x = x.to_contiguous();
    let mut grad = owned_contiguous(grad);
    grad.storage_mut::<f32>()
        .par_chunks_mut(CHUNK)
        .zip(x.storage::<f32>().par_chunks(CHUNK))
        .for_each(|(g, x)| gelu_grad_chunk(g, x));
    grad
}

#[inline(always)]
fn gelu_of(v: f32) -> f32 {
    0.5 * v * (1.0 + erf(v * std::f32::consts::FRAC_1_SQRT_2))
}

#[multiversion(targets = "simd")]
fn gelu_chunk(x: &[f32], out: &mut [f32]) {
    for (o, &v) in out.iter_mut().zip(x) {
        *o = gelu_of(v);
    }
}

#[multiversion(targets = "simd")]
fn gelu_chunk_in_place(x: &mut [f32]) {
    for v in x {
        *v = gelu_of(*v);
    }
}

#[multiversion(targets = "simd")]
fn gelu_grad_chunk(g: &mut [f32], x: &[f32]) {
    const INV_SQRT_2PI: f32 = 0.398_942_3;
    for (gi, &v) in g.iter_mut().zip(x) {
        let cdf = 0.5 * (1.0 + erf(v * std::f32::consts::FRAC_1_SQRT_2));
        let pdf = INV_SQRT_2PI * exp_nonpositive(-0.5 * v * v);
        *gi *= cdf + v * pdf;
    }
}

/// GeGLU, ModernBERT's MLP gate: `gelu(x[.., :n]) * x[.., n:]` of `x`'s last dimension `2n`
/// (`input, gate = x.chunk(2, -1)`), one pass on the CPU backend; under autodiff one op that
/// keeps `x` alone (Burn's slices, GELU and product keep three half-size tensors).
///
/// # Shapes
/// - x: `[..., 2n]`, output: `[..., n]`
pub fn geglu<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    let dims = x.dims();
    let two = dims[D - 1];
    let Some(host) = Host::of_f32::<B>(&[x.dtype()]).filter(|_| two.is_multiple_of(2)) else {
        let mut half = dims.map(|d| 0..d);
        half[D - 1] = 0..two / 2;
        let input = x.clone().slice(half.clone());
        half[D - 1] = two / 2..two;
        return activation::gelu(input) * x.slice(half);
    };
    dispatch(
        host,
        [primitive(x)],
        |[x]| geglu_values(&x),
        |inputs| {
            record(GegluOp, inputs, |[x]| (geglu_values(&x.primitive), x.primitive), |[x]| geglu_values(&x.primitive))
        },
    )
}

#[derive(Debug)]
struct GegluOp;

impl Backward<Flex, 1> for GegluOp {
    type State = FlexTensor;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let x = ops.state;
        unary::<Flex, _>(ops.parents, ops.node, grads, |grad| geglu_backward(&x, grad));
    }
}

fn geglu_values(x: &FlexTensor) -> FlexTensor {
    let x = x.to_contiguous();
    let mut shape = x.layout().shape().to_vec();
    let two = shape[shape.len() - 1];
    let n = two / 2;
    *shape.last_mut().unwrap_or(&mut 0) = n;
    let mut out = vec![0.0f32; x.layout().num_elements() / 2];
    out.par_chunks_mut(n).zip(x.storage::<f32>().par_chunks(two)).with_min_len(8).for_each(|(o, row)| {
        let (input, gate) = row.split_at(n);
        geglu_row(input, gate, o);
    });
    tensor(out, shape)
}

/// `d input = g * gate * gelu'(input)`, `d gate = g * gelu(input)`, as `[..., 2n]`.
fn geglu_backward(x: &FlexTensor, grad: FlexTensor) -> FlexTensor {
    let x = x.to_contiguous();
    let grad = grad.to_contiguous();
    let shape = x.layout().shape().to_vec();
    let two = shape[shape.len() - 1];
    let n = two / 2;
    let mut out = vec![0.0f32; x.layout().num_elements()];
    out.par_chunks_mut(two)
        .zip(x.storage::<f32>().par_chunks(two))
        .zip(grad.storage::<f32>().par_chunks(n))
        .with_min_len(8)
        .for_each(|((o, row), g)| {
            let (input, gate) = row.split_at(n);
            let (d_input, d_gate) = o.split_at_mut(n);
            geglu_grad_row(input, gate, g, d_input, d_gate);
        });
    tensor(out, shape)
}

#[multiversion(targets = "simd")]
fn geglu_row(input: &[f32], gate: &[f32], out: &mut [f32]) {
    for ((o, &v), &g) in out.iter_mut().zip(input).zip(gate) {
        *o = gelu_of(v) * g;
    }
}

#[multiversion(targets = "simd")]
fn geglu_grad_row(input: &[f32], gate: &[f32], g: &[f32], d_input: &mut [f32], d_gate: &mut [f32]) {
    const INV_SQRT_2PI: f32 = 0.398_942_3;
    for i in 0..input.len() {
        let v = input[i];
        let cdf = 0.5 * (1.0 + erf(v * std::f32::consts::FRAC_1_SQRT_2));
        let pdf = INV_SQRT_2PI * exp_nonpositive(-0.5 * v * v);
        d_input[i] = g[i] * gate[i] * (cdf + v * pdf);
        d_gate[i] = g[i] * v * cdf;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::testing::{assert_close as close, values};
    use burn::backend::Autodiff;
    use burn::tensor::Distribution;

    type Train = Autodiff<Flex>;

    /// Values and gradient equal Burn's (libm's erf) on a strided input longer than one chunk.
    #[test]
    fn matches_burns_gelu_forward_and_backward() {
        let _generator = crate::testing::generator();
        let device = Default::default();
        let x = Tensor::<Flex, 3>::random([5, 3, 1000], Distribution::Normal(0.0, 3.0), &device).swap_dims(0, 1);
        let upstream = Tensor::<Flex, 3>::random([3, 5, 1000], Distribution::Normal(0.0, 1.0), &device);
        let run = |fused: bool| {
            let input = Tensor::<Train, 3>::from_inner(x.clone()).require_grad();
            let y = if fused { gelu(input.clone()) } else { activation::gelu(input.clone()) };
            let out = values(y.clone());
            let grads = (y * Tensor::from_inner(upstream.clone())).sum().backward();
            (out, values(input.grad(&grads).unwrap()))
        };
        let (fused, fused_grad) = run(true);
        let (plain, plain_grad) = run(false);
        // Our erf is within 3e-7 of the exact one (math.rs checks it on [-6, 6]), libm's within
        // an ulp, and gelu(x) = x (1 + erf(x / sqrt 2)) / 2: the two differ by at most
        // |x| x 1.5e-7 plus a few ulps, under 3e-7 of 1 + |gelu(x)| for any x. The bound allows
        // that; the tanh approximation of GELU (a wrong formula) is off by up to 1e-3.
        close(&fused, &plain, 1e-6);
        close(&fused_grad, &plain_grad, 1e-6);
        // Inference, in place.
        close(&values(gelu(x.clone())), &values(activation::gelu(x)), 1e-6);
    }

    /// GeGLU gives Burn's slices, GELU and product: values, and the gradient of both halves
    /// (within 1e-5: the gate multiplies the polynomial erf's rounding, up to 1.3e-6 here).
    #[test]
    fn geglu_matches_burns_ops_forward_and_backward() {
        let _generator = crate::testing::generator();
        let device = Default::default();
        Train::seed(&device, 13);
        let x = Tensor::<Flex, 3>::random([3, 5, 2 * 37], Distribution::Normal(0.0, 2.0), &device);
        let upstream = Tensor::<Flex, 3>::random([3, 5, 37], Distribution::Normal(0.0, 1.0), &device);
        let run = |fused: bool| {
            let input = Tensor::<Train, 3>::from_inner(x.clone()).require_grad();
            let y = if fused {
                geglu(input.clone())
            } else {
                let a = input.clone().slice([0..3, 0..5, 0..37]);
                let b = input.clone().slice([0..3, 0..5, 37..74]);
                activation::gelu(a) * b
            };
            let out = values(y.clone());
            let grads = (y * Tensor::from_inner(upstream.clone())).sum().backward();
            (out, values(input.grad(&grads).unwrap()))
        };
        let (fused, fused_grad) = run(true);
        let (plain, plain_grad) = run(false);
        close(&fused, &plain, 1e-5);
        close(&fused_grad, &plain_grad, 1e-5);
        close(&values(geglu(x)), &plain, 1e-5);
    }
}
