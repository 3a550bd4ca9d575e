//! Matrix products on the CPU backend, written straight into their output buffers.
//!
//! The gemm crate (the one burn-flex calls) writes each product into an uninitialised `Vec<f32>`
//! that becomes the tensor as it is (burn-flex zeroes and then copies every matmul output), and a
//! linear layer's bias is the output's starting value (gemm accumulates onto it) instead of a
//! broadcast add afterwards. Inputs are read through their strides, so transposed and
//! head-split views are not copied.
//!
//! On `Autodiff<Flex>` the product and the linear layer are each one recorded op whose backward
//! runs the same kernel on transposed views; it keeps an input only when the other input needs a
//! gradient (a frozen weight never makes its layer keep the activations). `Flex` (inference) gets
//! the kernel alone; every other backend, and dtypes other than f32, Burn's own ops.

use std::mem::MaybeUninit;

use burn::backend::Flex;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops};
use burn::backend::flex::{FlexTensor, Layout};
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;
use burn::tensor::ops::FloatTensor;
use burn::tensor::{DType, Shape};
use rayon::prelude::*;

use crate::dropout::{Dropout, Mask};
use crate::host::{Host, HostTrain, dispatch, dispatch_train, primitive, record, tensor};

/// Below this many multiply-adds a product runs on one thread (burn-flex's threshold).
const PARALLEL_WORK: usize = 192 * 192 * 192;

/// Output elements from which the bias is written in parallel (1 MiB of f32).
const FILL_PARALLEL: usize = 1 << 18;

/// `x @ weight + bias`, what `burn::tensor::module::linear` computes.
///
/// # Shapes
/// - x: `[..., d_input]`, weight: `[d_input, d_output]`, bias: `[d_output]`
/// - output: `[..., d_output]`
pub fn linear<B: Backend, const D: usize>(
    x: Tensor<B, D>,
    weight: Tensor<B, 2>,
    bias: Option<Tensor<B, 1>>,
) -> Tensor<B, D> {
    // Shapes that do not fit go to Burn, which reports them; the kernel trusts them.
    let [k, n] = weight.dims();
    let fits = D >= 2 && x.dims()[D - 1] == k && bias.as_ref().is_none_or(|b| b.dims() == [n]);
    // A weight held in bf16 (`crate::bf16`): the bf16 product on the CPU inference backend,
    // elsewhere (training, other backends) the layer of its values in the input's dtype.
    // A frozen weight held in bf16 (`crate::bf16`): the bf16 product on the CPU backends (under
    // autodiff one recorded op whose backward takes the input's gradient in bf16 too);
    // elsewhere, or for a weight that is trained, the layer of its values in the input's dtype.
    let weight = match (weight.dtype(), x.dtype(), Host::of::<B>()) {
        (DType::BF16, DType::F32, Some(host))
            if fits && !weight.is_require_grad() && bias.as_ref().is_none_or(|b| b.dtype() == DType::F32) =>
        {
            return bf16_linear(host, x, weight, bias);
        }
        (w, dtype, _) if w != dtype => weight.cast(dtype),
        _ => weight,
    };
    let mut dtypes = vec![x.dtype(), weight.dtype()];
    dtypes.extend(bias.as_ref().map(Tensor::dtype));
    let Some(host) = Host::of_f32::<B>(&dtypes).filter(|_| fits) else {
        return burn::tensor::module::linear(x, weight, bias);
    };
    let (x, weight) = (primitive(x), primitive(weight));
    match bias {
        Some(bias) => dispatch(
            host,
            [x, weight, primitive(bias)],
            |[x, weight, bias]| product(&x, &weight, Some(&bias)),
            |inputs| {
                record(
                    LinearOp,
                    inputs,
                    |[x, weight, bias]| {
                        (product(&x.primitive, &weight.primitive, Some(&bias.primitive)), kept(&x, &weight))
                    },
                    |[x, weight, bias]| product(&x.primitive, &weight.primitive, Some(&bias.primitive)),
                )
            },
        ),
        None => dispatch(
            host,
            [x, weight],
            |[x, weight]| product(&x, &weight, None),
            |inputs| recorded_product(inputs, |lhs, rhs| product(lhs, rhs, None)),
        ),
    }
}

