//! bf16 linear layers on the CPU: a weight held in bf16 (converted once, at load), the input
//! rounded to bf16 at each product, f32 accumulation, what PyTorch's CPU autocast does for
//! `F.linear`.
//!
//! The product is gemmkit's bf16 GEMM, which uses AVX512-BF16's `vdpbf16ps` (two bf16 products
//! into one f32 lane) where the CPU has it, about twice the f32 GEMM's rate on the machines
//! measured (`docs/benchmarks.md`). Its output is bf16 (rounded once from the f32 accumulator),
//! as autocast's is; it is widened back to f32 with the bias added in f32, so the layers after
//! it (residual adds, LayerNorm, softmax, GELU) run in f32 as before.
//!
//! [`available`] says whether the CPU has the instruction; on one without it gemmkit widens
//! to f32 and gains nothing, so callers keep such a model in f32 ([`crate::linear`] still
//! computes a bf16 weight correctly there, only not faster).

use std::mem::MaybeUninit;
use std::sync::OnceLock;

use burn::backend::flex::{FlexTensor, Layout};
use burn::tensor::backend::Backend;
use burn::tensor::{Bytes, DType, Shape, Tensor, TensorPrimitive, bf16};
use gemmkit::{MatMut, MatRef, Parallelism};
use multiversion::multiversion;
use rayon::prelude::*;

use crate::host::{Host, HostTrain, primitive, same, tensor};

/// Rows of the output widened by one task.
const ROWS_PER_TASK: usize = 64;

/// Values narrowed by one task.
const NARROW_BLOCK: usize = 1 << 15;

/// Below this many multiply-adds a product runs on one thread (as the f32 kernels).
const PARALLEL_WORK: usize = 192 * 192 * 192;

/// Rows of a product done by one task when there are at least four such blocks: each task
/// rounds its rows of the input, multiplies them on its thread and widens its rows of the
/// output, so the bf16 copies of the input and output are a block's, not the whole batch's
/// (which the allocator kept after a 64-client serving burst).
const BLOCK_ROWS: usize = 256;

/// Whether this CPU computes bf16 products natively (AVX512-BF16), so that a model held in
/// bf16 runs faster than in f32. Detected once, at run time.
pub fn available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            std::arch::is_x86_feature_detected!("avx512f") && std::arch::is_x86_feature_detected!("avx512bf16")
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    })
}

/// A weight as bf16, each value rounded to the nearest (ties to even), for [`crate::linear`] to
/// multiply in bf16. On other backends, Burn's cast (Burn's own cast on the CPU goes through
/// f64 and does not always give the nearest bf16).
pub fn narrow<B: Backend, const D: usize>(weight: Tensor<B, D>) -> Tensor<B, D> {
    match (Host::of::<B>(), weight.dtype()) {
        (Some(Host::Infer), DType::F32) => {}
        // Training: the frozen weight's values, untracked (a base weight gets no gradient).
        (Some(Host::Train), DType::F32) => {
            let weight: Tensor<HostTrain, D> = same(weight);
            return same(Tensor::<HostTrain, D>::from_inner(narrow(weight.inner())));
        }
        _ => return weight.cast(DType::BF16),
    }
    let t = same::<_, FlexTensor>(primitive(weight));
    let narrowed = bf16_tensor(narrowed(&t, true), t.layout().shape().clone());
    Tensor::from_primitive(TensorPrimitive::Float(same(narrowed)))
}

/// `x @ weight + bias` with `x` (`[..., k]`) and `bias` (`[n]`) f32 and `weight` (`[k, n]`)
/// bf16: `x` rounded to bf16, the products accumulated in f32, the result rounded to bf16 and
/// widened back to f32 with the bias added. Output `[..., n]`, f32.
pub(crate) fn linear_bf16(x: &FlexTensor, weight: &FlexTensor, bias: Option<&FlexTensor>) -> FlexTensor {
    product_bf16(x, weight, false, bias)
}

/// `grad @ weightᵀ` (`[..., n]` by `[k, n]` transposed: `[..., k]`), the input's gradient of
/// [`linear_bf16`], the same way: `grad` rounded to bf16, f32 accumulation, rounded once.
pub(crate) fn input_grad_bf16(grad: &FlexTensor, weight: &FlexTensor) -> FlexTensor {
    product_bf16(grad, weight, true, None)
}

