//! Dropout as `torch.nn.Dropout`: while training (autodiff on), each element is zeroed with
//! probability `prob` and the others are scaled by `1 / (1 - prob)`; otherwise the identity.
//!
//! On the CPU training backend (`Autodiff<Flex>`, f32) the mask is a counter-based hash of (a
//! 64-bit seed drawn from the backend's generator, element index), applied in parallel, and the
//! op is recorded with the seed as its state: the backward computes the mask again instead of
//! keeping it (Burn's multiply by a mask tensor would keep an activation-sized f32 tensor per
//! dropout). `Backend::seed` still fixes every mask, which bit-exact resume needs. On other
//! backends (CUDA) and dtypes it does what Burn's `nn::Dropout` does.

use std::mem::MaybeUninit;

use burn::backend::Flex;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, unary};
use burn::backend::flex::{FlexTensor, Layout};
use burn::module::Module;
use burn::tensor::backend::Backend;
use burn::tensor::{Bytes, DType, Distribution, Tensor};
use multiversion::multiversion;
use rayon::prelude::*;

use crate::host::{Host, dispatch_train, owned_contiguous, primitive, record};

#[derive(Module, Clone, Debug)]
pub struct Dropout {
    pub prob: f64,
}

/// Elements per parallel task.
const BLOCK: usize = 1 << 14;

impl Dropout {
    /// # Panics
    /// If `prob` is not in `[0, 1]` (configs are checked before models are built).
    pub fn new(prob: f64) -> Self {
        assert!((0.0..=1.0).contains(&prob), "dropout probability {prob} is not in [0, 1]");
        Self { prob }
    }

    /// Whether [`Dropout::forward`] changes `x`: training (autodiff on) and a rate above 0.
    pub fn is_active<B: Backend, const D: usize>(&self, x: &Tensor<B, D>) -> bool {
        B::ad_enabled(&x.device()) && self.prob > 0.0
    }

    pub fn forward<B: Backend, const D: usize>(&self, input: Tensor<B, D>) -> Tensor<B, D> {
        let device = input.device();
        if !B::ad_enabled(&device) || self.prob == 0.0 {
            return input;
        }
        if !self.draws_host_mask(&input) {
            let keep = 1.0 - self.prob;
            let random = input.random_like(Distribution::Bernoulli(keep));
            return input * random * (1.0 / keep);
        }
        let mask = self.host_mask::<B>(&device);
        dispatch_train([primitive(input)], |inputs| {
            record(DropoutOp, inputs, |[x]| (mask.apply(x.primitive), mask), |[x]| mask.apply(x.primitive))
        })
    }

    /// The mask of the next draw, for ops that apply it themselves where
    /// [`Dropout::draws_host_mask`] holds (callers check), as [`Dropout::forward`] does.
    pub(crate) fn host_mask<B: Backend>(&self, device: &B::Device) -> Mask {
        Mask::new(self.prob, backend_seed::<B>(device))
    }

    /// Whether [`Dropout::forward`] applies a host mask to `x`: training (autodiff on), a rate
    /// above 0, `Autodiff<Flex>` and f32. Otherwise it is the identity or Burn's dropout.
    pub(crate) fn draws_host_mask<B: Backend, const D: usize>(&self, x: &Tensor<B, D>) -> bool {
        B::ad_enabled(&x.device()) && self.prob > 0.0 && Host::of_f32::<B>(&[x.dtype()]) == Some(Host::Train)
    }
}

/// The recorded op: its state is the mask's seed and rate, not the mask.
#[derive(Debug)]
struct DropoutOp;

impl Backward<Flex, 1> for DropoutOp {
    type State = Mask;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let mask = ops.state;
        unary::<Flex, _>(ops.parents, ops.node, grads, |grad| mask.apply(grad));
    }
}

/// A dropout mask as a pure function of its seed: element `i` (in row-major order) is dropped
/// where a 32-bit hash of (seed, i) is below `prob * 2^32` (probability `prob`, to within
/// 2^-32); kept elements are multiplied by `1 / (1 - prob)`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Mask {
    threshold: u32,
    scale: f32,
    seed: u64,
}

impl Mask {
    fn new(prob: f64, seed: u64) -> Self {
        let threshold = (prob * 4_294_967_296.0).min(4_294_967_295.0) as u32;
        Self { threshold, scale: (1.0 / (1.0 - prob)) as f32, seed }
    }

