//! Scaled dot-product attention as one op on the CPU backend, keeping no `[queries, keys]`
//! tensor from the forward to the backward.
//!
//! Unfused, a layer keeps its probabilities `[batch, heads, queries, keys]` until the backward:
//! 805 MB a layer at 12 heads and 4,096 tokens, which made ModernBERT's eight global layers
//! the largest part of a long sequence's peak memory. Here each task takes a block of
//! [`BLOCK`] queries: their scores against every key in a scratch buffer, the masked softmax
//! row by row, the dropout mask ([`Dropout`]'s, at the indices the whole probabilities tensor
//! would have), and the product with `v` straight into the output. The backward recomputes a
//! block's probabilities from `q` and `k` (as FlashAttention does, Dao et al. 2022), so the
//! recorded op keeps `q`, `k`, `v` and the mask only: one extra `q kᵀ` per layer in exchange
//! for a `seq x seq` tensor.
//!
//! Exact to [`masked_softmax`] then [`dropout_matmul_into_heads`] within float rounding (the
//! products are the same kernel on other block shapes), which the tests check, values and
//! gradients, dropout included. Other backends and dtypes get those two ops.

use burn::backend::Flex;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops};
use burn::backend::flex::{FlexTensor, Layout};
use burn::tensor::backend::Backend;
use burn::tensor::{Shape, Tensor};
use rayon::prelude::*;

use crate::dropout::{Dropout, Mask};
use crate::host::{Host, dispatch, primitive, record, tensor};
use crate::matmul::{Operand, dropout_matmul_into_heads, gemm_one, matmul};
use crate::softmax::{masked_softmax, softmax_backward_row, softmax_row};

/// Queries per block: a block's scratch is `BLOCK x keys` f32s (1 MiB at 4,096 keys), small
/// enough to stay in cache between the softmax and the product.
const BLOCK: usize = 64;

/// `dropout(softmax(q kᵀ + mask_bias)) @ v`, with `q` already scaled (by `1/sqrt(dim)`, as the
/// models do before the head split).
///
/// # Shapes
/// - q: `[batch, heads, queries, dim]`, k: `[batch, heads, keys, dim]`, v: `[batch, heads, keys, dim_v]`
/// - mask_bias: `[batch, 1, 1, keys]`: 0 where attended, a large negative number at padding
/// - output: `[batch, heads, queries, dim_v]`, laid out as `[batch, queries, heads, dim_v]`
///   underneath (merging the heads is free, as with [`dropout_matmul_into_heads`])
pub fn attention<B: Backend>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    mask_bias: Tensor<B, 4>,
    dropout: &Dropout,
) -> Tensor<B, 4> {
    let ([batch, heads, queries, dim], [_, _, keys, dim_v]) = (q.dims(), v.dims());
    let fits = k.dims() == [batch, heads, keys, dim]
        && v.dims()[..2] == [batch, heads]
        && mask_bias.dims() == [batch, 1, 1, keys]
        && [batch, heads, queries, keys, dim, dim_v].iter().all(|&n| n > 0);
    let dtypes = [q.dtype(), k.dtype(), v.dtype(), mask_bias.dtype()];
    let Some(host) = Host::of_f32::<B>(&dtypes).filter(|_| fits) else {
        let scores = matmul(q, k.swap_dims(2, 3));
        return dropout_matmul_into_heads(masked_softmax(scores, mask_bias), v, dropout);
    };
    // Drawn where the unfused ops draw it (after the softmax, which draws nothing), so that the
    // backend's generator is at the same place for every later draw.
    let drop = dropout.draws_host_mask(&q).then(|| dropout.host_mask::<B>(&q.device()));
    dispatch(
        host,
        [primitive(q), primitive(k), primitive(v), primitive(mask_bias)],
        |[q, k, v, mask]| forward(&q, &k, &v, &mask, None),
        |inputs| {
            record(
                AttentionOp,
                inputs,
                |[q, k, v, mask]| {
                    let (q, k, v, mask) = (q.primitive, k.primitive, v.primitive, mask.primitive);
                    let out = forward(&q, &k, &v, &mask, drop);
                    (out, Saved { q, k, v, mask, drop })
                },
                |[q, k, v, mask]| forward(&q.primitive, &k.primitive, &v.primitive, &mask.primitive, drop),
            )
        },
    )
}

