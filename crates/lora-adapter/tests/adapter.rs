//! The adapter on a model that is not BERT: a two-layer MLP built from `LoraLinear`s.

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use burn::backend::{Autodiff, Flex};
use burn::module::{AutodiffModule, Module, Param};
use burn::tensor::backend::Backend;
use burn::tensor::{Distribution, Tensor};
use lora_adapter::peft::{load_adapter, read_config, save_adapter};
use lora_adapter::{
    AdaptableModel, InitLoraWeights, LoraConfig, LoraError, LoraLinear, ParameterCount, TargetModules, inject, merge,
};

type B = Flex;
type AD = Autodiff<Flex>;

#[derive(Module, Debug)]
struct Mlp<B: Backend> {
    up: LoraLinear<B>,
    down: LoraLinear<B>,
}

impl<B: Backend> AdaptableModel<B> for Mlp<B> {
    fn each_linear(&mut self, f: &mut dyn FnMut(&mut LoraLinear<B>)) {
        f(&mut self.up);
        f(&mut self.down);
    }
}

impl<B: Backend> Mlp<B> {
    fn new(device: &B::Device) -> Self {
        let linear = |name: &str, i, o| {
            LoraLinear::new(
                name,
                Param::from_tensor(Tensor::random([i, o], Distribution::Normal(0.0, 0.5), device)),
                Some(Param::from_tensor(Tensor::random([o], Distribution::Normal(0.0, 0.5), device))),
            )
        };
        Self { up: linear("net.up", 6, 10), down: linear("net.down", 10, 3).as_output() }
    }

    fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        self.down.forward(self.up.forward(x).tanh())
    }
}

fn config(targets: &[&str]) -> LoraConfig {
    LoraConfig {
        r: 4,
        lora_alpha: 8.0,
        target_modules: Some(TargetModules::Names(targets.iter().map(|s| s.to_string()).collect())),
        task_type: None,
        ..Default::default()
    }
}

fn input<B: Backend>(device: &B::Device) -> Tensor<B, 2> {
    Tensor::random([5, 6], Distribution::Normal(0.0, 1.0), device)
}

#[test]
fn a_fresh_adapter_leaves_the_output_bit_for_bit_unchanged() {
    let device = Default::default();
    B::seed(&device, 1);
    let model = Mlp::<B>::new(&device);
    let x = input::<B>(&device);
    let before = model.forward(x.clone()).into_data();
    let (model, injected) = inject(model, &config(&["up", "down"]), &device).unwrap();
    assert_eq!(injected.adapted, ["net.up", "net.down"]);
    assert_eq!(model.forward(x).into_data(), before);
}

#[test]
fn merged_equals_unmerged() {
    let device = Default::default();
    B::seed(&device, 2);
    // `init_lora_weights = false` draws B too, so the adapter changes the output.
    let lora = LoraConfig { init_lora_weights: InitLoraWeights::Flag(false), ..config(&["up", "down"]) };
    let (model, _) = inject(Mlp::<B>::new(&device), &lora, &device).unwrap();
    let x = input::<B>(&device);
    let unmerged = model.forward(x.clone());
    let base = Mlp {
        up: LoraLinear::new("net.up", model.up.weight.clone(), model.up.bias.clone()),
        down: LoraLinear::new("net.down", model.down.weight.clone(), model.down.bias.clone()).as_output(),
    };
    let base_out = base.forward(x.clone());
    assert!((unmerged.clone() - base_out).abs().max().into_scalar() > 1e-3, "the adapter must matter");
    let merged = merge(model).unwrap();
    assert!(merged.up.adapter.is_none() && merged.down.adapter.is_none());
    let diff = (merged.forward(x) - unmerged).abs().max().into_scalar();
    assert!(diff <= 1e-5, "max diff {diff}");
}

#[test]
fn merge_refuses_non_finite_weights() {
    let device = Default::default();
    let (mut model, _) = inject(Mlp::<B>::new(&device), &config(&["down"]), &device).unwrap();
    let adapter = model.down.adapter.as_mut().unwrap();
    adapter.lora_B = Param::from_tensor(adapter.lora_B.val().ones_like() * f32::INFINITY);
    let err = merge(model).unwrap_err();
    assert!(matches!(&err, LoraError::NonFiniteMerge { module } if module == "net.down"), "{err}");
}

