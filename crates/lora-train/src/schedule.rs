//! The learning-rate schedules of transformers' `get_scheduler`, by `lr_scheduler_type` and
//! `lr_scheduler_kwargs`, each the same `LambdaLR` factor at every step as
//! `transformers.optimization` (4.57) computes it.
//!
//! A schedule is read once, when the config is checked, so that an unknown name, a keyword the
//! schedule does not take or a value it cannot use is an error before anything runs.

use std::f64::consts::PI;

use crate::error::{Result, invalid};

/// The names `lr_scheduler_type` takes.
pub const NAMES: [&str; 9] = [
    "linear",
    "cosine",
    "cosine_with_restarts",
    "polynomial",
    "constant",
    "constant_with_warmup",
    "inverse_sqrt",
    "cosine_with_min_lr",
    "warmup_stable_decay",
];

/// How a phase of `warmup_stable_decay` rises or falls (`warmup_type`, `decay_type`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Shape {
    Linear,
    Cosine,
    OneMinusSqrt,
}

/// One schedule with its keywords.
#[derive(Debug, Clone, PartialEq)]
pub enum Schedule {
    Linear,
    Cosine {
        num_cycles: f64,
    },
    CosineWithRestarts {
        num_cycles: f64,
    },
    /// `lr_end` as a fraction of the base rate.
    Polynomial {
        lr_end_ratio: f64,
        power: f64,
    },
    Constant,
    ConstantWithWarmup,
    InverseSqrt,
    CosineWithMinLr {
        num_cycles: f64,
        min_lr_rate: f64,
    },
    WarmupStableDecay {
        num_decay_steps: usize,
        num_stable_steps: Option<usize>,
        warmup_type: Shape,
        decay_type: Shape,
        min_lr_ratio: f64,
        num_cycles: f64,
    },
}

/// The keywords of one schedule, taken one by one; what is left at the end is refused.
struct Kwargs<'a> {
    name: &'a str,
    table: toml::Table,
}

impl Kwargs<'_> {
    fn where_(&self, key: &str) -> String {
        format!("training.lr_scheduler_kwargs.{key} (lr_scheduler_type = {:?})", self.name)
    }

    fn number(&mut self, key: &str) -> Result<Option<f64>> {
        match self.table.remove(key) {
            None => Ok(None),
            Some(toml::Value::Float(v)) if v.is_finite() => Ok(Some(v)),
            Some(toml::Value::Integer(v)) => Ok(Some(v as f64)),
            Some(other) => invalid!("{}: expected a number, got {other}", self.where_(key)),
        }
    }

    fn count(&mut self, key: &str) -> Result<Option<usize>> {
        match self.table.remove(key) {
            None => Ok(None),
            Some(toml::Value::Integer(v)) if v >= 0 => Ok(Some(v as usize)),
            Some(other) => invalid!("{}: expected a whole number of steps (0 or more), got {other}", self.where_(key)),
        }
    }

    fn shape(&mut self, key: &str, default: Shape) -> Result<Shape> {
        match self.table.remove(key) {
            None => Ok(default),
            Some(toml::Value::String(s)) => match s.as_str() {
                "linear" => Ok(Shape::Linear),
                "cosine" => Ok(Shape::Cosine),
                "1-sqrt" => Ok(Shape::OneMinusSqrt),
                _ => invalid!("{}: {s:?} is not one of \"linear\", \"cosine\", \"1-sqrt\"", self.where_(key)),
            },
            Some(other) => invalid!("{}: expected \"linear\", \"cosine\" or \"1-sqrt\", got {other}", self.where_(key)),
        }
    }

    fn done(self, takes: &[&str]) -> Result<()> {
        if let Some(key) = self.table.keys().next() {
            let takes = match takes {
                [] => "takes no keywords".to_string(),
                _ => format!("takes {}", takes.join(", ")),
            };
            invalid!("training.lr_scheduler_kwargs.{key}: lr_scheduler_type = {:?} {takes}", self.name);
        }
        Ok(())
    }
}

