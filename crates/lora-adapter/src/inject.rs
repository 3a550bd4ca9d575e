//! Putting adapters on a model's linears by config, freezing the rest, counting parameters,
//! and merging adapters back into plain linears.

use burn::module::{Module, Param};
use burn::tensor::backend::Backend;
use burn::tensor::{Distribution, Tensor};
use kernels::Dropout;

use crate::config::{InitLoraWeights, LoraConfig, LoraConfigError};
use crate::error::{LoraError, Result};
use crate::init::{MutatingInit, mutated_init};
use crate::linear::{AdaptableModel, LoraAdapter, LoraLinear};

/// What [`inject`] did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Injected {
    /// Modules that got an adapter, in model order.
    pub adapted: Vec<String>,
    /// `modules_to_save` found in the model, trained in full.
    pub saved_modules: Vec<String>,
}

/// Freezes every parameter of `model`, puts a fresh adapter on each linear `config` targets,
/// and unfreezes the `modules_to_save`. Fresh adapters are drawn on the backend's seeded
/// generator, as PEFT draws them (see [`InitLoraWeights`]); PiSSA and OLoRA take them from the
/// base weight and leave the residual in its place ([`crate::init`]), then DoRA's magnitude is
/// the norm of what the linear computes, as PEFT's order has it.
///
/// The model's output layer ([`LoraLinear::output`]) is the head that `"all-linear"` leaves out.
pub fn inject<B: Backend, M: Module<B> + AdaptableModel<B>>(
    model: M,
    config: &LoraConfig,
    device: &B::Device,
) -> Result<(M, Injected)> {
    config.validate().map_err(|source| LoraError::Config { path: None, source })?;
    let mut model = model.no_grad();
    let mut injected = Injected::default();
    let mut names = Vec::new();
    model.visit_linears(&mut |name, _| names.push(name.to_string()));
    let mutating = MutatingInit::of(&config.init_lora_weights);
    let mut failure = None;
    model.visit_linears(&mut |name, linear| {
        if failure.is_some() {
            return;
        }
        if config.saves_module(name) {
            unfreeze(linear);
            injected.saved_modules.push(name.to_string());
        } else if config.targets(name, linear.output) {
            let mut adapter = fresh_adapter(linear.dims(), name, config, device);
            // PiSSA / OLoRA: factors from the base weight, which keeps the residual.
            if let Some(method) = mutating {
                match mutated_init(linear.base_weight(), adapter.rank(), adapter.scaling, method) {
                    Ok((a, b, residual)) => {
                        adapter.lora_A = Param::from_tensor(a.require_grad());
                        adapter.lora_B = Param::from_tensor(b.require_grad());
                        linear.weight = Param::initialized(linear.weight.id, residual.detach());
                    }
                    Err(LoraError::Config { path, source }) => {
                        let source = LoraConfigError::Unsupported(format!("{name}: {source}"));
                        failure = Some(LoraError::Config { path, source });
                        return;
                    }
                    Err(e) => {
                        failure = Some(e);
                        return;
                    }
                }
            }
            // PEFT's DoRA init, after the LoRA pair's: `||W + scaling B A||` per output.
            if config.use_dora {
                let norm = adapter.weight_norm(linear.base_weight());
                adapter.lora_magnitude_vector = Some(Param::from_tensor(norm.require_grad()));
            }
            linear.adapter = Some(adapter);
            injected.adapted.push(name.to_string());
        }
    });
    if let Some(e) = failure {
        return Err(e);
    }
    if injected.adapted.is_empty() {
        let mut tails: Vec<&str> = names.iter().filter_map(|n| n.rsplit('.').next()).collect();
        tails.sort_unstable();
        tails.dedup();
        return Err(LoraError::NoTarget {
            targets: serde_json::to_string(&config.target_modules).unwrap_or_default(),
            available: tails.join(", "),
            why: why_no_target(config, &names),
        });
    }
    Ok((model, injected))
}

/// Why `config` adapts none of the linears `names`, where one of PEFT's rules explains it: a
/// string is a regex over the whole name, a targeted module is saved whole, or
/// `layers_to_transform` names no layer the model has. Empty when none does.
fn why_no_target(config: &LoraConfig, names: &[String]) -> String {
    let ends = |t: &str| names.iter().filter(|n| n.rsplit('.').next() == Some(t)).collect::<Vec<_>>();
    match &config.target_modules {
        Some(crate::TargetModules::Regex(re)) if !ends(re).is_empty() => format!(
            ": a string is a regular expression matched against the whole name ({}), as PEFT does; \
             to match names ending in {re:?}, give a list: [{re:?}]",
            ends(re)[0]
        ),
        Some(crate::TargetModules::Names(targets)) => {
            let matching: Vec<&String> = targets.iter().flat_map(|t| ends(t)).collect();
            let saved: Vec<&&String> = matching.iter().filter(|n| config.saves_module(n)).collect();
            if !saved.is_empty() && saved.len() == matching.len() {
                return format!(
                    ": {} is in modules_to_save (trained in full and saved whole; SEQ_CLS adds classifier), so it gets no adapter",
                    saved[0]
                );
            }
            if !matching.is_empty()
                && let Some(layers) = &config.layers_to_transform
            {
                let mut found: Vec<usize> = names.iter().filter_map(|n| crate::config::layer_of(n, config)).collect();
                found.sort_unstable();
                found.dedup();
                let range = match (found.first(), found.last()) {
                    (Some(a), Some(b)) => format!("{a} to {b}"),
                    _ => "none".into(),
                };
                let asked = match layers {
                    crate::Layers::One(i) => i.to_string(),
                    crate::Layers::Many(v) => format!("{v:?}"),
                };
                return format!(": layers_to_transform {asked} names no layer the model has (its layers: {range})");
            }
            String::new()
        }
        _ => String::new(),
    }
}