/// `x @ weight + bias` for a bf16 `weight` on the CPU backend `host` (see [`linear`]).
fn bf16_linear<B: Backend, const D: usize>(
    host: Host,
    x: Tensor<B, D>,
    weight: Tensor<B, 2>,
    bias: Option<Tensor<B, 1>>,
) -> Tensor<B, D> {
    use crate::bf16::linear_bf16;
    let (x, weight) = (primitive(x), primitive(weight));
    // The weight is kept for the input's gradient; it is the model's own (shared) tensor.
    let kept =
        |x: &FloatTensor<HostTrain>, weight: &FloatTensor<HostTrain>| x.is_tracked().then(|| weight.primitive.clone());
    match bias {
        Some(bias) => dispatch(
            host,
            [x, weight, primitive(bias)],
            |[x, weight, bias]| linear_bf16(&x, &weight, Some(&bias)),
            |inputs| {
                record(
                    Bf16LinearOp,
                    inputs,
                    |[x, weight, bias]| {
                        (linear_bf16(&x.primitive, &weight.primitive, Some(&bias.primitive)), kept(&x, &weight))
                    },
                    |[x, weight, bias]| linear_bf16(&x.primitive, &weight.primitive, Some(&bias.primitive)),
                )
            },
        ),
        None => dispatch(
            host,
            [x, weight],
            |[x, weight]| linear_bf16(&x, &weight, None),
            |inputs| {
                record(
                    Bf16LinearOp,
                    inputs,
                    |[x, weight]| (linear_bf16(&x.primitive, &weight.primitive, None), kept(&x, &weight)),
                    |[x, weight]| linear_bf16(&x.primitive, &weight.primitive, None),
                )
            },
        ),
    }
}

/// `x @ weight (+ bias)` with a frozen bf16 weight, recorded as one op: the input's gradient is
/// `grad @ weightᵀ` in bf16 (as autocast's backward of a bf16 product), the bias's the f32 sum
/// of the gradient's rows; the weight gets none.
#[derive(Debug)]
struct Bf16LinearOp;

impl Bf16LinearOp {
    fn gradients<const N: usize>(ops: Ops<Option<FlexTensor>, N>, grads: &mut Gradients) {
        let grad = grads.consume::<Flex>(&ops.node);
        let [x_node, weight_node, bias_node] = std::array::from_fn(|i| ops.parents.get(i).cloned().flatten());
        debug_assert!(weight_node.is_none(), "a bf16 weight is frozen");
        if let (Some(node), Some(weight)) = (x_node, &ops.state) {
            grads.register::<Flex>(node.id, crate::bf16::input_grad_bf16(&grad, weight));
        }
        if let Some(node) = bias_node {
            grads.register::<Flex>(node.id, column_sums(&grad));
        }
    }
}

impl Backward<Flex, 2> for Bf16LinearOp {
    type State = Option<FlexTensor>;

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        Self::gradients(ops, grads);
    }
}

impl Backward<Flex, 3> for Bf16LinearOp {
    type State = Option<FlexTensor>;

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        Self::gradients(ops, grads);
    }
}

/// `lhs.matmul(rhs)` for operands with the same batch dimensions (no broadcasting; Burn's
/// `matmul` takes the other cases).
///
/// # Shapes
/// - lhs: `[..., m, k]`, rhs: `[..., k, n]`, output: `[..., m, n]`
pub fn matmul<B: Backend, const D: usize>(lhs: Tensor<B, D>, rhs: Tensor<B, D>) -> Tensor<B, D> {
    let [l, r] = [lhs.dims(), rhs.dims()];
    let fits = D >= 2 && l[..D - 2] == r[..D - 2] && l[D - 1] == r[D - 2];
    match Host::of_f32::<B>(&[lhs.dtype(), rhs.dtype()]).filter(|_| fits) {
        Some(host) => host_product(host, lhs, rhs, |lhs, rhs| product(lhs, rhs, None)),
        None => lhs.matmul(rhs),
    }
}