    /// `x` times the mask: over `x`'s buffer when nothing else holds it, else into a new one.
    pub(crate) fn apply(&self, x: FlexTensor) -> FlexTensor {
        let mut x = owned_contiguous(x);
        if x.is_unique() {
            x.storage_mut::<f32>()
                .par_chunks_mut(BLOCK)
                .enumerate()
                .for_each(|(b, chunk)| mask_in_place(chunk, (b * BLOCK) as u64, *self));
            return x;
        }
        let n = x.layout().num_elements();
        let mut out: Vec<f32> = Vec::with_capacity(n);
        out.spare_capacity_mut()[..n]
            .par_chunks_mut(BLOCK)
            .zip(x.storage::<f32>().par_chunks(BLOCK))
            .enumerate()
            .for_each(|(b, (dst, src))| mask_into(src, dst, (b * BLOCK) as u64, *self));
        // SAFETY: the chunks of the first `n` slots and of `x`'s `n` elements pair up one to one
        // (same length, same chunk size), and `mask_into` writes every slot of its chunk.
        #[allow(unsafe_code)]
        unsafe {
            out.set_len(n)
        };
        FlexTensor::new(Bytes::from_elems(out), Layout::contiguous(x.layout().shape().clone()), DType::F32)
    }

    /// `values`, elements `first..` of a tensor in row-major order, times the mask, in place:
    /// for ops that apply a mask to one block of a tensor at a time.
    pub(crate) fn apply_at(&self, values: &mut [f32], first: u64) {
        mask_in_place(values, first, *self);
    }

    /// Element `i`'s factor, 0 or `scale`: multiplied in rather than written, so that a NaN
    /// stays a NaN, as in torch's `x * mask * scale`.
    #[inline(always)]
    fn factor(&self, i: u64) -> f32 {
        let bits = (splitmix64(self.seed ^ i.wrapping_mul(0xd1b5_4a32_d192_ed03)) >> 32) as u32;
        if bits < self.threshold { 0.0 } else { self.scale }
    }
}

/// Elements `first..` of a tensor times the mask, in place. The loop is branch-free integer and
/// float arithmetic that vectorises in the AVX-512 and AVX2 clones.
#[multiversion(targets = "simd")]
fn mask_in_place(values: &mut [f32], first: u64, mask: Mask) {
    for (j, v) in values.iter_mut().enumerate() {
        *v *= mask.factor(first + j as u64);
    }
}

/// [`mask_in_place`] from `src` into the (uninitialised) `dst` of the same length.
#[multiversion(targets = "simd")]
fn mask_into(src: &[f32], dst: &mut [MaybeUninit<f32>], first: u64, mask: Mask) {
    for (j, (d, s)) in dst.iter_mut().zip(src).enumerate() {
        d.write(s * mask.factor(first + j as u64));
    }
}

/// 64 bits from the backend's own generator: four uniform draws of 16 bits.
fn backend_seed<B: Backend>(device: &B::Device) -> u64 {
    let draws = Tensor::<B, 1>::random([4], Distribution::Uniform(0.0, 65536.0), device);
    // Only the CPU backend draws host masks, and its reads cannot fail.
    let draws = crate::read::f32s(draws).unwrap_or_else(|e| panic!("the dropout seed: {e}"));
    draws.iter().fold(0u64, |acc, &x| (acc << 16) | (x as u64 & 0xffff))
}

