//! Rotary position embeddings (`x * cos + rotate_half(x) * sin`, transformers'
//! `apply_rotary_pos_emb`), one pass over the heads on the CPU backend, forward and backward:
//! Burn's version is two slices, a negation, a concatenation, two broadcast products and a sum,
//! each a full-size tensor walked on one thread (and kept for the backward). The op is linear
//! in `x`: its backward is the transposed rotation of the gradient and keeps only the tables.
//! Other backends get Burn's ops.

use std::sync::Arc;

use burn::backend::Flex;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, unary};
use burn::backend::flex::FlexTensor;
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use rayon::prelude::*;

use crate::host::{Host, dispatch, owned_contiguous, primitive, record, tensor};

/// The `cos` and `sin` tables of a sequence, `[seq, head_dim]` row-major each, the two halves of
/// a row repeating (transformers' `cat(freqs, freqs)`).
#[derive(Debug, Clone)]
pub struct RotaryTables {
    pub seq: usize,
    pub head_dim: usize,
    pub cos: Arc<Vec<f32>>,
    pub sin: Arc<Vec<f32>>,
}

/// `x * cos + rotate_half(x) * sin`, `rotate_half(x) = cat(-x[.., d/2..], x[.., ..d/2])`.
///
/// # Shapes
/// - x: `[batch, heads, seq, head_dim]`, the tables `[seq, head_dim]`; output as x
pub fn rotary<B: Backend>(x: Tensor<B, 4>, tables: &RotaryTables) -> Tensor<B, 4> {
    let [_, _, seq, d] = x.dims();
    let fits = seq == tables.seq && d == tables.head_dim && d.is_multiple_of(2);
    let Some(host) = Host::of_f32::<B>(&[x.dtype()]).filter(|_| fits) else {
        return burn_rotary(x, tables);
    };
    let t = tables.clone();
    dispatch(
        host,
        [primitive(x)],
        |[x]| rotate(x, &t, false),
        |inputs| {
            record(
                RotaryOp,
                inputs,
                |[x]| (rotate(x.primitive, &t, false), t.clone()),
                |[x]| rotate(x.primitive, &t, false),
            )
        },
    )
}

/// Burn's ops, for every other backend.
fn burn_rotary<B: Backend>(x: Tensor<B, 4>, tables: &RotaryTables) -> Tensor<B, 4> {
    let [b, h, t, d] = x.dims();
    let device = x.device();
    let table = |v: &Arc<Vec<f32>>| Tensor::<B, 4>::from_data(TensorData::new(v.to_vec(), [1, 1, t, d]), &device);
    let x1 = x.clone().slice([0..b, 0..h, 0..t, 0..d / 2]);
    let x2 = x.clone().slice([0..b, 0..h, 0..t, d / 2..d]);
    let rotated = Tensor::cat(vec![x2.neg(), x1], 3);
    x * table(&tables.cos) + rotated * table(&tables.sin)
}

#[derive(Debug)]
struct RotaryOp;

impl Backward<Flex, 1> for RotaryOp {
    type State = RotaryTables;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let tables = ops.state;
        unary::<Flex, _>(ops.parents, ops.node, grads, |grad| rotate(grad, &tables, true));
    }
}

/// The rotation of every `[head_dim]` row of `x` (by its position in the sequence), or with
/// `transposed` its transpose (the backward): `y = x cos + R x sin` has `dx = dy cos + Rᵀ(dy sin)`,
/// where `(R x)_j = -x_{j+h}` for `j < h` and `x_{j-h}` after, `(Rᵀ g)_k = g_{k+h}` for `k < h`
/// and `-g_{k-h}` after.
fn rotate(x: FlexTensor, t: &RotaryTables, transposed: bool) -> FlexTensor {
    let x = owned_contiguous(x);
    let shape = x.layout().shape().to_vec();
    let (d, seq) = (t.head_dim, t.seq);
    let h = d / 2;
    let input = x.storage::<f32>();
    let mut out = vec![0.0f32; input.len()];
    // One (batch, head) plane of `seq x d` per task.
    out.par_chunks_mut(seq * d).zip(input.par_chunks(seq * d)).for_each(|(o, x)| {
        for pos in 0..seq {
            let (cos, sin) = (&t.cos[pos * d..(pos + 1) * d], &t.sin[pos * d..(pos + 1) * d]);
            let (xr, or) = (&x[pos * d..(pos + 1) * d], &mut o[pos * d..(pos + 1) * d]);
            for j in 0..h {
                let (a, b) = (xr[j], xr[j + h]);
                if transposed {
                    or[j] = a * cos[j] + b * sin[j + h];
                    or[j + h] = b * cos[j + h] - a * sin[j];
                } else {
                    or[j] = a * cos[j] - b * sin[j];
                    or[j + h] = b * cos[j + h] + a * sin[j + h];
                }
            }
        }
    });
    tensor(out, shape)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::testing::{assert_close as close, values};
    use burn::backend::Autodiff;
    use burn::tensor::Distribution;

    type Train = Autodiff<Flex>;

    fn tables(seq: usize, d: usize) -> RotaryTables {
        let (mut cos, mut sin) = (vec![0.0; seq * d], vec![0.0; seq * d]);
        for p in 0..seq {
            for i in 0..d / 2 {
                let angle = p as f32 / 100f32.powf(2.0 * i as f32 / d as f32);
                for j in [i, i + d / 2] {
                    cos[p * d + j] = angle.cos();
                    sin[p * d + j] = angle.sin();
                }
            }
        }
        RotaryTables { seq, head_dim: d, cos: Arc::new(cos), sin: Arc::new(sin) }
    }

    /// The kernel gives Burn's ops' values and gradient, on a transposed (strided) input as the
    /// attention hands it.
    #[test]
    fn matches_burns_ops_forward_and_backward() {
        let _generator = crate::testing::generator();
        let device = Default::default();
        Train::seed(&device, 3);
        let t = tables(7, 8);
        let x = Tensor::<Flex, 4>::random([2, 7, 3, 8], Distribution::Normal(0.0, 1.0), &device);
        let upstream = Tensor::<Flex, 4>::random([2, 3, 7, 8], Distribution::Normal(0.0, 1.0), &device);
        let run = |fused: bool| {
            let input = Tensor::<Train, 4>::from_inner(x.clone()).require_grad();
            let heads = input.clone().swap_dims(1, 2);
            let out = if fused { rotary(heads, &t) } else { burn_rotary(heads, &t) };
            let value = values(out.clone());
            let grads = (out * Tensor::from_inner(upstream.clone())).sum().backward();
            (value, values(input.grad(&grads).unwrap()))
        };
        let (fused, fused_grad) = run(true);
        let (plain, plain_grad) = run(false);
        close(&fused, &plain, 1e-6);
        close(&fused_grad, &plain_grad, 1e-6);
        close(&values(rotary(x.clone().swap_dims(1, 2), &t)), &plain, 1e-6);
    }
}
