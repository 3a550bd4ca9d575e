//! Running a model over tokenized examples: logits in input order, and evaluation (the
//! metrics of [`crate::metrics`] for the run's task).

use burn::data::dataloader::batcher::Batcher;
use burn::tensor::backend::Backend;
use encoders::Classifier;
use textdata::{LabelSpace, TextBatch, TextBatcher, TokenizedExample};

pub use crate::metrics::EvalMetrics;

/// Indices grouped into batches of similar length (less padding; metrics do not depend on order).
pub fn length_sorted_batches(items: &[TokenizedExample], batch_size: usize) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..items.len()).collect();
    order.sort_by_key(|&i| (items[i].encoded.len(), i));
    order.chunks(batch_size.max(1)).map(<[usize]>::to_vec).collect()
}

/// Logits `[n, labels]` in input order, computed in length-sorted batches.
pub fn logits<B: Backend, M: Classifier<B>>(
    model: &M,
    items: &[TokenizedExample],
    batch_size: usize,
    batcher: TextBatcher,
    device: &B::Device,
) -> Result<Vec<Vec<f32>>, kernels::ReadError> {
    let mut out = vec![Vec::new(); items.len()];
    for batch in length_sorted_batches(items, batch_size) {
        let b: TextBatch<B> = batcher.batch(batch.iter().map(|&i| items[i].clone()).collect(), device);
        let logits = model.forward(b.input);
        let [_, labels] = logits.dims();
        let values = kernels::read::f32s(logits)?;
        for (row, &i) in values.chunks(labels).zip(&batch) {
            out[i] = row.to_vec();
        }
    }
    Ok(out)
}

pub fn evaluate<B: Backend, M: Classifier<B>>(
    model: &M,
    items: &[TokenizedExample],
    space: &LabelSpace,
    batch_size: usize,
    batcher: TextBatcher,
    device: &B::Device,
) -> Result<EvalMetrics, kernels::ReadError> {
    let all = logits(model, items, batch_size, batcher, device)?;
    let targets: Vec<textdata::Target> = items.iter().map(|i| i.label.clone()).collect();
    Ok(crate::metrics::metrics(&all, &targets, space))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn padding_to_a_multiple_changes_no_logit() {
        use burn::backend::Flex;
        let json = serde_json::json!({"vocab_size": 50, "hidden_size": 32, "num_hidden_layers": 2,
            "num_attention_heads": 4, "intermediate_size": 37, "max_position_embeddings": 64, "num_labels": 2});
        let config = encoders::ModelConfig::from_value(json, &Default::default()).unwrap();
        let device = Default::default();
        let model = encoders::random::<Flex>(&config, &device);
        let items: Vec<TokenizedExample> = [3usize, 17, 9, 30, 5]
            .iter()
            .map(|&n| TokenizedExample {
                encoded: encoders::Encoded {
                    input_ids: (0..n).map(|j| (5 + j * 7 % 40) as u32).collect(),
                    token_type_ids: vec![0; n],
                },
                label: textdata::Target::Class(n % 2),
            })
            .collect();
        let plain = logits(&model, &items, 2, TextBatcher::new(0), &device).unwrap();
        let padded = logits(&model, &items, 2, TextBatcher { pad_id: 0, pad_to_multiple_of: 16 }, &device).unwrap();
        for (a, b) in plain.iter().flatten().zip(padded.iter().flatten()) {
            assert!((a - b).abs() < 1e-5, "{a} vs {b}");
        }
        assert_eq!(plain.len(), 5);
    }
}
