//! The shared store: many likeguard instances, one Redis.
//!
//! Key layout (`P` = `store.prefix`, default `likeguard`):
//! - `P:identity:<id>` / `P:license:<id>`: the entity as JSON (identities with embeddings)
//! - `P:identities` / `P:licenses`: sets of the ids present
//! - channel `P:changes`: `identity:<id>` or `license:<id>` after every write or delete
//!
//! Writes go to Redis first, then the writer applies them locally. Every instance subscribes to
//! the channel and re-reads the entity named in each message (well under a second end to end);
//! after every (re)connect it reloads everything, so messages missed while disconnected do not
//! matter. While Redis is unreachable instances serve from their last snapshot and report
//! themselves degraded; writes fail (503) rather than diverge.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use redis::Commands;

use super::StoreError;

/// Entity kinds kept in Redis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Identity,
    License,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Self::Identity => "identity",
            Self::License => "license",
        }
    }

    fn set(self) -> &'static str {
        match self {
            Self::Identity => "identities",
            Self::License => "licenses",
        }
    }
}

/// What the subscriber reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// (Re)connected: reload everything.
    Resync,
    Changed(Kind, String),
}

/// A connection whose connect, reads and writes each give up after 2 s (a Redis that does not
/// answer must never hang a caller). Shared with the decision log's stream.
pub fn connect(client: &redis::Client) -> redis::RedisResult<redis::Connection> {
    let c = client.get_connection_with_timeout(TIMEOUT)?;
    c.set_read_timeout(Some(TIMEOUT))?;
    c.set_write_timeout(Some(TIMEOUT))?;
    Ok(c)
}

pub struct RedisStore {
    client: redis::Client,
    prefix: String,
    healthy: AtomicBool,
}

pub const TIMEOUT: Duration = Duration::from_secs(2);

fn err(e: redis::RedisError) -> StoreError {
    StoreError::Redis(e.to_string())
}

impl RedisStore {
    /// Connects once to check the URL; later failures are survived (see `subscribe`).
    pub fn connect(url: &str, prefix: &str) -> Result<Self, StoreError> {
        let client = redis::Client::open(url).map_err(err)?;
        let store = Self {
            client,
            prefix: prefix.to_string(),
            healthy: AtomicBool::new(false),
        };
        store.connection()?;
        store.healthy.store(true, Ordering::Release);
        Ok(store)
    }

    /// False while Redis is unreachable (readiness reports "degraded").
    pub fn healthy(&self) -> bool {
        self.healthy.load(Ordering::Acquire)
    }

    fn connection(&self) -> Result<redis::Connection, StoreError> {
        connect(&self.client).map_err(err)
    }

    fn key(&self, kind: Kind, id: &str) -> String {
        format!("{}:{}:{id}", self.prefix, kind.name())
    }

    fn channel(&self) -> String {
        format!("{}:changes", self.prefix)
    }

    /// Stores one entity and tells every instance. Blocking.
    pub fn put(&self, kind: Kind, id: &str, json: &str) -> Result<(), StoreError> {
        let mut c = self.connection()?;
        redis::pipe()
            .atomic()
            .set(self.key(kind, id), json)
            .sadd(format!("{}:{}", self.prefix, kind.set()), id)
            .publish(self.channel(), format!("{}:{id}", kind.name()))
            .query::<()>(&mut c)
            .map_err(err)
    }

    /// Deletes one entity and tells every instance. Blocking.
    pub fn delete(&self, kind: Kind, id: &str) -> Result<(), StoreError> {
        let mut c = self.connection()?;
        redis::pipe()
            .atomic()
            .del(self.key(kind, id))
            .srem(format!("{}:{}", self.prefix, kind.set()), id)
            .publish(self.channel(), format!("{}:{id}", kind.name()))
            .query::<()>(&mut c)
            .map_err(err)
    }

    /// One entity's JSON (`None` once deleted). Blocking.
    pub fn get(&self, kind: Kind, id: &str) -> Result<Option<String>, StoreError> {
        self.connection()?.get(self.key(kind, id)).map_err(err)
    }

    /// Every entity of a kind, as JSON. Blocking.
    pub fn load_all(&self, kind: Kind) -> Result<Vec<String>, StoreError> {
        let mut c = self.connection()?;
        let ids: Vec<String> = c
            .smembers(format!("{}:{}", self.prefix, kind.set()))
            .map_err(err)?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = ids.iter().map(|id| self.key(kind, id)).collect();
        let values: Vec<Option<String>> =
            redis::cmd("MGET").arg(&keys).query(&mut c).map_err(err)?;
        Ok(values.into_iter().flatten().collect())
    }

    /// Runs `on_event` for every change, on a thread of its own, for the life of the process:
    /// `Resync` after each (re)connect, then `Changed` per message. Reconnects every 500 ms
    /// while Redis is down.
    pub fn subscribe(self: &Arc<Self>, on_event: impl Fn(Event) + Send + 'static) {
        let store = self.clone();
        let spawned = std::thread::Builder::new()
            .name("store-subscriber".into())
            .spawn(move || {
                loop {
                    if let Err(e) = store.listen(&on_event)
                        && store.healthy.swap(false, Ordering::AcqRel)
                    {
                        tracing::warn!(error = %e, "redis unreachable: serving from the last snapshot");
                    }
                    std::thread::sleep(Duration::from_millis(500));
                }
            });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the redis subscriber");
        }
    }

    fn listen(&self, on_event: &impl Fn(Event)) -> Result<(), StoreError> {
        let mut c = self
            .client
            .get_connection_with_timeout(TIMEOUT)
            .map_err(err)?;
        let mut pubsub = c.as_pubsub();
        pubsub.subscribe(self.channel()).map_err(err)?;
        // Subscribed before the reload: nothing written in between is missed.
        on_event(Event::Resync);
        if !self.healthy.swap(true, Ordering::AcqRel) {
            tracing::info!("redis reachable: registry resynchronised");
        }
        pubsub.set_read_timeout(None).map_err(err)?;
        loop {
            let msg = pubsub.get_message().map_err(err)?;
            let payload: String = msg.get_payload().map_err(err)?;
            let event = match payload.split_once(':') {
                Some(("identity", id)) => Event::Changed(Kind::Identity, id.to_string()),
                Some(("license", id)) => Event::Changed(Kind::License, id.to_string()),
                _ => continue,
            };
            on_event(event);
        }
    }
}