/// [`matmul`] for the attention's `probs @ v` (`[batch, heads, seq, dim]`), with the output
/// laid out as `[batch, seq, heads, dim]` underneath: the same values and shape, but
/// `.swap_dims(1, 2).reshape([batch, seq, heads * dim])` (merging the heads) is then free
/// instead of a strided copy on the CPU backend.
pub fn matmul_into_heads<B: Backend>(lhs: Tensor<B, 4>, rhs: Tensor<B, 4>) -> Tensor<B, 4> {
    let [l, r] = [lhs.dims(), rhs.dims()];
    let fits = l[..2] == r[..2] && l[3] == r[2];
    match Host::of_f32::<B>(&[lhs.dtype(), rhs.dtype()]).filter(|_| fits) {
        Some(host) => host_product(host, lhs, rhs, heads_product),
        None => lhs.matmul(rhs),
    }
}

/// `matmul_into_heads(dropout.forward(probs), v)`: the attention's dropout and product as one
/// op on the CPU training backend, so that the dropped probabilities are not kept for the
/// backward (the softmax keeps `probs` already; the mask is recomputed from its seed, as
/// [`Dropout`] does). The same values and gradients, bit for bit, one `[batch, heads, seq, seq]`
/// tensor less per layer until the backward.
pub fn dropout_matmul_into_heads<B: Backend>(probs: Tensor<B, 4>, v: Tensor<B, 4>, dropout: &Dropout) -> Tensor<B, 4> {
    let [l, r] = [probs.dims(), v.dims()];
    let fits = l[..2] == r[..2] && l[3] == r[2] && v.dtype() == DType::F32;
    if !fits || !dropout.draws_host_mask(&probs) {
        return matmul_into_heads(dropout.forward(probs), v);
    }
    let mask = dropout.host_mask::<B>(&probs.device());
    dispatch_train([primitive(probs), primitive(v)], |inputs| {
        record(
            DroppedProductOp,
            inputs,
            |[lhs, rhs]| {
                let kept = kept(&lhs, &rhs);
                // Dropped in place when nothing else holds `lhs`; freed once the product is made.
                (heads_product(&mask.apply(lhs.primitive), &rhs.primitive), (kept, mask))
            },
            |[lhs, rhs]| heads_product(&mask.apply(lhs.primitive), &rhs.primitive),
        )
    })
}

/// `(lhs * mask) @ rhs`, heads-interleaved, recorded as one op.
#[derive(Debug)]
struct DroppedProductOp;

impl Backward<Flex, 2> for DroppedProductOp {
    type State = (Kept, Mask);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let grad = grads.consume::<Flex>(&ops.node);
        let [lhs_node, rhs_node] = ops.parents;
        let ((lhs, rhs, rhs_rank), mask) = ops.state;
        if let (Some(node), Some(rhs)) = (lhs_node, &rhs) {
            grads.register::<Flex>(node.id, mask.apply(lhs_grad(&grad, rhs)));
        }
        if let (Some(node), Some(lhs)) = (rhs_node, lhs) {
            grads.register::<Flex>(node.id, rhs_grad(&mask.apply(lhs), &grad, rhs_rank));
        }
    }
}

/// `kernel(lhs, rhs)` on the CPU backend `host`, recorded as a [`ProductOp`] under autodiff.
fn host_product<B: Backend, const D: usize>(
    host: Host,
    lhs: Tensor<B, D>,
    rhs: Tensor<B, D>,
    kernel: fn(&FlexTensor, &FlexTensor) -> FlexTensor,
) -> Tensor<B, D> {
    dispatch(
        host,
        [primitive(lhs), primitive(rhs)],
        |[lhs, rhs]| kernel(&lhs, &rhs),
        |inputs| recorded_product(inputs, kernel),
    )
}

/// `x @ weight + bias`, recorded as one op.
#[derive(Debug)]
struct LinearOp;

/// `lhs @ rhs` in some output layout (also the bias-free linear: `rhs` may be a `[k, n]` weight
/// shared by all of `lhs`'s matrices), recorded as one op.
#[derive(Debug)]
struct ProductOp;

/// What the backward needs: the left operand when the right one has a gradient to compute,
/// the right one when the left one has, and the right one's rank (2: a weight shared by all of
/// the left operand's matrices).
type Kept = (Option<FlexTensor>, Option<FlexTensor>, usize);

