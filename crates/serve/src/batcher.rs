//! Dynamic batching across requests: one thread owns the forward; requests queue their rows,
//! and the thread takes what arrived within `max_wait` of the first (up to a token budget),
//! sorts the rows by length, cuts them into batches of at most `max_batch_tokens` padded tokens,
//! orders each batch's rows by adapter and runs it once with every adapter on its own rows.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::time::{Duration, Instant};

use burn::tensor::backend::Backend;
use encoders::{AutoModel, Encoded};
use lora_adapter::{AdapterWeights, MixedBatch, with_adapters};
use tokio::sync::oneshot;

use crate::metrics::Metrics;

/// How the thread forms batches.
#[derive(Debug, Clone, Copy)]
pub struct BatchLimits {
    /// Padded tokens (rows x longest) in one forward, at least one row.
    pub max_batch_tokens: usize,
    /// How long the first request of a batch waits for others.
    pub max_wait: Duration,
    /// Pad each batch to a multiple of this many tokens.
    pub pad_to_multiple_of: usize,
}

/// One request's rows, each with its adapter, and where its logits go.
pub struct Job<B: Backend> {
    pub rows: Vec<(Encoded, Arc<AdapterWeights<B>>)>,
    /// Each row's logits (its adapter's labels), in row order; or why there are none.
    pub reply: oneshot::Sender<Result<Answer, String>>,
    /// When it was queued (for its queue time).
    pub queued: Instant,
}

/// A job's logits, and how long it waited and computed (TEI's `x-queue-time` and
/// `x-inference-time`).
#[derive(Debug)]
pub struct Answer {
    pub logits: Vec<Vec<f32>>,
    /// From being queued to the start of the first forward holding one of its rows.
    pub queue: Duration,
    /// The forwards that held its rows, in all.
    pub inference: Duration,
}

/// The queue's sending end: requests submit jobs through it. Dropping every clone ends the
/// thread once it has answered what was queued.
#[derive(Clone)]
pub struct Queue<B: Backend> {
    sender: Sender<Job<B>>,
    metrics: Arc<Metrics>,
    running: Arc<AtomicBool>,
}

impl<B: Backend> Queue<B> {
    /// Starts the thread that owns `model`'s forward.
    pub fn start(
        model: Arc<AutoModel<B>>,
        pad_id: u32,
        limits: BatchLimits,
        device: B::Device,
        metrics: Arc<Metrics>,
    ) -> std::io::Result<(Self, std::thread::JoinHandle<()>)> {
        let (sender, receiver) = channel();
        let worker = Worker { model, pad_id, limits, device, metrics: metrics.clone() };
        let running = Arc::new(AtomicBool::new(true));
        let flag = Running(running.clone());
        let handle = std::thread::Builder::new().name("lora-serve-batcher".into()).spawn(move || {
            let _flag = flag;
            worker.run(receiver)
        })?;
        Ok((Self { sender, metrics, running }, handle))
    }

    /// Whether the thread still takes jobs.
    pub fn is_running(&self) -> bool {
        self.running.load(Ordering::SeqCst)
    }

    /// Queues `job`; `false` when the thread has stopped.
    pub fn submit(&self, job: Job<B>) -> bool {
        let rows = job.rows.len() as i64;
        self.metrics.queue_rows.inc_by(rows);
        if self.sender.send(job).is_err() {
            self.metrics.queue_rows.dec_by(rows);
            return false;
        }
        true
    }
}

