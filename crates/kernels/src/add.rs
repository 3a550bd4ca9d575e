//! `a + b * scale` of two tensors of one shape, in parallel on the CPU backend: the residual
//! connections (`scale` 1) and LoRA's `base + delta * scaling`. burn-flex adds and scales on
//! one thread below 4 Mi elements (a MiniLM batch of 16 x 256 tokens is 1.6 Mi), and so does
//! the backward of its scalar product; these were a share of the serial part of a training step
//! (`docs/benchmarks.md`). Under autodiff it is one recorded op with no state: `a`'s gradient is
//! the output's, `b`'s the output's times `scale`. Broadcasting, other backends and dtypes get
//! Burn's `a + b * scale`.

use burn::backend::Flex;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops};
use burn::backend::flex::FlexTensor;
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;
use multiversion::multiversion;
use rayon::prelude::*;

use crate::host::{Host, contiguous, dispatch, elements, is_whole, primitive, record, tensor};

/// Elements per parallel task; a tensor of one task's size or less is done on the calling
/// thread (a serving batch's per-adapter rows, where waking the pool costs more than the sum).
const CHUNK: usize = 1 << 15;

/// `a + b`: [`add_scaled`] with `scale` 1.
pub fn add<B: Backend, const D: usize>(a: Tensor<B, D>, b: Tensor<B, D>) -> Tensor<B, D> {
    add_scaled(a, b, 1.0)
}

/// `a + b * scale`, each element rounded as Burn's two ops round it (the product, then the sum).
pub fn add_scaled<B: Backend, const D: usize>(a: Tensor<B, D>, b: Tensor<B, D>, scale: f64) -> Tensor<B, D> {
    let host = Host::of_f32::<B>(&[a.dtype(), b.dtype()]).filter(|_| a.dims() == b.dims());
    let Some(host) = host else {
        return if scale == 1.0 { a + b } else { a + b * scale };
    };
    let scale = scale as f32;
    dispatch(
        host,
        [primitive(a), primitive(b)],
        |[a, b]| add_values(a, &b, scale),
        |inputs| {
            let values = |[a, b]: [burn::tensor::ops::FloatTensor<crate::host::HostTrain>; 2]| {
                add_values(a.primitive, &b.primitive, scale)
            };
            record(AddOp { scale }, inputs, |inputs| (values(inputs), ()), values)
        },
    )
}

/// The recorded op: no state, the scale of `b`.
#[derive(Debug)]
struct AddOp {
    scale: f32,
}

impl Backward<Flex, 2> for AddOp {
    type State = ();

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let grad = grads.consume::<Flex>(&ops.node);
        let [a_node, b_node] = ops.parents;
        if let Some(node) = b_node {
            let db = if self.scale == 1.0 { grad.clone() } else { scaled(&grad, self.scale) };
            grads.register::<Flex>(node.id, db);
        }
        if let Some(node) = a_node {
            grads.register::<Flex>(node.id, grad);
        }
    }
}

/// `a + b * scale`, over `a`'s buffer when nothing else holds it.
fn add_values(mut a: FlexTensor, b: &FlexTensor, scale: f32) -> FlexTensor {
    let n = a.layout().num_elements();
    let b = contiguous(b);
    let b = elements(&b);
    if is_whole(&a)
        && let Some(out) = a.try_storage_mut::<f32>()
    {
        if n <= CHUNK {
            add_into(out, b, scale);
        } else {
            out.par_chunks_mut(CHUNK).zip(b.par_chunks(CHUNK)).for_each(|(o, b)| add_into(o, b, scale));
        }
        return a;
    }
    // A view (a serving run's rows of the batch's product) is read where it lies.
    let a = if a.is_contiguous() { a } else { contiguous(&a) };
    let a_values = elements(&a);
    let mut out = vec![0.0f32; n];
    if n <= CHUNK {
        sum_into(&mut out, a_values, b, scale);
    } else {
        out.par_chunks_mut(CHUNK)
            .zip(a_values.par_chunks(CHUNK))
            .zip(b.par_chunks(CHUNK))
            .for_each(|((o, a), b)| sum_into(o, a, b, scale));
    }
    tensor(out, a.layout().shape().to_vec())
}

/// `grad * scale` into a new tensor (the output's gradient also goes to `a`).
fn scaled(grad: &FlexTensor, scale: f32) -> FlexTensor {
    let grad = contiguous(grad);
    let mut out = vec![0.0f32; grad.layout().num_elements()];
    out.par_chunks_mut(CHUNK).zip(grad.storage::<f32>().par_chunks(CHUNK)).for_each(|(o, g)| scale_into(o, g, scale));
    tensor(out, grad.layout().shape().to_vec())
}

