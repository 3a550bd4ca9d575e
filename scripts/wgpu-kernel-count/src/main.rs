//! `wgpu-kernel-count CONFIG.json fused|unfused BATCH SEQ WARMUP REPEATS`: `lora bench`'s rows
//! on Burn's wgpu backend, with (`Fusion<CubeBackend>`) or without its operation fusion. With
//! `--warmup 0`, the slowest step is the first: the one that generates and compiles the kernels.

use burn::backend::{Autodiff, Wgpu};
use burn::tensor::backend::AutodiffBackend;
use lora_cli::bench::{BenchOptions, run};

type Unfused = burn_cubecl::CubeBackend<cubecl::wgpu::WgpuRuntime, f32, i32, u32>;

fn rows<B: AutodiffBackend>(options: &BenchOptions, name: &str) -> anyhow::Result<()> {
    let start = std::time::Instant::now();
    for r in run::<B>(options, &Default::default(), name)? {
        println!(
            "{name} {}: median {:.3} s, min {:.3}, max {:.3}",
            r.row, r.median_seconds, r.min_seconds, r.max_seconds
        );
    }
    println!("{name}: {:.1} s in all", start.elapsed().as_secs_f64());
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, config, variant, batch, seq, warmup, repeats] = args.as_slice() else {
        anyhow::bail!("usage: wgpu-kernel-count CONFIG.json fused|unfused BATCH SEQ WARMUP REPEATS");
    };
    let options = BenchOptions {
        model_config: config.into(),
        batch_size: batch.parse()?,
        seq_len: seq.parse()?,
        warmup: warmup.parse()?,
        repeats: repeats.parse()?,
        seed: 0,
        pad_to_multiple_of: 1,
        mix: None,
    };
    match variant.as_str() {
        "fused" => rows::<Autodiff<Wgpu>>(&options, "fused"),
        "unfused" => rows::<Autodiff<Unfused>>(&options, "unfused"),
        other => anyhow::bail!("unknown variant {other:?}: fused or unfused"),
    }
}
