//! The training loss of each `problem_type`, as transformers' `...ForSequenceClassification`
//! computes it: cross-entropy over class ids, binary cross-entropy with logits over multi-hot
//! rows, mean squared error of the one output against the value.

use burn::tensor::activation::{log_softmax, relu};
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor};
use textdata::Targets;

/// Mean loss of `logits` `[batch, labels]` against a batch's targets.
pub fn loss<B: Backend>(logits: Tensor<B, 2>, targets: Targets<B>) -> Tensor<B, 1> {
    smoothed_loss(logits, targets, 0.0)
}

/// [`loss`] with the classes' targets smoothed by `epsilon` (Trainer's `label_smoothing_factor`,
/// single-label classification only: the run refuses it for other tasks).
pub fn smoothed_loss<B: Backend>(logits: Tensor<B, 2>, targets: Targets<B>, epsilon: f64) -> Tensor<B, 1> {
    match targets {
        Targets::Classes(labels) if epsilon > 0.0 => label_smoothed(logits, labels, epsilon),
        Targets::Classes(labels) => cross_entropy(logits, labels),
        Targets::MultiHot(labels) => bce_with_logits(logits, labels),
        Targets::Values(values) => mse(logits, values),
    }
}

/// `CrossEntropyLoss`: mean over the batch of `-log softmax(logits)[label]`.
pub fn cross_entropy<B: Backend>(logits: Tensor<B, 2>, labels: Tensor<B, 1, Int>) -> Tensor<B, 1> {
    let [batch, _] = logits.dims();
    let picked = log_softmax(logits, 1).gather(1, labels.reshape([batch, 1])); // [batch, 1]
    picked.neg().mean()
}

/// Trainer's `LabelSmoother`: `(1 - epsilon)` times the cross-entropy plus `epsilon` times the
/// mean over the batch and the classes of `-log softmax(logits)`.
pub fn label_smoothed<B: Backend>(logits: Tensor<B, 2>, labels: Tensor<B, 1, Int>, epsilon: f64) -> Tensor<B, 1> {
    let [batch, _] = logits.dims();
    let log_probs = log_softmax(logits, 1).neg();
    let nll = log_probs.clone().gather(1, labels.reshape([batch, 1])).mean();
    let smooth = log_probs.mean();
    nll * (1.0 - epsilon) + smooth * epsilon
}

/// `BCEWithLogitsLoss`: mean over every element of `max(x, 0) - x y + log(1 + exp(-|x|))`
/// (its numerically stable form).
pub fn bce_with_logits<B: Backend>(logits: Tensor<B, 2>, labels: Tensor<B, 2>) -> Tensor<B, 1> {
    let stable = logits.clone().abs().neg().exp().log1p();
    (relu(logits.clone()) - logits * labels + stable).mean()
}

/// `MSELoss` of the single output `[batch, 1]` against `values` `[batch]`.
pub fn mse<B: Backend>(logits: Tensor<B, 2>, values: Tensor<B, 1>) -> Tensor<B, 1> {
    let [batch, _] = logits.dims();
    (logits.reshape([batch]) - values).square().mean()
}
