//! Evaluation metrics of logits against targets, per task, as Trainer reports them with
//! `evaluate`/scikit-learn's definitions: for single-label classification accuracy, F1 (the
//! positive class's, for two classes), macro and micro F1, per-class precision/recall/F1 and
//! the N x N confusion matrix; for multi-label classification subset accuracy, micro and macro
//! F1 and per-class scores (a class is predicted when its sigmoid passes 0.5); for regression
//! MSE, MAE, Pearson's and Spearman's correlation. An undefined score (no predicted positives,
//! a constant prediction) is 0 for precision/recall/F1, as scikit-learn's `zero_division=0`,
//! and absent for a correlation.

use serde::{Deserialize, Serialize};
use textdata::{LabelSpace, ProblemType, Target};

/// One evaluation's figures, named as Trainer names them (`eval_` + the metric).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EvalMetrics {
    pub eval_loss: f64,
    /// Single-label: accuracy; multi-label: subset accuracy (every class right).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eval_accuracy: Option<f64>,
    /// Two classes only: F1, precision and recall of class 1 (scikit-learn's `average="binary"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eval_f1: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eval_precision: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eval_recall: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eval_f1_macro: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eval_f1_micro: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eval_mse: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eval_mae: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eval_pearson: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eval_spearmanr: Option<f64>,
    /// Single-label: `[true class][predicted class]` counts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confusion_matrix: Option<Vec<Vec<usize>>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub per_class: Vec<ClassScores>,
    pub eval_samples: usize,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ClassScores {
    pub label: String,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    /// Examples of this class.
    pub support: usize,
}

/// The metrics `metric_for_best_model` may name, per task (without Trainer's `eval_` prefix).
pub fn metric_names(problem_type: ProblemType, classes: usize) -> Vec<&'static str> {
    match problem_type {
        ProblemType::SingleLabelClassification if classes == 2 => {
            vec!["loss", "accuracy", "f1", "precision", "recall", "f1_macro", "f1_micro"]
        }
        ProblemType::SingleLabelClassification => vec!["loss", "accuracy", "f1_macro", "f1_micro"],
        ProblemType::MultiLabelClassification => vec!["loss", "accuracy", "f1_macro", "f1_micro"],
        ProblemType::Regression => vec!["loss", "mse", "mae", "pearson", "spearmanr"],
    }
}

impl EvalMetrics {
    /// The metric named as Trainer's `metric_for_best_model` names it (`accuracy` or
    /// `eval_accuracy`), if this evaluation has it.
    pub fn get(&self, name: &str) -> Option<f64> {
        let key = if name.starts_with("eval_") { name.to_string() } else { format!("eval_{name}") };
        serde_json::to_value(self).ok()?.get(&key)?.as_f64()
    }

    /// The headline figures of one evaluation, for a progress line.
    pub fn headline(&self) -> String {
        let mut parts = vec![format!("eval loss {:.4}", self.eval_loss)];
        let named = [
            ("accuracy", self.eval_accuracy),
            ("F1", self.eval_f1),
            ("macro F1", if self.eval_f1.is_none() { self.eval_f1_macro } else { None }),
            ("Pearson", self.eval_pearson),
            ("Spearman", self.eval_spearmanr),
        ];
        parts.extend(named.iter().filter_map(|(n, v)| v.map(|v| format!("{n} {v:.4}"))));
        parts.join(", ")
    }
}

/// Metrics of `logits` (one row per example) against `targets`, for the task of `space`.
pub fn metrics(logits: &[Vec<f32>], targets: &[Target], space: &LabelSpace) -> EvalMetrics {
    match space.problem_type {
        ProblemType::SingleLabelClassification => single_label(logits, targets, &space.names),
        ProblemType::MultiLabelClassification => multi_label(logits, targets, &space.names),
        ProblemType::Regression => regression(logits, targets),
    }
}

/// The loss Trainer reports for an evaluation with `label_smoothing_factor = epsilon` (its
/// `LabelSmoother` is the loss of every batch, evaluation's too): per example
/// `(1 - epsilon) (-log p_label) + epsilon mean_c(-log p_c)`, averaged over the examples.
pub fn label_smoothed_loss(logits: &[Vec<f32>], targets: &[Target], epsilon: f64) -> f64 {
    let mut total = 0.0f64;
    for (row, target) in logits.iter().zip(targets) {
        let k = row.len().max(1);
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
        let lse = max + row.iter().map(|&x| (x as f64 - max).exp()).sum::<f64>().ln();
        let nll = lse - row[target.class().min(k - 1)] as f64;
        let uniform = row.iter().map(|&x| lse - x as f64).sum::<f64>() / k as f64;
        total += (1.0 - epsilon) * nll + epsilon * uniform;
    }
    total / logits.len().max(1) as f64
}

