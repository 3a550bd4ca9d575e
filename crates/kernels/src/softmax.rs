//! The attention's masked softmax, one pass per row on the CPU backend.
//!
//! transformers adds a `[batch, 1, 1, seq]` mask bias to the `[batch, heads, seq, seq]` scores
//! and takes the softmax over keys. On `Flex` and `Autodiff<Flex>` one pass per row adds the
//! mask (never broadcast into a full-size tensor), exponentiates and normalises in place, in
//! parallel, with an exp that vectorises ([`crate::math`]); under autodiff it is one recorded op
//! whose backward, `dx = y * (dy - sum(dy * y))`, is one parallel pass too (Burn records softmax
//! as five ops, each with a full-size buffer). Other backends get `softmax(scores + mask_bias)`.

use burn::backend::Flex;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops};
use burn::backend::flex::FlexTensor;
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, activation};
use multiversion::multiversion;
use rayon::prelude::*;

use crate::host::{Host, dispatch, owned_contiguous, primitive, record};
use crate::math::exp_nonpositive;

/// `softmax(scores + mask_bias, 3)`.
///
/// # Shapes
/// - scores: `[batch, heads, queries, keys]`
/// - mask_bias: `[batch, 1, 1, keys]`: 0 where attended, a large negative number at padding
pub fn masked_softmax<B: Backend>(scores: Tensor<B, 4>, mask_bias: Tensor<B, 4>) -> Tensor<B, 4> {
    masked_softmax_window(scores, mask_bias, None)
}

/// A sliding window: query `i` attends to keys `j` with `|i - j| <= half`; query row `r` and key
/// column `c` of the scores are positions `r + offset` and `c` (a block of queries against the
/// keys around it starts `offset` positions after its first key).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub half: usize,
    pub offset: usize,
}

/// As [`masked_softmax`], and with a [`Window`] a sliding window too, as ModernBERT's local
/// layers attend. transformers fills the mask with `finfo(float32).min` outside the window
/// (replacing the padding bias there), then adds it to the scores; so does this, without
/// building the `[queries, keys]` mask.
///
/// # Shapes
/// - as [`masked_softmax`]
pub fn masked_softmax_window<B: Backend>(
    scores: Tensor<B, 4>,
    mask_bias: Tensor<B, 4>,
    window: Option<Window>,
) -> Tensor<B, 4> {
    let [batch, heads, queries, keys] = scores.dims();
    let fits = mask_bias.dims() == [batch, 1, 1, keys] && keys > 0;
    let Some(host) = Host::of_f32::<B>(&[scores.dtype(), mask_bias.dtype()]).filter(|_| fits) else {
        return match window {
            None => activation::softmax(scores + mask_bias, 3),
            Some(w) => {
                let device = scores.device();
                let (start, end) = (w.offset as i64, (w.offset + queries) as i64);
                let rows = Tensor::<B, 1, Int>::arange(start..end, &device).reshape([queries, 1]);
                let cols = Tensor::<B, 1, Int>::arange(0..keys as i64, &device).reshape([1, keys]);
                let outside = (rows - cols).abs().greater_elem(w.half as i64).reshape([1, 1, queries, keys]);
                let bias = mask_bias
                    .expand([batch, 1, queries, keys])
                    .mask_fill(outside.expand([batch, 1, queries, keys]), f32::MIN);
                activation::softmax(scores + bias, 3)
            }
        };
    };
    let rows_per_item = heads * queries;
    let band = window.map(|w| Band { half: w.half, offset: w.offset, queries });
    dispatch(
        host,
        [primitive(scores), primitive(mask_bias)],
        |[scores, mask]| softmax_forward(scores, &mask, keys, rows_per_item, band),
        |inputs| {
            // The mask comes from the integer attention mask: it never has a gradient to pass on.
            record(
                MaskedSoftmaxOp,
                inputs,
                |[scores, mask]| {
                    let probs = softmax_forward(scores.primitive, &mask.primitive, keys, rows_per_item, band);
                    (probs.clone(), (probs, keys))
                },
                |[scores, mask]| softmax_forward(scores.primitive, &mask.primitive, keys, rows_per_item, band),
            )
        },
    )
}

/// The recorded op: its state is the output (the probabilities) and the row length.
#[derive(Debug)]
struct MaskedSoftmaxOp;

impl Backward<Flex, 2> for MaskedSoftmaxOp {
    type State = (FlexTensor, usize);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let (probs, row) = ops.state;
        let grad = grads.consume::<Flex>(&ops.node);
        let [scores_node, _mask_node] = ops.parents;
        if let Some(node) = scores_node {
            grads.register::<Flex>(node.id, softmax_backward(&probs, grad, row));
        }
    }
}

/// A [`Window`] over rows of `queries` queries.
#[derive(Debug, Clone, Copy)]
struct Band {
    half: usize,
    offset: usize,
    queries: usize,
}

