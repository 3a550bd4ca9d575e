//! Labels: as a source writes them ([`RawLabel`]), what a run learns ([`Target`]), and the map
//! between the two ([`LabelSpace`]): transformers' `problem_type`, `num_labels` and `id2label`.
//!
//! The task is inferred as transformers' `run_glue.py` and `problem_type` infer it: lists of
//! labels are multi-label classification, floating-point labels regression, integers or strings
//! single-label classification. Class names, unless given, are the distinct labels of the
//! training split, sorted (numerically for integers, as `run_glue.py`'s `label_list.sort()`;
//! by code point for strings, as `datasets`' `class_encode_column`), and a class's id is its
//! place in that list.

use encoders::{LabelSpace, ProblemType};
use serde::{Deserialize, Serialize};

/// A label as a source writes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum RawLabel {
    Int(i64),
    Float(f64),
    Text(String),
    List(Vec<RawLabel>),
}

impl RawLabel {
    /// A JSON number, string, or a list of them; `null`, booleans and objects are not labels.
    pub fn from_json(value: &serde_json::Value) -> Option<Self> {
        use serde_json::Value;
        match value {
            Value::Number(n) => n.as_i64().map(Self::Int).or_else(|| n.as_f64().map(Self::Float)),
            Value::String(s) => Some(Self::Text(s.trim().to_string())),
            Value::Array(items) => items.iter().map(Self::from_json).collect::<Option<Vec<_>>>().map(Self::List),
            _ => None,
        }
    }

    /// A text field (CSV): an integer, a decimal number, a JSON list (`["sports", "politics"]`,
    /// `[0, 3]`), else the text itself, trimmed.
    pub fn from_field(field: &str) -> Self {
        let t = field.trim();
        if let Ok(i) = t.parse::<i64>() {
            return Self::Int(i);
        }
        let numeric = t.bytes().any(|b| b.is_ascii_digit())
            && t.bytes().all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'+' | b'e' | b'E'));
        if numeric && let Ok(f) = t.parse::<f64>() {
            return Self::Float(f);
        }
        if t.starts_with('[')
            && let Ok(value) = serde_json::from_str::<serde_json::Value>(t)
            && let Some(list) = Self::from_json(&value)
        {
            return list;
        }
        Self::Text(t.to_string())
    }

    /// The class name this label stands for: the text, or the number as written.
    pub fn name(&self) -> String {
        match self {
            Self::Int(i) => i.to_string(),
            Self::Float(f) if f.fract() == 0.0 && f.abs() < 1e15 => format!("{}", *f as i64),
            Self::Float(f) => f.to_string(),
            Self::Text(s) => s.clone(),
            Self::List(items) => format!("[{}]", items.iter().map(Self::name).collect::<Vec<_>>().join(", ")),
        }
    }

    /// The labels a multi-label example has (a single label: itself).
    fn elements(&self) -> Vec<&RawLabel> {
        match self {
            Self::List(items) => items.iter().collect(),
            other => vec![other],
        }
    }

    fn shown(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| self.name())
    }
}

/// What the model learns from one example: its class id, its classes as a multi-hot row
/// (transformers' float labels for multi-label classification), or its value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Target {
    Class(usize),
    MultiHot(Vec<f32>),
    Value(f32),
}

impl Target {
    /// The class id of a single-label target (0 otherwise).
    pub fn class(&self) -> usize {
        match self {
            Self::Class(c) => *c,
            _ => 0,
        }
    }
}

/// Why labels have no meaning in a label space: a task that cannot be inferred from them, or
/// one label that fits none of its classes.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LabelError {
    #[error("label_names has {0} names, but a regression has one output (leave label_names out)")]
    RegressionNames(usize),
    #[error("label_names lists {0:?} twice")]
    DuplicateName(String),
    #[error("a label {0} is a list inside a list")]
    NestedList(String),
    #[error("the data has no labels")]
    NoLabels,
    #[error(
        "the data has one class ({0:?}); classification needs at least two (for a numeric target set model.problem_type = \"regression\")"
    )]
    OneClass(String),
    #[error("the label is empty")]
    Empty,
    #[error(
        "label {0} is a list; lists are multi-label classification (model.problem_type = \"multi_label_classification\")"
    )]
    ListForSingleLabel(String),
    #[error("label {0} is not a finite number, as a regression target must be")]
    NotANumber(String),
    #[error("label {label} is not one of the {} classes {classes:?}", classes.len())]
    UnknownClass { label: String, classes: Vec<String> },
}