fn f1(precision: f64, recall: f64) -> f64 {
    if precision + recall > 0.0 { 2.0 * precision * recall / (precision + recall) } else { 0.0 }
}

fn ratio(a: usize, b: usize) -> f64 {
    if b > 0 { a as f64 / b as f64 } else { 0.0 }
}

/// Per-class scores from true-positive, false-positive and false-negative counts.
fn class_scores(names: &[String], tp: &[usize], fp: &[usize], fn_: &[usize]) -> Vec<ClassScores> {
    names
        .iter()
        .enumerate()
        .map(|(c, name)| {
            let (precision, recall) = (ratio(tp[c], tp[c] + fp[c]), ratio(tp[c], tp[c] + fn_[c]));
            ClassScores { label: name.clone(), precision, recall, f1: f1(precision, recall), support: tp[c] + fn_[c] }
        })
        .collect()
}

fn micro_f1(tp: &[usize], fp: &[usize], fn_: &[usize]) -> f64 {
    let (tp, fp, fn_): (usize, usize, usize) = (tp.iter().sum(), fp.iter().sum(), fn_.iter().sum());
    f1(ratio(tp, tp + fp), ratio(tp, tp + fn_))
}

fn macro_f1(scores: &[ClassScores]) -> f64 {
    scores.iter().map(|s| s.f1).sum::<f64>() / scores.len().max(1) as f64
}

fn single_label(logits: &[Vec<f32>], targets: &[Target], names: &[String]) -> EvalMetrics {
    let k = names.len();
    let mut confusion = vec![vec![0usize; k]; k];
    let mut loss = 0.0f64;
    for (row, target) in logits.iter().zip(targets) {
        let label = target.class().min(k - 1);
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
        let lse = max + row.iter().map(|&x| (x as f64 - max).exp()).sum::<f64>().ln();
        loss += lse - row[label] as f64;
        confusion[label][argmax(row).min(k - 1)] += 1;
    }
    let tp: Vec<usize> = (0..k).map(|c| confusion[c][c]).collect();
    let fp: Vec<usize> = (0..k).map(|c| (0..k).map(|t| confusion[t][c]).sum::<usize>() - tp[c]).collect();
    let fn_: Vec<usize> = (0..k).map(|c| confusion[c].iter().sum::<usize>() - tp[c]).collect();
    let per_class = class_scores(names, &tp, &fp, &fn_);
    let n = targets.len();
    let binary = (k == 2).then(|| &per_class[1]);
    EvalMetrics {
        eval_loss: loss / n.max(1) as f64,
        eval_accuracy: Some(ratio(tp.iter().sum(), n)),
        eval_f1: binary.map(|s| s.f1),
        eval_precision: binary.map(|s| s.precision),
        eval_recall: binary.map(|s| s.recall),
        eval_f1_macro: Some(macro_f1(&per_class)),
        eval_f1_micro: Some(micro_f1(&tp, &fp, &fn_)),
        confusion_matrix: Some(confusion),
        per_class,
        eval_samples: n,
        ..Default::default()
    }
}

fn multi_label(logits: &[Vec<f32>], targets: &[Target], names: &[String]) -> EvalMetrics {
    let k = names.len();
    let (mut tp, mut fp, mut fn_) = (vec![0; k], vec![0; k], vec![0; k]);
    let (mut loss, mut exact) = (0.0f64, 0usize);
    for (row, target) in logits.iter().zip(targets) {
        let Target::MultiHot(truth) = target else { continue };
        let mut all_right = true;
        for c in 0..k {
            let (x, y) = (f64::from(row[c]), f64::from(truth[c]));
            loss += x.max(0.0) - x * y + (-x.abs()).exp().ln_1p();
            let (predicted, actual) = (x > 0.0, y > 0.5);
            all_right &= predicted == actual;
            match (predicted, actual) {
                (true, true) => tp[c] += 1,
                (true, false) => fp[c] += 1,
                (false, true) => fn_[c] += 1,
                (false, false) => {}
            }
        }
        exact += usize::from(all_right);
    }
    let n = targets.len();
    let per_class = class_scores(names, &tp, &fp, &fn_);
    EvalMetrics {
        eval_loss: loss / (n * k).max(1) as f64,
        eval_accuracy: Some(ratio(exact, n)),
        eval_f1_macro: Some(macro_f1(&per_class)),
        eval_f1_micro: Some(micro_f1(&tp, &fp, &fn_)),
        per_class,
        eval_samples: n,
        ..Default::default()
    }
}