/// The recorded op: its state is its inputs and the dropout mask's seed.
#[derive(Debug)]
struct AttentionOp;

#[derive(Debug, Clone)]
struct Saved {
    q: FlexTensor,
    k: FlexTensor,
    v: FlexTensor,
    mask: FlexTensor,
    drop: Option<Mask>,
}

impl Backward<Flex, 4> for AttentionOp {
    type State = Saved;

    fn backward(self, ops: Ops<Self::State, 4>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let grad = grads.consume::<Flex>(&ops.node);
        // The mask comes from the integer attention mask: it has no gradient to pass on.
        let [q_node, k_node, v_node, _mask_node] = ops.parents;
        if q_node.is_none() && k_node.is_none() && v_node.is_none() {
            return;
        }
        let [dq, dk, dv] = backward(&ops.state, &grad);
        for (node, g) in [(q_node, dq), (k_node, dk), (v_node, dv)] {
            if let Some(node) = node {
                grads.register::<Flex>(node.id, g);
            }
        }
    }
}

/// The sizes of one call.
#[derive(Debug, Clone, Copy)]
struct Dims {
    batch: usize,
    heads: usize,
    queries: usize,
    keys: usize,
    dim: usize,
    dim_v: usize,
}

impl Dims {
    fn of(q: &FlexTensor, v: &FlexTensor) -> Self {
        let (q, v) = (q.layout().shape(), v.layout().shape());
        Self { batch: q[0], heads: q[1], queries: q[2], keys: v[2], dim: q[3], dim_v: v[3] }
    }
}

/// The three operands as matrices, with the call's sizes and the mask's elements.
struct Inputs<'a> {
    dims: Dims,
    q: Operand<'a>,
    k: Operand<'a>,
    v: Operand<'a>,
    mask: &'a [f32],
}

impl Inputs<'_> {
    /// Rows `first..first + rows` of matrix `m`'s (`batch * heads + head`) probabilities into
    /// `probs` (`rows x keys`, row-major): `softmax(q kᵀ + mask_bias)`.
    fn probs(&self, probs: &mut [f32], m: usize, first: usize) {
        let Dims { heads, keys, dim, .. } = self.dims;
        let rows = probs.len() / keys;
        let q = self.q.at(m).wrapping_offset(first as isize * self.q.row_stride);
        gemm_one(
            probs.as_mut_ptr(),
            keys,
            (rows, dim, keys),
            (q, self.q.row_stride, self.q.col_stride),
            // kᵀ: its rows are k's columns.
            (self.k.at(m), self.k.col_stride, self.k.row_stride),
            false,
            gemm::Parallelism::None,
        );
        let item = m / heads;
        let mask = &self.mask[item * keys..(item + 1) * keys];
        probs.chunks_exact_mut(keys).for_each(|row| softmax_row(row, mask));
    }

    /// The dropout mask on rows `first..` of matrix `m`'s probabilities: the indices they have
    /// in the `[batch, heads, queries, keys]` tensor that [`Dropout`] would have masked.
    fn drop(&self, drop: Mask, values: &mut [f32], m: usize, first: usize) {
        let Dims { queries, keys, .. } = self.dims;
        for (i, row) in values.chunks_exact_mut(keys).enumerate() {
            drop.apply_at(row, ((m * queries + first + i) * keys) as u64);
        }
    }
}

