//! What a run leaves beside its adapter: `metrics.jsonl`, `summary.json`, `curves.svg`.

use std::io::Write;
use std::path::Path;

use crate::error::{Result, TrainError};
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
    let mut file =
        std::fs::OpenOptions::new().create(true).append(true).open(path).map_err(TrainError::io("write", path))?;
    // One write of the whole line; a write that fails part-way (a full disk) is cut back off,
    // so the file never ends in a torn line.
    let line = format!("{value}\n");
    let start = file.metadata().map(|m| m.len()).map_err(TrainError::io("write", path))?;
    if let Err(e) = file.write_all(line.as_bytes()) {
        let _ = file.set_len(start);
        return Err(TrainError::io("write", path)(e));
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

/// The run's curves per optimizer step, as a standalone SVG drawn with plotters: the training
/// loss of each log line with the evaluation loss (top), the evaluations' metrics (accuracy,
/// F1, correlations: what the task has), and the learning rate (bottom). `log_history` is the
/// run's log lines (`metrics.jsonl`); a run that logs no step (`logging_strategy = "no"`) plots
/// its epochs' mean losses instead.
pub fn curves_svg(log_history: &[serde_json::Value], evaluations: &[Evaluation]) -> Result<String> {
    let points = |key: &str| -> Vec<(f64, f64)> {
        log_history
            .iter()
            .filter_map(|v| Some((v.get("step")?.as_f64()?, v.get(key)?.as_f64()?)))
            .filter(|(_, y)| y.is_finite())
            .collect()
    };
    let mut train = points("loss");
    if train.is_empty() {
        train = points("train_loss");
    }
    let eval_loss: Vec<(f64, f64)> =
        evaluations.iter().map(|e| (e.step as f64, e.metrics.eval_loss)).filter(|(_, y)| y.is_finite()).collect();
    let metrics: Vec<(&str, Vec<(f64, f64)>)> = PLOTTED_METRICS
        .iter()
        .map(|&name| {
            let series = evaluations
                .iter()
                .filter_map(|e| {
                    let v = serde_json::to_value(&e.metrics).ok()?;
                    Some((e.step as f64, v.get(name)?.as_f64()?))
                })
                .filter(|(_, y)| y.is_finite())
                .collect::<Vec<_>>();
            (name, series)
        })
        .filter(|(_, series)| !series.is_empty())
        .collect();
    let lr = points("learning_rate");
    let last_step = [&train, &eval_loss, &lr].iter().flat_map(|s| s.iter().map(|p| p.0)).fold(1.0f64, f64::max);

    let mut svg = String::new();
    {
        use plotters::prelude::*;
        let root = SVGBackend::with_string(&mut svg, (720, 760)).into_drawing_area();
        let drawn = (|| -> Result<(), Box<dyn std::error::Error>> {
            root.fill(&WHITE)?;
            let panels = root.split_evenly((3, 1));
            let colors = [
                RGBColor(0x1f, 0x77, 0xb4),
                RGBColor(0xff, 0x7f, 0x0e),
                RGBColor(0x2c, 0xa0, 0x2c),
                RGBColor(0xd6, 0x27, 0x28),
                RGBColor(0x94, 0x67, 0xbd),
                RGBColor(0x8c, 0x56, 0x4b),
            ];
            let draw = |area: &DrawingArea<SVGBackend, plotters::coord::Shift>,
                        title: &str,
                        series: Vec<(String, &Vec<(f64, f64)>)>,
                        y_range: std::ops::Range<f64>,
                        scientific: bool|
             -> Result<(), Box<dyn std::error::Error>> {
                let mut chart = ChartBuilder::on(area)
                    .caption(title, ("sans-serif", 15))
                    .margin(8)
                    .x_label_area_size(28)
                    .y_label_area_size(62)
                    .build_cartesian_2d(0f64..last_step, y_range)?;
                let sci = |y: &f64| format!("{y:.1e}");
                let plain = |y: &f64| format!("{y:.2}");
                let mut mesh = chart.configure_mesh();
                mesh.x_desc("optimizer step").light_line_style(WHITE.mix(0.0));
                if scientific {
                    mesh.y_label_formatter(&sci).draw()?;
                } else {
                    mesh.y_label_formatter(&plain).draw()?;
                }
                for (i, (label, points)) in series.into_iter().enumerate() {
                    let color = colors[i % colors.len()];
                    let marked = points.len() <= 60;
                    chart
                        .draw_series(
                            LineSeries::new(points.iter().copied(), color.stroke_width(2)).point_size(if marked {
                                2
                            } else {
                                0
                            }),
                        )?
                        .label(label)
                        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2)));
                }
                chart.configure_series_labels().background_style(WHITE.mix(0.85)).border_style(BLACK).draw()?;
                Ok(())
            };
            let top = train.iter().chain(&eval_loss).map(|p| p.1).fold(0.0f64, f64::max).max(1e-9) * 1.1;
            let mut losses = vec![("train loss".to_string(), &train)];
            if !eval_loss.is_empty() {
                losses.push(("eval loss".to_string(), &eval_loss));
            }
            draw(&panels[0], "Loss", losses, 0.0..top, false)?;
            let low = metrics.iter().flat_map(|(_, s)| s.iter().map(|p| p.1)).fold(0.0f64, f64::min);
            let high = metrics.iter().flat_map(|(_, s)| s.iter().map(|p| p.1)).fold(1.0f64, f64::max);
            let named = metrics.iter().map(|(name, s)| (name.replace('_', " "), s)).collect();
            let title =
                if metrics.is_empty() { "Evaluation metrics (none: not evaluated)" } else { "Evaluation metrics" };
            draw(&panels[1], title, named, low..high, false)?;
            let top = lr.iter().map(|p| p.1).fold(0.0f64, f64::max).max(1e-12) * 1.1;
            draw(&panels[2], "Learning rate", vec![("learning rate".to_string(), &lr)], 0.0..top, true)?;
            root.present()?;
            Ok(())
        })();
        drawn.map_err(|e| TrainError::Curves(e.to_string()))?;
    }
    Ok(svg)
}