fn regression(logits: &[Vec<f32>], targets: &[Target]) -> EvalMetrics {
    let pairs: Vec<(f64, f64)> = logits
        .iter()
        .zip(targets)
        .map(|(row, t)| {
            let y = if let Target::Value(v) = t { f64::from(*v) } else { 0.0 };
            (f64::from(row[0]), y)
        })
        .collect();
    let n = pairs.len().max(1) as f64;
    let mse = pairs.iter().map(|(x, y)| (x - y).powi(2)).sum::<f64>() / n;
    let mae = pairs.iter().map(|(x, y)| (x - y).abs()).sum::<f64>() / n;
    let (xs, ys): (Vec<f64>, Vec<f64>) = pairs.into_iter().unzip();
    EvalMetrics {
        eval_loss: mse,
        eval_mse: Some(mse),
        eval_mae: Some(mae),
        eval_pearson: pearson(&xs, &ys),
        eval_spearmanr: pearson(&ranks(&xs), &ranks(&ys)),
        eval_samples: xs.len(),
        ..Default::default()
    }
}

/// Pearson's correlation; none when either side is constant.
pub fn pearson(xs: &[f64], ys: &[f64]) -> Option<f64> {
    let n = xs.len() as f64;
    let (mx, my) = (xs.iter().sum::<f64>() / n, ys.iter().sum::<f64>() / n);
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (x, y) in xs.iter().zip(ys) {
        sxy += (x - mx) * (y - my);
        sxx += (x - mx).powi(2);
        syy += (y - my).powi(2);
    }
    let r = sxy / (sxx * syy).sqrt();
    r.is_finite().then_some(r)
}

/// Ranks from 1, ties given their average rank (as `scipy.stats.rankdata`).
pub fn ranks(values: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| values[a].total_cmp(&values[b]));
    let mut out = vec![0.0; values.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && values[order[j + 1]] == values[order[i]] {
            j += 1;
        }
        let rank = (i + j) as f64 / 2.0 + 1.0;
        for &o in &order[i..=j] {
            out[o] = rank;
        }
        i = j + 1;
    }
    out
}

