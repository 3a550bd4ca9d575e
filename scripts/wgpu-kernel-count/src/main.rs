//! `wgpu-kernel-count CONFIG.json fused|unfused BATCH SEQ[,SEQ...] WARMUP REPEATS`: `lora bench`'s
//! rows on Burn's wgpu backend, with (`Fusion<CubeBackend>`) or without its operation fusion. With
//! warm-up 0, the slowest step is the first: the one that generates and compiles the kernels.
//! Several lengths run one after the other in one process, so a length's first step shows what
//! the kernels compiled for the lengths before it leave to compile.

use burn::backend::{Autodiff, Wgpu};
use burn::tensor::backend::AutodiffBackend;
use lora_cli::bench::{BenchOptions, run};

type Unfused = burn_cubecl::CubeBackend<cubecl::wgpu::WgpuRuntime, f32, i32, u32>;

fn rows<B: AutodiffBackend>(options: &BenchOptions, lengths: &[usize], name: &str) -> anyhow::Result<()> {
    let start = std::time::Instant::now();
    for &seq_len in lengths {
        let options = BenchOptions { seq_len, ..options.clone() };
        for r in run::<B>(&options, &Default::default(), name)? {
            let (median, min, max) = (r.median_seconds, r.min_seconds, r.max_seconds);
            println!("{name} {} x {seq_len} {}: median {median:.3} s, min {min:.3}, max {max:.3}", r.batch_size, r.row);
        }
    }
    println!("{name}: {:.1} s in all", start.elapsed().as_secs_f64());
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let [_, config, variant, batch, seq, warmup, repeats] = args.as_slice() else {
        anyhow::bail!("usage: wgpu-kernel-count CONFIG.json fused|unfused BATCH SEQ[,SEQ...] WARMUP REPEATS");
    };
    let lengths = seq.split(',').map(str::parse).collect::<Result<Vec<usize>, _>>()?;
    let options = BenchOptions {
        model_config: config.into(),
        batch_size: batch.parse()?,
        seq_len: lengths[0],
        warmup: warmup.parse()?,
        repeats: repeats.parse()?,
        seed: 0,
        pad_to_multiple_of: 1,
        mix: None,
    };
    match variant.as_str() {
        "fused" => rows::<Autodiff<Wgpu>>(&options, &lengths, "fused"),
        "unfused" => rows::<Autodiff<Unfused>>(&options, &lengths, "unfused"),
        other => anyhow::bail!("unknown variant {other:?}: fused or unfused"),
    }
}
