//! Helpers for the kernels' tests, which compare a kernel's values
//! and gradients with Burn's own op.

use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

/// A tensor's elements as f32, in row-major order.
///
/// # Panics
/// If the tensor's data cannot be read as f32 (tests only).
pub fn values<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data().convert::<f32>().into_vec::<f32>().unwrap_or_else(|e| panic!("tensor data: {e:?}"))
}

/// Asserts `a` and `b` agree element by element within `tol * (1 + |b|)`.
///
/// # Panics
/// At the first element that does not, naming it.
pub fn assert_close(a: &[f32], b: &[f32], tol: f32) {
    assert_eq!(a.len(), b.len(), "lengths differ");
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!((x - y).abs() <= tol * (1.0 + y.abs()), "element {i}: {x} vs {y}");
    }
}

/// Burn's CPU backend draws from one generator per process, and tests run in parallel: a test
/// that seeds it (and expects the draws that follow) or draws from it holds this lock, so that
/// no other test's draws land between its seed and its own.
pub fn generator() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
