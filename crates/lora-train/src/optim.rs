//! AdamW, gradient clipping and the learning-rate schedule exactly as Hugging Face's `Trainer`
//! drives them: `torch.optim.AdamW` (decoupled decay, PyTorch's bias-correction arithmetic),
//! no decay on biases and LayerNorm weights, `clip_grad_norm_` over the global norm of all
//! trainable gradients (the schedules are [`crate::schedule`]'s).
//!
//! Burn's AdamW differs (defaults, per-tensor clipping, one decay for all parameters; see
//! `../shared/BURN_NOTES.md`), and its state is not ours to save: hence this small optimizer.
//! It works on the trainable tensors the model lists by name ([`AdaptableModel`]), so its state
//! is keyed by names that survive a restart.

use std::collections::BTreeMap;

use burn::module::Param;
use burn::tensor::backend::{AutodiffBackend, Backend};
use burn::tensor::{Tensor, TensorData};
use lora_adapter::{AdaptableModel, LoraConfig};

/// AdamW hyper-parameters (`TrainingArguments` names).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamWConfig {
    pub weight_decay: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub epsilon: f64,
    /// 0 turns clipping off.
    pub max_grad_norm: f64,
    /// LoRA+'s parameter groups, when on.
    pub loraplus: Option<LoraPlus>,
}

/// PEFT's `create_loraplus_optimizer` groups: `lora_B` and every 1-D tensor at `lr * ratio`,
/// the rest at `lr`; every group decays by `weight_decay` (`loraplus_weight_decay`), except
/// biases and LayerNorm weights (Trainer's `get_decay_parameter_names`), which do not.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LoraPlus {
    pub ratio: f64,
    pub weight_decay: f64,
}

impl AdamWConfig {
    /// The learning rate and decay of the tensor `name` (`vector`: 1-D) when the schedule's
    /// rate is `lr`.
    pub fn group(&self, name: &str, vector: bool, lr: f64) -> (f64, f64) {
        let (lr, decay) = match self.loraplus {
            None => (lr, self.weight_decay),
            Some(plus) if name.contains("lora_B") || vector => (lr * plus.ratio, plus.weight_decay),
            Some(plus) => (lr, plus.weight_decay),
        };
        (lr, if decays(name) { decay } else { 0.0 })
    }
}

/// First and second moments of one tensor, flat.
pub struct Moments<B: Backend> {
    pub m: Tensor<B, 1>,
    pub v: Tensor<B, 1>,
}

pub struct AdamW<B: Backend> {
    pub config: AdamWConfig,
    /// Optimizer steps taken.
    pub step: u64,
    pub state: BTreeMap<String, Moments<B>>,
}

/// What one step did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepStats {
    /// Global gradient norm before clipping (Trainer logs this as `grad_norm`).
    pub grad_norm: f64,
}

/// A step's gradients by name and their global norm, read before anything is updated.
pub struct Gradients<B: Backend> {
    flat: BTreeMap<String, Tensor<B, 1>>,
    pub grad_norm: f64,
    /// The global norm of the trainable weights as they are before this step's update: a
    /// non-finite value means the previous update diverged.
    pub weights_norm: f64,
    /// The scalar handed to [`AdamW::gradients`] (the loss), read in the same synchronisation.
    pub read_with: f64,
}

/// Trainer's `get_decay_parameter_names`: everything but biases and LayerNorm weights.
pub fn decays(name: &str) -> bool {
    !(name.ends_with("bias") || name.contains("LayerNorm"))
}

