//! Seeded subsets: the training subset from the train split, the evaluation subset from the
//! test split (the model card's held-out 500).
//!
//! The draw depends on the examples, not on the order a source lists them in: every example gets
//! the key `xxh3(text, label; seed)`, examples are taken in key order, and the same seed picks
//! the same examples from the JSONL files, the aclImdb tree, its tarball or the Hub's parquet,
//! on every machine.

use std::collections::HashSet;
use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::xxh3_64_with_seed;

use crate::error::{DataError, Result};
use crate::example::{Example, Splits};
use crate::labels::Target;
use encoders::{LabelSpace, ProblemType};

/// How to draw the subsets (the `[data]` keys of a run config).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SubsetConfig {
    /// Examples drawn from the train split; unset: all of it (for a single file: all that the
    /// evaluation subset leaves).
    pub train_size: Option<usize>,
    /// Examples drawn from the evaluation split; unset: all of it (for a single file: a quarter
    /// of it, as `datasets`' `train_test_split` holds out by default, drawn regardless of class).
    pub eval_size: Option<usize>,
    pub seed: u64,
    /// An equal share of each subset from each class (stratified with equal allocation: with
    /// N classes, n / N each, the remainder one each to the last classes; for IMDb, half
    /// negative, half positive, the larger half positive); `false` takes the first examples in
    /// key order, whatever their label (a plain shuffle, as `datasets`'
    /// `shuffle(seed).select(range(n))`, though not numpy's permutation).
    pub balanced: bool,
    /// Drop repeated texts within each split (the release has 96 in train, 199 in test).
    pub dedup: bool,
    /// Drop test reviews whose text also occurs in the train split (the release has 123).
    pub drop_test_overlap: bool,
}

impl Default for SubsetConfig {
    fn default() -> Self {
        Self {
            train_size: Some(1000),
            eval_size: Some(500),
            seed: 42,
            balanced: true,
            dedup: false,
            drop_test_overlap: false,
        }
    }
}

/// The drawn subsets and what was dropped on the way.
#[derive(Debug, Clone, PartialEq)]
pub struct Subsets {
    pub train: Vec<Example>,
    pub eval: Vec<Example>,
    pub duplicates_dropped: usize,
    pub overlap_dropped: usize,
}

/// The example's place in the seed's order: a hash of its text (and pair) salted with its label.
/// A single text with a class keeps the key it had when labels were 0/1 only, so IMDb draws
/// are the ones earlier runs drew.
fn key(example: &Example, seed: u64) -> u64 {
    let salt = match &example.label {
        Target::Class(c) => *c as u64,
        Target::Value(v) => u64::from(v.to_bits()) ^ 0xA5A5_0000_0000_0000,
        Target::MultiHot(row) => {
            let bits: Vec<u8> = row.iter().flat_map(|v| v.to_bits().to_le_bytes()).collect();
            xxh3_64_with_seed(&bits, 0x5A5A)
        }
    };
    let seed = seed ^ salt.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    match &example.text_pair {
        None => xxh3_64_with_seed(example.text.as_bytes(), seed),
        Some(pair) => {
            // 0xFF never occurs in UTF-8: the two texts cannot run into each other.
            let bytes = [example.text.as_bytes(), &[0xFF], pair.as_bytes()].concat();
            xxh3_64_with_seed(&bytes, seed)
        }
    }
}

/// What identifies a example's text for de-duplication and overlap: its text and pair.
fn texts(example: &Example) -> (&str, Option<&str>) {
    (example.text.as_str(), example.text_pair.as_deref())
}

/// Sorts into the seed's order; ties (identical examples) are interchangeable.
fn in_key_order(mut examples: Vec<Example>, seed: u64) -> Vec<Example> {
    examples.sort_by_cached_key(|r| (key(r, seed), r.text.clone(), r.text_pair.clone()));
    examples
}

