//! Dynamic batching: one worker thread owns a model session; callers on any thread submit one
//! item each and wait for its result. Items queued while the worker is busy run together in
//! one call, so concurrent requests share inference. After a batch of k items the worker
//! expects that concurrency to continue and waits up to `max_wait` for k items before the next
//! run; after a single item it does not wait at all, so a lone request pays no batching delay.
//!
//! Input buffers come from a small pool and go back to it after the run: no per-item
//! allocation on the hot path once warm.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use tokio::sync::oneshot;

use super::InferenceError;
use crate::config::BatchConfig;

/// A model a batcher can drive.
pub trait Model: Send + 'static {
    type Output: Send + 'static;
    /// `f32` values in one input item.
    fn item_len(&self) -> usize;
    /// Largest batch the model accepts (1 for models with a fixed batch dimension).
    fn max_batch(&self) -> usize;
    /// Runs `n` items laid out back to back in `input`, pushing one output per item.
    fn run(
        &mut self,
        input: &[f32],
        n: usize,
        out: &mut Vec<Self::Output>,
    ) -> Result<(), InferenceError>;
}

type Reply<O> = oneshot::Sender<Result<O, InferenceError>>;

struct Job<O> {
    input: Vec<f32>,
    reply: Reply<O>,
}

pub struct Batcher<O> {
    name: Arc<str>,
    tx: SyncSender<Job<O>>,
    /// Items submitted and not yet taken into a batch (exported as a gauge).
    waiting: Arc<AtomicUsize>,
    pool: Arc<Pool>,
    item_len: usize,
}

/// Result of one submitted item.
pub struct Pending<O> {
    rx: oneshot::Receiver<Result<O, InferenceError>>,
    model: Arc<str>,
}

impl<O: Send + 'static> Batcher<O> {
    /// Starts the worker thread for `model`.
    pub fn spawn<M: Model<Output = O>>(
        name: &str,
        model: M,
        config: &BatchConfig,
    ) -> Result<Self, InferenceError> {
        let item_len = model.item_len();
        let max_batch = config.max_batch.min(model.max_batch()).max(1);
        let (tx, rx) = sync_channel(config.queue);
        let pool = Arc::new(Pool::new(item_len, config.queue + max_batch));
        let waiting = Arc::new(AtomicUsize::new(0));
        let worker = Worker {
            model,
            rx,
            waiting: waiting.clone(),
            pool: pool.clone(),
            max_batch,
            max_wait: config.max_wait,
            batch: Vec::with_capacity(item_len * max_batch),
            outputs: Vec::with_capacity(max_batch),
            model_name: name.to_string(),
        };
        std::thread::Builder::new()
            .name(format!("infer-{name}"))
            .spawn(move || worker.run())
            .map_err(|e| InferenceError::Worker {
                model: name.to_string(),
                reason: e.to_string(),
            })?;
        Ok(Self {
            name: name.into(),
            tx,
            waiting,
            pool,
            item_len,
        })
    }

    /// A zeroed input buffer of the model's item size (from the pool when one is free).
    pub fn buffer(&self) -> Vec<f32> {
        self.pool.take()
    }

    pub fn item_len(&self) -> usize {
        self.item_len
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Items queued for the worker right now (at most the configured `queue`).
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }

    /// Queues one item. Refused at once (never blocks) when the queue is full.
    pub fn submit(&self, input: Vec<f32>) -> Result<Pending<O>, InferenceError> {
        debug_assert_eq!(input.len(), self.item_len);
        let (reply, rx) = oneshot::channel();
        // Counted before the send, so the worker's decrement can never come first.
        self.waiting.fetch_add(1, Ordering::Relaxed);
        let sent = self.tx.try_send(Job { input, reply });
        if sent.is_err() {
            self.waiting.fetch_sub(1, Ordering::Relaxed);
        }
        match sent {
            Ok(()) => Ok(Pending {
                rx,
                model: self.name.clone(),
            }),
            Err(TrySendError::Full(job)) => {
                self.pool.give(job.input);
                Err(InferenceError::Overloaded {
                    model: self.name.to_string(),
                })
            }
            Err(TrySendError::Disconnected(_)) => Err(InferenceError::Worker {
                model: self.name.to_string(),
                reason: "worker stopped".into(),
            }),
        }
    }
}

impl<O> Pending<O> {
    /// Waits on a thread that may block (not on the async runtime).
    pub fn wait_blocking(self) -> Result<O, InferenceError> {
        let model = self.model;
        self.rx.blocking_recv().unwrap_or_else(|_| {
            Err(InferenceError::Worker {
                model: model.to_string(),
                reason: "worker stopped".into(),
            })
        })
    }

    /// Waits from async code.
    pub async fn wait(self) -> Result<O, InferenceError> {
        let model = self.model;
        self.rx.await.unwrap_or_else(|_| {
            Err(InferenceError::Worker {
                model: model.to_string(),
                reason: "worker stopped".into(),
            })
        })
    }
}