fn unfreeze<B: Backend>(linear: &mut LoraLinear<B>) {
    linear.weight = linear.weight.clone().set_require_grad(true);
    linear.bias = linear.bias.take().map(|b| b.set_require_grad(true));
}

/// A fresh adapter for a linear of `[d_input, d_output]`, as PEFT's `reset_lora_parameters`.
pub fn fresh_adapter<B: Backend>(
    dims: [usize; 2],
    name: &str,
    config: &LoraConfig,
    device: &B::Device,
) -> LoraAdapter<B> {
    let [d_input, d_output] = dims;
    let shape = config.shape_for(name);
    let r = shape.r;
    // Drawn on the host whatever the device, as PEFT's on a model built on the CPU and moved.
    let random = kernels::random::random::<B, 2>;
    // torch's kaiming_uniform_(a = √5) on a `[out, in]` weight: bound = 1 / √fan_in.
    let kaiming = |fan_in: usize| Distribution::Uniform(-1.0 / (fan_in as f64).sqrt(), 1.0 / (fan_in as f64).sqrt());
    let (a, b) = match &config.init_lora_weights {
        InitLoraWeights::Flag(true) => {
            (random([d_input, r], kaiming(d_input), device), Tensor::zeros([r, d_output], device))
        }
        InitLoraWeights::Flag(false) => {
            (random([d_input, r], kaiming(d_input), device), random([r, d_output], kaiming(r), device))
        }
        InitLoraWeights::Method(_) => (
            random([d_input, r], Distribution::Normal(0.0, 1.0 / r as f64), device),
            Tensor::zeros([r, d_output], device),
        ),
    };
    LoraAdapter {
        lora_A: Param::from_tensor(a),
        lora_B: Param::from_tensor(b),
        scaling: shape.scaling,
        dropout: Dropout::new(config.lora_dropout),
        lora_magnitude_vector: None,
    }
}

/// Parameter counts as PEFT's `print_trainable_parameters` reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParameterCount {
    pub trainable: usize,
    /// PEFT's "all params": the model's, plus a second copy of each module to save (PEFT keeps
    /// the original beside the trained copy).
    pub all: usize,
}

impl ParameterCount {
    pub fn of<B: Backend, M: Module<B> + AdaptableModel<B>>(model: &mut M, config: &LoraConfig) -> Self {
        let all = model.num_params();
        let (mut adapter, mut saved) = (0, 0);
        model.visit_linears(&mut |name, linear| {
            if let Some(a) = &linear.adapter {
                adapter += a.lora_A.num_params() + a.lora_B.num_params();
                adapter += a.lora_magnitude_vector.as_ref().map_or(0, |m| m.num_params());
            }
            if config.saves_module(name) {
                saved += linear.weight.num_params() + linear.bias.as_ref().map_or(0, |b| b.num_params());
            }
        });
        Self { trainable: adapter + saved, all: all + saved }
    }
}

impl std::fmt::Display for ParameterCount {
    /// `trainable params: 296,450 || all params: 109,780,994 || trainable%: 0.2700`
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let percent = 100.0 * self.trainable as f64 / self.all.max(1) as f64;
        write!(
            f,
            "trainable params: {} || all params: {} || trainable%: {percent:.4}",
            thousands(self.trainable),
            thousands(self.all)
        )
    }
}

fn thousands(n: usize) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Folds every adapter into its base weight (`W + scaling * A B`; with DoRA, PEFT's
/// `(m / ||W + scaling A B||) (W + scaling A B)`, column by column) and drops it, leaving plain
/// linears with no adapter cost. Refuses if any merged weight would be non-finite.
pub fn merge<B: Backend, M: AdaptableModel<B>>(mut model: M) -> Result<M> {
    let mut failure = None;
    let mut merged = Vec::new();
    model.visit_linears(&mut |name, linear| {
        if failure.is_some() {
            return;
        }
        if let Some(adapter) = &linear.adapter {
            let delta = adapter.lora_A.val().matmul(adapter.lora_B.val()) * adapter.scaling; // [in, out]
            let weight = linear.base_weight() + delta;
            let weight = match adapter.dora_factor(linear.base_weight()) {
                Some(factor) => weight * factor.unsqueeze_dim::<2>(0),
                None => weight,
            };
            match kernels::read::f32s(weight.clone()) {
                Ok(values) if values.iter().all(|x| x.is_finite()) => merged.push((name.to_string(), weight)),
                Ok(_) => failure = Some(LoraError::NonFiniteMerge { module: name.to_string() }),
                Err(e) => failure = Some(e.into()),
            }
        }
    });
    if let Some(e) = failure {
        return Err(e);
    }
    let mut merged = merged.into_iter();
    model.visit_linears(&mut |_, linear| {
        if linear.adapter.take().is_some()
            && let Some((_, weight)) = merged.next()
        {
            linear.weight = Param::from_tensor(weight.detach());
        }
    });
    Ok(model)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::thousands;

    #[test]
    fn thousands_separators() {
        assert_eq!(thousands(296450), "296,450");
        assert_eq!(thousands(109482240), "109,482,240");
        assert_eq!(thousands(12), "12");
    }
}