impl Backward<Flex, 3> for LinearOp {
    type State = Kept;

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let grad = grads.consume::<Flex>(&ops.node);
        let [x_node, weight_node, bias_node] = ops.parents;
        let (x, weight, _) = ops.state;
        if let (Some(node), Some(weight)) = (x_node, &weight) {
            grads.register::<Flex>(node.id, lhs_grad(&grad, weight));
        }
        if let (Some(node), Some(x)) = (weight_node, &x) {
            grads.register::<Flex>(node.id, rhs_grad(x, &grad, 2));
        }
        if let Some(node) = bias_node {
            grads.register::<Flex>(node.id, column_sums(&grad));
        }
    }
}

impl Backward<Flex, 2> for ProductOp {
    type State = Kept;

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let grad = grads.consume::<Flex>(&ops.node);
        let [lhs_node, rhs_node] = ops.parents;
        let (lhs, rhs, rhs_rank) = ops.state;
        if let (Some(node), Some(rhs)) = (lhs_node, &rhs) {
            grads.register::<Flex>(node.id, lhs_grad(&grad, rhs));
        }
        if let (Some(node), Some(lhs)) = (rhs_node, &lhs) {
            grads.register::<Flex>(node.id, rhs_grad(lhs, &grad, rhs_rank));
        }
    }
}

fn recorded_product(
    inputs: [FloatTensor<HostTrain>; 2],
    kernel: impl Fn(&FlexTensor, &FlexTensor) -> FlexTensor,
) -> FloatTensor<HostTrain> {
    record(
        ProductOp,
        inputs,
        |[lhs, rhs]| (kernel(&lhs.primitive, &rhs.primitive), kept(&lhs, &rhs)),
        |[lhs, rhs]| kernel(&lhs.primitive, &rhs.primitive),
    )
}

fn kept(lhs: &FloatTensor<HostTrain>, rhs: &FloatTensor<HostTrain>) -> Kept {
    (
        rhs.is_tracked().then(|| lhs.primitive.clone()),
        lhs.is_tracked().then(|| rhs.primitive.clone()),
        rhs.primitive.layout().num_dims(),
    )
}

/// d(lhs) = grad @ rhsᵀ, in lhs's shape (rhs shared or batched alike).
fn lhs_grad(grad: &FlexTensor, rhs: &FlexTensor) -> FlexTensor {
    let rank = rhs.layout().num_dims();
    product(grad, &rhs.transpose(rank - 2, rank - 1), None)
}

/// d(rhs) = lhsᵀ @ grad, in rhs's shape: `[k, n]` summed over all of lhs's rows when rhs was a
/// shared weight (`rhs_rank` 2), else per batch.
fn rhs_grad(lhs: &FlexTensor, grad: &FlexTensor, rhs_rank: usize) -> FlexTensor {
    let rank = lhs.layout().num_dims();
    if rhs_rank == 2 && rank > 2 {
        let lhs = as_rows(lhs).unwrap_or_else(|| rows_of_contiguous(lhs));
        let grad = as_rows(grad).unwrap_or_else(|| rows_of_contiguous(grad));
        return product(&lhs.transpose(0, 1), &grad, None);
    }
    product(&lhs.transpose(rank - 2, rank - 1), grad, None)
}

/// The sum of `grad`'s rows (`[..., n]` -> `[n]`): a bias's gradient.
fn column_sums(grad: &FlexTensor) -> FlexTensor {
    let grad = grad.to_contiguous();
    let n = grad.layout().shape()[grad.layout().num_dims() - 1];
    let mut sums = vec![0.0f32; n];
    for row in grad.storage::<f32>().chunks_exact(n.max(1)) {
        sums.iter_mut().zip(row).for_each(|(s, v)| *s += v);
    }
    tensor(sums, vec![n])
}

