//! Write a fresh LoRA adapter for a model in PEFT's format, as `get_peft_model(model,
//! config).save_pretrained(dir)` does: for checking that Python PEFT reads what we write.
//!
//! ```text
//! cargo run --release -p encoders --example new_adapter -- --model ../shared/assets/all-MiniLM-L6-v2 \
//!     --output /tmp/adapter --init false --seed 7
//! ```
//! `--init false` draws `lora_B` too (PEFT's `init_lora_weights=False`), so that the adapter
//! changes the logits and a comparison means something.

use burn::backend::Flex;
use burn::tensor::backend::Backend;
use lora_adapter::{InitLoraWeights, LoraConfig, inject};

fn main() {
    if let Err(message) = run() {
        eprintln!("error: {message}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let (mut model, mut output, mut seed) = (None, None, 0u64);
    let mut lora = LoraConfig::default();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--model" => model = Some(value()?),
            "--output" => output = Some(std::path::PathBuf::from(value()?)),
            "--seed" => seed = value()?.parse().map_err(|e| format!("--seed: {e}"))?,
            "--r" => lora.r = value()?.parse().map_err(|e| format!("--r: {e}"))?,
            "--lora-alpha" => lora.lora_alpha = value()?.parse().map_err(|e| format!("--lora-alpha: {e}"))?,
            "--init" => {
                lora.init_lora_weights = match value()?.as_str() {
                    "true" => InitLoraWeights::Flag(true),
                    "false" => InitLoraWeights::Flag(false),
                    other => InitLoraWeights::Method(other.to_string()),
                }
            }
            other => {
                return Err(format!(
                    "unknown argument {other:?}; expected --model, --output, --seed, --r, --lora-alpha, --init"
                ));
            }
        }
    }
    let (model, output) = (model.ok_or("--model is required")?, output.ok_or("--output is required")?);
    let device = Default::default();
    Flex::seed(&device, seed);
    let pretrained = encoders::from_pretrained::<Flex>(&model, &encoders::LoadOptions::default(), &device)
        .map_err(|e| e.to_string())?;
    lora.base_model_name_or_path = Some(model.clone());
    let lora = lora.with_task_defaults();
    let (mut adapted, _) = inject(pretrained.model, &lora, &device).map_err(|e| e.to_string())?;
    let saved = lora_adapter::peft::save_adapter(&mut adapted, &lora, &output).map_err(|e| e.to_string())?;
    println!("wrote {} ({} tensors, {} bytes)", output.display(), saved.tensors, saved.bytes);
    Ok(())
}
