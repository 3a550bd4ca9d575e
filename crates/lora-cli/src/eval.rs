//! Evaluation (loss, accuracy, F1, confusion matrix) and prediction over tokenized reviews.

use bert::SequenceClassifier;
use burn::data::dataloader::batcher::Batcher;
use burn::tensor::activation::log_softmax;
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor};
use imdb::{ReviewBatch, ReviewBatcher, TokenizedReview};
use serde::{Deserialize, Serialize};

/// Mean cross-entropy of `logits` `[batch, labels]` against `labels` `[batch]`.
pub fn cross_entropy<B: Backend>(logits: Tensor<B, 2>, labels: Tensor<B, 1, Int>) -> Tensor<B, 1> {
    let [batch, _] = logits.dims();
    let picked = log_softmax(logits, 1).gather(1, labels.reshape([batch, 1])); // [batch, 1]
    picked.neg().mean()
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EvalMetrics {
    pub eval_loss: f64,
    pub eval_accuracy: f64,
    /// F1 of the positive class (label 1).
    pub eval_f1: f64,
    pub eval_precision: f64,
    pub eval_recall: f64,
    /// `[[true negatives, false positives], [false negatives, true positives]]`.
    pub confusion_matrix: [[usize; 2]; 2],
    pub eval_samples: usize,
}

/// Indices grouped into batches of similar length (less padding; metrics do not depend on order).
pub fn length_sorted_batches(items: &[TokenizedReview], batch_size: usize) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..items.len()).collect();
    order.sort_by_key(|&i| (items[i].encoded.len(), i));
    order.chunks(batch_size.max(1)).map(<[usize]>::to_vec).collect()
}

/// Logits `[n, labels]` in input order, computed in length-sorted batches.
pub fn logits<B: Backend>(
    model: &SequenceClassifier<B>,
    items: &[TokenizedReview],
    batch_size: usize,
    batcher: ReviewBatcher,
    device: &B::Device,
) -> Result<Vec<Vec<f32>>, kernels::ReadError> {
    let mut out = vec![Vec::new(); items.len()];
    for batch in length_sorted_batches(items, batch_size) {
        let b: ReviewBatch<B> = batcher.batch(batch.iter().map(|&i| items[i].clone()).collect(), device);
        let logits = model.forward(b.input);
        let [_, labels] = logits.dims();
        let values = kernels::read::f32s(logits)?;
        for (row, &i) in values.chunks(labels).zip(&batch) {
            out[i] = row.to_vec();
        }
    }
    Ok(out)
}

pub fn evaluate<B: Backend>(
    model: &SequenceClassifier<B>,
    items: &[TokenizedReview],
    batch_size: usize,
    batcher: ReviewBatcher,
    device: &B::Device,
) -> Result<EvalMetrics, kernels::ReadError> {
    let all = logits(model, items, batch_size, batcher, device)?;
    Ok(metrics(&all, &items.iter().map(|i| i.label).collect::<Vec<_>>()))
}

/// Metrics of logits against labels; loss is the mean per-review cross-entropy (as Trainer).
pub fn metrics(logits: &[Vec<f32>], labels: &[u8]) -> EvalMetrics {
    let mut confusion = [[0usize; 2]; 2];
    let mut loss = 0.0f64;
    for (row, &label) in logits.iter().zip(labels) {
        let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
        let lse = max + row.iter().map(|&x| (x as f64 - max).exp()).sum::<f64>().ln();
        loss += lse - row[usize::from(label)] as f64;
        let predicted = argmax(row);
        confusion[usize::from(label.min(1))][predicted.min(1)] += 1;
    }
    let n = labels.len().max(1) as f64;
    let [[tn, fp], [fn_, tp]] = confusion;
    let precision = if tp + fp > 0 { tp as f64 / (tp + fp) as f64 } else { 0.0 };
    let recall = if tp + fn_ > 0 { tp as f64 / (tp + fn_) as f64 } else { 0.0 };
    let f1 = if precision + recall > 0.0 { 2.0 * precision * recall / (precision + recall) } else { 0.0 };
    EvalMetrics {
        eval_loss: loss / n,
        eval_accuracy: (tn + tp) as f64 / n,
        eval_f1: f1,
        eval_precision: precision,
        eval_recall: recall,
        confusion_matrix: confusion,
        eval_samples: labels.len(),
    }
}

pub fn argmax(row: &[f32]) -> usize {
    row.iter().enumerate().fold(0, |best, (i, &x)| if x > row[best] { i } else { best })
}

/// Softmax of one row of logits (as `torch.softmax`: the maximum subtracted first).
pub fn probabilities(row: &[f32]) -> Vec<f32> {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exps: Vec<f32> = row.iter().map(|&x| (x - max).exp()).collect();
    let sum: f32 = exps.iter().sum();
    exps.iter().map(|e| e / sum).collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn padding_to_a_multiple_changes_no_logit() {
        use burn::backend::Flex;
        let config = bert::BertConfig {
            vocab_size: 50,
            hidden_size: 32,
            num_hidden_layers: 2,
            num_attention_heads: 4,
            intermediate_size: 37,
            max_position_embeddings: 64,
            num_labels: Some(2),
            ..Default::default()
        };
        let device = Default::default();
        let model = SequenceClassifier::<Flex>::random(&config, &device);
        let items: Vec<TokenizedReview> = [3usize, 17, 9, 30, 5]
            .iter()
            .map(|&n| TokenizedReview {
                encoded: bert::Encoded {
                    input_ids: (0..n).map(|j| (5 + j * 7 % 40) as u32).collect(),
                    token_type_ids: vec![0; n],
                },
                label: (n % 2) as u8,
            })
            .collect();
        let plain = logits(&model, &items, 2, ReviewBatcher::new(0), &device).unwrap();
        let padded = logits(&model, &items, 2, ReviewBatcher { pad_id: 0, pad_to_multiple_of: 16 }, &device).unwrap();
        for (a, b) in plain.iter().flatten().zip(padded.iter().flatten()) {
            assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        }
        assert_eq!(plain.len(), 5);
    }

    #[test]
    fn metrics_of_known_predictions() {
        let logits = vec![vec![2.0, 0.0], vec![0.0, 1.0], vec![0.0, 3.0], vec![1.0, 0.0]];
        let m = metrics(&logits, &[0, 1, 0, 1]);
        assert_eq!(m.confusion_matrix, [[1, 1], [1, 1]]);
        assert_eq!(m.eval_accuracy, 0.5);
        assert_eq!(m.eval_f1, 0.5);
        let expected = [
            (1.0f64 + (-2.0f64).exp()).ln(),
            (1.0f64 + (-1.0f64).exp()).ln(),
            (1.0f64 + 3f64.exp()).ln(),
            (1.0f64 + 1f64.exp()).ln(),
        ];
        assert!((m.eval_loss - expected.iter().sum::<f64>() / 4.0).abs() < 1e-9);
    }
}