#[multiversion(targets = "simd")]
fn add_into(out: &mut [f32], b: &[f32], scale: f32) {
    for (o, &b) in out.iter_mut().zip(b) {
        *o += b * scale;
    }
}

#[multiversion(targets = "simd")]
fn sum_into(out: &mut [f32], a: &[f32], b: &[f32], scale: f32) {
    for ((o, &a), &b) in out.iter_mut().zip(a).zip(b) {
        *o = a + b * scale;
    }
}

#[multiversion(targets = "simd")]
fn scale_into(out: &mut [f32], g: &[f32], scale: f32) {
    for (o, &g) in out.iter_mut().zip(g) {
        *o = g * scale;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::host::HostTrain;
    use crate::testing::values;
    use burn::tensor::Distribution;

    type Train = HostTrain;

    fn random(shape: [usize; 3]) -> Tensor<Flex, 3> {
        Tensor::random(shape, Distribution::Normal(0.0, 1.0), &Default::default())
    }

    /// Values and both gradients are bit for bit Burn's `a + b * scale` (the same two roundings:
    /// no fused multiply-add), on a strided `b` longer than one task, for scale 1 and not,
    /// with either input frozen.
    #[test]
    fn equals_burns_sum_and_gradients() {
        let _generator = crate::testing::generator();
        let a = random([3, 700, 40]);
        let b = random([700, 3, 40]).swap_dims(0, 1);
        let upstream = random([3, 700, 40]);
        for (scale, train_a, train_b) in [(1.0, true, true), (0.37, true, true), (2.0, false, true), (0.5, true, false)]
        {
            let run = |fused: bool| {
                let leaf = |t: &Tensor<Flex, 3>, grad: bool| {
                    let t = Tensor::<Train, 3>::from_inner(t.clone());
                    if grad { t.require_grad() } else { t }
                };
                let (x, y) = (leaf(&a, train_a), leaf(&b, train_b));
                let out = if fused { add_scaled(x.clone(), y.clone(), scale) } else { x.clone() + y.clone() * scale };
                let grads = (out.clone() * Tensor::from_inner(upstream.clone())).sum().backward();
                let grad = |t: &Tensor<Train, 3>| t.grad(&grads).map(values);
                (values(out), grad(&x), grad(&y))
            };
            let (fused, plain) = (run(true), run(false));
            assert_eq!(fused, plain, "scale {scale}, trained {train_a} {train_b}");
            assert_eq!(fused.1.is_some(), train_a);
            assert_eq!(fused.2.is_some(), train_b);
        }
    }

    /// Inference: over `a`'s buffer when it is the only holder, into a new one when `a` is
    /// still held elsewhere (which then keeps its values).
    #[test]
    fn inference_in_place_only_when_unshared() {
        let _generator = crate::testing::generator();
        // One task's size (on the calling thread) and several (in parallel).
        for shape in [[2, 50, 300], [2, 50, 700]] {
            let (a, b) = (random(shape), random(shape));
            let expected = values(a.clone() + b.clone() * 3.0);
            let before = values(a.clone());
            assert_eq!(values(add_scaled(a.clone(), b.clone(), 3.0)), expected);
            assert_eq!(values(a.clone()), before, "a shared input keeps its values");
            let unique = Tensor::<Flex, 3>::from_data(a.to_data(), &Default::default());
            assert_eq!(values(add_scaled(unique, b.clone(), 3.0)), expected);
            assert_eq!(values(add(b.clone(), b.clone())), values(b.clone() + b));
        }
    }

    /// A view of rows (as a serving run's share of the batch's product) and a transposed view
    /// give Burn's values, below and above one task's size.
    #[test]
    fn views_give_burns_values() {
        let _generator = crate::testing::generator();
        for width in [30, 700] {
            let base = random([4, 50, width]);
            let rows = base.clone().narrow(0, 1, 2);
            let b = random([2, 50, width]);
            assert_eq!(values(add_scaled(rows.clone(), b.clone(), 0.25)), values(rows.clone() + b.clone() * 0.25));
            let flipped = random([2, width, 50]).swap_dims(1, 2);
            assert_eq!(values(add(flipped.clone(), b.clone())), values(flipped + b));
        }
    }

    /// Shapes that broadcast are Burn's.
    #[test]
    fn broadcasts_through_burn() {
        let _generator = crate::testing::generator();
        let (a, b) = (random([2, 5, 7]), random([1, 5, 7]));
        assert_eq!(values(add_scaled(a.clone(), b.clone(), 0.5)), values(a + b * 0.5));
    }
}