pub fn argmax(row: &[f32]) -> usize {
    row.iter().enumerate().fold(0, |best, (i, &x)| if x > row[best] { i } else { best })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn smoothed_evaluation_loss_is_trainer_s() {
        let logits = vec![vec![2.0f32, 0.0, -1.0], vec![0.5, 0.5, 3.0]];
        let targets = vec![Target::Class(0), Target::Class(1)];
        // By hand: -log softmax of each row, then (1 - e) nll + e mean.
        let row = |r: &[f32], y: usize, e: f64| {
            let lse = r.iter().map(|&x| (x as f64).exp()).sum::<f64>().ln();
            let nll: Vec<f64> = r.iter().map(|&x| lse - x as f64).collect();
            (1.0 - e) * nll[y] + e * nll.iter().sum::<f64>() / 3.0
        };
        let expected = (row(&logits[0], 0, 0.1) + row(&logits[1], 1, 0.1)) / 2.0;
        assert!((label_smoothed_loss(&logits, &targets, 0.1) - expected).abs() < 1e-12);
        let plain = single_label(&logits, &targets, &["a".into(), "b".into(), "c".into()]).eval_loss;
        assert!((label_smoothed_loss(&logits, &targets, 0.0) - plain).abs() < 1e-12, "epsilon 0 is the plain loss");
    }

    fn space(problem_type: ProblemType, names: &[&str]) -> LabelSpace {
        LabelSpace { problem_type, names: names.iter().map(|s| s.to_string()).collect() }
    }

    fn classes(labels: &[usize]) -> Vec<Target> {
        labels.iter().map(|&c| Target::Class(c)).collect()
    }

    #[test]
    fn binary_metrics_of_known_predictions() {
        let logits = vec![vec![2.0, 0.0], vec![0.0, 1.0], vec![0.0, 3.0], vec![1.0, 0.0]];
        let m = metrics(&logits, &classes(&[0, 1, 0, 1]), &space(ProblemType::SingleLabelClassification, &["0", "1"]));
        assert_eq!(m.confusion_matrix, Some(vec![vec![1, 1], vec![1, 1]]));
        assert_eq!((m.eval_accuracy, m.eval_f1), (Some(0.5), Some(0.5)));
        let expected = [
            (1.0f64 + (-2.0f64).exp()).ln(),
            (1.0f64 + (-1.0f64).exp()).ln(),
            (1.0f64 + 3f64.exp()).ln(),
            (1.0f64 + 1f64.exp()).ln(),
        ];
        assert!((m.eval_loss - expected.iter().sum::<f64>() / 4.0).abs() < 1e-9);
    }

    /// The figures scikit-learn gives for the same predictions (computed by hand here:
    /// `f1_score(y, p, average="macro")` = 0.5, `"micro"` = 4/7).
    #[test]
    fn n_classes_macro_micro_and_confusion() {
        let truth = [0, 0, 1, 1, 2, 2, 2];
        let predicted = [0, 1, 1, 1, 2, 0, 1];
        let logits: Vec<Vec<f32>> =
            predicted.iter().map(|&p| (0..3).map(|c| if c == p { 1.0 } else { 0.0 }).collect()).collect();
        let m = metrics(&logits, &classes(&truth), &space(ProblemType::SingleLabelClassification, &["a", "b", "c"]));
        assert_eq!(m.confusion_matrix, Some(vec![vec![1, 1, 0], vec![0, 2, 0], vec![1, 1, 1]]));
        assert!((m.eval_accuracy.unwrap() - 4.0 / 7.0).abs() < 1e-12);
        assert!((m.eval_f1_micro.unwrap() - 4.0 / 7.0).abs() < 1e-12);
        // a: P 1/2 R 1/2 F 1/2; b: P 1/2 R 1 F 2/3; c: P 1 R 1/3 F 1/2.
        assert!((m.eval_f1_macro.unwrap() - (0.5 + 2.0 / 3.0 + 0.5) / 3.0).abs() < 1e-12);
        assert_eq!(m.per_class[2].support, 3);
        assert_eq!(m.eval_f1, None, "no binary F1 for three classes");
        assert_eq!(m.get("eval_f1_macro"), m.eval_f1_macro);
        assert_eq!(m.get("accuracy"), m.eval_accuracy);
    }

    #[test]
    fn multi_label_subset_accuracy_and_f1() {
        let logits = vec![vec![2.0, -1.0, 3.0], vec![-2.0, -1.0, -3.0], vec![1.0, 1.0, -1.0]];
        let targets = vec![
            Target::MultiHot(vec![1.0, 0.0, 1.0]),
            Target::MultiHot(vec![0.0, 1.0, 0.0]),
            Target::MultiHot(vec![1.0, 1.0, 0.0]),
        ];
        let m = metrics(&logits, &targets, &space(ProblemType::MultiLabelClassification, &["x", "y", "z"]));
        assert!((m.eval_accuracy.unwrap() - 2.0 / 3.0).abs() < 1e-12);
        // tp 4, fp 0, fn 1: micro P 1, R 4/5.
        assert!((m.eval_f1_micro.unwrap() - f1(1.0, 0.8)).abs() < 1e-12);
        let bce = |x: f64, y: f64| x.max(0.0) - x * y + (1.0 + (-x.abs()).exp()).ln();
        let total: f64 = logits
            .iter()
            .zip(&targets)
            .flat_map(|(r, t)| {
                let Target::MultiHot(t) = t else { unreachable!() };
                r.iter().zip(t).map(|(&x, &y)| bce(x.into(), y.into())).collect::<Vec<_>>()
            })
            .sum();
        assert!((m.eval_loss - total / 9.0).abs() < 1e-9);
    }

    #[test]
    fn regression_errors_and_correlations() {
        let logits = vec![vec![1.0], vec![2.0], vec![4.0], vec![3.0]];
        let targets: Vec<Target> = [1.0, 3.0, 5.0, 4.0].iter().map(|&v| Target::Value(v)).collect();
        let m = metrics(&logits, &targets, &space(ProblemType::Regression, &["LABEL_0"]));
        assert!((m.eval_mse.unwrap() - 0.75).abs() < 1e-12 && m.eval_loss == m.eval_mse.unwrap());
        assert!((m.eval_mae.unwrap() - 0.75).abs() < 1e-12);
        assert!((m.eval_spearmanr.unwrap() - 1.0).abs() < 1e-12, "same order");
        assert!(m.eval_pearson.unwrap() > 0.95 && m.eval_pearson.unwrap() < 1.0);
        assert_eq!(ranks(&[3.0, 1.0, 3.0, 2.0]), [3.5, 1.0, 3.5, 2.0]);
        let flat = vec![vec![2.0]; 4];
        assert_eq!(metrics(&flat, &targets, &space(ProblemType::Regression, &["LABEL_0"])).eval_pearson, None);
        assert_eq!(m.eval_accuracy, None);
    }
}
