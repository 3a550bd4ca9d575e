//! [`Rotary`]: rotary position embeddings' `cos` and `sin` tables, as transformers computes
//! them (ModernBERT's global and local layers each have their own base). The kernels crate
//! applies them (`kernels::rotary`).

use std::sync::Arc;

use kernels::RotaryTables;

/// Rotary position embeddings of one layer: `theta` is its base.
#[derive(Debug, Clone, PartialEq)]
pub struct Rotary {
    pub theta: f64,
    /// Linear scaling (`rope_type: "linear"`): `inv_freq` divided by it, as transformers does.
    pub factor: f64,
    pub head_dim: usize,
}

impl Rotary {
    /// `cos` and `sin` of `[seq, head_dim]`, computed in f32 as transformers computes them
    /// (`inv_freq` from `theta ** (2i / d)`, `freqs = pos * inv_freq` repeated twice), so that
    /// long positions round the same way.
    pub fn tables(&self, seq: usize) -> RotaryTables {
        let d = self.head_dim;
        let factor = self.factor as f32;
        let inv_freq: Vec<f32> = (0..d / 2)
            .map(|i| {
                let f = 1.0f32 / (self.theta as f32).powf((2 * i) as f32 / d as f32);
                if factor == 1.0 { f } else { f / factor }
            })
            .collect();
        let mut cos = vec![0.0f32; seq * d];
        let mut sin = vec![0.0f32; seq * d];
        for pos in 0..seq {
            for (i, f) in inv_freq.iter().enumerate() {
                let angle = pos as f32 * f;
                for j in [i, i + d / 2] {
                    cos[pos * d + j] = angle.cos();
                    sin[pos * d + j] = angle.sin();
                }
            }
        }
        RotaryTables { seq, head_dim: d, cos: Arc::new(cos), sin: Arc::new(sin) }
    }
}

#[cfg(test)]
mod tests {
    use super::Rotary;

    /// Linear scaling divides the positions by its factor: position 2p with factor 2 is
    /// position p without (exactly: halving a frequency rounds nothing).
    #[test]
    fn linear_scaling_divides_the_positions() {
        let plain = Rotary { theta: 10000.0, factor: 1.0, head_dim: 8 }.tables(16);
        let scaled = Rotary { theta: 10000.0, factor: 2.0, head_dim: 8 }.tables(32);
        for p in 0..16 {
            assert_eq!(plain.cos[p * 8..(p + 1) * 8], scaled.cos[2 * p * 8..(2 * p + 1) * 8], "cos at {p}");
            assert_eq!(plain.sin[p * 8..(p + 1) * 8], scaled.sin[2 * p * 8..(2 * p + 1) * 8], "sin at {p}");
        }
        assert_ne!(plain.cos[8..16], scaled.cos[8..16], "position 1 differs");
    }
}