/// The probabilities, written over `scores`'s buffer when nothing else holds it.
fn softmax_forward(
    scores: FlexTensor,
    mask: &FlexTensor,
    row: usize,
    rows_per_item: usize,
    band: Option<Band>,
) -> FlexTensor {
    let mut probs = owned_contiguous(scores);
    let mask = mask.to_contiguous();
    let mask = mask.storage::<f32>();
    probs.storage_mut::<f32>().par_chunks_mut(row).enumerate().with_min_len(16).for_each(|(r, x)| {
        let item = r / rows_per_item;
        let mask = &mask[item * row..(item + 1) * row];
        match band {
            None => softmax_row(x, mask),
            Some(Band { half, offset, queries }) => {
                let query = r % queries + offset;
                let (lo, hi) = (query.saturating_sub(half).min(row), (query + half + 1).min(row));
                softmax_band(x, mask, lo, hi);
            }
        }
    });
    probs
}

/// `dy * y - y * sum(dy * y)` along rows of `row` elements, written over `grad`'s buffer.
fn softmax_backward(probs: &FlexTensor, grad: FlexTensor, row: usize) -> FlexTensor {
    let probs = probs.to_contiguous();
    let mut grad = owned_contiguous(grad);
    let y = probs.storage::<f32>();
    grad.storage_mut::<f32>().par_chunks_mut(row).with_min_len(16).zip(y.par_chunks(row)).for_each(|(g, y)| {
        softmax_backward_row(g, y);
    });
    grad
}

/// Lanes of the partial maxima and sums: a multiple of every vector width, so that the
/// reductions vectorise (a single running sum would fix the order and keep them scalar).
const LANES: usize = 16;

#[multiversion(targets = "simd")]
pub(crate) fn softmax_row(x: &mut [f32], mask: &[f32]) {
    let mut peaks = [f32::NEG_INFINITY; LANES];
    for (xs, ms) in x.chunks_exact_mut(LANES).zip(mask.chunks_exact(LANES)) {
        for ((v, m), peak) in xs.iter_mut().zip(ms).zip(&mut peaks) {
            *v += m;
            *peak = if *v > *peak { *v } else { *peak };
        }
    }
    let tail = x.len() - x.len() % LANES;
    for (v, m) in x[tail..].iter_mut().zip(&mask[tail..]) {
        *v += m;
        peaks[0] = if *v > peaks[0] { *v } else { peaks[0] };
    }
    let max = peaks.iter().fold(f32::NEG_INFINITY, |a, &b| if b > a { b } else { a });

    let mut sums = [0.0f32; LANES];
    for xs in x.chunks_exact_mut(LANES) {
        for (v, sum) in xs.iter_mut().zip(&mut sums) {
            *v = exp_nonpositive(*v - max);
            *sum += *v;
        }
    }
    for v in &mut x[tail..] {
        *v = exp_nonpositive(*v - max);
        sums[0] += *v;
    }
    let scale = 1.0 / sums.iter().sum::<f32>();
    x.iter_mut().for_each(|v| *v *= scale);
}

/// A row's softmax inside the window `[lo, hi)`, 0 outside it: what adding `finfo.min` outside
/// the window gives whenever one key inside it is not padding. A row with none (a padded query
/// far from any real token) is, as in transformers, the same value everywhere (every entry is
/// `finfo.min` after the add): uniform.
fn softmax_band(x: &mut [f32], mask: &[f32], lo: usize, hi: usize) {
    let inside = &mut x[lo..hi];
    for (v, m) in inside.iter_mut().zip(&mask[lo..hi]) {
        *v += m;
    }
    let max = inside.iter().fold(f32::NEG_INFINITY, |a, &b| if b > a { b } else { a });
    if max <= f32::MIN / 2.0 {
        let uniform = 1.0 / x.len() as f32;
        x.iter_mut().for_each(|v| *v = uniform);
        return;
    }
    let mut sum = 0.0f32;
    for v in inside.iter_mut() {
        *v = exp_nonpositive(*v - max);
        sum += *v;
    }
    let scale = 1.0 / sum;
    inside.iter_mut().for_each(|v| *v *= scale);
    x[..lo].iter_mut().for_each(|v| *v = 0.0);
    x[hi..].iter_mut().for_each(|v| *v = 0.0);
}