fn dedup(examples: Vec<Example>) -> (Vec<Example>, usize) {
    let before = examples.len();
    let mut seen = HashSet::new();
    let kept: Vec<Example> =
        examples.into_iter().filter(|r| seen.insert((r.text.clone(), r.text_pair.clone()))).collect();
    let dropped = before - kept.len();
    (kept, dropped)
}

fn take(pool: &[Example], n: Option<usize>, classes: Option<&[String]>, split: &str) -> Result<Vec<Example>> {
    // All of a split is all of it, whatever the classes.
    let Some(n) = n else { return Ok(pool.to_vec()) };
    let Some(classes) = classes else {
        if n > pool.len() {
            return Err(DataError::TooLarge {
                split: split.into(),
                what: "examples".into(),
                requested: n,
                available: pool.len(),
            });
        }
        return Ok(pool[..n].to_vec());
    };
    let k = classes.len().max(1);
    let want: Vec<usize> = (0..k).map(|c| n / k + usize::from(c >= k - n % k)).collect();
    let mut got = vec![0; k];
    let mut taken = Vec::with_capacity(n);
    for r in pool {
        let c = r.label.class();
        if c < k && got[c] < want[c] {
            got[c] += 1;
            taken.push(r.clone());
        }
    }
    if let Some(c) = (0..k).find(|&c| got[c] < want[c]) {
        return Err(DataError::TooLarge {
            split: split.into(),
            what: format!(
                "examples of class {:?} (data.balanced = true takes an equal share of each class; false draws regardless of class)",
                classes[c]
            ),
            requested: want[c],
            available: got[c],
        });
    }
    Ok(taken)
}

/// Draws the training and evaluation subsets (balanced over the classes of `space`).
pub fn draw(splits: Splits, config: &SubsetConfig, space: &LabelSpace) -> Result<Subsets> {
    if config.balanced && space.problem_type != ProblemType::SingleLabelClassification {
        return Err(DataError::Config(format!(
            "data.balanced = true draws an equal share of each class, which a {} does not have; set data.balanced = false",
            space.problem_type
        )));
    }
    let classes = config.balanced.then_some(space.names.as_slice());
    let (train_pool, test_pool, unsplit) = match splits {
        Splits::TrainTest { train, test } => (train, test, false),
        Splits::Unsplit(all) => (all, Vec::new(), true),
    };
    let mut duplicates_dropped = 0;
    let mut overlap_dropped = 0;
    let mut train_pool = in_key_order(train_pool, config.seed);
    let mut test_pool = in_key_order(test_pool, config.seed);
    if config.dedup {
        let (t, d) = dedup(train_pool);
        train_pool = t;
        duplicates_dropped += d;
        let (t, d) = dedup(test_pool);
        test_pool = t;
        duplicates_dropped += d;
    }
    if config.drop_test_overlap && !unsplit {
        let train_texts: HashSet<(&str, Option<&str>)> = train_pool.iter().map(texts).collect();
        let before = test_pool.len();
        test_pool.retain(|r| !train_texts.contains(&texts(r)));
        overlap_dropped = before - test_pool.len();
    }
    let (train, eval) = if unsplit {
        match config.train_size {
            // One pool: the evaluation subset comes from what the training subset left, and
            // never shares a text with it.
            Some(n) => {
                let train = take(&train_pool, Some(n), classes, "single-file")?;
                let used: HashSet<(&str, Option<&str>)> = train.iter().map(texts).collect();
                let rest: Vec<Example> = train_pool.iter().filter(|r| !used.contains(&texts(r))).cloned().collect();
                let eval = match config.eval_size {
                    Some(_) => take(&rest, config.eval_size, classes, "single-file (after the training subset)")?,
                    None => rest,
                };
                (train, eval)
            }
            // Training takes what the held-out subset leaves.
            None => {
                let held_out = config.eval_size.unwrap_or(train_pool.len().div_ceil(4));
                let eval_classes = config.eval_size.and(classes);
                let eval = take(&train_pool, Some(held_out), eval_classes, "single-file")?;
                let used: HashSet<(&str, Option<&str>)> = eval.iter().map(texts).collect();
                let train: Vec<Example> = train_pool.iter().filter(|r| !used.contains(&texts(r))).cloned().collect();
                (train, eval)
            }
        }
    } else {
        (take(&train_pool, config.train_size, classes, "train")?, take(&test_pool, config.eval_size, classes, "test")?)
    };

    Ok(Subsets { train, eval, duplicates_dropped, overlap_dropped })
}

