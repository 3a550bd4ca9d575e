//! A labelled example (a review, or any text or text pair), and the two splits of a dataset.

use serde::{Deserialize, Serialize};

use crate::labels::Target;

/// One example as a run learns from it; written as JSON Lines by `lora export-data`
/// (`{"text": ..., "text_pair": ..., "label": 3 | [0, 1, 0] | 4.5}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Example {
    pub text: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text_pair: Option<String>,
    pub label: Target,
}

impl Example {
    /// A single-label example.
    pub fn new(text: impl Into<String>, class: usize) -> Self {
        Self { text: text.into(), text_pair: None, label: Target::Class(class) }
    }
}

/// The dataset as a source holds it: `train` and `test`, or one unsplit pool (a single file,
/// from which both subsets are drawn, disjoint).
#[derive(Debug, Clone, PartialEq)]
pub enum Splits {
    TrainTest { train: Vec<Example>, test: Vec<Example> },
    Unsplit(Vec<Example>),
}

/// Examples per class of a single-label set with `classes` classes.
pub fn class_counts(examples: &[Example], classes: usize) -> Vec<usize> {
    let mut counts = vec![0; classes];
    for r in examples {
        if let Some(c) = counts.get_mut(r.label.class()) {
            *c += 1;
        }
    }
    counts
}