#[multiversion(targets = "simd")]
pub(crate) fn softmax_backward_row(g: &mut [f32], y: &[f32]) {
    let mut dots = [0.0f32; LANES];
    for (gs, ys) in g.chunks_exact(LANES).zip(y.chunks_exact(LANES)) {
        for ((a, b), dot) in gs.iter().zip(ys).zip(&mut dots) {
            *dot += a * b;
        }
    }
    let tail = g.len() - g.len() % LANES;
    let dot = dots.iter().sum::<f32>() + g[tail..].iter().zip(&y[tail..]).map(|(a, b)| a * b).sum::<f32>();
    for (gi, yi) in g.iter_mut().zip(y) {
        *gi = yi * (*gi - dot);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::testing::{assert_close as close, values};
    use burn::backend::Autodiff;
    use burn::tensor::{Distribution, TensorData};

    type Train = Autodiff<Flex>;

    /// Scores `[2, 3, 5, keys]` and a mask hiding every third key of item 0 and all of item 1.
    fn inputs(keys: usize) -> (Tensor<Flex, 4>, Tensor<Flex, 4>, Tensor<Flex, 4>) {
        let device = Default::default();
        Train::seed(&device, 11);
        let scores = Tensor::<Flex, 4>::random([2, 3, 5, keys], Distribution::Normal(0.0, 3.0), &device);
        let mask: Vec<f32> = (0..2 * keys).map(|i| if i >= keys || i % 3 == 1 { f32::MIN } else { 0.0 }).collect();
        let mask = Tensor::<Flex, 4>::from_data(TensorData::new(mask, [2, 1, 1, keys]), &device);
        let upstream = Tensor::<Flex, 4>::random([2, 3, 5, keys], Distribution::Normal(0.0, 1.0), &device);
        (scores, mask, upstream)
    }

    /// The fused op gives Burn's decomposed softmax's values and gradient, masked keys and a
    /// fully masked item included, for rows that are and are not a multiple of the lanes.
    #[test]
    fn matches_burns_softmax_forward_and_backward() {
        let _generator = crate::testing::generator();
        for keys in [7, 37, 64] {
            let (scores, mask, upstream) = inputs(keys);
            let run = |fused: bool| {
                let input = Tensor::<Train, 4>::from_inner(scores.clone()).require_grad();
                let mask = Tensor::<Train, 4>::from_inner(mask.clone());
                let probs = if fused {
                    masked_softmax(input.clone(), mask)
                } else {
                    activation::softmax(input.clone() + mask, 3)
                };
                let out = values(probs.clone());
                let grads = (probs * Tensor::from_inner(upstream.clone())).sum().backward();
                (out, values(input.grad(&grads).unwrap()))
            };
            let (fused, fused_grad) = run(true);
            let (plain, plain_grad) = run(false);
            close(&fused, &plain, 1e-6);
            close(&fused_grad, &plain_grad, 1e-5);
        }
    }

    #[test]
    fn inference_matches_burns_softmax() {
        let _generator = crate::testing::generator();
        let (scores, mask, _) = inputs(37);
        let fused = values(masked_softmax(scores.clone(), mask.clone()));
        close(&fused, &values(activation::softmax(scores + mask, 3)), 1e-6);
    }

    /// A mask of another shape is Burn's business (broadcast add, then softmax).
    #[test]
    fn other_mask_shapes_take_burns_path() {
        let _generator = crate::testing::generator();
        let (scores, _, _) = inputs(7);
        let full = Tensor::<Flex, 4>::random([2, 3, 5, 7], Distribution::Normal(0.0, 1.0), &Default::default());
        let ours = values(masked_softmax(scores.clone(), full.clone()));
        close(&ours, &values(activation::softmax(scores + full, 3)), 0.0);
    }

    /// A sliding window: the fused op gives the values and gradient of transformers' way
    /// (the padding bias, `finfo.min` outside the window, added to the scores, then softmax),
    /// with windows narrower and wider than the rows and padded keys inside and outside them.
    #[test]
    fn sliding_window_matches_the_masked_fill_reference() {
        let _generator = crate::testing::generator();
        let device = Default::default();
        Train::seed(&device, 5);
        for (keys, half) in [(7usize, 1usize), (37, 4), (20, 64)] {
            let scores = Tensor::<Flex, 4>::random([2, 3, keys, keys], Distribution::Normal(0.0, 3.0), &device);
            let mask: Vec<f32> = (0..2 * keys)
                .map(|i| if (i >= keys && i % keys > keys / 2) || i % 5 == 3 { f32::MIN } else { 0.0 })
                .collect();
            let mask = Tensor::<Flex, 4>::from_data(TensorData::new(mask, [2, 1, 1, keys]), &device);
            let upstream = Tensor::<Flex, 4>::random([2, 3, keys, keys], Distribution::Normal(0.0, 1.0), &device);
            let run = |fused: bool| {
                let input = Tensor::<Train, 4>::from_inner(scores.clone()).require_grad();
                let mask = Tensor::<Train, 4>::from_inner(mask.clone());
                let probs = if fused {
                    masked_softmax_window(input.clone(), mask, Some(Window { half, offset: 0 }))
                } else {
                    let outside: Vec<bool> = (0..keys * keys).map(|i| (i / keys).abs_diff(i % keys) > half).collect();
                    let outside = Tensor::<Train, 4, burn::tensor::Bool>::from_data(
                        TensorData::new(outside, [1, 1, keys, keys]),
                        &device,
                    );
                    let bias = mask.expand([2, 1, keys, keys]).mask_fill(outside.expand([2, 1, keys, keys]), f32::MIN);
                    activation::softmax(input.clone() + bias, 3)
                };
                let out = values(probs.clone());
                let grads = (probs * Tensor::from_inner(upstream.clone())).sum().backward();
                (out, values(input.grad(&grads).unwrap()))
            };
            let (fused, fused_grad) = run(true);
            let (plain, plain_grad) = run(false);
            close(&fused, &plain, 1e-6);
            close(&fused_grad, &plain_grad, 1e-5);
        }
    }
}