impl Schedule {
    /// The schedule `name` with `kwargs`, for a base learning rate `learning_rate` (the
    /// polynomial and min-lr schedules are relative to it, as transformers' are to the
    /// optimizer's `lr`).
    pub fn parse(name: &str, kwargs: &toml::Table, learning_rate: f64) -> Result<Self> {
        let mut k = Kwargs { name, table: kwargs.clone() };
        let schedule = match name {
            "linear" => {
                k.done(&[])?;
                Self::Linear
            }
            "constant" => {
                k.done(&[])?;
                Self::Constant
            }
            "constant_with_warmup" => {
                k.done(&[])?;
                Self::ConstantWithWarmup
            }
            "cosine" => {
                let num_cycles = k.number("num_cycles")?.unwrap_or(0.5);
                k.done(&["num_cycles"])?;
                Self::Cosine { num_cycles }
            }
            "cosine_with_restarts" => {
                let num_cycles = k.number("num_cycles")?.unwrap_or(1.0);
                k.done(&["num_cycles"])?;
                Self::CosineWithRestarts { num_cycles }
            }
            "polynomial" => {
                let lr_end = k.number("lr_end")?.unwrap_or(1e-7);
                let power = k.number("power")?.unwrap_or(1.0);
                k.done(&["lr_end", "power"])?;
                if lr_end >= learning_rate {
                    invalid!(
                        "training.lr_scheduler_kwargs.lr_end ({lr_end}) must be smaller than training.learning_rate ({learning_rate})"
                    );
                }
                Self::Polynomial { lr_end_ratio: lr_end / learning_rate, power }
            }
            "inverse_sqrt" => {
                // get_scheduler passes it no keywords (its `timescale` is the warm-up, else 10,000).
                k.done(&[])?;
                Self::InverseSqrt
            }
            "cosine_with_min_lr" => {
                let num_cycles = k.number("num_cycles")?.unwrap_or(0.5);
                let min_lr = k.number("min_lr")?;
                let min_lr_rate = k.number("min_lr_rate")?;
                k.done(&["num_cycles", "min_lr", "min_lr_rate"])?;
                let min_lr_rate = match (min_lr, min_lr_rate) {
                    (Some(_), Some(_)) => invalid!(
                        "training.lr_scheduler_kwargs: set min_lr or min_lr_rate for \"cosine_with_min_lr\", not both"
                    ),
                    (Some(lr), None) => lr / learning_rate,
                    (None, Some(rate)) => rate,
                    (None, None) => invalid!(
                        "lr_scheduler_type = \"cosine_with_min_lr\" needs training.lr_scheduler_kwargs.min_lr or .min_lr_rate (e.g. lr_scheduler_kwargs = {{ min_lr_rate = 0.1 }})"
                    ),
                };
                Self::CosineWithMinLr { num_cycles, min_lr_rate }
            }
            "warmup_stable_decay" => {
                let num_decay_steps = k.count("num_decay_steps")?;
                let num_stable_steps = k.count("num_stable_steps")?;
                let warmup_type = k.shape("warmup_type", Shape::Linear)?;
                let decay_type = k.shape("decay_type", Shape::Cosine)?;
                let min_lr_ratio = k.number("min_lr_ratio")?.unwrap_or(0.0);
                let num_cycles = k.number("num_cycles")?.unwrap_or(0.5);
                k.done(&[
                    "num_decay_steps",
                    "num_stable_steps",
                    "warmup_type",
                    "decay_type",
                    "min_lr_ratio",
                    "num_cycles",
                ])?;
                let Some(num_decay_steps) = num_decay_steps else {
                    invalid!(
                        "lr_scheduler_type = \"warmup_stable_decay\" needs training.lr_scheduler_kwargs.num_decay_steps (e.g. lr_scheduler_kwargs = {{ num_decay_steps = 100 }})"
                    );
                };
                Self::WarmupStableDecay {
                    num_decay_steps,
                    num_stable_steps,
                    warmup_type,
                    decay_type,
                    min_lr_ratio,
                    num_cycles,
                }
            }
            other => invalid!("training.lr_scheduler_type {other:?} is not one of {}", NAMES.join(", ")),
        };
        Ok(schedule)
    }

