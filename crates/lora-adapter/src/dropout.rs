//! Dropout as `torch.nn.Dropout`: while training (autodiff on), each element is zeroed with
//! probability `prob` and the others are scaled by `1 / (1 - prob)`; otherwise the identity.
//!
//! Burn's `nn::Dropout` draws its mask element by element from a ChaCha generator on one thread
//! (`TensorData::random`), which was 13% of a MiniLM training step on the CPU (docs/benchmarks.md).
//! On CPU backends this one draws a 64-bit seed from the backend's generator (so `Backend::seed`
//! still fixes every mask, as the trainer's per-step seeding needs) and fills the mask from it
//! with a counter-based generator, in parallel, already scaled: one multiply instead of two.
//! On other backends (CUDA) it does what `nn::Dropout` does, on the device.

use burn::module::Module;
use burn::tensor::backend::Backend;
use burn::tensor::{Distribution, Tensor, TensorData};
use rayon::prelude::*;

#[derive(Module, Clone, Debug)]
pub struct Dropout {
    pub prob: f64,
}

/// Elements per independently seeded block of the mask: the unit of parallel work.
const BLOCK: usize = 1 << 14;

impl Dropout {
    /// # Panics
    /// If `prob` is not in `[0, 1]` (configs are checked before models are built).
    pub fn new(prob: f64) -> Self {
        assert!((0.0..=1.0).contains(&prob), "dropout probability {prob} is not in [0, 1]");
        Self { prob }
    }

    pub fn forward<B: Backend, const D: usize>(&self, input: Tensor<B, D>) -> Tensor<B, D> {
        let device = input.device();
        if !B::ad_enabled(&device) || self.prob == 0.0 {
            return input;
        }
        let keep = 1.0 - self.prob;
        if !draws_on_host(&B::name(&device)) {
            let random = input.random_like(Distribution::Bernoulli(keep));
            return input * random * (1.0 / keep);
        }
        let seed = backend_seed::<B>(&device);
        let shape = input.shape();
        let mask = mask(shape.num_elements(), self.prob, seed);
        input * Tensor::from_data(TensorData::new(mask, shape), &device)
    }
}

/// Whether `name` (`Backend::name`) is a CPU backend, where a host-made mask costs no transfer.
fn draws_on_host(name: &str) -> bool {
    let inner = name.strip_prefix("autodiff<").and_then(|n| n.strip_suffix('>')).unwrap_or(name);
    matches!(inner, "flex" | "ndarray")
}

/// 64 bits from the backend's own generator: four uniform draws of 16 bits.
fn backend_seed<B: Backend>(device: &B::Device) -> u64 {
    let draws = Tensor::<B, 1>::random([4], Distribution::Uniform(0.0, 65536.0), device)
        .into_data()
        .convert::<f32>()
        .into_vec::<f32>()
        .unwrap_or_default();
    draws.iter().fold(0u64, |acc, &x| (acc << 16) | (x as u64 & 0xffff))
}

/// `n` mask values, `1 / (1 - prob)` where kept and 0 where dropped, a pure function of `seed`.
fn mask(n: usize, prob: f64, seed: u64) -> Vec<f32> {
    // Dropped where the 32-bit draw is below prob * 2^32: probability prob, to within 2^-32.
    let threshold = (prob * 4_294_967_296.0).min(4_294_967_295.0) as u32;
    let scale = (1.0 / (1.0 - prob)) as f32;
    // An indexed parallel collect writes each value once into fresh memory (no zero-fill first).
    (0..n)
        .into_par_iter()
        .with_min_len(BLOCK)
        .map(|i| {
            let bits = (splitmix64(seed ^ (i as u64).wrapping_mul(0xd1b5_4a32_d192_ed03)) >> 32) as u32;
            if bits < threshold { 0.0 } else { scale }
        })
        .collect()
}

/// SplitMix64's output function (Steele, Lea and Flood 2014): a well-mixed 64-bit hash of `x`.
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
        let device = Default::default();
        let x = Tensor::<Flex, 2>::ones([8, 8], &device);
        assert_eq!(values(Dropout::new(0.5).forward(x.clone())), values(x));
        let y = Tensor::<Train, 2>::ones([8, 8], &device);
        assert_eq!(values(Dropout::new(0.0).forward(y.clone())), values(y));
    }

    #[test]
    fn the_gradient_flows_through_kept_elements_only() {
        let device = Default::default();
        Train::seed(&device, 3);
        let x = Tensor::<Train, 2>::ones([32, 32], &device).require_grad();
        let out = Dropout::new(0.3).forward(x.clone());
        let kept = values(out.clone());
        let grads = out.sum().backward();
        let grad = x.grad(&grads).unwrap().into_data().into_vec::<f32>().unwrap();
        assert_eq!(grad, kept, "d(sum)/dx is the mask itself");
    }

    #[test]
    fn backends_on_the_host_are_recognised() {
        assert!(draws_on_host("autodiff<flex>") && draws_on_host("flex") && draws_on_host("ndarray"));
        assert!(!draws_on_host("autodiff<fusion<cubecl<cuda>>>") && !draws_on_host("cuda"));
    }
}