/// `t` (`[..., m, k]`) as one `[rows, k]` matrix without copying, when its leading dimensions
/// are laid out like rows.
fn as_rows(t: &FlexTensor) -> Option<FlexTensor> {
    let layout = t.layout();
    let rank = layout.num_dims();
    let (shape, strides) = (layout.shape(), layout.strides());
    let mut rows = shape[rank - 2];
    let mut next = strides[rank - 2] * rows as isize;
    for d in (0..rank - 2).rev() {
        if shape[d] > 1 && strides[d] != next {
            return None;
        }
        rows *= shape[d];
        next *= shape[d] as isize;
    }
    let merged = Layout::new(
        Shape::from(vec![rows, shape[rank - 1]]),
        vec![strides[rank - 2], strides[rank - 1]],
        layout.start_offset(),
    );
    Some(t.clone().with_layout(merged))
}

fn rows_of_contiguous(t: &FlexTensor) -> FlexTensor {
    let rank = t.layout().num_dims();
    let k = t.layout().shape()[rank - 1];
    t.to_contiguous().reshape(Shape::from(vec![t.layout().num_elements() / k.max(1), k]))
}

/// One operand: its buffer, the element offset of each of its matrices (one for a shared
/// matrix) and the strides within a matrix.
pub(crate) struct Operand<'a> {
    data: &'a [f32],
    offsets: Vec<isize>,
    pub(crate) row_stride: isize,
    pub(crate) col_stride: isize,
}

impl<'a> Operand<'a> {
    pub(crate) fn new(t: &'a FlexTensor) -> Self {
        let layout = t.layout();
        let rank = layout.num_dims();
        let (shape, strides) = (layout.shape(), layout.strides());
        let mut offsets = vec![layout.start_offset() as isize];
        for d in 0..rank - 2 {
            let (size, stride) = (shape[d], strides[d]);
            offsets = offsets.iter().flat_map(|&o| (0..size).map(move |i| o + i as isize * stride)).collect();
        }
        Self { data: t.storage::<f32>(), offsets, row_stride: strides[rank - 2], col_stride: strides[rank - 1] }
    }

    pub(crate) fn at(&self, batch: usize) -> *const f32 {
        let offset = self.offsets[if self.offsets.len() == 1 { 0 } else { batch }];
        self.data.as_ptr().wrapping_offset(offset)
    }
}

/// `lhs @ rhs (+ bias on every row)` into a new contiguous tensor.
///
/// lhs `[..., m, k]`; rhs `[..., k, n]` with the same leading dimensions, or `[k, n]` for all
/// of lhs's matrices; bias `[n]`. Output `[..., m, n]`.
fn product(lhs: &FlexTensor, rhs: &FlexTensor, bias: Option<&FlexTensor>) -> FlexTensor {
    let (lhs_rank, rhs_rank) = (lhs.layout().num_dims(), rhs.layout().num_dims());
    let lhs_shape = lhs.layout().shape().clone();
    let mut out_shape: Vec<usize> = (0..lhs_rank - 1).map(|d| lhs_shape[d]).collect();
    out_shape.push(rhs.layout().shape()[rhs_rank - 1]);
    if rhs_rank == 2
        && lhs_rank > 2
        && let Some(rows) = as_rows(lhs)
    {
        let flat = product(&rows, rhs, bias);
        return flat.with_layout(Layout::contiguous(Shape::from(out_shape)));
    }

    let (m, k, n) = (lhs_shape[lhs_rank - 2], lhs_shape[lhs_rank - 1], out_shape[lhs_rank - 1]);
    let batches: usize = out_shape[..lhs_rank - 2].iter().product();
    let (size, len) = (m * n, batches * m * n);
    let bias = bias.map(FlexTensor::to_contiguous);
    let mut out: Vec<f32> = Vec::with_capacity(len);
    let spare = &mut out.spare_capacity_mut()[..len];
    if let Some(bias) = &bias {
        let bias = bias.storage::<f32>();
        assert_eq!(bias.len(), n, "a bias of {} for {n} outputs", bias.len());
        let fill = |rows: &mut [MaybeUninit<f32>]| {
            for row in rows.chunks_exact_mut(n.max(1)) {
                for (slot, value) in row.iter_mut().zip(bias) {
                    slot.write(*value);
                }
            }
        };
        // In parallel when large: the first write to each fresh page is also where the kernel
        // zeroes it, a serial share of a bert-base step when done on one thread.
        if len >= FILL_PARALLEL {
            spare.par_chunks_mut(n.max(1) * (FILL_PARALLEL / 16 / n.max(1)).max(1)).for_each(fill);
        } else {
            fill(spare);
        }
    } else if k == 0 {
        spare.iter_mut().for_each(|slot| {
            slot.write(0.0);
        });
    }
    if k > 0 && len > 0 {
        let (lhs, rhs) = (Operand::new(lhs), Operand::new(rhs));
        let accumulate = bias.is_some();
        let one = |out: &mut [MaybeUninit<f32>], batch: usize, threads: gemm::Parallelism| {
            let dst = out.as_mut_ptr().cast::<f32>();
            gemm_one(
                dst,
                n,
                (m, k, n),
                (lhs.at(batch), lhs.row_stride, lhs.col_stride),
                (rhs.at(batch), rhs.row_stride, rhs.col_stride),
                accumulate,
                threads,
            );
        };
        let work = m * n * k;
        if batches == 1 || (work >= PARALLEL_WORK && batches < 4) {
            let threads = if work >= PARALLEL_WORK { gemm::Parallelism::Rayon(0) } else { gemm::Parallelism::None };
            spare.chunks_mut(size).enumerate().for_each(|(b, out)| one(out, b, threads));
        } else if work * batches >= PARALLEL_WORK {
            spare.par_chunks_mut(size).enumerate().for_each(|(b, out)| one(out, b, gemm::Parallelism::None));
        } else {
            spare.chunks_mut(size).enumerate().for_each(|(b, out)| one(out, b, gemm::Parallelism::None));
        }
    }
    // SAFETY: the first `len` elements were written above: by the bias or zero fill, or by gemm,
    // which writes every element of each `m x n` block when it does not read them (`k > 0`).
    #[allow(unsafe_code)]
    unsafe {
        out.set_len(len)
    };
    tensor(out, out_shape)
}

