//! `LayerNorm` over the last dimension, with a fused backward on the CPU training backend.
//!
//! The module is `burn::nn::LayerNorm`'s (same fields, same container name, so records see no
//! difference) with its epsilon public: the fused op needs it and Burn's field is private. On
//! `Autodiff<Flex>` it records one op: forward by flex's fused kernel, backward in one parallel
//! pass over the rows (mean and variance recomputed from the kept input),
//! `dx = rstd * (g - mean(g) - x̂ * mean(g * x̂))` with `g = dy * gamma`; gamma's and beta's
//! gradients only when they are trained. Burn records LayerNorm under autodiff as nine ops,
//! four of them broadcasts. Elsewhere it is Burn's `layer_norm`.

use burn::backend::Flex;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops};
use burn::backend::flex::FlexTensor;
use burn::module::{Module, Param};
use burn::tensor::backend::Backend;
use burn::tensor::ops::{FloatTensor, ModuleOps};
use burn::tensor::{Tensor, TensorPrimitive};
use rayon::prelude::*;

use crate::host::{Host, HostTrain, dispatch_train, owned_contiguous, primitive, record, tensor};

/// Layer normalisation over the last dimension: `(x - mean) / sqrt(var + epsilon) * gamma + beta`.
///
/// # Shapes
/// - gamma, beta: `[d_model]`; input and output: `[..., d_model]`
#[derive(Module, Debug)]
pub struct LayerNorm<B: Backend> {
    pub gamma: Param<Tensor<B, 1>>,
    pub beta: Option<Param<Tensor<B, 1>>>,
    pub epsilon: f64,
}

impl<B: Backend> LayerNorm<B> {
    pub fn forward<const D: usize>(&self, input: Tensor<B, D>) -> Tensor<B, D> {
        let gamma = self.gamma.val();
        let fused = Host::of_f32::<B>(&[input.dtype()]) == Some(Host::Train);
        match &self.beta {
            Some(beta) if fused => {
                let epsilon = self.epsilon;
                dispatch_train([primitive(input), primitive(gamma), primitive(beta.val())], |inputs| {
                    recorded_layer_norm(inputs, epsilon)
                })
            }
            beta => {
                let beta = beta.as_ref().map(|b| primitive(b.val()));
                let out = B::layer_norm(primitive(input), primitive(gamma), beta, self.epsilon);
                Tensor::from_primitive(TensorPrimitive::Float(out))
            }
        }
    }
}

/// The recorded op: its state is the input, gamma, epsilon and whether gamma and beta are trained.
#[derive(Debug)]
struct LayerNormOp;

type State = (FlexTensor, FlexTensor, f64, [bool; 2]);

impl Backward<Flex, 3> for LayerNormOp {
    type State = State;

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let grad = grads.consume::<Flex>(&ops.node);
        let (x, gamma, epsilon, _) = ops.state;
        let [x_node, gamma_node, beta_node] = ops.parents;
        let (dx, dgamma, dbeta) =
            layer_norm_backward(&x, &gamma, grad, epsilon, gamma_node.is_some(), beta_node.is_some());
        if let Some(node) = x_node {
            grads.register::<Flex>(node.id, dx);
        }
        if let (Some(node), Some(dgamma)) = (gamma_node, dgamma) {
            grads.register::<Flex>(node.id, dgamma);
        }
        if let (Some(node), Some(dbeta)) = (beta_node, dbeta) {
            grads.register::<Flex>(node.id, dbeta);
        }
    }
}

fn recorded_layer_norm(inputs: [FloatTensor<HostTrain>; 3], epsilon: f64) -> FloatTensor<HostTrain> {
    let forward = |[x, gamma, beta]: &[FloatTensor<HostTrain>; 3]| {
        Flex::layer_norm(x.primitive.clone(), gamma.primitive.clone(), Some(beta.primitive.clone()), epsilon)
    };
    record(
        LayerNormOp,
        inputs,
        |inputs| {
            let out = forward(&inputs);
            let [x, gamma, beta] = inputs;
            let trained = [gamma.is_tracked(), beta.is_tracked()];
            (out, (x.primitive, gamma.primitive, epsilon, trained))
        },
        |inputs| forward(&inputs),
    )
}

/// Rows per parallel task.
const ROWS: usize = 16;

