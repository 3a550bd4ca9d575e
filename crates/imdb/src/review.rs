//! A labelled review, and the two splits of the dataset.

use serde::{Deserialize, Serialize};

/// Labels are 0 = negative, 1 = positive, everywhere.
pub const NEGATIVE: u8 = 0;
pub const POSITIVE: u8 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Review {
    pub text: String,
    pub label: u8,
}

/// The dataset as a source holds it: `train` and `test`, or one unsplit pool (a single file,
/// from which both subsets are drawn, disjoint).
#[derive(Debug, Clone, PartialEq)]
pub enum Splits {
    TrainTest { train: Vec<Review>, test: Vec<Review> },
    Unsplit(Vec<Review>),
}

/// A label as sources write it: 0/1, `neg`/`pos`, `negative`/`positive` (any case).
pub fn parse_label(value: &str) -> Option<u8> {
    match value.trim().to_ascii_lowercase().as_str() {
        "0" | "neg" | "negative" => Some(NEGATIVE),
        "1" | "pos" | "positive" => Some(POSITIVE),
        _ => None,
    }
}

/// The label of a JSON value: the integers 0 and 1, or a label string.
pub fn json_label(value: &serde_json::Value) -> Option<u8> {
    match value {
        serde_json::Value::Number(n) => match n.as_u64() {
            Some(0) => Some(NEGATIVE),
            Some(1) => Some(POSITIVE),
            _ => None,
        },
        serde_json::Value::String(s) => parse_label(s),
        _ => None,
    }
}

/// Counts per label, `[negative, positive]`.
pub fn label_counts(reviews: &[Review]) -> [usize; 2] {
    let mut counts = [0; 2];
    for r in reviews {
        counts[usize::from(r.label.min(1))] += 1;
    }
    counts
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn labels_in_every_spelling_and_nothing_else() {
        for (s, l) in [("0", 0), ("1", 1), ("pos", 1), ("NEGATIVE", 0), (" positive ", 1)] {
            assert_eq!(parse_label(s), Some(l), "{s}");
        }
        for s in ["2", "-1", "good", ""] {
            assert_eq!(parse_label(s), None, "{s}");
        }
        assert_eq!(json_label(&serde_json::json!(1)), Some(1));
        assert_eq!(json_label(&serde_json::json!(2)), None);
        assert_eq!(json_label(&serde_json::json!(0.5)), None);
        assert_eq!(json_label(&serde_json::json!(true)), None);
    }
}
