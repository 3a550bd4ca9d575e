//! What the CPU kernels ([`crate::softmax`], [`crate::gelu`]) share: math in plain arithmetic
//! that vectorises inside their `multiversion` functions.
//!
//! `f32::exp` and `erf` are calls into libm, one element at a time; these are inlined
//! polynomials, so a loop over a slice becomes AVX-512 or AVX2 code in the multiversioned clone.

/// `e^v` for `v <= 0`, within a few units in the last place, in plain arithmetic that
/// vectorises (Cephes' `expf`: `v = n ln 2 + r`, a degree-6 polynomial for `e^r`, `2^n` put in
/// the exponent bits). Below `ln(2^-126)` it gives 0 where `f32::exp` gives a subnormal.
#[inline(always)]
pub(crate) fn exp_nonpositive(v: f32) -> f32 {
    const LOWEST: f32 = -87.336_54; // ln(2^-126): the smallest normal result
    const ROUND: f32 = 12_582_912.0; // 1.5 * 2^23: adding it leaves round(t) in the low mantissa bits
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    let clamped = if v < LOWEST { LOWEST } else { v };
    let shifted = clamped * std::f32::consts::LOG2_E + ROUND;
    let n = shifted - ROUND;
    let r = clamped - n * LN2_HI - n * LN2_LO;
    let mut p = 1.987_569_1e-4;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    let e_r = p * r * r + r + 1.0;
    let exponent = (shifted.to_bits() as i32 - ROUND.to_bits() as i32 + 127) << 23;
    let e = e_r * f32::from_bits(exponent as u32);
    if v < LOWEST { 0.0 } else { e }
}

/// `erf(x)` within 3e-7 (absolute): its Taylor series to `x^11` below `|x| = 0.5`, Abramowitz
/// and Stegun 7.1.26 above (`1 - (a1 t + ... + a5 t^5) e^(-x^2)`, `t = 1 / (1 + p |x|)`), both
/// computed and one selected, so that the loop stays branch-free.
#[inline(always)]
pub(crate) fn erf(x: f32) -> f32 {
    const TWO_OVER_SQRT_PI: f32 = std::f32::consts::FRAC_2_SQRT_PI;
    let a = x.abs();
    let x2 = x * x;
    let mut s = -1.0 / 1320.0;
    s = s * x2 + 1.0 / 216.0;
    s = s * x2 - 1.0 / 42.0;
    s = s * x2 + 1.0 / 10.0;
    s = s * x2 - 1.0 / 3.0;
    let small = TWO_OVER_SQRT_PI * (x + x * x2 * s);
    let t = 1.0 / (1.0 + 0.327_591_1 * a);
    let mut p = 1.061_405_4;
    p = p * t - 1.453_152;
    p = p * t + 1.421_413_8;
    p = p * t - 0.284_496_74;
    p = p * t + 0.254_829_6;
    let large = 1.0 - p * t * exp_nonpositive(-x2);
    let large = if x < 0.0 { -large } else { large };
    if a < 0.5 { small } else { large }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_within_a_few_ulp_of_libm() {
        for i in 0..=200_000 {
            let v = -87.3 * i as f32 / 200_000.0;
            let (ours, libm) = (exp_nonpositive(v), v.exp());
            assert!((ours - libm).abs() <= 4.0 * f32::EPSILON * libm, "e^{v}: {ours} vs {libm}");
        }
        assert_eq!(exp_nonpositive(0.0), 1.0);
        assert_eq!(exp_nonpositive(-90.0), 0.0);
        assert_eq!(exp_nonpositive(f32::MIN), 0.0);
        assert!(exp_nonpositive(f32::NAN).is_nan());
    }

    /// Against erf in f64: its Taylor series up to 3, the asymptotic series of erfc beyond.
    #[test]
    fn erf_is_within_3e_7() {
        fn erf64(x: f64) -> f64 {
            let a = x.abs();
            if a > 3.0 {
                let inv = 1.0 / (2.0 * a * a);
                let series = 1.0 - inv + 3.0 * inv * inv - 15.0 * inv * inv * inv;
                return x.signum() * (1.0 - (-a * a).exp() / (a * std::f64::consts::PI.sqrt()) * series);
            }
            let (mut term, mut sum, mut n) = (x, x, 0.0);
            while term.abs() > 1e-18 {
                n += 1.0;
                term *= -x * x / n;
                sum += term / (2.0 * n + 1.0);
            }
            sum * 2.0 / std::f64::consts::PI.sqrt()
        }
        let mut worst = 0.0f64;
        for i in -60_000..=60_000 {
            let x = i as f32 / 10_000.0;
            let (ours, exact) = (erf(x) as f64, erf64(x as f64));
            assert!((ours - exact).abs() <= 3e-7, "erf({x}): {ours} vs {exact}");
            worst = worst.max((ours - exact).abs());
        }
        eprintln!("largest erf error: {worst:e}");
        assert!(erf(f32::NAN).is_nan());
        assert_eq!(erf(f32::INFINITY), 1.0);
        assert_eq!(erf(f32::NEG_INFINITY), -1.0);
    }
}