/// One trainable tensor of the model: its name and a handle on its parameter.
enum Slot<'a, B: AutodiffBackend> {
    Matrix(&'a mut Param<Tensor<B, 2>>),
    Vector(&'a mut Param<Tensor<B, 1>>),
}

/// Calls `f` with every trainable tensor: adapter matrices, and the linears `config` saves in full.
fn for_each_trainable<B: AutodiffBackend, M: AdaptableModel<B>>(
    model: &mut M,
    lora: &LoraConfig,
    f: &mut dyn FnMut(String, Slot<'_, B>),
) {
    model.visit_linears(&mut |name, linear| {
        if let Some(adapter) = linear.adapter.as_mut() {
            f(format!("{name}.lora_A.weight"), Slot::Matrix(&mut adapter.lora_A));
            f(format!("{name}.lora_B.weight"), Slot::Matrix(&mut adapter.lora_B));
            if let Some(m) = adapter.lora_magnitude_vector.as_mut() {
                f(format!("{name}.lora_magnitude_vector"), Slot::Vector(m));
            }
        }
        if lora.saves_module(name) {
            f(format!("{name}.weight"), Slot::Matrix(&mut linear.weight));
            if let Some(bias) = linear.bias.as_mut() {
                f(format!("{name}.bias"), Slot::Vector(bias));
            }
        }
    });
}

impl<IB: Backend> AdamW<IB> {
    pub fn new(config: AdamWConfig) -> Self {
        Self { config, step: 0, state: BTreeMap::new() }
    }

    /// Pass 1 of a step: the trainable gradients by name and their global norm, read from the
    /// device together with the scalar `read_with` (the loss): one synchronisation per step,
    /// after the backward pass has been queued, rather than one after the forward and one here.
    pub fn gradients<B, M>(
        &self,
        model: &mut M,
        lora: &LoraConfig,
        grads: &B::Gradients,
        read_with: Tensor<IB, 1>,
    ) -> Result<Gradients<IB>, kernels::ReadError>
    where
        B: AutodiffBackend<InnerBackend = IB>,
        M: AdaptableModel<B>,
    {
        let flat = Self::collect::<B, M>(model, lora, grads, None);
        self.finish::<B, M>(model, lora, flat, read_with)
    }

    /// The trainable gradients of one backward pass by name, added to `sum` (the micro-batches
    /// of one step so far) when given; nothing is read from the device.
    pub fn collect<B, M>(
        model: &mut M,
        lora: &LoraConfig,
        grads: &B::Gradients,
        sum: Option<BTreeMap<String, Tensor<IB, 1>>>,
    ) -> BTreeMap<String, Tensor<IB, 1>>
    where
        B: AutodiffBackend<InnerBackend = IB>,
        M: AdaptableModel<B>,
    {
        let mut flat = sum.unwrap_or_default();
        for_each_trainable::<B, M>(model, lora, &mut |name, slot| {
            let g = match slot {
                Slot::Matrix(p) => p.grad(grads).map(|g| g.reshape([-1])),
                Slot::Vector(p) => p.grad(grads),
            };
            if let Some(g) = g {
                let g = match flat.remove(&name) {
                    Some(before) => before + g,
                    None => g,
                };
                flat.insert(name, g);
            }
        });
        flat
    }

    /// The step's gradients `flat` with their global norm and the weights' norm, read in one
    /// synchronisation with `read_with`.
    pub fn finish<B, M>(
        &self,
        model: &mut M,
        lora: &LoraConfig,
        flat: BTreeMap<String, Tensor<IB, 1>>,
        read_with: Tensor<IB, 1>,
    ) -> Result<Gradients<IB>, kernels::ReadError>
    where
        B: AutodiffBackend<InnerBackend = IB>,
        M: AdaptableModel<B>,
    {
        let mut weights: Vec<Tensor<IB, 1>> = Vec::new();
        for_each_trainable::<B, M>(model, lora, &mut |_, slot| {
            weights.push(match slot {
                Slot::Matrix(p) => p.val().inner().powf_scalar(2.0).sum(),
                Slot::Vector(p) => p.val().inner().powf_scalar(2.0).sum(),
            });
        });
        // Summed on the device and read once with `read_with`, not once per tensor.
        let read_with = read_with.reshape([1]);
        let device = read_with.device();
        let sum =
            |t: Vec<Tensor<IB, 1>>| t.into_iter().reduce(|a, b| a + b).unwrap_or_else(|| Tensor::zeros([1], &device));
        let squares = sum(flat.values().map(|g| g.clone().powf_scalar(2.0).sum()).collect());
        let values = kernels::read::f64s(Tensor::cat(vec![read_with, squares, sum(weights)], 0))?;
        let [read_with, squares, weights] = <[f64; 3]>::try_from(values).unwrap_or([f64::NAN; 3]);
        Ok(Gradients { flat, grad_norm: squares.sqrt(), weights_norm: weights.sqrt(), read_with })
    }

    /// Pass 2: clips, then updates every trainable tensor of `model` in place with learning rate `lr`.
    pub fn apply<B, M>(&mut self, model: &mut M, lora: &LoraConfig, gradients: Gradients<IB>, lr: f64) -> StepStats
    where
        B: AutodiffBackend<InnerBackend = IB>,
        M: AdaptableModel<B>,
    {
        let Gradients { mut flat, grad_norm, .. } = gradients;
        // torch.nn.utils.clip_grad_norm_: coefficient clamped at 1.
        let coef = if self.config.max_grad_norm > 0.0 {
            (self.config.max_grad_norm / (grad_norm + 1e-6)).min(1.0)
        } else {
            1.0
        };

        self.step += 1;
        let t = self.step as i32;
        let c = self.config;
        let bias_correction1 = 1.0 - c.beta1.powi(t);
        let bias_correction2 = 1.0 - c.beta2.powi(t);
        let bias_correction2_sqrt = bias_correction2.sqrt();

        // torch.optim.AdamW's single-tensor update, name by name.
        for_each_trainable::<B, M>(model, lora, &mut |name, slot| {
            let Some(g) = flat.remove(&name) else { return };
            let g = if coef < 1.0 { g * coef } else { g };
            let (lr, decay) = c.group(&name, matches!(slot, Slot::Vector(_)), lr);
            let step_size = lr / bias_correction1;
            let update = |p: Tensor<IB, 1>, state: &mut BTreeMap<String, Moments<IB>>| {
                let p = if decay > 0.0 { p * (1.0 - lr * decay) } else { p };
                let moments =
                    state.entry(name.clone()).or_insert_with(|| Moments { m: g.zeros_like(), v: g.zeros_like() });
                moments.m = moments.m.clone() * c.beta1 + g.clone() * (1.0 - c.beta1);
                moments.v = moments.v.clone() * c.beta2 + g.clone() * g.clone() * (1.0 - c.beta2);
                let denom = moments.v.clone().sqrt() / bias_correction2_sqrt + c.epsilon;
                p - moments.m.clone() / denom * step_size
            };
            match slot {
                Slot::Matrix(param) => {
                    let dims = param.dims();
                    let new = update(param.val().inner().reshape([-1]), &mut self.state).reshape(dims);
                    *param = Param::initialized(param.id, Tensor::from_inner(new).require_grad());
                }
                Slot::Vector(param) => {
                    let new = update(param.val().inner(), &mut self.state);
                    *param = Param::initialized(param.id, Tensor::from_inner(new).require_grad());
                }
            }
        });
        StepStats { grad_norm }
    }

    /// The state as flat f32 tensors (`{name}.exp_avg`, `{name}.exp_avg_sq`), for a checkpoint.
    pub fn to_tensors(&self) -> Result<BTreeMap<String, Vec<f32>>, kernels::ReadError> {
        let mut out = BTreeMap::new();
        for (name, m) in &self.state {
            out.insert(format!("{name}.exp_avg"), kernels::read::f32s(m.m.clone())?);
            out.insert(format!("{name}.exp_avg_sq"), kernels::read::f32s(m.v.clone())?);
        }
        Ok(out)
    }

    /// Restores what [`to_tensors`](Self::to_tensors) wrote, for `model`'s trainable tensors: a
    /// moment of a tensor the model does not train, or of another size (another rank, another
    /// number of labels), is an error naming it, and nothing is restored.
    pub fn restore<B, M>(
        &mut self,
        model: &mut M,
        lora: &LoraConfig,
        step: u64,
        tensors: BTreeMap<String, Vec<f32>>,
        device: &IB::Device,
    ) -> Result<(), MomentError>
    where
        B: AutodiffBackend<InnerBackend = IB>,
        M: AdaptableModel<B>,
    {
        let mut sizes: BTreeMap<String, usize> = BTreeMap::new();
        for_each_trainable::<B, M>(model, lora, &mut |name, slot| {
            let size = match slot {
                Slot::Matrix(p) => p.dims().iter().product(),
                Slot::Vector(p) => p.dims()[0],
            };
            sizes.insert(name, size);
        });
        let mut state = BTreeMap::new();
        for (key, values) in &tensors {
            let (name, other) = if let Some(name) = key.strip_suffix(".exp_avg_sq") {
                (name, format!("{name}.exp_avg"))
            } else if let Some(name) = key.strip_suffix(".exp_avg") {
                (name, format!("{name}.exp_avg_sq"))
            } else {
                return Err(MomentError::NotAMoment(key.clone()));
            };
            let Some(&size) = sizes.get(name) else {
                return Err(MomentError::Untrained { key: key.clone(), name: name.to_string() });
            };
            if values.len() != size {
                return Err(MomentError::Size { key: key.clone(), values: values.len(), name: name.to_string(), size });
            }
            let paired =
                tensors.get(&other).ok_or_else(|| MomentError::Unpaired { key: key.clone(), other: other.clone() })?;
            if key.ends_with(".exp_avg") {
                let tensor = |v: &Vec<f32>| Tensor::<IB, 1>::from_data(TensorData::new(v.clone(), [v.len()]), device);
                state.insert(name.to_string(), Moments { m: tensor(values), v: tensor(paired) });
            }
        }
        self.step = step;
        self.state = state;
        Ok(())
    }
}

/// Why an optimizer state cannot be restored for a model: it is another run's.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MomentError {
    #[error("`{0}` is not an AdamW moment (NAME.exp_avg or NAME.exp_avg_sq)")]
    NotAMoment(String),
    #[error("`{key}` is the moment of `{name}`, which this run does not train")]
    Untrained { key: String, name: String },
    #[error(
        "`{key}` has {values} values, but `{name}` has {size} (the checkpoint is of another model or [lora] config)"
    )]
    Size { key: String, values: usize, name: String, size: usize },
    #[error("optimizer state has `{key}` but no `{other}`")]
    Unpaired { key: String, other: String },
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn decay_groups_as_trainer() {
        assert!(decays("bert.encoder.layer.0.attention.self.query.lora_A.weight"));
        assert!(decays("classifier.weight"));
        assert!(!decays("classifier.bias"));
        assert!(!decays("bert.embeddings.LayerNorm.weight"));
        // PEFT's `lora_magnitude_vector.default.weight` is no bias or LayerNorm weight: it decays.
        assert!(decays("bert.encoder.layer.0.attention.self.query.lora_magnitude_vector"));
    }

    #[test]
    fn loraplus_groups_as_peft() {
        let config = AdamWConfig {
            weight_decay: 0.1,
            beta1: 0.9,
            beta2: 0.999,
            epsilon: 1e-8,
            max_grad_norm: 1.0,
            loraplus: Some(LoraPlus { ratio: 16.0, weight_decay: 0.05 }),
        };
        let q = "bert.encoder.layer.0.attention.self.query";
        assert_eq!(config.group(&format!("{q}.lora_A.weight"), false, 1e-3), (1e-3, 0.05));
        assert_eq!(config.group(&format!("{q}.lora_B.weight"), false, 1e-3), (16.0 * 1e-3, 0.05));
        assert_eq!(config.group(&format!("{q}.lora_magnitude_vector"), true, 1e-3), (16.0 * 1e-3, 0.05));
        assert_eq!(config.group("classifier.weight", false, 1e-3), (1e-3, 0.05));
        assert_eq!(config.group("classifier.bias", true, 1e-3), (16.0 * 1e-3, 0.0), "a 1-D tensor without decay");
        let plain = AdamWConfig { loraplus: None, ..config };
        assert_eq!(plain.group(&format!("{q}.lora_B.weight"), false, 1e-3), (1e-3, 0.1));
        assert_eq!(plain.group("classifier.bias", true, 1e-3), (1e-3, 0.0));
    }
}