/// Writes examples as JSON Lines (`{"text": ..., "label": ...}`, see [`Example`]), through a
/// temporary file.
pub fn write_jsonl(path: &Path, examples: &[Example]) -> Result<()> {
    let fail = |source| DataError::Io { path: path.to_path_buf(), source };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(fail)?;
    }
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    let mut out = std::io::BufWriter::new(std::fs::File::create(&tmp).map_err(fail)?);
    for r in examples {
        serde_json::to_writer(&mut out, r).map_err(|e| fail(std::io::Error::other(e)))?;
        out.write_all(b"\n").map_err(fail)?;
    }
    out.into_inner().map_err(|e| fail(e.into_error()))?.sync_all().map_err(fail)?;
    std::fs::rename(&tmp, path).map_err(fail)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn examples(n: usize) -> Vec<Example> {
        (0..n).map(|i| Example::new(format!("example {i}"), i % 2)).collect()
    }

    fn binary() -> LabelSpace {
        LabelSpace { problem_type: ProblemType::SingleLabelClassification, names: vec!["neg".into(), "pos".into()] }
    }

    fn draw(splits: Splits, config: &SubsetConfig) -> Result<Subsets> {
        super::draw(splits, config, &binary())
    }

    #[test]
    fn the_draw_ignores_source_order() {
        let config = SubsetConfig { train_size: Some(10), eval_size: Some(6), ..Default::default() };
        let forward = draw(Splits::TrainTest { train: examples(100), test: examples(50) }, &config).unwrap();
        let mut train = examples(100);
        train.reverse();
        let mut test = examples(50);
        test.rotate_left(17);
        let shuffled = draw(Splits::TrainTest { train, test }, &config).unwrap();
        assert_eq!(forward, shuffled);
        let other_seed =
            draw(Splits::TrainTest { train: examples(100), test: examples(50) }, &SubsetConfig { seed: 7, ..config })
                .unwrap();
        assert_ne!(forward.train, other_seed.train);
    }

    #[test]
    fn balanced_by_default_and_plain_on_request() {
        let config = SubsetConfig { train_size: Some(11), eval_size: Some(4), ..Default::default() };
        let s = draw(Splits::TrainTest { train: examples(100), test: examples(50) }, &config).unwrap();
        assert_eq!(crate::example::class_counts(&s.train, 2), [5, 6]);
        assert_eq!(crate::example::class_counts(&s.eval, 2), [2, 2]);
        let mut skewed = examples(100);
        skewed.iter_mut().take(90).for_each(|r| r.label = Target::Class(1));
        let plain = SubsetConfig { train_size: Some(20), eval_size: Some(4), balanced: false, ..Default::default() };
        let s = draw(Splits::TrainTest { train: skewed, test: examples(50) }, &plain).unwrap();
        assert_eq!(s.train.len(), 20);
        assert!(crate::example::class_counts(&s.train, 2)[1] > 10);
    }

    #[test]
    fn too_large_names_the_split_and_class() {
        let config = SubsetConfig { train_size: Some(60), eval_size: Some(4), ..Default::default() };
        let err = draw(Splits::TrainTest { train: examples(50), test: examples(50) }, &config).unwrap_err().to_string();
        assert!(err.contains("train") && err.contains("\"neg\"") && err.contains("30") && err.contains("25"), "{err}");
    }

    #[test]
    fn single_file_subsets_are_disjoint() {
        let config = SubsetConfig { train_size: Some(40), eval_size: Some(40), ..Default::default() };
        let s = draw(Splits::Unsplit(examples(80)), &config).unwrap();
        let train: HashSet<_> = s.train.iter().map(|r| &r.text).collect();
        assert!(s.eval.iter().all(|r| !train.contains(&r.text)));
        assert!(draw(Splits::Unsplit(examples(80)), &SubsetConfig { eval_size: Some(41), ..config }).is_err());
    }

    #[test]
    fn dedup_and_overlap_are_counted() {
        let mut train = examples(20);
        train.push(train[0].clone());
        let mut test: Vec<Example> = (0..20).map(|i| Example::new(format!("test {i}"), i % 2)).collect();
        test.push(train[3].clone());
        let config = SubsetConfig {
            train_size: Some(4),
            eval_size: Some(4),
            dedup: true,
            drop_test_overlap: true,
            ..Default::default()
        };
        let s = draw(Splits::TrainTest { train, test }, &config).unwrap();
        assert_eq!((s.duplicates_dropped, s.overlap_dropped), (1, 1));
    }

    #[test]
    fn balanced_over_n_classes_and_refused_without_classes() {
        let five: Vec<Example> = (0..200).map(|i| Example::new(format!("ticket {i}"), i % 5)).collect();
        let space = LabelSpace {
            problem_type: ProblemType::SingleLabelClassification,
            names: ["a", "b", "c", "d", "e"].map(String::from).to_vec(),
        };
        let config = SubsetConfig { train_size: Some(23), eval_size: Some(10), ..Default::default() };
        let s = super::draw(Splits::Unsplit(five.clone()), &config, &space).unwrap();
        assert_eq!(crate::example::class_counts(&s.train, 5), [4, 4, 5, 5, 5]);
        assert_eq!(crate::example::class_counts(&s.eval, 5), [2; 5]);
        let rare: Vec<Example> = five.into_iter().filter(|r| r.label.class() != 3 || r.text == "ticket 3").collect();
        let err = super::draw(Splits::Unsplit(rare), &config, &space).unwrap_err().to_string();
        assert!(err.contains("\"d\"") && err.contains("data.balanced"), "{err}");

        let regression = LabelSpace { problem_type: ProblemType::Regression, names: vec!["LABEL_0".into()] };
        let values: Vec<Example> = (0..50)
            .map(|i| Example { text: format!("r {i}"), text_pair: None, label: Target::Value(i as f32) })
            .collect();
        let err = super::draw(Splits::Unsplit(values.clone()), &config, &regression).unwrap_err().to_string();
        assert!(err.contains("data.balanced = false"), "{err}");
        let plain = SubsetConfig { balanced: false, ..config };
        assert_eq!(super::draw(Splits::Unsplit(values), &plain, &regression).unwrap().train.len(), 23);
    }

    #[test]
    fn pairs_are_drawn_and_deduplicated_as_pairs() {
        let pairs: Vec<Example> = (0..40)
            .map(|i| Example {
                text: "same question".into(),
                text_pair: Some(format!("answer {i}")),
                label: Target::Class(i % 2),
            })
            .collect();
        let config = SubsetConfig { train_size: Some(20), eval_size: Some(20), dedup: true, ..Default::default() };
        let s = draw(Splits::Unsplit(pairs), &config).unwrap();
        assert_eq!((s.train.len(), s.eval.len(), s.duplicates_dropped), (20, 20, 0));
    }

    #[test]
    fn unset_sizes_take_every_example() {
        let all = SubsetConfig { train_size: None, eval_size: None, ..Default::default() };
        let s = draw(Splits::TrainTest { train: examples(30), test: examples(11) }, &all).unwrap();
        assert_eq!((s.train.len(), s.eval.len()), (30, 11), "whole splits, balanced or not");
        let s = draw(Splits::Unsplit(examples(41)), &all).unwrap();
        assert_eq!((s.train.len(), s.eval.len()), (30, 11), "a quarter held out of one file");
        let used: HashSet<_> = s.train.iter().map(|r| &r.text).collect();
        assert!(s.eval.iter().all(|r| !used.contains(&r.text)));
    }
}
