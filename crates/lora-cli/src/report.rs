//! What a run leaves beside its adapter: `metrics.jsonl`, `summary.json`, `curves.svg`.

use std::io::Write;
use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::eval::EvalMetrics;

/// One epoch's figures.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    pub epoch: usize,
    /// Mean training loss over the epoch's steps.
    pub train_loss: f64,
    #[serde(flatten)]
    pub eval: EvalMetrics,
    pub train_seconds: f64,
    pub eval_seconds: f64,
}

/// Appends one JSON object as a line.
pub fn append_jsonl(path: &Path, value: &serde_json::Value) -> Result<()> {
    let mut file = std::fs::OpenOptions::new().create(true).append(true).open(path).with_context(|| format!("cannot write {}", path.display()))?;
    writeln!(file, "{value}").with_context(|| format!("cannot write {}", path.display()))
}

/// Writes `text` through a temporary file and a rename.
pub fn write_atomic(path: &Path, text: &str) -> Result<()> {
    lora_adapter::peft::write_atomic(path, text.as_bytes()).with_context(|| format!("cannot write {}", path.display()))
}

/// Peak resident memory of this process in bytes (Linux `VmHWM`), if known.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Training loss and evaluation accuracy per epoch, as a standalone SVG.
pub fn curves_svg(epochs: &[EpochRecord]) -> String {
    const W: f64 = 640.0;
    const H: f64 = 360.0;
    const PAD: f64 = 50.0;
    let n = epochs.len().max(1) as f64;
    let x = |epoch: usize| PAD + (epoch as f64 - 1.0) / (n - 1.0).max(1.0) * (W - 2.0 * PAD);
    let loss_max = epochs.iter().flat_map(|e| [e.train_loss, e.eval.eval_loss]).fold(0.0f64, f64::max).max(1e-9) * 1.1;
    let y_loss = |v: f64| H - PAD - v / loss_max * (H - 2.0 * PAD);
    let y_acc = |v: f64| H - PAD - v * (H - 2.0 * PAD);
    let line = |points: Vec<(f64, f64)>, color: &str| {
        let d: Vec<String> = points.iter().map(|(a, b)| format!("{a:.1},{b:.1}")).collect();
        let dots: String = points.iter().map(|(a, b)| format!(r#"<circle cx="{a:.1}" cy="{b:.1}" r="3" fill="{color}"/>"#)).collect();
        format!(r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>{dots}"#, d.join(" "))
    };
    let train = line(epochs.iter().map(|e| (x(e.epoch), y_loss(e.train_loss))).collect(), "#1f77b4");
    let eval = line(epochs.iter().map(|e| (x(e.epoch), y_loss(e.eval.eval_loss))).collect(), "#ff7f0e");
    let acc = line(epochs.iter().map(|e| (x(e.epoch), y_acc(e.eval.eval_accuracy))).collect(), "#2ca02c");
    let ticks: String = epochs
        .iter()
        .map(|e| format!(r#"<text x="{:.1}" y="{}" font-size="11" text-anchor="middle">{}</text>"#, x(e.epoch), H - PAD + 16.0, e.epoch))
        .collect();
    let last = epochs.last().cloned().unwrap_or_default();
    format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif">
<rect width="100%" height="100%" fill="white"/>
<text x="{PAD}" y="24" font-size="14">Training loss, evaluation loss (left, 0 to {loss_max:.2}) and evaluation accuracy (right, 0 to 1) per epoch</text>
<line x1="{PAD}" y1="{b}" x2="{r}" y2="{b}" stroke="black"/><line x1="{PAD}" y1="{PAD}" x2="{PAD}" y2="{b}" stroke="black"/><line x1="{r}" y1="{PAD}" x2="{r}" y2="{b}" stroke="black"/>
{ticks}<text x="{mid}" y="{lbl}" font-size="12" text-anchor="middle">epoch</text>
{train}{eval}{acc}
<text x="{PAD}" y="{leg}" font-size="12" fill="#1f77b4">train loss {tl:.4}</text>
<text x="{l2}" y="{leg}" font-size="12" fill="#ff7f0e">eval loss {el:.4}</text>
<text x="{l3}" y="{leg}" font-size="12" fill="#2ca02c">eval accuracy {ea:.4}</text>
</svg>
"##,
        b = H - PAD,
        r = W - PAD,
        mid = W / 2.0,
        lbl = H - PAD + 32.0,
        leg = H - 6.0,
        l2 = PAD + 190.0,
        l3 = PAD + 370.0,
        tl = last.train_loss,
        el = last.eval.eval_loss,
        ea = last.eval.eval_accuracy,
    )
}
