//! A learned bias per attention head and bucket of relative distance, added to every layer's
//! attention scores: T5's bucketed relative positions, as MPNet's encoder uses them
//! (`MPNetEncoder.compute_position_bias`, `relative_position_bucket`). Built from sizes; any
//! family whose encoder holds such a table (`relative_attention_bias.weight`, `[buckets,
//! heads]`) can use it.

use burn::module::{Module, Param};
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};

use crate::error::Result;
use crate::weights::{Key, Weights};

/// The bias table and how distances are bucketed.
#[derive(Module, Debug)]
pub struct RelativePositionBias<B: Backend> {
    /// `[table rows, heads]`: a row per bucket (checkpoint key `relative_attention_bias.weight`).
    pub weight: Param<Tensor<B, 2>>,
    /// Buckets the distances fall into, half for keys before the query and half after.
    pub num_buckets: usize,
    /// Distances from this on share the last bucket of their side.
    pub max_distance: usize,
}

impl<B: Backend> RelativePositionBias<B> {
    /// The table of `rows` buckets for `heads` heads under `at` (drawn normal when fresh, as
    /// `nn.Embedding` is). `num_buckets` may be fewer than the rows (MPNet buckets into 32
    /// whatever `relative_attention_num_buckets` says), never more.
    pub fn load(w: &mut Weights<B>, at: &Key, (rows, heads): (usize, usize), num_buckets: usize) -> Result<Self> {
        debug_assert!(num_buckets <= rows, "the family's config checks this");
        let weight = w.embedding(at, rows, heads, None)?.weight;
        Ok(Self { weight, num_buckets, max_distance: 128 })
    }

    /// The bias for `seq` positions, `[1, heads, seq (query), seq (key)]`, added to the
    /// attention scores before the mask.
    pub fn forward(&self, seq: usize, device: &B::Device) -> Tensor<B, 4> {
        let (buckets, distance) = (self.num_buckets, self.max_distance);
        let ids: Vec<i64> = (0..seq as i64)
            .flat_map(|query| (0..seq as i64).map(move |key| bucket(key - query, buckets, distance) as i64))
            .collect();
        let ids = Tensor::<B, 1, Int>::from_data(TensorData::new(ids, [seq * seq]), device);
        let [_, heads] = self.weight.dims();
        let values = self.weight.val().select(0, ids); // (T*T, nh)
        values.reshape([seq, seq, heads]).permute([2, 0, 1]).reshape([1, heads, seq, seq])
    }
}

/// transformers' `relative_position_bucket(key - query, num_buckets, max_distance)`, its float
/// arithmetic in f32 as torch does it on a float32 tensor: keys after the query in the upper
/// half; distances below `num_buckets / 4` exact, then logarithmic up to `max_distance`.
pub(crate) fn bucket(relative: i64, num_buckets: usize, max_distance: usize) -> usize {
    let half = num_buckets / 2;
    let n = -relative;
    let side = if n < 0 { half } else { 0 };
    let n = n.unsigned_abs() as usize;
    let max_exact = half / 2;
    if n < max_exact {
        return side + n;
    }
    let scale = ((max_distance as f64) / (max_exact as f64)).ln() as f32;
    let large = max_exact + ((n as f32 / max_exact as f32).ln() / scale * (half - max_exact) as f32) as usize;
    side + large.min(half - 1)
}

#[cfg(test)]
mod tests {
    use super::bucket;

    /// transformers' buckets for MPNet's 32 buckets and 128 distance: `relative_position_bucket`
    /// on `torch.arange(-300, 301)` (transformers 4.57.1), as runs `(first distance, bucket)`.
    #[test]
    fn buckets_are_transformers() {
        const RUNS: [(i64, usize); 31] = [
            (-300, 15),
            (-90, 14),
            (-63, 13),
            (-45, 12),
            (-31, 11),
            (-22, 10),
            (-15, 9),
            (-11, 8),
            (-7, 7),
            (-6, 6),
            (-5, 5),
            (-4, 4),
            (-3, 3),
            (-2, 2),
            (-1, 1),
            (0, 0),
            (1, 17),
            (2, 18),
            (3, 19),
            (4, 20),
            (5, 21),
            (6, 22),
            (7, 23),
            (8, 24),
            (12, 25),
            (16, 26),
            (23, 27),
            (32, 28),
            (46, 29),
            (64, 30),
            (91, 31),
        ];
        for relative in -300..=300 {
            let expected = RUNS.iter().rev().find(|(first, _)| *first <= relative).map(|(_, b)| *b);
            assert_eq!(Some(bucket(relative, 32, 128)), expected, "distance {relative}");
        }
        assert_eq!(bucket(-10_000, 32, 128), 15);
        assert_eq!(bucket(10_000, 32, 128), 31);
    }
}
