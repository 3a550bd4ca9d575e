//! Softmax over the last dimension, with a fused backward on the CPU backend.
//!
//! Burn's `softmax` is one fused, multi-threaded kernel on `Flex`, but under `Autodiff` it is
//! `burn-backend`'s default: max, subtract, exp, sum, divide, each a tracked op with its own
//! full-size buffer and its own backward, single-threaded. For the attention probabilities
//! (`[batch, heads, seq, seq]`, the largest tensors of a step) this module records one op instead:
//! forward by flex's fused kernel, backward `dx = y * (dy - sum(dy * y))` in one parallel pass.
//! Other backends get `burn::tensor::activation::softmax` unchanged.
//!
//! The model is generic over `Backend`; the CPU training backend is recognised by type at run
//! time (`Any`), which keeps the model's signatures free of a backend-extension trait.

use std::any::Any;

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind, unary};
use burn::backend::flex::FlexTensor;
use burn::backend::{Autodiff, Flex};
use burn::tensor::backend::Backend;
use burn::tensor::ops::{ActivationOps, FloatTensor};
use burn::tensor::{DType, Tensor, TensorPrimitive, activation};
use rayon::prelude::*;

/// `softmax(x, D - 1)`.
pub fn softmax_last<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    let row = x.dims()[D - 1];
    let primitive = x.into_primitive().tensor();
    let fused = (&primitive as &dyn Any)
        .downcast_ref::<FloatTensor<Autodiff<Flex>>>()
        .is_some_and(|t| t.primitive.dtype() == DType::F32 && row > 0);
    if !fused {
        return activation::softmax(Tensor::from_primitive(TensorPrimitive::Float(primitive)), D - 1);
    }
    let out = cast::<FloatTensor<B>, FloatTensor<Autodiff<Flex>>>(primitive)
        .ok()
        .map(|t| autodiff_flex_softmax(t, D - 1, row))
        .and_then(|t| cast::<FloatTensor<Autodiff<Flex>>, FloatTensor<B>>(t).ok());
    match out {
        Some(out) => Tensor::from_primitive(TensorPrimitive::Float(out)),
        None => unreachable!("B is Autodiff<Flex>: both casts are identities"),
    }
}

/// `value` as a `U` when `T` is `U`, else `value` back.
fn cast<T: 'static, U: 'static>(value: T) -> Result<U, T> {
    let mut slot = Some(value);
    if let Some(u) = (&mut slot as &mut dyn Any).downcast_mut::<Option<U>>().and_then(Option::take) {
        return Ok(u);
    }
    slot.map_or_else(|| unreachable!("the value stays in its slot when the cast fails"), Err)
}

/// The recorded op: its state is the output (the probabilities) and the row length.
#[derive(Debug)]
struct SoftmaxLast;

impl Backward<Flex, 1> for SoftmaxLast {
    type State = (FlexTensor, usize);

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let (probs, row) = ops.state;
        unary::<Flex, _>(ops.parents, ops.node, grads, |grad| softmax_backward(&probs, grad, row));
    }
}

fn autodiff_flex_softmax(x: FloatTensor<Autodiff<Flex>>, dim: usize, row: usize) -> FloatTensor<Autodiff<Flex>> {
    match SoftmaxLast.prepare::<NoCheckpointing>([x.node.clone()]).compute_bound().stateful() {
        OpsKind::Tracked(prep) => {
            let probs = Flex::softmax(x.primitive, dim);
            prep.finish((probs.clone(), row), probs)
        }
        OpsKind::UnTracked(prep) => prep.finish(Flex::softmax(x.primitive, dim)),
    }
}

/// `dy * y - y * sum(dy * y)` along rows of `row` elements, written over `grad`'s buffer.
fn softmax_backward(probs: &FlexTensor, grad: FlexTensor, row: usize) -> FlexTensor {
    let probs = probs.to_contiguous();
    let mut grad = grad.to_contiguous();
    let y = probs.storage::<f32>();
    grad.storage_mut::<f32>().par_chunks_mut(row).with_min_len(64).zip(y.par_chunks(row)).for_each(|(g, y)| {
        let dot: f32 = g.iter().zip(y).map(|(a, b)| a * b).sum();
        for (gi, yi) in g.iter_mut().zip(y) {
            *gi = yi * (*gi - dot);
        }
    });
    grad
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use burn::tensor::{Distribution, TensorData};

    type Train = Autodiff<Flex>;

    fn values<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
        t.into_data().convert::<f32>().into_vec::<f32>().unwrap()
    }

    fn close(a: &[f32], b: &[f32], tol: f32) {
        assert_eq!(a.len(), b.len());
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert!((x - y).abs() <= tol * (1.0 + y.abs()), "element {i}: {x} vs {y}");
        }
    }

    /// The fused op gives Burn's decomposed softmax's values and gradient, masked rows included.
    #[test]
    fn matches_burns_softmax_forward_and_backward() {
        let device = Default::default();
        Train::seed(&device, 11);
        let x = Tensor::<Flex, 4>::random([2, 3, 5, 7], Distribution::Normal(0.0, 3.0), &device);
        let mut mask = vec![0.0f32; 2 * 3 * 5 * 7];
        mask.iter_mut().skip(5).step_by(7).for_each(|m| *m = f32::MIN);
        let mask = Tensor::<Flex, 4>::from_data(TensorData::new(mask, [2, 3, 5, 7]), &device);
        let upstream = Tensor::<Flex, 4>::random([2, 3, 5, 7], Distribution::Normal(0.0, 1.0), &device);

        let run = |fused: bool| {
            let input = Tensor::<Train, 4>::from_inner(x.clone()).require_grad();
            let scores = input.clone() + Tensor::from_inner(mask.clone());
            let probs = if fused { softmax_last(scores) } else { activation::softmax(scores, 3) };
            let out = values(probs.clone());
            let grads = (probs * Tensor::from_inner(upstream.clone())).sum().backward();
            (out, values(input.grad(&grads).unwrap()))
        };
        let (fused, fused_grad) = run(true);
        let (plain, plain_grad) = run(false);
        close(&fused, &plain, 1e-6);
        close(&fused_grad, &plain_grad, 1e-5);
    }

    #[test]
    fn other_backends_take_burns_softmax() {
        let device = Default::default();
        let x = Tensor::<Flex, 2>::from_floats([[1.0, 2.0, 3.0], [0.0, 0.0, f32::MIN]], &device);
        close(&values(softmax_last(x.clone())), &values(activation::softmax(x, 1)), 0.0);
    }
}
