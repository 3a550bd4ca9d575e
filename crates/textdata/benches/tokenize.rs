//! Reviews tokenized per second for the full 25,000-review train split (bert-base-uncased's
//! tokenizer, truncation at 512, all cores). A benchmark, not a test: `docs/benchmarks.md`
//! records its figures.
//!
//! ```text
//! cargo bench -p textdata --bench tokenize
//! ```

#![allow(clippy::unwrap_used)] // tests: a failed unwrap is a failed test

use std::time::Instant;

fn main() {
    let Some(assets) = encoders::assets::shared_assets() else {
        eprintln!("tokenize bench: ../shared/assets not found (set SHARED_ASSETS)");
        return;
    };
    let tokenizer = match encoders::EncoderTokenizer::from_file(assets.join("bert-base-uncased/tokenizer.json"), 512) {
        Ok(t) => t,
        Err(e) => return eprintln!("tokenize bench: {e}"),
    };
    let reviews = match textdata::read_file(&assets.join("imdb/train.jsonl"), &Default::default()) {
        Ok(r) => r.unlabelled(),
        Err(e) => return eprintln!("tokenize bench: {e}"),
    };
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut runs = Vec::new();
    for _ in 0..3 {
        let start = Instant::now();
        let items = textdata::tokenize(&reviews, &tokenizer, false, |_| {}).unwrap_or_default();
        let secs = start.elapsed().as_secs_f64();
        let tokens: usize = items.iter().map(|i| i.encoded.len()).sum();
        runs.push((secs, tokens));
    }
    runs.sort_by(|a, b| a.0.total_cmp(&b.0));
    let (secs, tokens) = runs[runs.len() / 2];
    println!(
        "{{\"reviews\": {}, \"threads\": {threads}, \"median_seconds\": {secs:.3}, \"reviews_per_second\": {:.0}, \"tokens_per_second\": {:.0}}}",
        reviews.len(),
        reviews.len() as f64 / secs,
        tokens as f64 / secs
    );
}
