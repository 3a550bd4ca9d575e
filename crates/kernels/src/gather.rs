//! DeBERTa's relative-position gathers: the content-to-position scores `c2p[b, h, i, r]` read at
//! one relative bucket per query-key pair, `out[b, h, i, j] = c2p[b, h, i, index[i, j]]`, and
//! the position-to-content ones read transposed, `out[b, h, i, j] = p2c[b, h, j, index[j, i]]`.
//! The index is the same for every item and head; on the CPU backend it is held once (not
//! expanded to `[batch, heads, seq, seq]` as `torch.gather` / Burn's `gather` need), each row is
//! gathered in parallel, and the backward (a scatter-add into the position scores) keeps only the
//! index. Other backends get Burn's `gather`.

use std::sync::Arc;

use burn::backend::Flex;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, unary};
use burn::backend::flex::FlexTensor;
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};
use rayon::prelude::*;

use crate::host::{Host, dispatch, owned_contiguous, primitive, record, tensor};

/// A `[seq, seq]` index into `[.., seq, span]` position scores, row-major.
#[derive(Debug, Clone)]
pub struct RelativeIndex {
    pub seq: usize,
    pub index: Arc<Vec<u32>>,
}

/// `out[b, h, i, j] = att[b, h, i, index[i, j]]`, or with `transposed`
/// `out[b, h, i, j] = att[b, h, j, index[j, i]]`.
///
/// # Shapes
/// - att: `[batch, heads, seq, span]`; output: `[batch, heads, seq, seq]`
pub fn relative_gather<B: Backend>(att: Tensor<B, 4>, index: &RelativeIndex, transposed: bool) -> Tensor<B, 4> {
    let [batch, heads, seq, span] = att.dims();
    let fits = seq == index.seq && index.index.iter().all(|&r| (r as usize) < span);
    let Some(host) = Host::of_f32::<B>(&[att.dtype()]).filter(|_| fits) else {
        let device = att.device();
        let ids: Vec<i64> = index.index.iter().map(|&r| i64::from(r)).collect();
        let ids = Tensor::<B, 2, Int>::from_data(TensorData::new(ids, [seq, seq]), &device)
            .reshape([1, 1, seq, seq])
            .expand([batch, heads, seq, seq]);
        let gathered = att.gather(3, ids);
        return if transposed { gathered.swap_dims(2, 3) } else { gathered };
    };
    let op = Gather { index: index.clone(), span, transposed };
    let state = op.clone();
    dispatch(
        host,
        [primitive(att)],
        |[att]| op.forward(att),
        |inputs| {
            record(GatherOp, inputs, |[att]| (op.forward(att.primitive), state), |[att]| op.forward(att.primitive))
        },
    )
}

#[derive(Debug, Clone)]
struct Gather {
    index: RelativeIndex,
    span: usize,
    transposed: bool,
}

impl Gather {
    fn forward(&self, att: FlexTensor) -> FlexTensor {
        let att = owned_contiguous(att);
        let shape = att.layout().shape().to_vec();
        let (seq, span) = (self.index.seq, self.span);
        let index = &self.index.index;
        let planes = shape[0] * shape[1];
        let att = att.storage::<f32>();
        let mut out = vec![0.0f32; planes * seq * seq];
        out.par_chunks_mut(seq).enumerate().with_min_len(16).for_each(|(row, o)| {
            let (plane, i) = (row / seq, row % seq);
            let a = &att[plane * seq * span..(plane + 1) * seq * span];
            if self.transposed {
                for (j, v) in o.iter_mut().enumerate() {
                    *v = a[j * span + index[j * seq + i] as usize];
                }
            } else {
                let a = &a[i * span..(i + 1) * span];
                for (v, &r) in o.iter_mut().zip(&index[i * seq..(i + 1) * seq]) {
                    *v = a[r as usize];
                }
            }
        });
        tensor(out, vec![shape[0], shape[1], seq, seq])
    }

    /// The scatter-add: each row of the position scores' gradient sums the gradients of the
    /// pairs that read it.
    fn backward(&self, grad: FlexTensor) -> FlexTensor {
        let grad = owned_contiguous(grad);
        let shape = grad.layout().shape().to_vec();
        let (seq, span) = (self.index.seq, self.span);
        let index = &self.index.index;
        let g = grad.storage::<f32>();
        let mut out = vec![0.0f32; shape[0] * shape[1] * seq * span];
        out.par_chunks_mut(span).enumerate().with_min_len(16).for_each(|(row, o)| {
            let (plane, i) = (row / seq, row % seq);
            let g = &g[plane * seq * seq..(plane + 1) * seq * seq];
            let index = &index[i * seq..(i + 1) * seq];
            if self.transposed {
                // Row i of `att` was read as out[.., k, i] at index[i, k].
                for (k, &r) in index.iter().enumerate() {
                    o[r as usize] += g[k * seq + i];
                }
            } else {
                for (&gv, &r) in g[i * seq..(i + 1) * seq].iter().zip(index) {
                    o[r as usize] += gv;
                }
            }
        });
        tensor(out, vec![shape[0], shape[1], seq, span])
    }
}

#[derive(Debug)]
struct GatherOp;

impl Backward<Flex, 1> for GatherOp {
    type State = Gather;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let gather = ops.state;
        unary::<Flex, _>(ops.parents, ops.node, grads, |grad| gather.backward(grad));
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

    /// Both gathers give Burn's `gather` (and its scatter-add backward) with an expanded index,
    /// with indices that repeat (as clamped relative positions do).
    #[test]
    fn matches_burns_gather_forward_and_backward() {
        let _generator = crate::testing::generator();
        let device = Default::default();
        Train::seed(&device, 9);
        let (seq, span) = (9, 6);
        let index: Vec<u32> = (0..seq * seq)
            .map(|n| ((n / seq) as i64 - (n % seq) as i64 + 3).clamp(0, span as i64 - 1) as u32)
            .collect();
        let index = RelativeIndex { seq, index: Arc::new(index) };
        let att = Tensor::<Flex, 4>::random([2, 3, seq, span], Distribution::Normal(0.0, 1.0), &device);
        let upstream = Tensor::<Flex, 4>::random([2, 3, seq, seq], Distribution::Normal(0.0, 1.0), &device);
        for transposed in [false, true] {
            let run = |fused: bool| {
                let input = Tensor::<Train, 4>::from_inner(att.clone()).require_grad();
                let out = if fused {
                    relative_gather(input.clone(), &index, transposed)
                } else {
                    let ids: Vec<i64> = index.index.iter().map(|&r| i64::from(r)).collect();
                    let ids = Tensor::<Train, 2, Int>::from_data(TensorData::new(ids, [seq, seq]), &device)
                        .reshape([1, 1, seq, seq])
                        .expand([2, 3, seq, seq]);
                    let g = input.clone().gather(3, ids);
                    if transposed { g.swap_dims(2, 3) } else { g }
                };
                let value = values(out.clone());
                let grads = (out * Tensor::from_inner(upstream.clone())).sum().backward();
                (value, values(input.grad(&grads).unwrap()))
            };
            let (fused, fused_grad) = run(true);
            let (plain, plain_grad) = run(false);
            close(&fused, &plain, 0.0);
            close(&fused_grad, &plain_grad, 1e-6);
        }
    }
}