    /// The factor of the base learning rate at optimizer step `step` (0-based) of `total`, after
    /// `warmup` warm-up steps: `LambdaLR`'s lambda.
    pub fn factor(&self, step: usize, total: usize, warmup: usize) -> f64 {
        let (s, total_f, warmup_f) = (step as f64, total as f64, warmup as f64);
        let warming = step < warmup;
        let rise = s / warmup_f.max(1.0);
        // Of the steps after warm-up, the fraction done.
        let progress = (s - warmup_f) / (total_f - warmup_f).max(1.0);
        match *self {
            Self::Constant => 1.0,
            Self::ConstantWithWarmup if warming => rise,
            Self::ConstantWithWarmup => 1.0,
            _ if warming && !matches!(self, Self::WarmupStableDecay { .. }) => rise,
            Self::Linear => ((total_f - s) / (total_f - warmup_f).max(1.0)).max(0.0),
            Self::Cosine { num_cycles } => (0.5 * (1.0 + (PI * num_cycles * 2.0 * progress).cos())).max(0.0),
            Self::CosineWithRestarts { num_cycles } => {
                if progress >= 1.0 {
                    0.0
                } else {
                    (0.5 * (1.0 + (PI * ((num_cycles * progress) % 1.0)).cos())).max(0.0)
                }
            }
            Self::Polynomial { lr_end_ratio, power } => {
                if step > total {
                    return lr_end_ratio;
                }
                if total <= warmup {
                    // transformers divides by zero here; the end rate is what it tends to.
                    return lr_end_ratio;
                }
                let remaining = 1.0 - (s - warmup_f) / (total_f - warmup_f);
                (1.0 - lr_end_ratio) * remaining.powf(power) + lr_end_ratio
            }
            Self::InverseSqrt => {
                let timescale = if warmup > 0 { warmup_f } else { 10_000.0 };
                let shift = timescale - warmup_f;
                1.0 / ((s + shift) / timescale).sqrt()
            }
            Self::CosineWithMinLr { num_cycles, min_lr_rate } => {
                let factor = 0.5 * (1.0 + (PI * num_cycles * 2.0 * progress).cos());
                (factor * (1.0 - min_lr_rate) + min_lr_rate).max(0.0)
            }
            Self::WarmupStableDecay {
                num_decay_steps,
                num_stable_steps,
                warmup_type,
                decay_type,
                min_lr_ratio,
                num_cycles,
            } => {
                // Signed, as in Python: warm-up and decay longer than the run leave a negative
                // stable phase, which moves the decay earlier.
                let (step, warmup, decay) = (step as i64, warmup as i64, num_decay_steps as i64);
                let stable = num_stable_steps.map_or(total as i64 - warmup - decay, |n| n as i64);
                if warming {
                    let factor = match warmup_type {
                        Shape::Linear => rise,
                        Shape::Cosine => 0.5 * (1.0 - (PI * rise).cos()),
                        Shape::OneMinusSqrt => 1.0 - (1.0 - rise).sqrt(),
                    };
                    return (factor * (1.0 - min_lr_ratio) + min_lr_ratio).max(0.0);
                }
                if step < warmup + stable {
                    return 1.0;
                }
                if step < warmup + stable + decay {
                    let progress = (step - warmup - stable) as f64 / decay.max(1) as f64;
                    let factor = match decay_type {
                        Shape::Linear => 1.0 - progress,
                        Shape::Cosine => 0.5 * (1.0 + (PI * num_cycles * 2.0 * progress).cos()),
                        Shape::OneMinusSqrt => 1.0 - progress.sqrt(),
                    };
                    return (factor * (1.0 - min_lr_ratio) + min_lr_ratio).max(0.0);
                }
                min_lr_ratio
            }
        }
    }

