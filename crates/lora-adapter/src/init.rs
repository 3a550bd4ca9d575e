//! The initialisations that start an adapter from its base weight and change that weight:
//! PiSSA (Meng et al., 2024) and OLoRA (Büyükakyüz, 2024), as PEFT's `pissa_init` and
//! `olora_init` compute them.
//!
//! Each gives starting factors `A`, `B` taken from the base weight `W` and a residual
//! `W - scaling A B` that replaces `W`, so that the model computes what it did before the
//! adapter. PEFT takes the SVD and QR from `torch.linalg`; here they come from nalgebra, in f64.
//! Both are unique up to the sign of each rank-one component (a singular vector pair, a column
//! of `Q` with its row of `R`), which flips `A`'s column and `B`'s row together: `A B`, the
//! residual and the training that follows (AdamW works element by element) are the same.

use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use nalgebra::DMatrix;

use crate::config::{InitLoraWeights, LoraConfigError};
use crate::error::{LoraError, Result};

/// Which of the weight-changing initialisations an `init_lora_weights` is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MutatingInit {
    /// `"pissa"`, or `"pissa_niter_N"`: PEFT's randomized `svd_lowrank` with N power
    /// iterations approximates the top-`r` SVD; here it is computed exactly.
    Pissa,
    /// `"olora"`.
    Olora,
}

impl MutatingInit {
    pub fn of(init: &InitLoraWeights) -> Option<Self> {
        match init {
            InitLoraWeights::Method(m) if m == "pissa" || pissa_niter(m).is_some() => Some(Self::Pissa),
            InitLoraWeights::Method(m) if m.eq_ignore_ascii_case("olora") => Some(Self::Olora),
            _ => None,
        }
    }
}

/// N of `"pissa_niter_N"`, as PEFT splits it.
pub(crate) fn pissa_niter(method: &str) -> Option<usize> {
    method.strip_prefix("pissa_niter_")?.parse().ok()
}

/// The starting factors `(A [in, r], B [r, out])` of `method` for the base weight `weight`
/// (`[in, out]`, Burn's layout) and the residual weight `weight - scaling A B` to put in its place.
pub fn mutated_init<B: Backend>(
    weight: Tensor<B, 2>,
    r: usize,
    scaling: f64,
    method: MutatingInit,
) -> Result<(Tensor<B, 2>, Tensor<B, 2>, Tensor<B, 2>)> {
    let device = weight.device();
    let [d_in, d_out] = weight.dims();
    if r > d_in.min(d_out) {
        return Err(LoraError::Config {
            path: None,
            source: LoraConfigError::Unsupported(format!(
                "r = {r} is more than the {d_in} x {d_out} weight's rank can give PiSSA/OLoRA (at most {}); lower r",
                d_in.min(d_out)
            )),
        });
    }
    let values = kernels::read::f32s(weight.clone())?;
    // PyTorch's `[out, in]`: the transpose of Burn's row-major `[in, out]`.
    let w = DMatrix::from_fn(d_out, d_in, |o, i| f64::from(values[i * d_out + o]));
    let (a_pt, b_pt) = match method {
        MutatingInit::Pissa => pissa(w, r, scaling),
        MutatingInit::Olora => olora(w, r),
    };
    // `[r, in]` and `[out, r]` (PyTorch's) to Burn's `[in, r]` and `[r, out]`.
    let a: Vec<f32> = (0..d_in).flat_map(|i| (0..r).map(move |k| (i, k))).map(|(i, k)| a_pt[(k, i)] as f32).collect();
    let b: Vec<f32> = (0..r).flat_map(|k| (0..d_out).map(move |o| (k, o))).map(|(k, o)| b_pt[(o, k)] as f32).collect();
    let a = Tensor::<B, 2>::from_data(TensorData::new(a, [d_in, r]), &device);
    let b = Tensor::<B, 2>::from_data(TensorData::new(b, [r, d_out]), &device);
    // As PEFT: the residual from the f32 factors.
    let residual = weight - a.clone().matmul(b.clone()) * scaling;
    Ok((a, b, residual))
}

/// PEFT's `pissa_init` on `w` (`[out, in]`): `W = V S Uh`, `A = sqrt(S_r / scaling) Uh_r`,
/// `B = V_r sqrt(S_r / scaling)`. Returns `(A [r, in], B [out, r])`.
fn pissa(w: DMatrix<f64>, r: usize, scaling: f64) -> (DMatrix<f64>, DMatrix<f64>) {
    let (rows, cols) = w.shape();
    let svd = w.svd(true, true);
    let (Some(v), Some(uh)) = (svd.u, svd.v_t) else {
        // nalgebra computes both when asked; a missing one would be its bug.
        return (DMatrix::zeros(r, cols), DMatrix::zeros(rows, r));
    };
    // Largest first, as torch.linalg.svd orders them.
    let mut order: Vec<usize> = (0..svd.singular_values.len()).collect();
    order.sort_by(|&x, &y| svd.singular_values[y].total_cmp(&svd.singular_values[x]));
    let mut a = DMatrix::zeros(r, cols);
    let mut b = DMatrix::zeros(rows, r);
    for (k, &j) in order.iter().take(r).enumerate() {
        let root = (svd.singular_values[j] / scaling).sqrt();
        a.row_mut(k).copy_from(&(uh.row(j) * root));
        b.column_mut(k).copy_from(&(v.column(j) * root));
    }
    (a, b)
}