/// `(dx, dgamma, dbeta)`; dx is written over `grad`'s buffer.
fn layer_norm_backward(
    x: &FlexTensor,
    gamma: &FlexTensor,
    grad: FlexTensor,
    epsilon: f64,
    want_gamma: bool,
    want_beta: bool,
) -> (FlexTensor, Option<FlexTensor>, Option<FlexTensor>) {
    let x = x.to_contiguous();
    let gamma = gamma.to_contiguous();
    let n = gamma.layout().num_elements();
    let mut grad = owned_contiguous(grad);
    let (xs, gamma) = (x.storage::<f32>(), gamma.storage::<f32>());
    let epsilon = epsilon as f32;

    // Parameter gradients first: they need dy before it is overwritten with dx.
    let dgamma = want_gamma.then(|| {
        let mut sums = vec![0.0f32; n];
        for (dy, x) in grad.storage::<f32>().chunks_exact(n).zip(xs.chunks_exact(n)) {
            let (mean, rstd) = moments(x, epsilon);
            for ((s, g), v) in sums.iter_mut().zip(dy).zip(x) {
                *s += g * (v - mean) * rstd;
            }
        }
        vector(sums)
    });
    let dbeta = want_beta.then(|| {
        let mut sums = vec![0.0f32; n];
        for dy in grad.storage::<f32>().chunks_exact(n) {
            sums.iter_mut().zip(dy).for_each(|(s, g)| *s += g);
        }
        vector(sums)
    });

    grad.storage_mut::<f32>().par_chunks_mut(n * ROWS).zip(xs.par_chunks(n * ROWS)).for_each(|(dys, xs)| {
        for (dy, x) in dys.chunks_exact_mut(n).zip(xs.chunks_exact(n)) {
            let (mean, rstd) = moments(x, epsilon);
            let (mut g_sum, mut gx_sum) = (0.0f32, 0.0f32);
            for ((d, v), w) in dy.iter().zip(x).zip(gamma) {
                let g = d * w;
                g_sum += g;
                gx_sum += g * (v - mean) * rstd;
            }
            let (g_mean, gx_mean) = (g_sum / n as f32, gx_sum / n as f32);
            for ((d, v), w) in dy.iter_mut().zip(x).zip(gamma) {
                let x_hat = (v - mean) * rstd;
                *d = rstd * (*d * w - g_mean - x_hat * gx_mean);
            }
        }
    });
    (grad, dgamma, dbeta)
}

/// The row's mean and `1 / sqrt(var + epsilon)` (biased variance, as torch).
fn moments(x: &[f32], epsilon: f32) -> (f32, f32) {
    let n = x.len() as f32;
    let mean = x.iter().sum::<f32>() / n;
    let var = x.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / n;
    (mean, 1.0 / (var + epsilon).sqrt())
}

fn vector(values: Vec<f32>) -> FlexTensor {
    let n = values.len();
    tensor(values, vec![n])
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::testing::{assert_close as close, values};
    use burn::backend::Autodiff;
    use burn::nn::LayerNormConfig;
    use burn::tensor::Distribution;

    type Train = Autodiff<Flex>;

    /// Values and the gradients of input, gamma and beta equal Burn's `nn::LayerNorm`'s, on a
    /// strided input; a frozen gamma and beta get none.
    #[test]
    fn matches_burns_layer_norm_forward_and_backward() {
        let _generator = crate::testing::generator();
        let device = Default::default();
        let x = Tensor::<Flex, 3>::random([4, 33, 24], Distribution::Normal(1.0, 2.0), &device).swap_dims(0, 1);
        let gamma = Tensor::<Flex, 1>::random([24], Distribution::Normal(1.0, 0.5), &device);
        let beta = Tensor::<Flex, 1>::random([24], Distribution::Normal(0.0, 0.5), &device);
        let upstream = Tensor::<Flex, 3>::random([33, 4, 24], Distribution::Normal(0.0, 1.0), &device);
        let run = |ours: bool, trained: bool| {
            let input = Tensor::<Train, 3>::from_inner(x.clone()).require_grad();
            let mut norm = LayerNormConfig::new(24).with_epsilon(1e-12).init::<Train>(&device);
            norm.gamma = Param::from_tensor(Tensor::from_inner(gamma.clone())).set_require_grad(trained);
            norm.beta = Some(Param::from_tensor(Tensor::from_inner(beta.clone())).set_require_grad(trained));
            let y = if ours {
                let ours = LayerNorm { gamma: norm.gamma.clone(), beta: norm.beta.clone(), epsilon: 1e-12 };
                ours.forward(input.clone())
            } else {
                norm.forward(input.clone())
            };
            let grads = (y.clone() * Tensor::from_inner(upstream.clone())).sum().backward();
            let param = |p: &Param<Tensor<Train, 1>>| p.val().grad(&grads).map(values);
            let beta = norm.beta.as_ref().unwrap();
            (values(y), values(input.grad(&grads).unwrap()), param(&norm.gamma), param(beta))
        };
        let (y, dx, dgamma, dbeta) = run(true, true);
        let (y0, dx0, dgamma0, dbeta0) = run(false, true);
        // Sums over 24 features (y, dx) and over 132 rows (dgamma, dbeta) in another order: up to
        // n ulps of the terms, so ~1e-6 of 1 + |b| for y and dbeta, more for dx and dgamma,
        // whose terms cancel. A wrong epsilon, mean or variance (biased / unbiased: 24/23) moves
        // them by ~1e-2 or more.
        close(&y, &y0, 1e-5);
        close(&dx, &dx0, 1e-4);
        close(&dgamma.unwrap(), &dgamma0.unwrap(), 1e-4);
        close(&dbeta.unwrap(), &dbeta0.unwrap(), 1e-5);

        let (_, dx_frozen, dgamma, dbeta) = run(true, false);
        close(&dx_frozen, &dx0, 1e-4);
        assert!(dgamma.is_none() && dbeta.is_none());
    }
}
