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
    /// The evaluation at the epoch's end (`eval_strategy = "epoch"`).
    #[serde(flatten)]
    pub eval: Option<EvalMetrics>,
    pub train_seconds: f64,
    pub eval_seconds: f64,
}

/// One evaluation: its step, its (fractional) epoch and figures, as Trainer logs them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    pub step: u64,
    pub epoch: f64,
    #[serde(flatten)]
    pub metrics: EvalMetrics,
    pub eval_seconds: f64,
}

/// Appends one JSON object as a line.
pub fn append_jsonl(path: &Path, value: &serde_json::Value) -> Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    // One write of the whole line; a write that fails part-way (a full disk) is cut back off,
    // so the file never ends in a torn line.
    let line = format!("{value}\n");
    let start = file.metadata().map(|m| m.len()).with_context(|| format!("cannot write {}", path.display()))?;
    if let Err(e) = file.write_all(line.as_bytes()) {
        let _ = file.set_len(start);
        return Err(e).with_context(|| format!("cannot write {}", path.display()));
    }
    Ok(())
}

/// Writes `text` through a temporary file and a rename.
pub fn write_atomic(path: &Path, text: &str) -> Result<()> {
    Ok(tensor_file::write_atomic(path, text.as_bytes())?)
}

/// Peak resident memory of this process in bytes (Linux `VmHWM`), if known.
pub fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Training loss and evaluation accuracy per epoch, as a standalone SVG (the epochs evaluated
/// at their end).
pub fn curves_svg(records: &[EpochRecord]) -> String {
    let epochs: Vec<(usize, f64, EvalMetrics)> =
        records.iter().filter_map(|r| r.eval.clone().map(|m| (r.epoch, r.train_loss, m))).collect();
    let epochs: Vec<Plotted> =
        epochs.into_iter().map(|(epoch, train_loss, eval)| Plotted { epoch, train_loss, eval }).collect();
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
        let dots: String =
            points.iter().map(|(a, b)| format!(r#"<circle cx="{a:.1}" cy="{b:.1}" r="3" fill="{color}"/>"#)).collect();
        format!(r#"<polyline fill="none" stroke="{color}" stroke-width="2" points="{}"/>{dots}"#, d.join(" "))
    };
    let train = line(epochs.iter().map(|e| (x(e.epoch), y_loss(e.train_loss))).collect(), "#1f77b4");
    let eval = line(epochs.iter().map(|e| (x(e.epoch), y_loss(e.eval.eval_loss))).collect(), "#ff7f0e");
    // Accuracy where the task has one (classification); a regression plots its losses alone.
    let acc = match epochs.iter().all(|e| e.eval.eval_accuracy.is_some()) && !epochs.is_empty() {
        true => {
            line(epochs.iter().map(|e| (x(e.epoch), y_acc(e.eval.eval_accuracy.unwrap_or(0.0)))).collect(), "#2ca02c")
        }
        false => String::new(),
    };
    let ticks: String = epochs
        .iter()
        .map(|e| {
            format!(
                r#"<text x="{:.1}" y="{}" font-size="11" text-anchor="middle">{}</text>"#,
                x(e.epoch),
                H - PAD + 16.0,
                e.epoch
            )
        })
        .collect();
    let yticks: String = [0.0, 0.5, 1.0]
        .iter()
        .map(|&f| {
            let y = H - PAD - f * (H - 2.0 * PAD);
            format!(
                r##"<text x="{}" y="{:.1}" font-size="11" text-anchor="end">{:.2}</text><text x="{}" y="{:.1}" font-size="11" fill="#2ca02c">{:.1}</text><line x1="{PAD}" y1="{y:.1}" x2="{}" y2="{y:.1}" stroke="#ddd"/>"##,
                PAD - 4.0, y + 4.0, f * loss_max, W - PAD + 4.0, y + 4.0, f, W - PAD
            )
        })
        .collect();
    let last =
        epochs.last().cloned().unwrap_or(Plotted { epoch: 0, train_loss: f64::NAN, eval: EvalMetrics::default() });
    format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif">
<rect width="100%" height="100%" fill="white"/>
<text x="{PAD}" y="22" font-size="14">Loss (left axis) and evaluation accuracy (right axis) per epoch</text>
{yticks}
<line x1="{PAD}" y1="{b}" x2="{r}" y2="{b}" stroke="black"/><line x1="{PAD}" y1="{PAD}" x2="{PAD}" y2="{b}" stroke="black"/><line x1="{r}" y1="{PAD}" x2="{r}" y2="{b}" stroke="black"/>
{ticks}<text x="{mid}" y="{lbl}" font-size="12" text-anchor="middle">epoch</text>
{train}{eval}{acc}
<text x="{PAD}" y="{leg}" font-size="12" fill="#1f77b4">train loss {tl:.4}</text>
<text x="{l2}" y="{leg}" font-size="12" fill="#ff7f0e">eval loss {el:.4}</text>
{accuracy_legend}
</svg>
"##,
        b = H - PAD,
        r = W - PAD,
        mid = W / 2.0,
        lbl = H - PAD + 32.0,
        leg = H - 6.0,
        l2 = PAD + 190.0,
        tl = last.train_loss,
        el = last.eval.eval_loss,
        accuracy_legend = match last.eval.eval_accuracy {
            Some(a) => format!(
                r##"<text x="{}" y="{}" font-size="12" fill="#2ca02c">eval accuracy {a:.4}</text>"##,
                PAD + 370.0,
                H - 6.0
            ),
            None => String::new(),
        },
    )
}

/// An epoch on the picture.
#[derive(Clone)]
struct Plotted {
    epoch: usize,
    train_loss: f64,
    eval: EvalMetrics,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn curves_plot_every_epoch() {
        let epochs: Vec<EpochRecord> = (1..=3)
            .map(|epoch| EpochRecord {
                epoch,
                train_loss: 0.7 / epoch as f64,
                eval: Some(EvalMetrics {
                    eval_loss: 0.6,
                    eval_accuracy: Some(0.5 + 0.1 * epoch as f64),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .collect();
        let svg = curves_svg(&epochs);
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<polyline").count(), 3, "train loss, eval loss, eval accuracy");
        assert_eq!(svg.matches("<circle").count(), 9);
        assert!(svg.contains("eval accuracy 0.8000"));
    }
}