#[test]
fn gradients_reach_the_adapter_and_nothing_frozen() {
    let device = Default::default();
    <AD as Backend>::seed(&device, 3);
    let lora = LoraConfig { init_lora_weights: InitLoraWeights::Flag(false), ..config(&["up"]) };
    let (model, _) = inject(Mlp::<AD>::new(&device), &lora, &device).unwrap();
    let loss = model.forward(input::<AD>(&device)).powf_scalar(2.0).mean();
    let grads = loss.backward();
    let adapter = model.up.adapter.as_ref().unwrap();
    assert!(adapter.lora_A.grad(&grads).is_some(), "lora_A gets a gradient");
    assert!(adapter.lora_B.grad(&grads).is_some(), "lora_B gets a gradient");
    assert!(model.up.weight.grad(&grads).is_none(), "frozen base weight");
    assert!(model.up.bias.as_ref().unwrap().grad(&grads).is_none(), "frozen base bias");
    assert!(model.down.weight.grad(&grads).is_none(), "frozen linear without adapter");
}

#[test]
fn modules_to_save_train_in_full_and_count_as_peft_counts() {
    let device = Default::default();
    let lora = LoraConfig { modules_to_save: Some(vec!["down".into()]), ..config(&["up"]) };
    let (mut model, injected) = inject(Mlp::<AD>::new(&device), &lora, &device).unwrap();
    assert_eq!(injected.saved_modules, ["net.down"]);
    let count = ParameterCount::of(&mut model, &lora);
    // adapter on up: 6*4 + 4*10; down in full: 10*3 + 3.
    assert_eq!(count.trainable, 64 + 33);
    // PEFT counts the saved module twice (original and trained copy).
    assert_eq!(count.all, (6 * 10 + 10) + 33 + 64 + 33);
    assert!(count.to_string().starts_with("trainable params: 97 || all params: 200 || trainable%: 48.5000"), "{count}");

    let grads = model.forward(input::<AD>(&device)).sum().backward();
    assert!(model.down.weight.grad(&grads).is_some());
}

#[test]
fn save_then_load_is_bit_exact() {
    let device = Default::default();
    B::seed(&device, 4);
    let lora = LoraConfig {
        init_lora_weights: InitLoraWeights::Flag(false),
        modules_to_save: Some(vec!["down".into()]),
        ..config(&["up"])
    };
    let base = Mlp::<B>::new(&device);
    let (mut trained, _) = inject(base.clone(), &lora, &device).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let saved = save_adapter(&mut trained, &lora, dir.path()).unwrap();
    assert_eq!(saved.tensors, 4);
    assert_eq!(read_config(dir.path()).unwrap(), LoraConfig { inference_mode: true, ..lora.clone() });

    let (loaded, _) = load_adapter(base, dir.path(), &device).unwrap();
    let x = input::<B>(&device);
    assert_eq!(loaded.forward(x.clone()).into_data(), trained.forward(x).into_data());
    let a = loaded.up.adapter.as_ref().unwrap();
    assert_eq!(a.lora_A.val().into_data(), trained.up.adapter.as_ref().unwrap().lora_A.val().into_data());
    assert_eq!(a.scaling, 2.0);
    let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(leftovers.len(), 2, "no temporary files left: {leftovers:?}");
}

#[test]
fn a_failed_save_keeps_the_previous_adapter() {
    let device = Default::default();
    let lora = config(&["up"]);
    let (mut model, _) = inject(Mlp::<B>::new(&device), &lora, &device).unwrap();
    let dir = tempfile::tempdir().unwrap();
    save_adapter(&mut model, &lora, dir.path()).unwrap();
    let before = std::fs::read(dir.path().join("adapter_model.safetensors")).unwrap();
    // A directory where the config file goes makes the second rename fail.
    std::fs::remove_file(dir.path().join("adapter_config.json")).unwrap();
    std::fs::create_dir(dir.path().join("adapter_config.json")).unwrap();
    std::fs::create_dir(dir.path().join("adapter_config.json/block")).unwrap();
    assert!(save_adapter(&mut model, &lora, dir.path()).is_err());
    assert_eq!(std::fs::read(dir.path().join("adapter_model.safetensors")).unwrap(), before);
    let temps: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp-"))
        .collect();
    assert!(temps.is_empty(), "temporary files removed");
}

