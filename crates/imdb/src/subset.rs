//! Seeded subsets: the training subset from the train split, the evaluation subset from the
//! test split (the model card's held-out 500).
//!
//! The draw depends on the reviews, not on the order a source lists them in: every review gets
//! the key `xxh3(text, label; seed)`, reviews are taken in key order, and the same seed picks
//! the same reviews from the JSONL files, the aclImdb tree, its tarball or the Hub's parquet,
//! on every machine.

use std::collections::HashSet;
use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::xxh3_64_with_seed;

use crate::error::{DataError, Result};
use crate::review::{NEGATIVE, POSITIVE, Review, Splits};

/// How to draw the subsets (the `[data]` keys of a run config).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SubsetConfig {
    pub train_size: usize,
    pub eval_size: usize,
    pub seed: u64,
    /// Half of each subset from each class (the larger half to positive for odd sizes);
    /// `false` takes the first reviews in key order, whatever their label (a plain shuffle,
    /// as `datasets`' `shuffle(seed).select(range(n))`, though not numpy's permutation).
    pub balanced: bool,
    /// Drop repeated texts within each split (the release has 96 in train, 199 in test).
    pub dedup: bool,
    /// Drop test reviews whose text also occurs in the train split (the release has 123).
    pub drop_test_overlap: bool,
}

impl Default for SubsetConfig {
    fn default() -> Self {
        Self { train_size: 1000, eval_size: 500, seed: 42, balanced: true, dedup: false, drop_test_overlap: false }
    }
}

/// The drawn subsets and what was dropped on the way.
#[derive(Debug, Clone, PartialEq)]
pub struct Subsets {
    pub train: Vec<Review>,
    pub eval: Vec<Review>,
    pub duplicates_dropped: usize,
    pub overlap_dropped: usize,
}

fn key(review: &Review, seed: u64) -> u64 {
    xxh3_64_with_seed(review.text.as_bytes(), seed ^ u64::from(review.label).wrapping_mul(0x9E37_79B9_7F4A_7C15))
}

/// Sorts into the seed's order; ties (identical reviews) are interchangeable.
fn in_key_order(mut reviews: Vec<Review>, seed: u64) -> Vec<Review> {
    reviews.sort_by_cached_key(|r| (key(r, seed), r.label, r.text.clone()));
    reviews
}

fn dedup(reviews: Vec<Review>) -> (Vec<Review>, usize) {
    let before = reviews.len();
    let mut seen = HashSet::new();
    let kept: Vec<Review> = reviews.into_iter().filter(|r| seen.insert(r.text.clone())).collect();
    let dropped = before - kept.len();
    (kept, dropped)
}

fn take(pool: &[Review], n: usize, balanced: bool, split: &str) -> Result<Vec<Review>> {
    if !balanced {
        if n > pool.len() {
            return Err(DataError::TooLarge {
                split: split.into(),
                what: "reviews".into(),
                requested: n,
                available: pool.len(),
            });
        }
        return Ok(pool[..n].to_vec());
    }
    let (want_neg, want_pos) = (n / 2, n - n / 2);
    let mut taken = Vec::with_capacity(n);
    let (mut neg, mut pos) = (0, 0);
    for r in pool {
        let slot = if r.label == NEGATIVE { &mut neg } else { &mut pos };
        let want = if r.label == NEGATIVE { want_neg } else { want_pos };
        if *slot < want {
            *slot += 1;
            taken.push(r.clone());
        }
    }
    for (label, got, want) in [(NEGATIVE, neg, want_neg), (POSITIVE, pos, want_pos)] {
        if got < want {
            let name = if label == NEGATIVE { "negative" } else { "positive" };
            return Err(DataError::TooLarge {
                split: split.into(),
                what: format!("{name} reviews"),
                requested: want,
                available: got,
            });
        }
    }
    Ok(taken)
}

