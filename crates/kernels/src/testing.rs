//! Helpers for the kernels' tests, which compare a kernel's values and gradients with Burn's own
//! op, and for every numeric test of the workspace (the `testing` feature): a bound check that
//! reports what it measured, and the CPU path the kernels take.

use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

/// A tensor's elements as f32, in row-major order.
///
/// # Panics
/// If the tensor's data cannot be read as f32 (tests only).
pub fn values<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data().convert::<f32>().into_vec::<f32>().unwrap_or_else(|e| panic!("tensor data: {e:?}"))
}

/// How the kernels' bounds are argued: a kernel and Burn's op compute the same f32 formula in
/// another order (other sums, fused steps), so they differ by a few ulps (6e-8 relative) of the
/// terms they sum, times how many are summed, which `1 + |b|` scales for large and near-zero
/// results alike; each test's comment says what it sums. A wrong formula, mask, scale or
/// epsilon moves results by 1e-3 or more. docs/testing.md lists each bound with its margin.
///
/// Asserts `a` and `b` agree element by element within `tol * (1 + |b|)`, and prints the worst
/// `|a - b| / (1 + |b|)` with the bound as `bound kernel: WORST <= TOL ... [file:line]` (see
/// `encoders::testing::within`, which the other crates' tests use; docs/testing.md lists both).
///
/// # Panics
/// At the first element that does not, naming it.
#[track_caller]
pub fn assert_close(a: &[f32], b: &[f32], tol: f32) {
    assert_eq!(a.len(), b.len(), "lengths differ");
    let worst = a.iter().zip(b).map(|(x, y)| (x - y).abs() / (1.0 + y.abs())).fold(0.0f32, f32::max);
    let at = std::panic::Location::caller();
    report("kernel, relative to 1 + |b|", f64::from(worst), f64::from(tol), at);
    for (i, (x, y)) in a.iter().zip(b).enumerate() {
        assert!((x - y).abs() <= tol * (1.0 + y.abs()), "element {i}: {x} vs {y} ({}:{})", at.file(), at.line());
    }
}

/// Asserts that the numeric comparison `what` measured `worst <= bound` (a NaN fails), and prints
/// both on standard error as `bound WHAT: WORST <= BOUND (margin Nx) [file:line] CPU-PATH`: run a
/// test binary with `--nocapture` and `grep '^bound '` to see every bound with its value on this
/// CPU (docs/testing.md's table is made that way, natively and on the AVX2 path).
///
/// # Panics
/// If `worst` is above `bound` or NaN.
#[track_caller]
pub fn within(what: &str, worst: f64, bound: f64) {
    let at = std::panic::Location::caller();
    report(what, worst, bound, at);
    assert!(worst <= bound, "{what}: {worst:e} exceeds the bound {bound:e} ({}:{})", at.file(), at.line());
}

/// The largest `|a - b|` over two equally long slices (NaN if any difference is NaN).
///
/// # Panics
/// If their lengths differ.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len(), "lengths differ");
    let mut worst = 0.0f64;
    for (x, y) in a.iter().zip(b) {
        let d = f64::from((x - y).abs());
        if d.is_nan() {
            return f64::NAN;
        }
        worst = worst.max(d);
    }
    worst
}

/// Prints a bound's line, `bound WHAT: WORST <= BOUND (margin Nx) [file:line test] CPU-PATH`,
/// the running test named after its thread (as the test harness names it).
fn report(what: &str, worst: f64, bound: f64, at: &std::panic::Location<'_>) {
    let test = std::thread::current().name().unwrap_or("?").to_string();
    let cpu = cpu_path();
    eprintln!(
        "bound {what}: {worst:.3e} <= {bound:.1e} (margin {:.1}x) [{}:{} {test}] {cpu}",
        bound / worst,
        at.file(),
        at.line()
    );
}

/// `avx512` where the matrix and SIMD kernels take their AVX-512 path, else `avx2` or `other`;
/// with `LORA_TEST_CPU` set (`.ci/run` sets `avx2` under QEMU), another path is a failure
/// (`encoders::testing::cpu_path` is the same for the crates above this one).
///
/// # Panics
/// As said.
pub fn cpu_path() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    let found = if std::arch::is_x86_feature_detected!("avx512f") {
        "avx512"
    } else if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        "avx2"
    } else {
        "other"
    };
    #[cfg(not(target_arch = "x86_64"))]
    let found = "other";
    match std::env::var("LORA_TEST_CPU").as_deref() {
        Err(_) | Ok("") => {}
        Ok(wanted) => {
            assert_eq!(wanted, found, "LORA_TEST_CPU asks for the {wanted} path; this CPU's kernels take {found}")
        }
    }
    found
}

/// Burn's CPU backend draws from one generator per process, and tests run in parallel: a test
/// that seeds it (and expects the draws that follow) or draws from it holds this lock, so that
/// no other test's draws land between its seed and its own.
pub fn generator() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