/// The evaluation metrics the curves show, where the task has them.
const PLOTTED_METRICS: [&str; 6] =
    ["eval_accuracy", "eval_f1", "eval_f1_macro", "eval_f1_micro", "eval_pearson", "eval_spearmanr"];

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn curves_plot_each_logged_step_and_evaluation() {
        let history: Vec<serde_json::Value> = (1..=6)
            .map(|step| serde_json::json!({"step": step, "loss": 0.7 / step as f64, "learning_rate": 1e-3 * (7 - step) as f64 / 6.0}))
            .collect();
        let evaluations: Vec<Evaluation> = [3u64, 6]
            .iter()
            .map(|&step| Evaluation {
                step,
                metrics: EvalMetrics {
                    eval_loss: 0.6,
                    eval_accuracy: Some(0.5 + 0.05 * step as f64),
                    ..Default::default()
                },
                ..Default::default()
            })
            .collect();
        let svg = curves_svg(&history, &evaluations).unwrap();
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        for label in ["train loss", "eval loss", "eval accuracy", "learning rate", "optimizer step"] {
            assert!(svg.contains(label), "no {label:?} in the picture");
        }
        // Four series, each a line and a legend sample.
        assert_eq!(svg.matches(r#"stroke-width="2" points"#).count(), 8, "{svg}");
        // Each logged step is marked: 6 train-loss points, 2 evaluations twice, 6 rates.
        assert_eq!(svg.matches("<circle").count(), 6 + 2 + 2 + 6);
        // Without step logs the epochs' mean losses stand in; without evaluations it says so.
        let epochs = vec![serde_json::json!({"step": 3, "epoch": 1, "train_loss": 0.5})];
        let svg = curves_svg(&epochs, &[]).unwrap();
        assert!(svg.contains("train loss") && svg.contains("none: not evaluated"));
    }
}