/// PEFT's `olora_init` on `w` (`[out, in]`): `W = Q R`, `A = R[:r]`, `B = Q[:, :r]`.
/// Returns `(A [r, in], B [out, r])`.
fn olora(w: DMatrix<f64>, r: usize) -> (DMatrix<f64>, DMatrix<f64>) {
    let qr = w.qr();
    let (q, rr) = (qr.q(), qr.r());
    (rr.rows(0, r).into_owned(), q.columns(0, r).into_owned())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use burn::backend::Flex;

    fn weight() -> Tensor<Flex, 2> {
        // [in 5, out 3], deterministic and of full rank.
        let values: Vec<f32> =
            (0..15).map(|i| ((i * 7 % 11) as f32 - 5.0) / 10.0 + if i % 4 == 0 { 0.3 } else { 0.0 }).collect();
        Tensor::from_data(TensorData::new(values, [5, 3]), &Default::default())
    }

    fn host(t: Tensor<Flex, 2>) -> (Vec<f32>, [usize; 2]) {
        let dims = t.dims();
        (kernels::read::f32s(t).unwrap(), dims)
    }

    /// The residual plus the scaled factors give the base weight back: the model is unchanged.
    #[test]
    fn residual_and_factors_make_the_base_weight() {
        for method in [MutatingInit::Pissa, MutatingInit::Olora] {
            let (a, b, residual) = mutated_init(weight(), 2, 4.0, method).unwrap();
            assert_eq!((a.dims(), b.dims()), ([5, 2], [2, 3]));
            let (back, _) = host(residual + a.matmul(b) * 4.0);
            let (w, _) = host(weight());
            let worst = back.iter().zip(&w).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max);
            assert!(worst < 1e-6, "{method:?}: {worst:e}");
        }
    }

    /// PiSSA's factors are the top singular triplets: `scaling A B` is the best rank-r
    /// approximation, so the residual's norm is the norm of the singular values left out.
    #[test]
    fn pissa_takes_the_principal_components() {
        let w = weight();
        let (values, [d_in, d_out]) = host(w.clone());
        let m = DMatrix::from_fn(d_out, d_in, |o, i| f64::from(values[i * d_out + o]));
        let mut s: Vec<f64> = m.singular_values().iter().copied().collect();
        s.sort_by(|x, y| y.total_cmp(x));
        let (_, _, residual) = mutated_init(w, 1, 2.0, MutatingInit::Pissa).unwrap();
        let (res, _) = host(residual);
        let norm = res.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
        let expected = s[1..].iter().map(|x| x * x).sum::<f64>().sqrt();
        assert!((norm - expected).abs() < 1e-5, "{norm} vs {expected}");
    }

    /// OLoRA's `B` has orthonormal columns (`Q`'s) and `A` is upper triangular (`R`'s rows).
    #[test]
    fn olora_takes_q_and_r() {
        let (a, b, _) = mutated_init(weight(), 2, 1.0, MutatingInit::Olora).unwrap();
        let (b, _) = host(b); // [2, 3]: B's rows are Q's columns
        let dot = |x: usize, y: usize| (0..3).map(|o| b[x * 3 + o] * b[y * 3 + o]).sum::<f32>();
        assert!((dot(0, 0) - 1.0).abs() < 1e-6 && (dot(1, 1) - 1.0).abs() < 1e-6 && dot(0, 1).abs() < 1e-6);
        let (a, _) = host(a); // [in 5, r 2]: A[i][k] = R[k][i], zero below R's diagonal
        assert!(a[1].abs() < 1e-7, "R[1][0] is below the diagonal: {}", a[1]);
        assert!(a[2].abs() > 1e-3 && a[3].abs() > 1e-3, "R[0][1] and R[1][1]: {a:?}");
    }

    #[test]
    fn a_rank_above_the_weight_s_is_refused() {
        let err = mutated_init(weight(), 4, 1.0, MutatingInit::Pissa).unwrap_err().to_string();
        assert!(err.contains("r = 4") && err.contains("at most 3"), "{err}");
    }

    #[test]
    fn names_as_peft_parses_them() {
        let m = |s: &str| MutatingInit::of(&InitLoraWeights::Method(s.into()));
        assert_eq!(m("pissa"), Some(MutatingInit::Pissa));
        assert_eq!(m("pissa_niter_16"), Some(MutatingInit::Pissa));
        assert_eq!(m("olora"), Some(MutatingInit::Olora));
        assert_eq!(m("gaussian"), None);
        assert_eq!(m("pissa_niter_x"), None);
        assert_eq!(MutatingInit::of(&InitLoraWeights::Flag(true)), None);
    }
}
