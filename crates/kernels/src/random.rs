//! Random tensors drawn on the host, with the CPU backend's generator, whatever the backend: a
//! model's fresh weights (LoRA's A, a new classifier) then do not depend on the device, as in
//! PyTorch, where a model is built on the CPU and moved. A run on a GPU starts from the weights
//! the same run on the CPU starts from, and the two can be compared step by step.

use burn::backend::Flex;
use burn::tensor::backend::Backend;
use burn::tensor::{Distribution, Tensor};

/// Seeds the generator [`random`] draws from, and `B`'s own (dropout draws on the device).
pub fn seed<B: Backend>(device: &B::Device, seed: u64) {
    B::seed(device, seed);
    Flex::seed(&Default::default(), seed);
}

/// `Tensor::random`, drawn on the host from the generator [`seed`] sets, then moved to `device`.
pub fn random<B: Backend, const D: usize>(
    shape: [usize; D],
    distribution: Distribution,
    device: &B::Device,
) -> Tensor<B, D> {
    let host = Tensor::<Flex, D>::random(shape, distribution, &Default::default());
    Tensor::from_data(host.into_data(), device)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use burn::backend::Autodiff;

    /// On the CPU backend the draws are the ones `Tensor::random` gives from the same seed: runs
    /// on the CPU keep their numbers.
    #[test]
    fn draws_what_the_cpu_backend_draws() {
        let _generator = crate::testing::generator();
        let device = Default::default();
        let dist = Distribution::Uniform(-0.5, 0.5);
        seed::<Autodiff<Flex>>(&device, 7);
        let ours = random::<Autodiff<Flex>, 2>([3, 4], dist, &device).into_data();
        Flex::seed(&device, 7);
        let burn = Tensor::<Autodiff<Flex>, 2>::random([3, 4], dist, &device).into_data();
        assert_eq!(ours, burn);
        // And the next draw differs: the generator moved on.
        let next = random::<Autodiff<Flex>, 2>([3, 4], dist, &device).into_data();
        assert_ne!(ours, next);
    }
}