/// Draws the training and evaluation subsets.
pub fn draw(splits: Splits, config: &SubsetConfig) -> Result<Subsets> {
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
        let train_texts: HashSet<&str> = train_pool.iter().map(|r| r.text.as_str()).collect();
        let before = test_pool.len();
        test_pool.retain(|r| !train_texts.contains(r.text.as_str()));
        overlap_dropped = before - test_pool.len();
    }
    let train = take(&train_pool, config.train_size, config.balanced, if unsplit { "single-file" } else { "train" })?;
    let eval = if unsplit {
        // One pool: the evaluation subset comes from what the training subset left, and never
        // shares a text with it.
        let used: HashSet<&str> = train.iter().map(|r| r.text.as_str()).collect();
        let rest: Vec<Review> = train_pool.iter().filter(|r| !used.contains(r.text.as_str())).cloned().collect();
        take(&rest, config.eval_size, config.balanced, "single-file (after the training subset)")?
    } else {
        take(&test_pool, config.eval_size, config.balanced, "test")?
    };
    Ok(Subsets { train, eval, duplicates_dropped, overlap_dropped })
}

/// Writes reviews as JSON Lines (`{"text": ..., "label": 0|1}`), through a temporary file.
pub fn write_jsonl(path: &Path, reviews: &[Review]) -> Result<()> {
    let fail = |source| DataError::Io { path: path.to_path_buf(), source };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(fail)?;
    }
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    let mut out = std::io::BufWriter::new(std::fs::File::create(&tmp).map_err(fail)?);
    for r in reviews {
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

    fn reviews(n: usize) -> Vec<Review> {
        (0..n).map(|i| Review { text: format!("review {i}"), label: (i % 2) as u8 }).collect()
    }

    #[test]
    fn the_draw_ignores_source_order() {
        let config = SubsetConfig { train_size: 10, eval_size: 6, ..Default::default() };
        let forward = draw(Splits::TrainTest { train: reviews(100), test: reviews(50) }, &config).unwrap();
        let mut train = reviews(100);
        train.reverse();
        let mut test = reviews(50);
        test.rotate_left(17);
        let shuffled = draw(Splits::TrainTest { train, test }, &config).unwrap();
        assert_eq!(forward, shuffled);
        let other_seed =
            draw(Splits::TrainTest { train: reviews(100), test: reviews(50) }, &SubsetConfig { seed: 7, ..config })
                .unwrap();
        assert_ne!(forward.train, other_seed.train);
    }

    #[test]
    fn balanced_by_default_and_plain_on_request() {
        let config = SubsetConfig { train_size: 11, eval_size: 4, ..Default::default() };
        let s = draw(Splits::TrainTest { train: reviews(100), test: reviews(50) }, &config).unwrap();
        assert_eq!(crate::review::label_counts(&s.train), [5, 6]);
        assert_eq!(crate::review::label_counts(&s.eval), [2, 2]);
        let mut skewed = reviews(100);
        skewed.iter_mut().take(90).for_each(|r| r.label = 1);
        let plain = SubsetConfig { train_size: 20, eval_size: 4, balanced: false, ..Default::default() };
        let s = draw(Splits::TrainTest { train: skewed, test: reviews(50) }, &plain).unwrap();
        assert_eq!(s.train.len(), 20);
        assert!(crate::review::label_counts(&s.train)[1] > 10);
    }

    #[test]
    fn too_large_names_the_split_and_class() {
        let config = SubsetConfig { train_size: 60, eval_size: 4, ..Default::default() };
        let err = draw(Splits::TrainTest { train: reviews(50), test: reviews(50) }, &config).unwrap_err().to_string();
        assert!(err.contains("train") && err.contains("negative") && err.contains("30") && err.contains("25"), "{err}");
    }

    #[test]
    fn single_file_subsets_are_disjoint() {
        let config = SubsetConfig { train_size: 40, eval_size: 40, ..Default::default() };
        let s = draw(Splits::Unsplit(reviews(80)), &config).unwrap();
        let train: HashSet<_> = s.train.iter().map(|r| &r.text).collect();
        assert!(s.eval.iter().all(|r| !train.contains(&r.text)));
        assert!(draw(Splits::Unsplit(reviews(80)), &SubsetConfig { eval_size: 41, ..config }).is_err());
    }

    #[test]
    fn dedup_and_overlap_are_counted() {
        let mut train = reviews(20);
        train.push(train[0].clone());
        let mut test: Vec<Review> =
            (0..20).map(|i| Review { text: format!("test {i}"), label: (i % 2) as u8 }).collect();
        test.push(train[3].clone());
        let config =
            SubsetConfig { train_size: 4, eval_size: 4, dedup: true, drop_test_overlap: true, ..Default::default() };
        let s = draw(Splits::TrainTest { train, test }, &config).unwrap();
        assert_eq!((s.duplicates_dropped, s.overlap_dropped), (1, 1));
    }
}