struct Worker<M: Model> {
    model: M,
    rx: Receiver<Job<M::Output>>,
    waiting: Arc<AtomicUsize>,
    pool: Arc<Pool>,
    max_batch: usize,
    max_wait: std::time::Duration,
    batch: Vec<f32>,
    outputs: Vec<M::Output>,
    model_name: String,
}

impl<M: Model> Worker<M> {
    /// Runs until every `Batcher` handle is dropped.
    fn run(mut self) {
        let mut jobs: Vec<Job<M::Output>> = Vec::with_capacity(self.max_batch);
        let mut expected = 1;
        while let Ok(first) = self.rx.recv() {
            jobs.push(first);
            self.gather(&mut jobs, expected);
            self.waiting.fetch_sub(jobs.len(), Ordering::Relaxed);
            expected = jobs.len();
            self.batch.clear();
            for job in &jobs {
                self.batch.extend_from_slice(&job.input);
            }
            self.outputs.clear();
            let result = self.model.run(&self.batch, jobs.len(), &mut self.outputs);
            match result {
                Ok(()) if self.outputs.len() == jobs.len() => {
                    for (job, output) in jobs.drain(..).zip(self.outputs.drain(..)) {
                        self.pool.give(job.input);
                        let _ = job.reply.send(Ok(output));
                    }
                }
                outcome => {
                    let reason = match outcome {
                        Err(e) => e.to_string(),
                        Ok(()) => {
                            format!("{} outputs for {} inputs", self.outputs.len(), jobs.len())
                        }
                    };
                    for job in jobs.drain(..) {
                        self.pool.give(job.input);
                        let _ = job.reply.send(Err(InferenceError::Run {
                            model: self.model_name.clone(),
                            reason: reason.clone(),
                        }));
                    }
                }
            }
        }
    }

    /// Adds what is already queued (up to `max_batch`), then waits up to `max_wait` until
    /// `expected` items are there.
    fn gather(&self, jobs: &mut Vec<Job<M::Output>>, expected: usize) {
        while jobs.len() < self.max_batch {
            match self.rx.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        let want = expected.min(self.max_batch);
        if self.max_wait.is_zero() || jobs.len() >= want {
            return;
        }
        let deadline = Instant::now() + self.max_wait;
        while jobs.len() < want {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(job) => jobs.push(job),
                Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
            }
        }
    }
}

/// Reusable input buffers of one size.
struct Pool {
    item_len: usize,
    cap: usize,
    free: Mutex<Vec<Vec<f32>>>,
}

impl Pool {
    fn new(item_len: usize, cap: usize) -> Self {
        Self {
            item_len,
            cap,
            free: Mutex::new(Vec::new()),
        }
    }

    fn take(&self) -> Vec<f32> {
        let reused = self.free.lock().ok().and_then(|mut f| f.pop());
        reused.unwrap_or_else(|| vec![0.0; self.item_len])
    }

    fn give(&self, buf: Vec<f32>) {
        if buf.len() != self.item_len {
            return;
        }
        if let Ok(mut free) = self.free.lock()
            && free.len() < self.cap
        {
            free.push(buf);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    /// A model whose first run waits for a signal, so items pile up behind it.
    struct Gated(Option<mpsc::Receiver<()>>);

    impl Model for Gated {
        type Output = f32;
        fn item_len(&self) -> usize {
            1
        }
        fn max_batch(&self) -> usize {
            1
        }
        fn run(
            &mut self,
            input: &[f32],
            _: usize,
            out: &mut Vec<f32>,
        ) -> Result<(), InferenceError> {
            if let Some(gate) = self.0.take() {
                let _ = gate.recv();
            }
            out.push(input[0]);
            Ok(())
        }
    }

    #[test]
    fn the_queue_depth_counts_items_waiting_and_refuses_past_the_bound() {
        let (open, gate) = mpsc::channel();
        let config = BatchConfig {
            max_batch: 1,
            max_wait: Duration::ZERO,
            queue: 3,
        };
        let b = Batcher::spawn("gated", Gated(Some(gate)), &config).unwrap();
        let first = b.submit(vec![1.0]).unwrap();
        // The worker takes the first item and blocks in the model.
        let deadline = Instant::now() + Duration::from_secs(5);
        while b.waiting() != 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
        }
        let queued: Vec<_> = (0..3).map(|i| b.submit(vec![i as f32]).unwrap()).collect();
        assert_eq!(b.waiting(), 3);
        assert!(matches!(
            b.submit(vec![9.0]),
            Err(InferenceError::Overloaded { .. })
        ));
        assert_eq!(b.waiting(), 3, "a refused item is not counted");
        open.send(()).unwrap();
        assert_eq!(first.wait_blocking().unwrap(), 1.0);
        for p in queued {
            p.wait_blocking().unwrap();
        }
        assert_eq!(b.waiting(), 0);
    }
}
