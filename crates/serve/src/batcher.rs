//! Dynamic batching across requests: one thread owns the forward; requests queue their rows,
//! and the thread takes what arrived within `max_wait` of the first (up to a token budget),
//! sorts the rows by length, cuts them into batches of at most `max_batch_tokens` padded tokens,
//! orders each batch's rows by adapter and runs it once with every adapter on its own rows.
//!
//! The thread knows the model only through [`BatchModel`] (rows and their adapters in, each
//! row's logits or a [`ForwardError`] out): the server gives it [`MixedModel`] (the base model
//! with every adapter in one mixed forward), the tests a fake that records what it was given.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender, channel};
use std::time::{Duration, Instant};

use burn::tensor::backend::Backend;
use encoders::{AutoModel, Encoded};
use lora_adapter::{AdapterWeights, MixedBatch, with_adapters};
use tokio::sync::oneshot;

/// What the batching thread runs: one forward over rows of token ids, each row with its adapter.
pub(crate) trait BatchModel: Send + 'static {
    /// What a row is run with; rows holding the same `Arc` are one adapter's.
    type Adapter: Send + Sync + 'static;

    /// Each row's logits, in the order given, cut to its adapter's labels.
    fn forward(&self, rows: &[&Encoded], adapters: &[Arc<Self::Adapter>]) -> Result<Vec<Vec<f32>>, ForwardError>;
}

/// Why a batch has no logits: every request with a row in it gets this.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ForwardError {
    /// The forward panicked (a bug, or an allocation the machine refused): the message.
    #[error("the forward failed: {0}")]
    Panicked(String),
    /// The logits could not be read back from the device.
    #[error("cannot read the logits: {0}")]
    Read(String),
    /// The model answered another number of rows than it was given.
    #[error("the forward gave {got} rows of logits for {expected} rows")]
    Rows { expected: usize, got: usize },
}

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
pub(crate) struct Job<A> {
    pub rows: Vec<(Encoded, Arc<A>)>,
    /// Each row's logits (its adapter's labels), in row order; or why there are none.
    pub reply: oneshot::Sender<Result<Answer, ForwardError>>,
    /// When it was queued (for its queue time).
    pub queued: Instant,
}

/// A job's logits, and how long it waited and computed (TEI's `x-queue-time` and
/// `x-inference-time`).
#[derive(Debug)]
pub(crate) struct Answer {
    pub logits: Vec<Vec<f32>>,
    /// From being queued to the start of the first forward holding one of its rows.
    pub queue: Duration,
    /// The forwards that held its rows, in all.
    pub inference: Duration,
}

/// The queue's sending end: requests submit jobs through it. Dropping every clone ends the
/// thread once it has answered what was queued.
pub(crate) struct Queue<A> {
    sender: Sender<Job<A>>,
    metrics: Arc<Metrics>,
    running: Arc<AtomicBool>,
}

impl<A> Clone for Queue<A> {
    fn clone(&self) -> Self {
        Self { sender: self.sender.clone(), metrics: self.metrics.clone(), running: self.running.clone() }
    }
}