/// The output, `[batch, heads, queries, dim_v]` as a view of a `[batch, queries, heads, dim_v]`
/// buffer.
fn forward(q: &FlexTensor, k: &FlexTensor, v: &FlexTensor, mask: &FlexTensor, drop: Option<Mask>) -> FlexTensor {
    let dims = Dims::of(q, v);
    let Dims { batch, heads, queries, keys, dim_v, .. } = dims;
    let mask = mask.to_contiguous();
    let inputs = Inputs { dims, q: Operand::new(q), k: Operand::new(k), v: Operand::new(v), mask: mask.storage() };
    let row = heads * dim_v; // one query's output, all heads side by side
    let len = batch * queries * row;
    let mut out: Vec<f32> = Vec::with_capacity(len);
    // One task per block of queries of one item: all heads of those queries' rows.
    out.spare_capacity_mut()[..len].par_chunks_mut(queries * row).enumerate().for_each(|(item, rows_of_item)| {
        rows_of_item.par_chunks_mut(BLOCK * row).enumerate().for_each(|(block, out)| {
            let (first, rows) = (block * BLOCK, out.len() / row);
            let mut probs = vec![0.0f32; rows * keys];
            for head in 0..heads {
                let m = item * heads + head;
                inputs.probs(&mut probs, m, first);
                if let Some(drop) = drop {
                    inputs.drop(drop, &mut probs, m, first);
                }
                gemm_one(
                    out[head * dim_v..].as_mut_ptr().cast::<f32>(),
                    row,
                    (rows, keys, dim_v),
                    (probs.as_ptr(), keys as isize, 1),
                    (inputs.v.at(m), inputs.v.row_stride, inputs.v.col_stride),
                    false,
                    gemm::Parallelism::None,
                );
            }
        });
    });
    // SAFETY: gemm wrote every element: head `h`'s `rows x dim_v` block of a task sits at
    // columns `h dim_v .. (h + 1) dim_v` of the task's `rows` rows of `heads dim_v`, and the
    // tasks' chunks tile the buffer.
    #[allow(unsafe_code)]
    unsafe {
        out.set_len(len)
    };
    let strides = vec![(queries * row) as isize, dim_v as isize, row as isize, 1];
    let view = Layout::new(Shape::from(vec![batch, heads, queries, dim_v]), strides, 0);
    tensor(out, vec![len]).with_layout(view)
}