/// `x @ w (+ bias)`, or `x @ wᵀ` when `transposed`, for a bf16 `[k, n]` weight `w`.
fn product_bf16(x: &FlexTensor, weight: &FlexTensor, transposed: bool, bias: Option<&FlexTensor>) -> FlexTensor {
    let rank = x.layout().num_dims();
    let shape = x.layout().shape().clone();
    let [rows, cols] = [weight.layout().shape()[0], weight.layout().shape()[1]];
    let (k, n) = if transposed { (cols, rows) } else { (rows, cols) };
    let m: usize = (0..rank - 1).map(|d| shape[d]).product();
    let mut out_shape: Vec<usize> = (0..rank - 1).map(|d| shape[d]).collect();
    out_shape.push(n);

    let bias = bias.map(FlexTensor::to_contiguous);
    let bias = bias.as_ref().map(|b| b.storage::<f32>());
    if k > 0 && n > 0 && m >= 4 * BLOCK_ROWS {
        return tensor(product_by_blocks(x, weight, transposed, bias, (m, k, n)), out_shape);
    }
    let work = m * n * k;
    let parallel = work >= PARALLEL_WORK;
    let lhs = narrowed(x, parallel);
    let mut product = vec![bf16::ZERO; m * n];
    if k > 0 && m * n > 0 {
        let weight = weight.to_contiguous();
        let rhs = match transposed {
            false => MatRef::from_row_major(weight.storage::<bf16>(), k, n),
            true => MatRef::from_col_major(weight.storage::<bf16>(), k, n),
        };
        let threads = if parallel { Parallelism::Rayon(0) } else { Parallelism::Serial };
        gemmkit::gemm(
            bf16::ONE,
            MatRef::from_row_major(&lhs, m, k),
            rhs,
            bf16::ZERO,
            MatMut::from_row_major(&mut product, m, n),
            threads,
        );
    }
    drop(lhs);
    let mut out: Vec<f32> = Vec::with_capacity(m * n);
    let widen_rows = |(o, p): (&mut [MaybeUninit<f32>], &[bf16])| {
        for (o, p) in o.chunks_exact_mut(n).zip(p.chunks_exact(n)) {
            widen(o, p, bias);
        }
    };
    let spare = &mut out.spare_capacity_mut()[..m * n];
    let block = ROWS_PER_TASK * n.max(1);
    match (n, parallel) {
        (0, _) => {}
        (_, true) => spare.par_chunks_mut(block).zip(product.par_chunks(block)).for_each(widen_rows),
        (_, false) => spare.chunks_mut(block).zip(product.chunks(block)).for_each(widen_rows),
    }
    // SAFETY: `widen` wrote each of the `m * n` elements: the blocks tile them, each of `n`
    // columns a row (`n == 0` leaves nothing to write).
    #[allow(unsafe_code)]
    unsafe {
        out.set_len(m * n)
    };
    tensor(out, out_shape)
}

/// [`product_bf16`] in blocks of [`BLOCK_ROWS`] rows, one task each: the output's `m x n` f32s.
fn product_by_blocks(
    x: &FlexTensor,
    weight: &FlexTensor,
    transposed: bool,
    bias: Option<&[f32]>,
    (m, k, n): (usize, usize, usize),
) -> Vec<f32> {
    let x = crate::host::contiguous(x);
    let xs = crate::host::elements(&x);
    let weight = weight.to_contiguous();
    let weight = weight.storage::<bf16>();
    let mut out: Vec<f32> = Vec::with_capacity(m * n);
    out.spare_capacity_mut()[..m * n].par_chunks_mut(BLOCK_ROWS * n).zip(xs.par_chunks(BLOCK_ROWS * k)).for_each(
        |(out, rows_in)| {
            let rows = out.len() / n;
            let mut lhs = vec![bf16::ZERO; rows * k];
            narrow_slice(&mut lhs, rows_in);
            let rhs = match transposed {
                false => MatRef::from_row_major(weight, k, n),
                true => MatRef::from_col_major(weight, k, n),
            };
            let mut product = vec![bf16::ZERO; rows * n];
            let dst = MatMut::from_row_major(&mut product, rows, n);
            gemmkit::gemm(bf16::ONE, MatRef::from_row_major(&lhs, rows, k), rhs, bf16::ZERO, dst, Parallelism::Serial);
            for (o, p) in out.chunks_exact_mut(n).zip(product.chunks_exact(n)) {
                widen(o, p, bias);
            }
        },
    );
    // SAFETY: each task widened every row of its block into `out` (the blocks tile the `m`
    // rows of `n`, and `n > 0`).
    #[allow(unsafe_code)]
    unsafe {
        out.set_len(m * n)
    };
    out
}

/// An f32 tensor's values, in its logical order, as one contiguous bf16 buffer.
fn narrowed(x: &FlexTensor, parallel: bool) -> Vec<bf16> {
    let x = crate::host::contiguous(x);
    let src = &x.storage::<f32>()[..x.layout().num_elements()];
    let mut dst = vec![bf16::ZERO; src.len()];
    if parallel {
        dst.par_chunks_mut(NARROW_BLOCK).zip(src.par_chunks(NARROW_BLOCK)).for_each(|(d, s)| narrow_slice(d, s));
    } else {
        narrow_slice(&mut dst, src);
    }
    dst
}

