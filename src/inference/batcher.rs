//! Dynamic batching: one worker thread owns a model session; callers on any thread submit one
//! item each and wait for its result. Items queued while the worker is busy run together in
//! one call, so concurrent requests share inference. After a batch of k items the worker
//! expects that concurrency to continue and waits up to `max_wait` for k items before the next
//! run; after a single item it does not wait at all, so a lone request pays no batching delay.
//!
//! Input buffers come from a small pool and go back to it after the run: no per-item
//! allocation on the hot path once warm.

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
        let worker = Worker {
            model,
            rx,
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

    /// Queues one item. Refused at once (never blocks) when the queue is full.
    pub fn submit(&self, input: Vec<f32>) -> Result<Pending<O>, InferenceError> {
        debug_assert_eq!(input.len(), self.item_len);
        let (reply, rx) = oneshot::channel();
        match self.tx.try_send(Job { input, reply }) {
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