/// `[dq, dk, dv]` in the inputs' shapes, each laid out as `[batch, seq, heads, dim]` underneath
/// (as the forward's output): the gradient of the head split (`reshape` then `swap_dims`) is then
/// a free view, where a contiguous `[batch, heads, seq, dim]` had to be copied back into
/// `[batch, seq, hidden]` on one thread by the `reshape`'s backward.
///
/// One task per batch item, its heads in turn; per head a block of queries at a time: the
/// probabilities `P` again, `dP = dO vᵀ` (times the dropout mask), `dv += (P · mask)ᵀ dO`,
/// `dS = P (dP - rowsum(dP P))`, `dq = dS k`, `dk += dSᵀ q`.
fn backward(saved: &Saved, grad: &FlexTensor) -> [FlexTensor; 3] {
    let dims = Dims::of(&saved.q, &saved.v);
    let Dims { batch, heads, queries, keys, dim, dim_v } = dims;
    let mask = saved.mask.to_contiguous();
    let (q, k, v) = (Operand::new(&saved.q), Operand::new(&saved.k), Operand::new(&saved.v));
    let inputs = Inputs { dims, q, k, v, mask: mask.storage() };
    let out = Operand::new(grad);
    // Rows of one position: all heads side by side.
    let (q_row, k_row, v_row) = (heads * dim, heads * dim, heads * dim_v);
    let mut dq = vec![0.0f32; batch * queries * q_row];
    let mut dk = vec![0.0f32; batch * keys * k_row];
    let mut dv = vec![0.0f32; batch * keys * v_row];
    let items =
        dq.par_chunks_mut(queries * q_row).zip(dk.par_chunks_mut(keys * k_row)).zip(dv.par_chunks_mut(keys * v_row));
    items.enumerate().with_max_len(1).for_each(|(item, ((dq, dk), dv))| {
        let mut probs = vec![0.0f32; BLOCK.min(queries) * keys];
        let mut dprobs = probs.clone();
        let mut dropped = if saved.drop.is_some() { probs.clone() } else { Vec::new() };
        for head in 0..heads {
            let m = item * heads + head;
            // This head's columns of the item's rows.
            let (dq, dk, dv) = (&mut dq[head * dim..], &mut dk[head * dim..], &mut dv[head * dim_v..]);
            for first in (0..queries).step_by(BLOCK) {
                let n = BLOCK.min(queries - first) * keys;
                let (p, dp) = (&mut probs[..n], &mut dprobs[..n]);
                let rows = n / keys;
                inputs.probs(p, m, first);
                let d_out = out.at(m).wrapping_offset(first as isize * out.row_stride);
                let d_out = (d_out, out.row_stride, out.col_stride);
                // dP = dO vᵀ.
                let v_t = (inputs.v.at(m), inputs.v.col_stride, inputs.v.row_stride);
                gemm_one(dp.as_mut_ptr(), keys, (rows, dim_v, keys), d_out, v_t, false, gemm::Parallelism::None);
                let kept: &[f32] = match saved.drop {
                    Some(drop) => {
                        let dropped = &mut dropped[..n];
                        dropped.copy_from_slice(p);
                        inputs.drop(drop, dropped, m, first);
                        inputs.drop(drop, dp, m, first);
                        dropped
                    }
                    None => p,
                };
                // dv += keptᵀ dO.
                let kept_t = (kept.as_ptr(), 1, keys as isize);
                gemm_one(dv.as_mut_ptr(), v_row, (keys, rows, dim_v), kept_t, d_out, true, gemm::Parallelism::None);
                for (g, y) in dp.chunks_exact_mut(keys).zip(p.chunks_exact(keys)) {
                    softmax_backward_row(g, y);
                }
                // dq = dS k; dk += dSᵀ q.
                let k_rows = (inputs.k.at(m), inputs.k.row_stride, inputs.k.col_stride);
                let ds = (dp.as_ptr(), keys as isize, 1);
                let dq_rows = dq[first * q_row..].as_mut_ptr();
                gemm_one(dq_rows, q_row, (rows, keys, dim), ds, k_rows, false, gemm::Parallelism::None);
                let q_rows = inputs.q.at(m).wrapping_offset(first as isize * inputs.q.row_stride);
                let ds_t = (dp.as_ptr(), 1, keys as isize);
                let q_rows = (q_rows, inputs.q.row_stride, inputs.q.col_stride);
                gemm_one(dk.as_mut_ptr(), k_row, (keys, rows, dim), ds_t, q_rows, true, gemm::Parallelism::None);
            }
        }
    });
    let heads_view = |values: Vec<f32>, seq: usize, d: usize| {
        let strides = vec![(seq * heads * d) as isize, d as isize, (heads * d) as isize, 1];
        let len = values.len();
        tensor(values, vec![len]).with_layout(Layout::new(Shape::from(vec![batch, heads, seq, d]), strides, 0))
    };
    [heads_view(dq, queries, dim), heads_view(dk, keys, dim), heads_view(dv, keys, dim_v)]
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::host::HostTrain;
    use crate::matmul::matmul_into_heads;
    use crate::testing::{assert_close as close, values};
    use burn::tensor::{Distribution, TensorData, activation};

    type Train = HostTrain;

    fn random(shape: [usize; 4]) -> Tensor<Flex, 4> {
        Tensor::random(shape, Distribution::Normal(0.0, 1.0), &Default::default())
    }

    /// A padding mask hiding the last third of item 1's keys.
    fn padding(batch: usize, keys: usize) -> Tensor<Flex, 4> {
        let mask: Vec<f32> =
            (0..batch * keys).map(|i| if i / keys == 1 && i % keys >= 2 * keys / 3 { f32::MIN } else { 0.0 }).collect();
        Tensor::from_data(TensorData::new(mask, [batch, 1, 1, keys]), &Default::default())
    }

    /// Values and the gradients of q, k and v equal Burn's softmax, dropout and products, with
    /// and without dropout, for block counts that do and do not divide the queries, on
    /// head-split (strided) inputs, padding included.
    #[test]
    fn matches_softmax_dropout_and_products() {
        let _generator = crate::testing::generator();
        let device = Default::default();
        for (queries, prob) in [(7usize, 0.0), (150, 0.0), (150, 0.2), (64, 0.5)] {
            let [batch, heads, dim] = [2, 3, 8];
            let split = |t: Tensor<Flex, 4>| t.swap_dims(1, 2); // (B, T, nh, hs) -> (B, nh, T, hs)
            let q = split(random([batch, queries, heads, dim])) * 0.5;
            let (k, v) = (split(random([batch, queries, heads, dim])), split(random([batch, queries, heads, dim])));
            let mask = padding(batch, queries);
            let upstream = random([batch, heads, queries, dim]);
            let dropout = Dropout::new(prob);
            let run = |fused: bool| {
                Train::seed(&device, 17);
                let leaf = |t: &Tensor<Flex, 4>| Tensor::<Train, 4>::from_inner(t.clone()).require_grad();
                let (q, k, v) = (leaf(&q), leaf(&k), leaf(&v));
                let mask = Tensor::<Train, 4>::from_inner(mask.clone());
                let out = if fused {
                    attention(q.clone(), k.clone(), v.clone(), mask, &dropout)
                } else {
                    let probs = activation::softmax(q.clone().matmul(k.clone().swap_dims(2, 3)) + mask, 3);
                    matmul_into_heads(dropout.forward(probs), v.clone())
                };
                let grads = (out.clone() * Tensor::from_inner(upstream.clone())).sum().backward();
                let g = |t: &Tensor<Train, 4>| values(t.grad(&grads).unwrap());
                [values(out), g(&q), g(&k), g(&v)]
            };
            for (i, (fused, plain)) in run(true).iter().zip(run(false).iter()).enumerate() {
                assert!(fused.iter().any(|&x| x != 0.0), "output {i} is not all zero");
                close(fused, plain, 2e-5);
            }
        }
    }

    /// Inference (`Flex`): the same values, no dropout; and merging the heads needs no copy.
    #[test]
    fn inference_matches_and_merges_for_free() {
        let _generator = crate::testing::generator();
        let (q, k, v) = (random([2, 4, 70, 16]), random([2, 4, 70, 16]), random([2, 4, 70, 16]));
        let mask = padding(2, 70);
        let ours = attention(q.clone(), k.clone(), v.clone(), mask.clone(), &Dropout::new(0.5));
        let probs = activation::softmax(q.matmul(k.swap_dims(2, 3)) + mask, 3);
        close(&values(ours.clone()), &values(probs.matmul(v)), 1e-5);
        assert!(ours.swap_dims(1, 2).into_primitive().tensor().is_contiguous());
    }

    /// The gradients of q, k and v come laid out as `[batch, seq, heads, dim]`, so that undoing
    /// the head split (`swap_dims(1, 2)`, then `reshape` to `[batch, seq, hidden]`) copies
    /// nothing: that copy ran on one thread, 6% of a MiniLM training step's serial time.
    #[test]
    fn gradients_merge_heads_for_free() {
        let _generator = crate::testing::generator();
        let leaf = |t: Tensor<Flex, 4>| Tensor::<Train, 4>::from_inner(t).require_grad();
        let (q, k, v) = (leaf(random([2, 3, 40, 8])), leaf(random([2, 3, 40, 8])), leaf(random([2, 3, 40, 4])));
        let mask = Tensor::<Train, 4>::from_inner(padding(2, 40));
        let grads = attention(q.clone(), k.clone(), v.clone(), mask, &Dropout::new(0.0)).sum().backward();
        for (name, t) in [("q", q), ("k", k), ("v", v)] {
            let grad = t.grad(&grads).unwrap();
            assert!(grad.swap_dims(1, 2).into_primitive().tensor().is_contiguous(), "d{name}");
        }
    }

    /// A frozen input gets no gradient and the others are still right; a mask of another
    /// shape (a full `[batch, heads, queries, keys]` bias) is the unfused ops' business.
    #[test]
    fn partial_gradients_and_other_masks() {
        let _generator = crate::testing::generator();
        let (q, k, v) = (random([1, 2, 33, 8]), random([1, 2, 33, 8]), random([1, 2, 33, 8]));
        let mask = padding(1, 33);
        let run = |fused: bool| {
            let q = Tensor::<Train, 4>::from_inner(q.clone()).require_grad();
            let (k, v) = (Tensor::<Train, 4>::from_inner(k.clone()), Tensor::<Train, 4>::from_inner(v.clone()));
            let mask = Tensor::<Train, 4>::from_inner(mask.clone());
            let out = if fused {
                attention(q.clone(), k.clone(), v.clone(), mask, &Dropout::new(0.0))
            } else {
                activation::softmax(q.clone().matmul(k.clone().swap_dims(2, 3)) + mask, 3).matmul(v.clone())
            };
            let grads = out.sum().backward();
            assert!(k.grad(&grads).is_none() && v.grad(&grads).is_none());
            values(q.grad(&grads).unwrap())
        };
        // A gradient, as above (2e-5): softmax's backward p (g - sum p g) sums 33 keys in another
        // order and cancels, ~33 ulps of the terms (~3e-6 of 1 + |b|; 2.7e-6 measured on the
        // AVX2 path). A missing mask or scale moves it by ~1e-1.
        close(&run(true), &run(false), 2e-5);
        let full = random([1, 2, 33, 33]);
        let ours = attention(q.clone(), k.clone(), v.clone(), full.clone(), &Dropout::new(0.0));
        let probs = activation::softmax(q.matmul(k.swap_dims(2, 3)) + full, 3);
        close(&values(ours), &values(probs.matmul(v)), 1e-5);
    }
}
