//! `GET /metrics`: Prometheus (OpenMetrics) text through `prometheus-client`, the Prometheus
//! project's Rust client: requests and errors per adapter, request latency, batch sizes in rows
//! and padded tokens, the forward's time, rows waiting in the queue, adapters loaded.

use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

type Labels = Vec<(&'static str, String)>;

#[derive(Clone)]
struct Buckets(fn() -> Histogram);

impl MetricConstructor<Histogram> for Buckets {
    fn new_metric(&self) -> Histogram {
        (self.0)()
    }
}

/// The server's metrics, updated by the handlers and the batching thread.
pub(crate) struct Metrics {
    registry: Registry,
    requests: Family<Labels, Counter>,
    errors: Family<Labels, Counter>,
    inputs: Family<Labels, Counter>,
    latency: Family<Labels, Histogram, Buckets>,
    batch_rows: Histogram,
    batch_tokens: Histogram,
    batch_adapters: Histogram,
    forward: Histogram,
    /// Rows submitted and not yet taken into a batch.
    pub queue_rows: Gauge,
    pub adapters: Gauge,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

fn latency_buckets() -> Histogram {
    // 1 ms to about 33 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

impl Metrics {
    pub(crate) fn new() -> Self {
        let mut registry = Registry::with_prefix("lora");
        let requests = Family::<Labels, Counter>::default();
        let errors = Family::<Labels, Counter>::default();
        let inputs = Family::<Labels, Counter>::default();
        let latency = Family::new_with_constructor(Buckets(latency_buckets));
        let batch_rows = Histogram::new(exponential_buckets(1.0, 2.0, 11));
        let batch_tokens = Histogram::new(exponential_buckets(64.0, 2.0, 12));
        let batch_adapters = Histogram::new(exponential_buckets(1.0, 2.0, 8));
        let forward = latency_buckets();
        let queue_rows = Gauge::default();
        let adapters = Gauge::default();
        registry.register("requests", "Predict requests answered, by adapter and HTTP status", requests.clone());
        registry.register(
            "request_errors",
            "Predict requests refused or failed, by adapter and error_type",
            errors.clone(),
        );
        registry.register("inputs", "Texts (or pairs) classified, by adapter", inputs.clone());
        registry.register(
            "request_duration_seconds",
            "Time from a predict request's arrival to its answer, by adapter",
            latency.clone(),
        );
        registry.register("batch_rows", "Rows in each forward (requests' inputs batched together)", batch_rows.clone());
        registry.register("batch_tokens", "Padded tokens (rows x longest) in each forward", batch_tokens.clone());
        registry.register(
            "batch_adapters",
            "Distinct adapters in each forward (a mixed batch has more than one)",
            batch_adapters.clone(),
        );
        registry.register("forward_duration_seconds", "Time of each batched forward", forward.clone());
        registry.register("queue_rows", "Rows queued and not yet in a batch", queue_rows.clone());
        registry.register("adapters_loaded", "Adapters loaded", adapters.clone());
        Self {
            registry,
            requests,
            errors,
            inputs,
            latency,
            batch_rows,
            batch_tokens,
            batch_adapters,
            forward,
            queue_rows,
            adapters,
        }
    }

    /// A predict request's end: its status, its error kind if it failed, and its time.
    pub(crate) fn observe_request(
        &self,
        adapter: &str,
        status: u16,
        error_type: Option<&str>,
        inputs: usize,
        took: Duration,
    ) {
        let adapter = adapter.to_string();
        self.requests.get_or_create(&vec![("adapter", adapter.clone()), ("status", status.to_string())]).inc();
        if let Some(kind) = error_type {
            self.errors.get_or_create(&vec![("adapter", adapter.clone()), ("error_type", kind.to_string())]).inc();
        } else {
            self.inputs.get_or_create(&vec![("adapter", adapter.clone())]).inc_by(inputs as u64);
        }
        self.latency.get_or_create(&vec![("adapter", adapter)]).observe(took.as_secs_f64());
    }

    pub(crate) fn observe_batch(&self, rows: usize, padded_tokens: usize, adapters: usize, took: Duration) {
        self.batch_rows.observe(rows as f64);
        self.batch_adapters.observe(adapters as f64);
        self.batch_tokens.observe(padded_tokens as f64);
        self.forward.observe(took.as_secs_f64());
    }

    /// The text format Prometheus scrapes.
    pub(crate) fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