    /// The learning rate of step `step`: `base` times the factor.
    pub fn lr(&self, base: f64, step: usize, total: usize, warmup: usize) -> f64 {
        base * self.factor(step, total, warmup)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn schedule(name: &str, kwargs: &str) -> Result<Schedule> {
        Schedule::parse(name, &kwargs.parse::<toml::Table>().unwrap(), 1.0)
    }

    #[test]
    fn linear_and_constant_as_trainer() {
        let linear = schedule("linear", "").unwrap();
        assert_eq!(linear.lr(1.0, 0, 10, 0), 1.0);
        assert_eq!(linear.lr(1.0, 5, 10, 0), 0.5);
        assert_eq!(linear.lr(1.0, 10, 10, 0), 0.0);
        assert_eq!(linear.lr(1.0, 1, 10, 2), 0.5);
        assert_eq!(linear.lr(1.0, 2, 10, 2), 1.0);
        assert_eq!(linear.lr(1.0, 6, 10, 2), 0.5);
        // get_scheduler's "constant" takes no warm-up; "constant_with_warmup" does.
        assert_eq!(schedule("constant", "").unwrap().lr(1.0, 0, 10, 4), 1.0);
        assert_eq!(schedule("constant_with_warmup", "").unwrap().lr(1.0, 1, 10, 4), 0.25);
    }

    #[test]
    fn unknown_names_keywords_and_values_are_refused() {
        let err = format!("{:#}", schedule("cosine_annealing", "").unwrap_err());
        assert!(err.contains("cosine_annealing") && err.contains("warmup_stable_decay"), "{err}");
        let err = format!("{:#}", schedule("cosine", "num_cycle = 2").unwrap_err());
        assert!(err.contains("lr_scheduler_kwargs.num_cycle") && err.contains("takes num_cycles"), "{err}");
        let err = format!("{:#}", schedule("linear", "power = 2").unwrap_err());
        assert!(err.contains("takes no keywords"), "{err}");
        let err = format!("{:#}", schedule("cosine", "num_cycles = \"two\"").unwrap_err());
        assert!(err.contains("num_cycles") && err.contains("expected a number"), "{err}");
        let err = format!("{:#}", schedule("cosine_with_min_lr", "").unwrap_err());
        assert!(err.contains("min_lr_rate"), "{err}");
        let err = format!("{:#}", schedule("cosine_with_min_lr", "min_lr = 0.1\nmin_lr_rate = 0.1").unwrap_err());
        assert!(err.contains("not both"), "{err}");
        let err = format!("{:#}", schedule("warmup_stable_decay", "").unwrap_err());
        assert!(err.contains("num_decay_steps"), "{err}");
        let err =
            format!("{:#}", schedule("warmup_stable_decay", "num_decay_steps = 3\ndecay_type = \"exp\"").unwrap_err());
        assert!(err.contains("decay_type") && err.contains("1-sqrt"), "{err}");
        let err = format!("{:#}", schedule("polynomial", "lr_end = 2.0").unwrap_err());
        assert!(err.contains("lr_end") && err.contains("learning_rate"), "{err}");
    }

    /// Every schedule, at every step and two past the end, against transformers' `get_scheduler`
    /// (fixture: `scripts/golden_schedules.py`).
    #[test]
    fn every_schedule_equals_get_scheduler_at_every_step() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/schedules.json");
        let golden: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let cases = golden["cases"].as_array().unwrap();
        let mut names: Vec<&str> = cases.iter().map(|c| c["lr_scheduler_type"].as_str().unwrap()).collect();
        names.dedup();
        assert_eq!(names, NAMES, "a case for each schedule");
        for case in cases {
            let name = case["lr_scheduler_type"].as_str().unwrap();
            let base = case["learning_rate"].as_f64().unwrap();
            let total = case["num_training_steps"].as_u64().unwrap() as usize;
            let warmup = case["num_warmup_steps"].as_u64().unwrap() as usize;
            let kwargs: toml::Table = serde_json::from_value(case["lr_scheduler_kwargs"].clone()).unwrap();
            let schedule = Schedule::parse(name, &kwargs, base).unwrap();
            for (step, expected) in case["lrs"].as_array().unwrap().iter().enumerate() {
                let expected = expected.as_f64().unwrap();
                let ours = schedule.lr(base, step, total, warmup);
                assert!(
                    (ours - expected).abs() <= 1e-12 * base,
                    "{name} {kwargs:?} (total {total}, warm-up {warmup}) at step {step}: {ours} vs transformers' {expected}"
                );
            }
        }
    }
}