/// What the data crate adds to [`LabelSpace`] (the workspace's one label type, in `encoders`):
/// a space inferred from a training split's labels, and raw labels resolved against it.
pub trait InferLabels: Sized {
    /// The space of a training split's `labels`: the task as given or inferred, the class names
    /// as given (in their order) or the distinct labels sorted.
    fn infer<'a>(
        labels: impl Iterator<Item = &'a RawLabel> + Clone,
        problem_type: Option<ProblemType>,
        names: Option<Vec<String>>,
    ) -> Result<Self, LabelError>;

    /// The target of one raw label, or what is wrong with it (one label; many go through
    /// [`Self::resolver`]).
    fn target(&self, raw: &RawLabel) -> Result<Target, LabelError>;

    /// What resolves many labels: the names' ids looked up once.
    fn resolver(&self) -> Resolver<'_>;
}

impl InferLabels for LabelSpace {
    /// The space of a training split's `labels`: the task as given or inferred, the class names
    /// as given (in their order) or the distinct labels sorted.
    fn infer<'a>(
        labels: impl Iterator<Item = &'a RawLabel> + Clone,
        problem_type: Option<ProblemType>,
        names: Option<Vec<String>>,
    ) -> Result<Self, LabelError> {
        let problem_type = problem_type.unwrap_or_else(|| {
            if labels.clone().any(|l| matches!(l, RawLabel::List(_))) {
                ProblemType::MultiLabelClassification
            } else if labels.clone().any(|l| matches!(l, RawLabel::Float(_))) {
                ProblemType::Regression
            } else {
                ProblemType::SingleLabelClassification
            }
        });
        if problem_type == ProblemType::Regression {
            return match names {
                Some(names) if names.len() != 1 => Err(LabelError::RegressionNames(names.len())),
                Some(names) => Ok(Self { problem_type, names }),
                None => Ok(Self::unnamed(1)),
            };
        }
        let names = match names {
            Some(names) => {
                let mut seen = std::collections::HashSet::new();
                if let Some(dup) = names.iter().find(|n| !seen.insert(n.as_str())) {
                    return Err(LabelError::DuplicateName(dup.clone()));
                }
                names
            }
            None => {
                let mut distinct: Vec<&RawLabel> = Vec::new();
                let mut seen = std::collections::HashSet::new();
                for label in labels.clone().flat_map(RawLabel::elements) {
                    if let RawLabel::List(_) = label {
                        return Err(LabelError::NestedList(label.shown()));
                    }
                    if seen.insert(label.name()) {
                        distinct.push(label);
                    }
                }
                let numeric: Option<Vec<f64>> = distinct
                    .iter()
                    .map(|l| match l {
                        RawLabel::Int(i) => Some(*i as f64),
                        RawLabel::Float(f) => Some(*f),
                        _ => None,
                    })
                    .collect();
                let mut names: Vec<(Option<f64>, String)> = match numeric {
                    Some(values) => values.into_iter().zip(&distinct).map(|(v, l)| (Some(v), l.name())).collect(),
                    None => distinct.iter().map(|l| (None, l.name())).collect(),
                };
                names.sort_by(|a, b| match (a.0, b.0) {
                    (Some(x), Some(y)) => x.total_cmp(&y),
                    _ => a.1.cmp(&b.1),
                });
                names.into_iter().map(|(_, n)| n).collect()
            }
        };
        match (problem_type, names.len()) {
            (_, 0) => Err(LabelError::NoLabels),
            (ProblemType::SingleLabelClassification, 1) => Err(LabelError::OneClass(names[0].clone())),
            _ => Ok(Self { problem_type, names }),
        }
    }

    /// The target of one raw label, or what is wrong with it (one label; many go through
    /// [`Self::resolver`]).
    fn target(&self, raw: &RawLabel) -> Result<Target, LabelError> {
        self.resolver().target(raw)
    }

    /// What resolves many labels: the names' ids looked up once.
    fn resolver(&self) -> Resolver<'_> {
        Resolver {
            space: self,
            ids: self.names.iter().enumerate().map(|(i, n)| (n.as_str(), i)).collect(),
            numeric_names: self.names.iter().all(|n| n.trim().parse::<f64>().is_ok()),
        }
    }
}

/// Resolves raw labels against a [`LabelSpace`], its class ids looked up by name.
#[derive(Debug)]
pub struct Resolver<'a> {
    space: &'a LabelSpace,
    ids: std::collections::HashMap<&'a str, usize>,
    numeric_names: bool,
}