impl<A: Send + Sync + 'static> Queue<A> {
    /// Starts the thread that owns `model`'s forward.
    pub(crate) fn start<M: BatchModel<Adapter = A>>(
        model: M,
        limits: BatchLimits,
        metrics: Arc<Metrics>,
    ) -> std::io::Result<(Self, std::thread::JoinHandle<()>)> {
        let (sender, receiver) = channel();
        let worker = Worker { model, limits, metrics: metrics.clone() };
        let running = Arc::new(AtomicBool::new(true));
        let flag = Running(running.clone());
        let handle = std::thread::Builder::new().name("lora-serve-batcher".into()).spawn(move || {
            let _flag = flag;
            worker.run(receiver)
        })?;
        Ok((Self { sender, metrics, running }, handle))
    }

    /// Whether the thread still takes jobs.
    pub(crate) fn is_running(&self) -> bool {
        self.running.load(Ordering::SeqCst)
    }

    /// Queues `job`; `false` when the thread has stopped.
    pub(crate) fn submit(&self, job: Job<A>) -> bool {
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

struct Worker<M> {
    model: M,
    limits: BatchLimits,
    metrics: Arc<Metrics>,
}

/// A job being answered: its rows' logits as they come.
struct Pending<A> {
    rows: Vec<(Encoded, Arc<A>)>,
    reply: Option<oneshot::Sender<Result<Answer, ForwardError>>>,
    logits: Vec<Option<Vec<f32>>>,
    left: usize,
    failed: Option<ForwardError>,
    queued: Instant,
    started: Option<Instant>,
    inference: Duration,
}

impl<M: BatchModel> Worker<M> {
    fn run(self, receiver: Receiver<Job<M::Adapter>>) {
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
    fn answer(&self, jobs: Vec<Job<M::Adapter>>) {
        let mut pending: Vec<Pending<M::Adapter>> = jobs
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
                Err(error) => {
                    for &(j, _) in &batch {
                        let p = &mut pending[j];
                        p.failed.get_or_insert_with(|| error.clone());
                        p.left -= 1;
                    }
                }
            }
            // Answer each job as soon as its last row is done.
            for p in pending.iter_mut().filter(|p| p.left == 0) {
                let Some(reply) = p.reply.take() else { continue };
                let answer = match p.failed.take() {
                    Some(error) => Err(error),
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
    /// A panic inside the model fails this batch's requests, not the thread.
    fn forward(
        &self,
        pending: &[Pending<M::Adapter>],
        batch: &[(usize, usize)],
    ) -> Result<Vec<Vec<f32>>, ForwardError> {
        let started = Instant::now();
        let rows: Vec<&Encoded> = batch.iter().map(|&(j, r)| &pending[j].rows[r].0).collect();
        let adapters: Vec<Arc<M::Adapter>> = batch.iter().map(|&(j, r)| pending[j].rows[r].1.clone()).collect();
        let logits = std::panic::catch_unwind(AssertUnwindSafe(|| self.model.forward(&rows, &adapters))).map_err(
            |panic| {
                let what = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "a panic".into());
                ForwardError::Panicked(what)
            },
        )??;
        if logits.len() != rows.len() {
            return Err(ForwardError::Rows { expected: rows.len(), got: logits.len() });
        }
        let longest = rows.iter().map(|e| e.len()).max().unwrap_or(0);
        let padded = rows.len() * encoders::padded_length(longest, self.limits.pad_to_multiple_of);
        let distinct = adapters.windows(2).filter(|w| !Arc::ptr_eq(&w[0], &w[1])).count() + 1;
        self.metrics.observe_batch(rows.len(), padded, distinct, started.elapsed());
        Ok(logits)
    }
}

/// The server's [`BatchModel`]: the base model, every row's adapter applied to its own row in
/// one mixed forward (`lora_adapter::with_adapters`).
pub(crate) struct MixedModel<B: Backend> {
    pub model: Arc<AutoModel<B>>,
    pub pad_id: u32,
    pub pad_to_multiple_of: usize,
    pub device: B::Device,
}

impl<B: Backend> BatchModel for MixedModel<B> {
    type Adapter = AdapterWeights<B>;

    fn forward(&self, rows: &[&Encoded], adapters: &[Arc<AdapterWeights<B>>]) -> Result<Vec<Vec<f32>>, ForwardError> {
        let padded = encoders::pad_batch(rows, self.pad_id, self.pad_to_multiple_of);
        let mixed = Arc::new(MixedBatch::new(adapters));
        let input = padded.to_input::<B>(&self.device);
        let logits = with_adapters(&mixed, || self.model.forward(input));
        let values = kernels::read::f32s(logits).map_err(|e| ForwardError::Read(e.to_string()))?;
        let width = values.len() / rows.len().max(1);
        Ok(values
            .chunks(width.max(1))
            .zip(adapters)
            .map(|(row, a)| row[..a.num_labels.min(row.len())].to_vec())
            .collect())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    /// An adapter of the fake model: an id its logits carry, and how many labels it has.
    struct Fake {
        id: u32,
        labels: usize,
    }

    /// A model that records each forward's rows (first token, adapter id) and answers each row
    /// `[first token, adapter id, length]` cut to its adapter's labels; a row starting with 999
    /// makes it panic, one starting with 998 makes it answer a row short.
    #[derive(Clone, Default)]
    struct Recorder(Arc<Mutex<Vec<Forward>>>);

    /// One forward as the fake saw it: each row's (first token, adapter id).
    type Forward = Vec<(u32, u32)>;

    impl BatchModel for Recorder {
        type Adapter = Fake;

        fn forward(&self, rows: &[&Encoded], adapters: &[Arc<Fake>]) -> Result<Vec<Vec<f32>>, ForwardError> {
            self.0.lock().unwrap().push(rows.iter().zip(adapters).map(|(e, a)| (e.input_ids[0], a.id)).collect());
            assert!(rows.iter().all(|e| e.input_ids[0] != 999), "a poisoned row");
            let skip = usize::from(rows.iter().any(|e| e.input_ids[0] == 998));
            Ok(rows
                .iter()
                .zip(adapters)
                .skip(skip)
                .map(|(e, a)| [e.input_ids[0] as f32, a.id as f32, e.len() as f32][..a.labels].to_vec())
                .collect())
        }
    }

    fn row(first: u32, len: usize) -> Encoded {
        let mut input_ids = vec![7; len];
        input_ids[0] = first;
        Encoded { input_ids, token_type_ids: vec![0; len] }
    }

    fn start(max_batch_tokens: usize, wait_ms: u64) -> (Queue<Fake>, std::thread::JoinHandle<()>, Recorder) {
        let limits = BatchLimits { max_batch_tokens, max_wait: Duration::from_millis(wait_ms), pad_to_multiple_of: 1 };
        let recorder = Recorder::default();
        let (queue, handle) = Queue::start(recorder.clone(), limits, Arc::new(Metrics::new())).unwrap();
        (queue, handle, recorder)
    }

    fn submit(queue: &Queue<Fake>, rows: Vec<(Encoded, Arc<Fake>)>) -> oneshot::Receiver<Result<Answer, ForwardError>> {
        let (reply, answer) = oneshot::channel();
        assert!(queue.submit(Job { rows, reply, queued: Instant::now() }));
        answer
    }

    #[test]
    fn requests_that_arrive_together_share_a_forward_with_each_adapters_rows_side_by_side() {
        let (queue, _handle, recorder) = start(1000, 300);
        let (x, y) = (Arc::new(Fake { id: 10, labels: 3 }), Arc::new(Fake { id: 20, labels: 1 }));
        let a = submit(&queue, vec![(row(1, 5), x.clone()), (row(2, 2), y.clone()), (row(3, 4), x.clone())]);
        let b = submit(&queue, vec![(row(4, 3), y.clone()), (row(5, 6), x.clone())]);
        let a = a.blocking_recv().unwrap().unwrap();
        let b = b.blocking_recv().unwrap().unwrap();
        // Each request gets its own rows, in its order, cut to its adapter's labels.
        assert_eq!(a.logits, [vec![1.0, 10.0, 5.0], vec![2.0], vec![3.0, 10.0, 4.0]]);
        assert_eq!(b.logits, [vec![4.0], vec![5.0, 10.0, 6.0]]);
        let forwards = recorder.0.lock().unwrap().clone();
        assert_eq!(forwards.len(), 1, "one forward for both requests: {forwards:?}");
        let adapters: Vec<u32> = forwards[0].iter().map(|&(_, id)| id).collect();
        assert_eq!(adapters.windows(2).filter(|w| w[0] != w[1]).count(), 1, "one run per adapter: {adapters:?}");
        assert!(a.inference > Duration::ZERO && a.inference == b.inference, "{a:?} {b:?}");
    }

    #[test]
    fn a_forward_holds_at_most_max_batch_tokens_padded_tokens_shortest_rows_first() {
        let (queue, _handle, recorder) = start(8, 0);
        let x = Arc::new(Fake { id: 1, labels: 1 });
        let rows = [(1, 4), (2, 2), (3, 2), (4, 4), (5, 2)].map(|(first, len)| (row(first, len), x.clone()));
        let answer = submit(&queue, rows.to_vec()).blocking_recv().unwrap().unwrap();
        assert_eq!(answer.logits, [[1.0], [2.0], [3.0], [4.0], [5.0]]);
        // Three rows of 2 (6 padded tokens), then two of 4 (8): a third 4 or a fourth row would pass 8.
        let firsts: Vec<Vec<u32>> =
            recorder.0.lock().unwrap().iter().map(|f| f.iter().map(|r| r.0).collect()).collect();
        assert_eq!(firsts, [vec![2, 3, 5], vec![1, 4]]);
    }

    #[test]
    fn a_failed_forward_fails_its_requests_only_and_the_thread_goes_on() {
        let (queue, _handle, _) = start(1000, 0);
        let x = Arc::new(Fake { id: 1, labels: 2 });
        let poisoned = submit(&queue, vec![(row(999, 3), x.clone()), (row(1, 3), x.clone())]).blocking_recv().unwrap();
        assert_eq!(poisoned.unwrap_err(), ForwardError::Panicked("a poisoned row".into()));
        let short = submit(&queue, vec![(row(998, 3), x.clone()), (row(1, 2), x.clone())]).blocking_recv().unwrap();
        assert_eq!(short.unwrap_err(), ForwardError::Rows { expected: 2, got: 1 });
        let fine = submit(&queue, vec![(row(6, 3), x.clone())]).blocking_recv().unwrap().unwrap();
        assert_eq!(fine.logits, [vec![6.0, 1.0]]);
        assert!(queue.is_running());
    }

    #[test]
    fn the_thread_answers_what_was_queued_then_ends_when_every_queue_is_dropped() {
        let (queue, handle, _) = start(1000, 50);
        let x = Arc::new(Fake { id: 3, labels: 1 });
        let answer = submit(&queue, vec![(row(8, 2), x)]);
        let running = queue.running.clone();
        drop(queue);
        handle.join().unwrap();
        assert!(!running.load(Ordering::SeqCst), "the flag says it stopped");
        assert_eq!(answer.blocking_recv().unwrap().unwrap().logits, [[8.0]]);
    }
}
