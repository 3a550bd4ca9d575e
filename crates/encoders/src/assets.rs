//! Where tests, examples and benchmarks find the real assets (`../shared/assets` beside the
//! workspace: IMDb, bert-base-uncased's tokenizer, all-MiniLM-L6-v2's weights).
//!
//! The one place that decides it: `$SHARED_ASSETS` if set, else `<workspace>/../shared/assets`.
//! When they are missing, tests skip with a message, except under CI (`CI=true`), where a
//! missing asset is a failure: CI always has them.

use std::path::PathBuf;

/// The assets directory, if present.
pub fn shared_assets() -> Option<PathBuf> {
    let dir = std::env::var_os("SHARED_ASSETS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/assets"));
    dir.is_dir().then_some(dir)
}

/// The assets directory for a test: `None` (after saying why) where a developer lacks it,
/// a panic under CI, which must have it.
pub fn require_shared_assets(test: &str) -> Option<PathBuf> {
    match shared_assets() {
        Some(dir) => Some(dir),
        None if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") => {
            panic!("{test}: shared assets not found (set SHARED_ASSETS or place ../shared/assets beside the workspace)")
        }
        None => {
            eprintln!("{test}: skipped, shared assets not found (SHARED_ASSETS or ../shared/assets)");
            None
        }
    }
}