/// Clears the flag when the thread ends, however it ends.
struct Running(Arc<AtomicBool>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

struct Worker<B: Backend> {
    model: Arc<AutoModel<B>>,
    pad_id: u32,
    limits: BatchLimits,
    device: B::Device,
    metrics: Arc<Metrics>,
}

/// A job being answered: its rows' logits as they come.
struct Pending<B: Backend> {
    rows: Vec<(Encoded, Arc<AdapterWeights<B>>)>,
    reply: Option<oneshot::Sender<Result<Answer, String>>>,
    logits: Vec<Option<Vec<f32>>>,
    left: usize,
    failed: Option<String>,
    queued: Instant,
    started: Option<Instant>,
    inference: Duration,
}

impl<B: Backend> Worker<B> {
    fn run(self, receiver: Receiver<Job<B>>) {
        while let Ok(first) = receiver.recv() {
            let mut jobs = vec![first];
            let mut tokens: usize = jobs[0].rows.iter().map(|(e, _)| e.len()).sum();
            let deadline = Instant::now() + self.limits.max_wait;
            while tokens < self.limits.max_batch_tokens {
                match receiver.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                    Ok(job) => {
                        tokens += job.rows.iter().map(|(e, _)| e.len()).sum::<usize>();
                        jobs.push(job);
                    }
                    Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
                }
            }
            self.answer(jobs);
        }
    }

    /// Runs every row of `jobs` in length-sorted batches and answers each job when its rows are done.
    fn answer(&self, jobs: Vec<Job<B>>) {
        let mut pending: Vec<Pending<B>> = jobs
            .into_iter()
            .map(|job| {
                let n = job.rows.len();
                self.metrics.queue_rows.dec_by(n as i64);
                Pending {
                    rows: job.rows,
                    reply: Some(job.reply),
                    logits: vec![None; n],
                    left: n,
                    failed: None,
                    queued: job.queued,
                    started: None,
                    inference: Duration::ZERO,
                }
            })
            .collect();
        // (padded length, job, row) of every row, shortest first.
        let pad = self.limits.pad_to_multiple_of;
        let mut order: Vec<(usize, usize, usize)> = pending
            .iter()
            .enumerate()
            .flat_map(|(j, p)| {
                p.rows.iter().enumerate().map(move |(r, (e, _))| (encoders::padded_length(e.len(), pad), j, r))
            })
            .collect();
        order.sort_unstable();
        let mut start = 0;
        while start < order.len() {
            // Sorted by length, so a batch's last row is its longest.
            let mut end = start + 1;
            while end < order.len() && (end + 1 - start) * order[end].0 <= self.limits.max_batch_tokens {
                end += 1;
            }
            let mut batch: Vec<(usize, usize)> = order[start..end].iter().map(|&(_, j, r)| (j, r)).collect();
            start = end;
            // Rows of one adapter side by side: one run each in the mixed forward.
            batch.sort_by_key(|&(j, r)| (Arc::as_ptr(&pending[j].rows[r].1) as usize, j, r));
            let started = Instant::now();
            let result = self.forward(&pending, &batch);
            let took = started.elapsed();
            let mut jobs: Vec<usize> = batch.iter().map(|&(j, _)| j).collect();
            jobs.sort_unstable();
            jobs.dedup();
            for j in jobs {
                let p = &mut pending[j];
                p.started.get_or_insert(started);
                p.inference += took;
            }
            match result {
                Ok(rows) => {
                    for (&(j, r), logits) in batch.iter().zip(rows) {
                        let p = &mut pending[j];
                        p.logits[r] = Some(logits);
                        p.left -= 1;
                    }
                }
                Err(message) => {
                    for &(j, _) in &batch {
                        let p = &mut pending[j];
                        p.failed.get_or_insert_with(|| message.clone());
                        p.left -= 1;
                    }
                }
            }
            // Answer each job as soon as its last row is done.
            for p in pending.iter_mut().filter(|p| p.left == 0) {
                let Some(reply) = p.reply.take() else { continue };
                let answer = match p.failed.take() {
                    Some(message) => Err(message),
                    None => Ok(Answer {
                        logits: std::mem::take(&mut p.logits).into_iter().map(Option::unwrap_or_default).collect(),
                        queue: p.started.unwrap_or(p.queued).saturating_duration_since(p.queued),
                        inference: p.inference,
                    }),
                };
                // A client that went away no longer waits for its answer.
                let _ = reply.send(answer);
            }
        }
    }

    /// One forward over the rows `batch` names: each row's logits, cut to its adapter's labels.
    fn forward(&self, pending: &[Pending<B>], batch: &[(usize, usize)]) -> Result<Vec<Vec<f32>>, String> {
        let started = Instant::now();
        let rows: Vec<&(Encoded, Arc<AdapterWeights<B>>)> = batch.iter().map(|&(j, r)| &pending[j].rows[r]).collect();
        let encoded: Vec<&Encoded> = rows.iter().map(|(e, _)| e).collect();
        let padded = encoders::pad_batch(&encoded, self.pad_id, self.limits.pad_to_multiple_of);
        let adapters: Vec<Arc<AdapterWeights<B>>> = rows.iter().map(|(_, a)| a.clone()).collect();
        let mixed = Arc::new(MixedBatch::new(&adapters));
        let input = padded.to_input::<B>(&self.device);
        // A failure inside the forward fails this batch's requests, not the server.
        let values = std::panic::catch_unwind(AssertUnwindSafe(|| {
            let logits = with_adapters(&mixed, || self.model.forward(input));
            kernels::read::f32s(logits)
        }))
        .map_err(|panic| {
            let what = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_else(|| "a panic".into());
            format!("the forward failed: {what}")
        })?
        .map_err(|e| format!("cannot read the logits: {e}"))?;
        let width = values.len() / rows.len().max(1);
        let distinct = adapters.windows(2).filter(|w| !Arc::ptr_eq(&w[0], &w[1])).count() + 1;
        self.metrics.observe_batch(rows.len(), padded.batch * padded.seq, distinct, started.elapsed());
        Ok(values
            .chunks(width.max(1))
            .zip(&adapters)
            .map(|(row, a)| row[..a.num_labels.min(row.len())].to_vec())
            .collect())
    }
}