#[test]
fn a_target_the_model_lacks_is_an_error_listing_what_it_has() {
    let device = Default::default();
    let err = inject(Mlp::<B>::new(&device), &config(&["query"]), &device).unwrap_err();
    let message = err.to_string();
    assert!(message.contains("query") && message.contains("up") && message.contains("down"), "{message}");
}

#[test]
fn loading_checks_rank_and_names_against_the_config() {
    let device = Default::default();
    let lora = config(&["up"]);
    let (mut model, _) = inject(Mlp::<B>::new(&device), &lora, &device).unwrap();
    let dir = tempfile::tempdir().unwrap();
    save_adapter(&mut model, &lora, dir.path()).unwrap();

    // The config says rank 2, the tensors have rank 4.
    let config_path = dir.path().join("adapter_config.json");
    let text = std::fs::read_to_string(&config_path).unwrap().replace("\"r\": 4", "\"r\": 2");
    std::fs::write(&config_path, text).unwrap();
    let err = load_adapter(Mlp::<B>::new(&device), dir.path(), &device).unwrap_err().to_string();
    assert!(err.contains("net.up.lora_A.weight") && err.contains("[2, 6]") && err.contains("[4, 6]"), "{err}");

    // The config targets `down` too, which the file has no tensors for.
    let text = std::fs::read_to_string(&config_path)
        .unwrap()
        .replace("\"r\": 2", "\"r\": 4")
        .replace("\"up\"", "\"up\", \"down\"");
    std::fs::write(&config_path, text).unwrap();
    let err = load_adapter(Mlp::<B>::new(&device), dir.path(), &device).unwrap_err().to_string();
    assert!(err.contains("net.down.lora_A.weight") && err.contains("missing"), "{err}");

    // Not JSON at all.
    std::fs::write(&config_path, "{ nope").unwrap();
    let err = load_adapter(Mlp::<B>::new(&device), dir.path(), &device).unwrap_err().to_string();
    assert!(err.contains("adapter_config.json"), "{err}");
}

/// DoRA's dropout branch (PEFT's `result + (m / n - 1) F.linear(dropout(x), W) + (m / n) lora`)
/// is the algebra of the plain branch: with a rate so small that nothing is dropped, training
/// gives the inference output; with a real rate the output changes and the magnitudes get a
/// gradient. The magnitudes start at the column norms of the weight (B is zero), so a fresh
/// DoRA adapter changes nothing.
#[test]
fn dora_s_dropout_branch_and_fresh_start() {
    let device = Default::default();
    <AD as Backend>::seed(&device, 3);
    let model = Mlp::<AD>::new(&device);
    let x = input::<AD>(&device);
    let before = model.forward(x.clone()).into_data();
    let dora = |p: f64| LoraConfig {
        use_dora: true,
        lora_dropout: p,
        init_lora_weights: InitLoraWeights::Flag(false),
        ..config(&["up", "down"])
    };
    // A fresh default DoRA adapter (B zero) computes what the model did.
    let fresh = LoraConfig { use_dora: true, ..config(&["up", "down"]) };
    let (same, _) = inject(model.clone(), &fresh, &device).unwrap();
    same.forward(x.clone()).into_data().assert_approx_eq::<f32>(&before, burn::tensor::Tolerance::absolute(1e-5));

    let (tiny, _) = inject(model.clone(), &dora(1e-12), &device).unwrap();
    let trained = tiny.forward(x.clone());
    let inferred = tiny.valid().forward(x.clone().inner());
    trained
        .clone()
        .inner()
        .into_data()
        .assert_approx_eq::<f32>(&inferred.into_data(), burn::tensor::Tolerance::absolute(1e-5));
    assert!(
        trained.clone().inner().sub(Tensor::<B, 2>::from_data(before.clone(), &device)).abs().max().into_scalar()
            > 1e-3,
        "B is not zero here: the adapter changes the output"
    );
    let grads = trained.sum().backward();
    let m = tiny.up.adapter.as_ref().unwrap().lora_magnitude_vector.as_ref().unwrap();
    assert!(m.grad(&grads).is_some(), "the magnitudes are trained");

    let (dropped, _) = inject(model, &dora(0.5), &device).unwrap();
    let out = dropped.forward(x.clone()).inner();
    let inferred = dropped.valid().forward(x.inner());
    assert!(out.sub(inferred).abs().max().into_scalar() > 1e-3, "dropout at 0.5 changes the training output");
}