impl Resolver<'_> {
    /// The target of one raw label, or what is wrong with it.
    pub fn target(&self, raw: &RawLabel) -> Result<Target, LabelError> {
        if raw.elements().iter().any(|l| matches!(l, RawLabel::Text(t) if t.is_empty())) {
            return Err(LabelError::Empty);
        }
        match self.space.problem_type {
            ProblemType::SingleLabelClassification => match raw {
                RawLabel::List(_) => Err(LabelError::ListForSingleLabel(raw.shown())),
                _ => self.class_of(raw).map(Target::Class),
            },
            ProblemType::MultiLabelClassification => {
                let mut row = vec![0.0f32; self.space.names.len()];
                for element in raw.elements() {
                    row[self.class_of(element)?] = 1.0;
                }
                Ok(Target::MultiHot(row))
            }
            ProblemType::Regression => match raw {
                RawLabel::Int(i) => Ok(Target::Value(*i as f32)),
                RawLabel::Float(f) if f.is_finite() => Ok(Target::Value(*f as f32)),
                _ => Err(LabelError::NotANumber(raw.shown())),
            },
        }
    }

    /// A class by its name; an integer is the class of that name when the names are numbers
    /// (`run_glue.py`'s sorted integer labels), else an index into the names (`datasets`'
    /// `ClassLabel`: 0 and 1 with names `neg`, `pos`).
    fn class_of(&self, raw: &RawLabel) -> Result<usize, LabelError> {
        if let Some(&i) = self.ids.get(raw.name().as_str()) {
            return Ok(i);
        }
        let names = &self.space.names;
        if let (RawLabel::Int(i), false) = (raw, self.numeric_names)
            && let Ok(i) = usize::try_from(*i)
            && i < names.len()
        {
            return Ok(i);
        }
        Err(LabelError::UnknownClass { label: raw.shown(), classes: names.clone() })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn ints(values: &[i64]) -> Vec<RawLabel> {
        values.iter().map(|&v| RawLabel::Int(v)).collect()
    }

    #[test]
    fn the_task_is_inferred_as_transformers_does() {
        let space = LabelSpace::infer(ints(&[10, 1, 7, 2, 1]).iter(), None, None).unwrap();
        assert_eq!(space.problem_type, ProblemType::SingleLabelClassification);
        assert_eq!(space.names, ["1", "2", "7", "10"], "integers sorted as numbers");
        assert_eq!(space.target(&RawLabel::Int(7)).unwrap(), Target::Class(2));
        assert!(space.target(&RawLabel::Int(5)).unwrap_err().to_string().contains("not one of the 4 classes"));

        let strings: Vec<RawLabel> = ["pos", "neg", "Neutral"].iter().map(|s| RawLabel::Text(s.to_string())).collect();
        let space = LabelSpace::infer(strings.iter(), None, None).unwrap();
        assert_eq!(space.names, ["Neutral", "neg", "pos"], "code point order, as datasets' class_encode_column");

        let floats = [RawLabel::Float(0.5), RawLabel::Int(3)];
        let space = LabelSpace::infer(floats.iter(), None, None).unwrap();
        assert_eq!((space.problem_type, space.num_labels()), (ProblemType::Regression, 1));
        assert_eq!(space.target(&RawLabel::Int(3)).unwrap(), Target::Value(3.0));

        let lists = [RawLabel::List(ints(&[0, 2])), RawLabel::List(vec![]), RawLabel::Int(1)];
        let space = LabelSpace::infer(lists.iter(), None, None).unwrap();
        assert_eq!(space.problem_type, ProblemType::MultiLabelClassification);
        assert_eq!(space.target(&lists[0]).unwrap(), Target::MultiHot(vec![1.0, 0.0, 1.0]));
        assert_eq!(space.target(&lists[1]).unwrap(), Target::MultiHot(vec![0.0; 3]));

        let space = LabelSpace::infer(ints(&[1, 2, 3]).iter(), Some(ProblemType::Regression), None).unwrap();
        assert_eq!(space.num_labels(), 1);
        assert!(LabelSpace::infer(ints(&[1, 1]).iter(), None, None).unwrap_err().to_string().contains("one class"));
    }

    #[test]
    fn given_names_keep_their_order_and_integers_index_them() {
        let names = Some(vec!["neg".to_string(), "pos".to_string()]);
        let space = LabelSpace::infer(ints(&[0, 1]).iter(), None, names).unwrap();
        assert_eq!(space.target(&RawLabel::Int(1)).unwrap(), Target::Class(1));
        assert_eq!(space.target(&RawLabel::Text("neg".into())).unwrap(), Target::Class(0));
        assert!(space.target(&RawLabel::Int(2)).is_err());
        assert!(space.target(&RawLabel::Text("mixed".into())).is_err());
        let dup = Some(vec!["a".to_string(), "a".to_string()]);
        assert!(LabelSpace::infer(ints(&[0]).iter(), None, dup).unwrap_err().to_string().contains("twice"));
    }

    #[test]
    fn fields_read_as_numbers_lists_or_text() {
        assert_eq!(RawLabel::from_field(" 3 "), RawLabel::Int(3));
        assert_eq!(RawLabel::from_field("3.5"), RawLabel::Float(3.5));
        assert_eq!(
            RawLabel::from_field("[\"a\", \"b\"]"),
            RawLabel::List(vec![RawLabel::Text("a".into()), RawLabel::Text("b".into())])
        );
        assert_eq!(RawLabel::from_field("nan"), RawLabel::Text("nan".into()));
        assert_eq!(RawLabel::from_field("positive"), RawLabel::Text("positive".into()));
        assert_eq!(RawLabel::Float(4.0).name(), "4");
    }
}