/// `lhs @ rhs` for `[b, h, m, k] @ [b, h, k, n]`, written as `[b, m, h, n]` and returned as the
/// `[b, h, m, n]` view of it.
fn heads_product(lhs: &FlexTensor, rhs: &FlexTensor) -> FlexTensor {
    let shape = lhs.layout().shape().clone();
    let (b, h, m, k) = (shape[0], shape[1], shape[2], shape[3]);
    let n = rhs.layout().shape()[3];
    let (item, len) = (h * m * n, b * h * m * n);
    if k == 0 || len == 0 {
        return product(lhs, rhs, None);
    }
    let (lhs_op, rhs_op) = (Operand::new(lhs), Operand::new(rhs));
    let mut out: Vec<f32> = Vec::with_capacity(len);
    // One batch item per task: its `m x (h n)` block holds all of its heads side by side.
    out.spare_capacity_mut()[..len].par_chunks_mut(item).enumerate().with_max_len(1).for_each(|(i, block)| {
        for head in 0..h {
            let matrix = i * h + head;
            let dst = block[head * n..].as_mut_ptr().cast::<f32>();
            gemm_one(
                dst,
                h * n,
                (m, k, n),
                (lhs_op.at(matrix), lhs_op.row_stride, lhs_op.col_stride),
                (rhs_op.at(matrix), rhs_op.row_stride, rhs_op.col_stride),
                false,
                gemm::Parallelism::None,
            );
        }
    });
    // SAFETY: gemm wrote every element: head `h`'s `m x n` block sits at columns `h n ..
    // (h + 1) n` of its item's `m` rows of `h n`, and the blocks tile each item exactly.
    #[allow(unsafe_code)]
    unsafe {
        out.set_len(len)
    };
    let strides = vec![item as isize, n as isize, (h * n) as isize, 1];
    let view = Layout::new(Shape::from(vec![b, h, m, n]), strides, 0);
    tensor(out, vec![len]).with_layout(view)
}

