//! Classify texts with a BERT checkpoint, on the CPU or a GPU (CUDA, wgpu) chosen at run time.
//!
//! ```text
//! cargo run --release -p lora-cli --example classify -- --model ../shared/assets/all-MiniLM-L6-v2 \
//!     --text "A wonderful film." --text "Dull and far too long."
//! cargo run --release -p lora-cli --features cuda --example classify -- --device cuda:0 --model ...
//! cargo run --release -p lora-cli --features wgpu --example classify -- --device wgpu --model ...
//! ```
//! It prints one JSON line per text with the logits of `BertForSequenceClassification`
//! (a checkpoint without a classifier gets a freshly initialised one, and says so).
//! `--adapter DIR` loads a PEFT LoRA adapter (written here or by Python PEFT) onto the model.

use burn::tensor::backend::Backend;
use lora_cli::device::{DeviceSpec, check_available};

fn main() {
    if let Err(message) = run() {
        eprintln!("error: {message}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let mut model = None;
    let mut adapter_dir = None;
    let mut texts = Vec::new();
    let mut device = DeviceSpec::Cpu;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--model" => model = Some(value()?),
            "--text" => texts.push(value()?),
            "--adapter" => adapter_dir = Some(std::path::PathBuf::from(value()?)),
            "--device" => device = value()?.parse()?,
            other => return Err(format!("unknown argument {other:?}; expected --model, --adapter, --text, --device")),
        }
    }
    let model = model.ok_or("--model DIR_OR_HUB_ID is required")?;
    check_available(device).map_err(|e| e.to_string())?;
    match device {
        DeviceSpec::Cpu => classify::<burn::backend::Flex>(&model, adapter_dir.as_deref(), &texts, &Default::default()),
        #[cfg(feature = "cuda")]
        DeviceSpec::Cuda(n) => classify::<burn::backend::Cuda>(
            &model,
            adapter_dir.as_deref(),
            &texts,
            &burn::backend::cuda::CudaDevice::new(n),
        ),
        #[cfg(not(feature = "cuda"))]
        DeviceSpec::Cuda(_) => unreachable!("check_available refuses cuda without the feature"),
        #[cfg(feature = "wgpu")]
        DeviceSpec::Wgpu(n) => {
            let (device, adapter) = lora_cli::device::wgpu::open(n).map_err(|e| e.to_string())?;
            eprintln!("using {adapter}");
            classify::<burn::backend::Wgpu>(&model, adapter_dir.as_deref(), &texts, &device)
        }
        #[cfg(not(feature = "wgpu"))]
        DeviceSpec::Wgpu(_) => unreachable!("check_available refuses wgpu without the feature"),
    }
}

fn classify<B: Backend>(
    model: &str,
    adapter: Option<&std::path::Path>,
    texts: &[String],
    device: &B::Device,
) -> Result<(), String> {
    let mut pretrained =
        encoders::from_pretrained::<B>(model, &encoders::LoadOptions::default(), device).map_err(|e| e.to_string())?;
    if let Some(dir) = adapter {
        pretrained.model =
            lora_adapter::peft::load_adapter(pretrained.model, dir, device).map_err(|e| e.to_string())?.0;
    } else if !pretrained.report.initialized.is_empty() {
        eprintln!(
            "note: {} has no classifier; initialised {} as transformers does",
            model,
            pretrained.report.initialized.join(", ")
        );
    }
    let tokenizer = pretrained.tokenizer(512).map_err(|e| e.to_string())?;
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let encoded = tokenizer.encode_batch(&refs).map_err(|e| e.to_string())?;
    let batch = tokenizer.pad(&encoded.iter().collect::<Vec<_>>());
    let logits = pretrained.model.forward(batch.to_input(device));
    let logits = logits.into_data().into_vec::<f32>().map_err(|e| format!("{e:?}"))?;
    let labels = logits.len() / texts.len().max(1);
    for (text, row) in texts.iter().zip(logits.chunks(labels.max(1))) {
        println!("{}", serde_json::json!({ "text": text, "logits": row }));
    }
    Ok(())
}