/// `dst[i] = bf16(src[i])`, rounded to nearest even (NaN stays NaN).
#[multiversion(targets = "simd")]
fn narrow_slice(dst: &mut [bf16], src: &[f32]) {
    for (d, s) in dst.iter_mut().zip(src) {
        *d = bf16::from_f32(*s);
    }
}

/// One output row: `out[j] = f32(product[j]) + bias[j]`, every element written.
#[multiversion(targets = "simd")]
fn widen(out: &mut [MaybeUninit<f32>], product: &[bf16], bias: Option<&[f32]>) {
    match bias {
        Some(bias) => {
            for ((o, p), b) in out.iter_mut().zip(product).zip(bias) {
                o.write(p.to_f32() + b);
            }
        }
        None => {
            for (o, p) in out.iter_mut().zip(product) {
                o.write(p.to_f32());
            }
        }
    }
}

/// A contiguous bf16 tensor of `shape` holding `values`.
fn bf16_tensor(values: Vec<bf16>, shape: Shape) -> FlexTensor {
    FlexTensor::new(Bytes::from_elems(values), Layout::contiguous(shape), DType::BF16)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::host::HostTrain;
    use crate::linear;
    use crate::testing::{assert_close as close, values};
    use burn::backend::Flex;
    use burn::tensor::Distribution;

    fn random<const D: usize>(shape: [usize; D]) -> Tensor<Flex, D> {
        Tensor::random(shape, Distribution::Normal(0.0, 1.0), &Default::default())
    }

    fn round(v: f32) -> f64 {
        bf16::from_f32(v).to_f32() as f64
    }

    /// Each output is the product of the bf16-rounded operands (summed exactly here, in f64),
    /// rounded once to bf16, plus the f32 bias: within one bf16 step of it (the kernel sums in
    /// f32, in its own order), and without a bias every output is a bf16 value. (The f32
    /// weights themselves, or weights truncated instead of rounded, miss by several steps.)
    fn check(x: Tensor<Flex, 3>, w: Tensor<Flex, 2>, bias: Option<Tensor<Flex, 1>>) {
        let [k, n] = w.dims();
        let ours = values(linear(x.clone(), narrow(w.clone()), bias.clone()));
        let (xs, ws) = (values(x.clone()), values(w));
        let bs = bias.as_ref().map(|b| values(b.clone()));
        assert_eq!(ours.len(), xs.len() / k * n);
        for (row, (xr, out)) in xs.chunks(k).zip(ours.chunks(n)).enumerate() {
            for (j, &got) in out.iter().enumerate() {
                let exact: f64 = (0..k).map(|i| round(xr[i]) * round(ws[i * n + j])).sum();
                // One bf16 step of the result, and the f32 sum's own rounding (a few f32
                // steps of the terms' magnitudes) where the terms cancel.
                let magnitude: f64 = (0..k).map(|i| (round(xr[i]) * round(ws[i * n + j])).abs()).sum();
                let step = exact.abs() as f32 * 2f32.powi(-7) + magnitude as f32 * 2f32.powi(-20);
                let expected = bf16::from_f64(exact).to_f32() + bs.as_ref().map_or(0.0, |b| b[j]);
                assert!(
                    (got - expected).abs() <= step,
                    "row {row}, output {j}: {got} but {expected} (exact {exact}, step {step})"
                );
                if bs.is_none() {
                    assert_eq!(bf16::from_f32(got).to_f32(), got, "row {row}, output {j}: {got} is not a bf16 value");
                }
            }
        }
    }

    #[test]
    fn the_product_of_rounded_operands_rounded_once() {
        let _generator = crate::testing::generator();
        // A strided (transposed) input; small (one thread) and large (parallel) products.
        check(random([3, 7, 40]).swap_dims(0, 1), random([40, 24]), Some(random([24])));
        check(random([2, 5, 33]), random([33, 17]), None);
        check(random([4, 100, 96]), random([96, 200]), Some(random([200])));
        // In row blocks (at least four of 256), a strided input and a last short block.
        check(random([3, 350, 40]).swap_dims(0, 1), random([40, 24]), Some(random([24])));
    }

    /// Each weight is the nearest bf16 (ties to even), as PyTorch's `.to(torch.bfloat16)`.
    #[test]
    fn narrowing_rounds_to_nearest() {
        let values_in = [
            1.0f32,
            1.0 + 2f32.powi(-8),
            1.0 + 3.0 * 2f32.powi(-8),
            1.0 + 2f32.powi(-8) + 2f32.powi(-20),
            -3.3e-5,
            7.1e30,
        ];
        let w = Tensor::<Flex, 1>::from_floats(values_in, &Default::default());
        let narrowed = narrow(w);
        assert_eq!(narrowed.dtype(), DType::BF16);
        let got = values(narrowed.cast(DType::F32));
        let expected: Vec<f32> = values_in.iter().map(|v| bf16::from_f32(*v).to_f32()).collect();
        assert_eq!(got, expected);
        // Ties to even: 1 + 2^-8 is halfway between 1 and 1 + 2^-7, and goes to 1.
        assert_eq!(got[1], 1.0);
        assert_eq!(got[2], 1.0 + 2f32.powi(-6));
        assert_eq!(got[3], 1.0 + 2f32.powi(-7));
    }

    /// Close to the f32 layer: what serving in bf16 changes in a layer's output.
    #[test]
    fn close_to_the_f32_layer() {
        let _generator = crate::testing::generator();
        let (x, w, b) = (random([4, 64, 384]), random([384, 96]).div_scalar(20.0), random([96]));
        let f32s = values(linear(x.clone(), w.clone(), Some(b.clone())));
        let bf16s = values(linear(x, narrow(w), Some(b)));
        let worst = f32s.iter().zip(&bf16s).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        assert!(worst > 0.0 && worst < 0.05, "largest difference {worst}");
    }

    /// Training: the same forward as inference, one recorded op whose input gradient is
    /// `grad @ weightᵀ` of the bf16-rounded gradient and weight, rounded once (within one bf16
    /// step of the exact sum); the bias's gradient is the f32 sum of the gradient's rows, as
    /// f32's; the frozen weight gets none. Narrowing under autodiff gives an untracked weight.
    #[test]
    fn training_takes_the_input_gradient_in_bf16() {
        let _generator = crate::testing::generator();
        // 21 rows (one product) and 1,050 (in row blocks).
        for rows in [7, 350] {
            let (x, w, b) = (random([3, rows, 40]).swap_dims(0, 1), random([40, 24]), random([24]));
            let upstream = random([rows, 3, 24]);
            let held = narrow(w.clone());
            let x_t = Tensor::<HostTrain, 3>::from_inner(x.clone()).require_grad();
            let b_t = Tensor::<HostTrain, 1>::from_inner(b.clone()).require_grad();
            let w_t = narrow(Tensor::<HostTrain, 2>::from_inner(w.clone()));
            assert!(!w_t.is_require_grad() && w_t.dtype() == DType::BF16);
            assert_eq!(values(w_t.clone().inner().cast(DType::F32)), values(held.clone().cast(DType::F32)));
            let y = linear(x_t.clone(), w_t.clone(), Some(b_t.clone()));
            assert_eq!(values(y.clone().inner()), values(linear(x.clone(), held, Some(b))));
            let grads = (y * Tensor::from_inner(upstream.clone())).sum().backward();
            assert!(w_t.grad(&grads).is_none());
            let dx = values(x_t.grad(&grads).unwrap());
            let (gs, ws) = (values(upstream.clone()), values(w));
            let (k, n) = (40, 24);
            for (row, (g, out)) in gs.chunks(n).zip(dx.chunks(k)).enumerate() {
                for (i, &got) in out.iter().enumerate() {
                    let terms: Vec<f64> = (0..n).map(|j| round(g[j]) * round(ws[i * n + j])).collect();
                    let exact: f64 = terms.iter().sum();
                    let magnitude: f64 = terms.iter().map(|t| t.abs()).sum();
                    let step = exact.abs() as f32 * 2f32.powi(-7) + magnitude as f32 * 2f32.powi(-20);
                    let expected = bf16::from_f64(exact).to_f32();
                    assert!((got - expected).abs() <= step, "row {row}, input {i}: {got} but {expected}");
                }
            }
            let db = values(b_t.grad(&grads).unwrap());
            // f32 sums of up to 1,050 terms in two orders (row blocks add their partial sums as
            // their threads finish): ~1e-5 apart, so 1e-5 failed now and then (CI, 2026-12-07).
            close(&db, &values(upstream.sum_dim(0).sum_dim(1).reshape([24])), 1e-4);
        }
    }

    /// Under autodiff with a trained (tracked) bf16 weight, on other backends and for an empty
    /// contraction, a bf16 weight is cast to f32 and the layer is the f32 layer of its values.
    #[test]
    fn elsewhere_a_bf16_weight_is_the_f32_layer_of_its_values() {
        let _generator = crate::testing::generator();
        let (x, w) = (random([2, 3, 8]), narrow(random([8, 5])));
        let as_f32 = w.clone().cast(DType::F32);
        let train = |w: Tensor<Flex, 2>| {
            let w = Tensor::<HostTrain, 2>::from_inner(w).require_grad();
            values(linear(Tensor::<HostTrain, 3>::from_inner(x.clone()), w, None).inner())
        };
        assert_eq!(train(w), train(as_f32));
        let empty = linear(random([2, 0]), narrow(random([0, 3])), Some(random([3])));
        assert_eq!(empty.dims(), [2, 3]);
    }
}