/// SplitMix64's output function (Steele, Lea and Flood 2014): a well-mixed 64-bit hash of `x`.
#[inline(always)]
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::testing::values;
    use burn::backend::{Autodiff, Flex};

    type Train = Autodiff<Flex>;

    #[test]
    fn drops_at_the_rate_asked_and_rescales_the_rest() {
        let _generator = crate::testing::generator();
        let device = Default::default();
        Train::seed(&device, 7);
        let x = Tensor::<Train, 2>::ones([1000, 1000], &device) * 2.0;
        let out = values(Dropout::new(0.1).forward(x));
        let dropped = out.iter().filter(|&&v| v == 0.0).count() as f64 / out.len() as f64;
        // 1e6 Bernoulli(0.1) draws: standard deviation 3e-4.
        assert!((dropped - 0.1).abs() < 2e-3, "dropped {dropped}");
        assert!(out.iter().all(|&v| v == 0.0 || (v - 2.0 / 0.9).abs() < 1e-6));
    }

    #[test]
    fn the_backend_seed_fixes_the_mask() {
        let _generator = crate::testing::generator();
        let device = Default::default();
        let draw = |seed| {
            Train::seed(&device, seed);
            values(Dropout::new(0.5).forward(Tensor::<Train, 2>::ones([64, 300], &device)))
        };
        assert_eq!(draw(1), draw(1));
        assert_ne!(draw(1), draw(2));
    }

    #[test]
    fn identity_without_autodiff_or_with_zero_probability() {
        let _generator = crate::testing::generator();
        let device = Default::default();
        let x = Tensor::<Flex, 2>::ones([8, 8], &device);
        assert_eq!(values(Dropout::new(0.5).forward(x.clone())), values(x));
        let y = Tensor::<Train, 2>::ones([8, 8], &device);
        assert_eq!(values(Dropout::new(0.0).forward(y.clone())), values(y));
    }

    #[test]
    fn the_gradient_flows_through_kept_elements_only() {
        let _generator = crate::testing::generator();
        let device = Default::default();
        Train::seed(&device, 3);
        let x = Tensor::<Train, 2>::ones([32, 32], &device).require_grad();
        let out = Dropout::new(0.3).forward(x.clone());
        let kept = values(out.clone());
        let grads = out.sum().backward();
        let grad = x.grad(&grads).unwrap().into_data().into_vec::<f32>().unwrap();
        assert_eq!(grad, kept, "d(sum)/dx is the mask itself");
    }

    /// The mask is a function of the seed and the logical element index: the same for a strided
    /// view as for its contiguous copy, for an input held elsewhere (written into a new buffer) as
    /// for one dropped in place, and recomputed identically in the backward.
    #[test]
    fn the_mask_follows_logical_order_on_every_path() {
        let _generator = crate::testing::generator();
        let device = Default::default();
        let base = Tensor::<Flex, 3>::random([6, 5, 4000], Distribution::Normal(0.0, 1.0), &device);
        let strided = base.clone().swap_dims(0, 1);
        let contiguous = Tensor::<Flex, 3>::from_data(strided.to_data(), &device);
        let dropout = Dropout::new(0.25);
        let run = |x: Tensor<Flex, 3>, shared: bool| {
            Train::seed(&device, 11);
            let leaf = Tensor::<Train, 3>::from_inner(x).require_grad();
            // `leaf * 1.0` is a fresh buffer only the dropout holds (dropped in place); the leaf
            // itself is also held by the graph (dropped into a new buffer).
            let input = if shared { leaf.clone() } else { leaf.clone() * 1.0 };
            let out = dropout.forward(input);
            let grads = out.clone().sum().backward();
            (values(out), values(leaf.grad(&grads).unwrap()))
        };
        let (reference, mask) = run(contiguous.clone(), true);
        for (x, shared) in [(contiguous.clone(), false), (strided.clone(), true), (strided, false)] {
            let (out, grad) = run(x, shared);
            assert_eq!(out, reference);
            assert_eq!(grad, mask);
        }
        let kept = mask.iter().filter(|&&m| m != 0.0).count();
        assert!(kept > 0 && kept < mask.len());
        for ((&y, &m), &x) in reference.iter().zip(&mask).zip(&values(contiguous)) {
            assert_eq!(y, x * m, "output = input * d(output)/d(input)");
        }
    }

    #[test]
    fn a_nan_stays_a_nan_where_dropped() {
        let _generator = crate::testing::generator();
        let device = Default::default();
        Train::seed(&device, 5);
        let out = values(Dropout::new(0.9).forward(Tensor::<Train, 1>::full([256], f32::NAN, &device)));
        assert!(out.iter().all(|v| v.is_nan()));
    }

    /// In place when the buffer is the tensor's alone; a shared buffer (a tensor another op
    /// keeps for its backward) is left as it was.
    #[test]
    fn drops_in_place_only_when_nothing_else_holds_the_buffer() {
        let _generator = crate::testing::generator();
        let device = Default::default();
        let x =
            Tensor::<Flex, 2>::random([64, 1000], Distribution::Normal(0.0, 1.0), &device).into_primitive().tensor();
        let before = x.storage::<f32>().to_vec();
        let mask = Mask::new(0.5, 99);
        let out = mask.apply(x.clone());
        assert_ne!(out.bytes().as_ptr(), x.bytes().as_ptr());
        assert_eq!(x.storage::<f32>(), &before[..], "a shared input is not written");
        let address = x.bytes().as_ptr();
        let in_place = mask.apply(x);
        assert_eq!(in_place.bytes().as_ptr(), address);
        assert_eq!(in_place.storage::<f32>(), out.storage::<f32>());
    }
}