/// One `m x k` by `k x n` product into a row-major `m x n` block at `dst` (row stride `dst_rs`),
/// overwriting it, or adding to it when `accumulate`.
pub(crate) fn gemm_one(
    dst: *mut f32,
    dst_rs: usize,
    (m, k, n): (usize, usize, usize),
    (lhs, lhs_rs, lhs_cs): (*const f32, isize, isize),
    (rhs, rhs_rs, rhs_cs): (*const f32, isize, isize),
    accumulate: bool,
    threads: gemm::Parallelism,
) {
    // SAFETY: `dst` points at `m` rows of `n` writable f32s, `dst_rs` apart; `lhs` and `rhs`
    // point into their tensors' buffers, where the layouts' strides keep every `m x k` and
    // `k x n` element in bounds (Burn validated the layouts when it made the views). gemm reads
    // `dst` only when `accumulate`, when the caller has initialised it.
    #[allow(unsafe_code)]
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            1,
            dst_rs as isize,
            accumulate,
            lhs,
            lhs_cs,
            lhs_rs,
            rhs,
            rhs_cs,
            rhs_rs,
            1.0f32,
            1.0f32,
            false,
            false,
            false,
            threads,
        );
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::testing::{assert_close as close, values};
    use burn::tensor::Distribution;

    type Train = HostTrain;

    fn random<const D: usize>(shape: [usize; D]) -> Tensor<Flex, D> {
        Tensor::random(shape, Distribution::Normal(0.0, 1.0), &Default::default())
    }

    /// Values and all three gradients equal Burn's `linear`, on a strided (transposed) input.
    #[test]
    fn linear_matches_burn_forward_and_backward() {
        let _generator = crate::testing::generator();
        let x = random([3, 7, 5]).swap_dims(0, 1); // [7, 3, 5], not contiguous
        let (w, b) = (random([5, 4]), random([4]));
        let upstream = random([7, 3, 4]);
        let run = |ours: bool| {
            let x = Tensor::<Train, 3>::from_inner(x.clone()).require_grad();
            let w = Tensor::<Train, 2>::from_inner(w.clone()).require_grad();
            let b = Tensor::<Train, 1>::from_inner(b.clone()).require_grad();
            let y = if ours {
                linear(x.clone(), w.clone(), Some(b.clone()))
            } else {
                burn::tensor::module::linear(x.clone(), w.clone(), Some(b.clone()))
            };
            let grads = (y.clone() * Tensor::from_inner(upstream.clone())).sum().backward();
            let g = |t: Option<Tensor<Flex, 3>>| values(t.unwrap());
            [values(y), g(x.grad(&grads)), values(w.grad(&grads).unwrap()), values(b.grad(&grads).unwrap())]
        };
        for (ours, burns) in run(true).iter().zip(run(false).iter()) {
            close(ours, burns, 1e-5);
        }
    }

    /// Shapes that do not fit never reach the kernel (which trusts them): Burn reports them.
    #[test]
    #[should_panic]
    fn a_bias_of_the_wrong_length_is_burns_error() {
        let _generator = crate::testing::generator();
        let _ = linear(random([3, 5]), random([5, 4]), Some(random([3])));
    }

    /// A frozen weight: only the input gets a gradient, and the op keeps no activations.
    #[test]
    fn frozen_weight_gets_no_gradient() {
        let _generator = crate::testing::generator();
        let x = Tensor::<Train, 2>::from_inner(random([6, 5])).require_grad();
        let w = Tensor::<Train, 2>::from_inner(random([5, 3]));
        let grads = linear(x.clone(), w.clone(), None).sum().backward();
        assert!(w.grad(&grads).is_none());
        let expected = values(w.inner().sum_dim(1).reshape([1, 5]).repeat_dim(0, 6));
        close(&values(x.grad(&grads).unwrap()), &expected, 1e-5);
    }

    /// Batched products (the attention's), with a transposed operand, against Burn's matmul.
    #[test]
    fn matmul_matches_burn_forward_and_backward() {
        let _generator = crate::testing::generator();
        let (a, b) = (random([2, 3, 6, 4]), random([2, 3, 6, 4]));
        let upstream = random([2, 3, 6, 6]);
        let run = |ours: bool| {
            let a = Tensor::<Train, 4>::from_inner(a.clone()).require_grad();
            let b = Tensor::<Train, 4>::from_inner(b.clone()).require_grad();
            let bt = b.clone().swap_dims(2, 3);
            let y = if ours { matmul(a.clone(), bt) } else { a.clone().matmul(bt) };
            let grads = (y.clone() * Tensor::from_inner(upstream.clone())).sum().backward();
            [values(y), values(a.grad(&grads).unwrap()), values(b.grad(&grads).unwrap())]
        };
        for (ours, burns) in run(true).iter().zip(run(false).iter()) {
            close(ours, burns, 1e-5);
        }
    }

    /// The fused attention dropout and product: bit for bit the values and gradients of the
    /// dropout followed by the product, with the probabilities computed from a tracked input
    /// (so another op holds them) or a leaf, and with or without a gradient for `v`.
    #[test]
    fn dropout_matmul_into_heads_is_dropout_then_product() {
        let _generator = crate::testing::generator();
        let (x, v) = (random([2, 3, 40, 40]), random([2, 3, 40, 8]));
        let upstream = random([2, 3, 40, 8]);
        let dropout = Dropout::new(0.3);
        let device = Default::default();
        let run = |fused: bool, computed: bool, v_grad: bool| {
            Train::seed(&device, 21);
            let x = Tensor::<Train, 4>::from_inner(x.clone()).require_grad();
            let mut v = Tensor::<Train, 4>::from_inner(v.clone());
            if v_grad {
                v = v.require_grad();
            }
            let probs = if computed { burn::tensor::activation::softmax(x.clone(), 3) } else { x.clone() };
            let y = if fused {
                dropout_matmul_into_heads(probs, v.clone(), &dropout)
            } else {
                matmul_into_heads(dropout.forward(probs), v.clone())
            };
            let grads = (y.clone() * Tensor::from_inner(upstream.clone())).sum().backward();
            let v_grad = v.grad(&grads).map(values).unwrap_or_default();
            [values(y), values(x.grad(&grads).unwrap()), v_grad]
        };
        for computed in [true, false] {
            for v_grad in [true, false] {
                assert_eq!(run(true, computed, v_grad), run(false, computed, v_grad));
            }
        }
        // Without autodiff it is the product alone (no dropout).
        let plain = dropout_matmul_into_heads(x.clone(), v.clone(), &dropout);
        assert_eq!(values(plain), values(matmul_into_heads(x, v)));
    }

    /// The heads-interleaved output: same values and gradients as Burn's matmul, and merging
    /// the heads afterwards needs no copy (the swapped view is contiguous).
    #[test]
    fn matmul_into_heads_matches_burn_and_merges_for_free() {
        let _generator = crate::testing::generator();
        let (p, v) = (random([2, 3, 6, 6]), random([2, 3, 6, 4]));
        let upstream = random([2, 6, 12]);
        let run = |ours: bool| {
            let p = Tensor::<Train, 4>::from_inner(p.clone()).require_grad();
            let v = Tensor::<Train, 4>::from_inner(v.clone()).require_grad();
            let y = if ours { matmul_into_heads(p.clone(), v.clone()) } else { p.clone().matmul(v.clone()) };
            let merged = y.swap_dims(1, 2).reshape([2, 6, 12]);
            let grads = (merged.clone() * Tensor::from_inner(upstream.clone())).sum().backward();
            [values(merged), values(p.grad(&grads).unwrap()), values(v.grad(&grads).unwrap())]
        };
        for (ours, burns) in run(true).iter().zip(run(false).iter()) {
            close(ours, burns, 1e-5);
        }
        let merged = matmul_into_heads(p, v).swap_dims(1, 2).into_primitive().tensor();
        assert!(merged.is_contiguous());
    }

    /// Inference (`Flex`), the parallel paths (large products, many small ones) and the
    /// broadcasting case that is left to Burn.
    #[test]
    fn inference_and_large_shapes_match_burn() {
        let _generator = crate::testing::generator();
        let (x, w, b) = (random([4, 100, 96]), random([96, 200]), random([200]));
        let ours = values(linear(x.clone(), w.clone(), Some(b.clone())));
        close(&ours, &values(burn::tensor::module::linear(x, w, Some(b))), 1e-4);

        let (p, q) = (random([8, 4, 64, 32]), random([8, 4, 32, 64]));
        close(&values(matmul(p.clone(), q.clone())), &values(p.matmul(q)), 1e-4);

        let (p, q) = (random([2, 3, 5, 4]), random([1, 3, 4, 2]));
        close(&values(matmul(p.clone(), q.clone())), &values(p.matmul(q)), 0.0);
    }
}