/// Issue 40: a target that matches nothing says why, where one of PEFT's rules explains it.
#[test]
fn a_target_that_matches_nothing_says_why() {
    let device = Default::default();
    let cases: Vec<(LoraConfig, &str)> = vec![
        (
            LoraConfig { target_modules: Some(TargetModules::Regex("up".into())), ..config(&[]) },
            "a string is a regular expression matched against the whole name (net.up)",
        ),
        (
            LoraConfig { modules_to_save: Some(vec!["down".into()]), ..config(&["down"]) },
            "net.down is in modules_to_save",
        ),
        (
            LoraConfig { layers_to_transform: Some(lora_adapter::Layers::Many(vec![5])), ..config(&["up"]) },
            "layers_to_transform [5] names no layer the model has (its layers: none)",
        ),
    ];
    for (config, says) in cases {
        let err = inject(Mlp::<B>::new(&device), &config, &device).unwrap_err().to_string();
        assert!(err.contains("matched no linear") && err.contains(says), "{err}");
    }
}

/// Serving in bf16: the base weights of the linears that are not the output layer and carry
/// no DoRA adapter are held as their nearest bf16 values; the adapters stay f32; the output
/// stays close to f32's; `base_weight` (what merging, DoRA and saving read) is f32 again.
#[test]
fn base_weights_held_in_bf16() {
    use burn::tensor::{DType, bf16};
    let device = Default::default();
    B::seed(&device, 9);
    let lora = LoraConfig { init_lora_weights: InitLoraWeights::Flag(false), ..config(&["up"]) };
    let (model, _) = inject(Mlp::<B>::new(&device), &lora, &device).unwrap();
    let x = input::<B>(&device);
    let f32s = model.forward(x.clone()).into_data().into_vec::<f32>().unwrap();
    let mut held = model.clone();
    assert_eq!(lora_adapter::hold_in_bf16(&mut held), 1, "the output layer stays f32");
    assert_eq!(held.up.weight.val().dtype(), DType::BF16);
    assert_eq!(held.down.weight.val().dtype(), DType::F32);
    let adapter = held.up.adapter.as_ref().unwrap();
    assert_eq!(adapter.lora_A.val().dtype(), DType::F32);
    let rounded: Vec<f32> = model.up.weight.val().into_data().into_vec::<f32>().unwrap();
    let rounded: Vec<f32> = rounded.iter().map(|v| bf16::from_f32(*v).to_f32()).collect();
    assert_eq!(held.up.base_weight().into_data().into_vec::<f32>().unwrap(), rounded);
    let bf16s = held.forward(x).into_data().into_vec::<f32>().unwrap();
    let worst = f32s.iter().zip(&bf16s).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    assert!(worst > 0.0 && worst < 2e-2, "{worst}");
    // Merging reads the f32 weight back.
    assert_eq!(merge(held).unwrap().up.weight.val().dtype(), DType::F32);

    // A DoRA linear keeps its f32 weight (its norms are taken from it at every forward).
    let dora = LoraConfig { use_dora: true, ..config(&["up"]) };
    let (mut model, _) = inject(Mlp::<B>::new(&device), &dora, &device).unwrap();
    assert_eq!(lora_adapter::hold_in_bf16(&mut model), 0);
}
