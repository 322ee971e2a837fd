//! The one decision pipeline: a held body and what is known of the request in; a ruling and
//! the body to send on out. Transport-neutral — it knows nothing of sockets or pingora — so
//! the proxy, and later the ICAP server and the async scanner, call the same thing.
//!
//! Inside: extraction finds the media items, the inspectors (known media, faces → registry,
//! licenses, policy) rule on them within the route's time budget, and the ruling is enforced:
//! allow, block (a problem), tag (headers, and a C2PA manifest on response images), watermark
//! (marked media spliced back into the body), or the route's failure modes when inspection
//! could not decide.

mod rewrite;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::HeaderMap;
use http::header::{HeaderName, HeaderValue};
use tokio::time::timeout;

use crate::actions::provenance::Provenance;
use crate::actions::{Problem, ProblemKind, TagHeaders, Watermarker};
use crate::audit::DecisionLog;
use crate::config::{Config, FailureMode, InspectConfig, UnsupportedMedia};
use crate::extract::{self, BodyClass, ExtractError, MediaItem, Step};
use crate::inspect::{Cause, Context, Inspection};
use crate::license::requester::Requester;
use crate::policy::{Action, Decision};
use crate::telemetry::Metrics;

/// Which body a decision is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Request,
    Response,
}

impl Side {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Request => "request",
            Self::Response => "response",
        }
    }
}

/// What is being decided: one held body of one exchange on one route.
pub struct Subject<'a> {
    pub route: &'a str,
    pub inspect: &'a InspectConfig,
    pub side: Side,
    pub class: &'a BodyClass,
    pub ctx: &'a Context,
}

/// What happens to the exchange.
#[derive(Debug)]
pub enum Outcome {
    /// Send it on, with these headers added and, when `Some`, this body instead (always
    /// without a content coding: the sender drops `Content-Encoding`).
    Forward {
        headers: Vec<(HeaderName, HeaderValue)>,
        body: Option<Bytes>,
    },
    /// Answer with this problem instead (a block, or a refusal).
    Refuse(Problem),
}

impl Outcome {
    fn pass() -> Self {
        Self::Forward {
            headers: Vec::new(),
            body: None,
        }
    }
}

/// Fetches media behind URLs found in bodies (`inspect.extract.fetch`); the proxy provides one.
#[async_trait::async_trait]
pub trait Fetcher: Send + Sync {
    /// The body at `url`, fetched under `rules` (allow-list, address checks, size), by
    /// `deadline`.
    async fn fetch(
        &self,
        url: &url::Url,
        rules: &crate::config::FetchConfig,
        deadline: std::time::Instant,
    ) -> Result<Bytes, String>;
}

/// The outcome of looking at one held body, before enforcement.
enum Verdict {
    /// Decided, with the items found and the body they were found in when it was decoded
    /// from a `Content-Encoding`.
    Decided(Decision, Vec<MediaItem>, Option<Bytes>),
    /// The body is not what it claims (malformed, too many items): the sender's fault.
    Rejected(Problem),
    /// It claims to be media but likeguard cannot read it.
    Unsupported(String),
    /// Inspection itself failed or ran out of time: the route's `on_failure` decides.
    Failed(Failure),
}

/// Why inspection could not decide.
pub struct Failure {
    pub reason: String,
    pub kind: FailureKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// A bound or an internal error.
    Failed,
    /// Refused for load (a full inference queue): a request-side refusal carries
    /// `Retry-After`.
    Overloaded,
    /// Only part of the medium was inspected (the frame budget): fail-open tags say
    /// `incomplete`, fail-closed answers `inspection-incomplete`.
    Incomplete,
}

impl FailureKind {
    /// The `errors_total{kind}` label.
    fn label(self) -> &'static str {
        match self {
            Self::Failed => "inspection-failed",
            Self::Overloaded => "overloaded",
            Self::Incomplete => "inspection-incomplete",
        }
    }
}

impl Failure {
    pub fn new(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
            kind: FailureKind::Failed,
        }
    }
}

/// Everything a decision needs, built once at start and shared by every exchange.
pub struct Decider {
    inspection: Inspection,
    tags: TagHeaders,
    metrics: Arc<Metrics>,
    watermarker: Option<Arc<dyn Watermarker>>,
    /// Signs C2PA manifests onto response-side media decided tag/watermark.
    provenance: Option<Arc<Provenance>>,
    /// Who a request acts for (`licensing`).
    requester: Requester,
    /// Request headers the policy may read (`policy.expose_headers`).
    exposed_headers: Vec<HeaderName>,
    /// Fetches media behind allow-listed URLs.
    fetcher: Option<Arc<dyn Fetcher>>,
    /// `Retry-After` (s) on refusals for load.
    retry_after: u16,
    /// Bodies inspected at once (`inspections:`), and how long one waits for its turn.
    admission: Arc<tokio::sync::Semaphore>,
    admission_max: usize,
    admission_wait: Duration,
    /// Where decisions are kept for later questions (`decision_log`).
    log: Option<Arc<DecisionLog>>,
}

/// A decider that cannot be built from its configuration.
#[derive(Debug, thiserror::Error)]
pub enum DecideError {
    #[error(transparent)]
    Http(#[from] http::Error),
    #[error("{0}")]
    Config(String),
}

/// What a request says about itself, for `Decider::context`.
pub struct RequestFacts<'a> {
    pub method: &'a str,
    /// The normalised path (what the route was matched on and the upstream receives).
    pub path: &'a str,
    pub route: &'a str,
    pub headers: &'a HeaderMap,
    pub client: Option<std::net::IpAddr>,
}

impl Decider {
    pub fn new(
        config: &Config,
        inspection: Inspection,
        metrics: Arc<Metrics>,
    ) -> Result<Self, DecideError> {
        Ok(Self {
            inspection,
            tags: TagHeaders::new(&config.tag)?,
            metrics,
            watermarker: None,
            provenance: None,
            fetcher: None,
            retry_after: config.connections.retry_after_secs(),
            admission: Arc::new(tokio::sync::Semaphore::new(
                config.inspections.concurrency(),
            )),
            admission_max: config.inspections.concurrency(),
            admission_wait: config.inspections.queue,
            log: None,
            requester: Requester::new(&config.licensing).map_err(DecideError::Config)?,
            exposed_headers: config
                .policy
                .expose_headers
                .iter()
                .map(|h| {
                    HeaderName::try_from(h.to_ascii_lowercase()).map_err(|_| {
                        DecideError::Config(format!(
                            "policy.expose_headers: {h:?} is not a header name"
                        ))
                    })
                })
                .collect::<Result<_, _>>()?,
        })
    }

    pub fn with_watermarker(mut self, w: Arc<dyn Watermarker>) -> Self {
        self.watermarker = Some(w);
        self
    }

    pub fn with_provenance(mut self, p: Arc<Provenance>) -> Self {
        self.provenance = Some(p);
        self
    }

    pub fn with_log(mut self, log: Arc<DecisionLog>) -> Self {
        self.log = Some(log);
        self
    }

    pub fn with_fetcher(mut self, f: Arc<dyn Fetcher>) -> Self {
        self.fetcher = Some(f);
        self
    }

    /// What inspectors and the policy may know of a request.
    pub fn context(&self, r: &RequestFacts<'_>) -> Context {
        Context {
            licensee: self.requester.licensee(r.headers),
            method: r.method.to_string(),
            path: r.path.to_string(),
            route: r.route.to_string(),
            client: r.client,
            headers: self
                .exposed_headers
                .iter()
                .filter_map(|name| {
                    let v = r.headers.get(name)?.to_str().ok()?;
                    Some((name.as_str().to_string(), v.to_string()))
                })
                .collect(),
        }
    }

    /// Decide on a held body and enforce the ruling.
    pub async fn decide(&self, s: &Subject<'_>, body: Bytes) -> Outcome {
        let turn = timeout(self.admission_wait, self.admission.acquire()).await;
        let Ok(Ok(_turn)) = turn else {
            return self.failed(
                s,
                Failure {
                    reason: format!(
                        "{} bodies are being inspected and none finished within {:?}",
                        self.admission_max, self.admission_wait
                    ),
                    kind: FailureKind::Overloaded,
                },
            );
        };
        let verdict = self.judge(s, body.clone()).await;
        self.enforce(s, &body, verdict).await
    }

    /// Inspection could not happen or could not decide: honour the route's failure mode.
    pub fn failed(&self, s: &Subject<'_>, failure: Failure) -> Outcome {
        let Failure { reason, kind } = failure;
        self.metrics.errors.with_label_values(&[kind.label()]).inc();
        tracing::warn!(route = %s.route, side = s.side.as_str(), reason = %reason, kind = kind.label(),
            mode = ?s.inspect.on_failure, "inspection failed");
        let incomplete = kind == FailureKind::Incomplete;
        match s.inspect.on_failure {
            FailureMode::FailOpen => Outcome::Forward {
                headers: vec![if incomplete {
                    self.tags.for_incomplete()
                } else {
                    self.tags.for_failure()
                }],
                body: None,
            },
            FailureMode::FailClosed => {
                let problem = if incomplete {
                    ProblemKind::InspectionIncomplete
                } else {
                    ProblemKind::InspectionFailed
                };
                let p = on_side(s.side, Problem::new(problem, reason));
                // Retry-After only on the request side: on the response side the upstream has
                // already carried the request out.
                Outcome::Refuse(
                    if kind == FailureKind::Overloaded && s.side == Side::Request {
                        p.with_retry_after(self.retry_after)
                    } else {
                        p
                    },
                )
            }
        }
    }

    /// Extract and inspect a held body within the route's time budget.
    async fn judge(&self, s: &Subject<'_>, body: Bytes) -> Verdict {
        let started = Instant::now();
        let deadline = started + s.inspect.time_budget;
        let work = async {
            let found = extract::extract(
                s.class,
                body,
                &s.inspect.extract,
                s.inspect.max_items,
                deadline,
            )
            .await
            .map_err(Judged::Extract)?;
            let mut items = found.items;
            for u in found.urls {
                items.extend(self.fetched(s, &u, items.len(), deadline).await?);
            }
            for (i, item) in items.iter_mut().enumerate() {
                item.index = i;
            }
            let mut decision = self
                .inspection
                .decide(&items, s.ctx)
                .await
                .map_err(Judged::Inspect)?;
            locate(&mut decision, &items);
            Ok::<_, Judged>((decision, items, found.decoded))
        };
        let out = timeout(s.inspect.time_budget, work).await;
        self.metrics
            .inspection_seconds
            .with_label_values(&[s.side.as_str()])
            .observe(started.elapsed().as_secs_f64());
        match out {
            // Slow media or a long queue: not told apart, so no Retry-After (a body that is
            // always slow to inspect must not invite retries).
            Err(_) => Verdict::Failed(Failure::new(format!(
                "inspection exceeded the time budget of {:?}",
                s.inspect.time_budget
            ))),
            Ok(Err(Judged::Inspect(e))) => match e.cause {
                Cause::Corrupt => {
                    Verdict::Rejected(Problem::new(ProblemKind::Unprocessable, e.to_string()))
                }
                Cause::Unsupported => Verdict::Unsupported(e.to_string()),
                Cause::Overloaded | Cause::Failed | Cause::Incomplete => Verdict::Failed(Failure {
                    kind: match e.cause {
                        Cause::Overloaded => FailureKind::Overloaded,
                        Cause::Incomplete => FailureKind::Incomplete,
                        _ => FailureKind::Failed,
                    },
                    reason: e.to_string(),
                }),
            },
            Ok(Err(Judged::Fetch(e))) => Verdict::Failed(Failure::new(e)),
            Ok(Err(Judged::Extract(e))) => match e {
                ExtractError::Malformed { .. } => {
                    Verdict::Rejected(Problem::new(ProblemKind::MalformedBody, e.to_string()))
                }
                ExtractError::TooManyItems(_) => {
                    Verdict::Rejected(Problem::new(ProblemKind::TooManyItems, e.to_string()))
                }
                ExtractError::Unsupported(detail) => Verdict::Unsupported(detail),
                ExtractError::Limit(detail) => Verdict::Failed(Failure::new(detail)),
            },
            Ok(Ok((decision, items, decoded))) => {
                self.record(s, &decision, &items);
                Verdict::Decided(decision, items, decoded)
            }
        }
    }

    /// The media behind one allow-listed URL, as items found at the URL's location.
    async fn fetched(
        &self,
        s: &Subject<'_>,
        u: &extract::FoundUrl,
        have: usize,
        deadline: Instant,
    ) -> Result<Vec<MediaItem>, Judged> {
        let rules = s.inspect.extract.fetch.as_ref();
        let (Some(fetcher), Some(rules)) = (&self.fetcher, rules) else {
            return Err(Judged::Fetch("URL fetching is not available".into()));
        };
        // The query may carry credentials: never shown.
        let mut shown = u.url.clone();
        shown.set_query(None);
        shown.set_fragment(None);
        let fetched = fetcher.fetch(&u.url, rules, deadline).await;
        let outcome = if fetched.is_ok() { "ok" } else { "failed" };
        self.metrics.url_fetches.with_label_values(&[outcome]).inc();
        let data = fetched
            .map_err(|e| Judged::Fetch(format!("fetching {shown} (at {}): {e}", u.location)))?;
        let at = u.location.then(Step::Url {
            url: shown.to_string(),
        });
        let cfg = s.inspect.extract.clone();
        let room = s.inspect.max_items.saturating_sub(have);
        if room == 0 {
            return Err(Judged::Extract(ExtractError::TooManyItems(
                s.inspect.max_items,
            )));
        }
        tokio::task::spawn_blocking(move || {
            extract::extract_fetched(data, &at, &cfg, room, deadline)
        })
        .await
        .map_err(|e| Judged::Fetch(format!("extraction task failed: {e}")))?
        .map_err(Judged::Extract)
    }

    /// Audit event and metrics for one decision. Never body bytes or personal data.
    fn record(&self, s: &Subject<'_>, d: &Decision, items: &[MediaItem]) {
        for item in items {
            self.metrics
                .items
                .with_label_values(&[item.media.kind.as_str(), item.media.format])
                .inc();
        }
        self.metrics
            .decisions
            .with_label_values(&[d.action.as_str(), &d.rule])
            .inc();
        let client = s.ctx.client.map(|a| a.to_string());
        let client = client.as_deref().unwrap_or("-");
        if items.is_empty() {
            tracing::debug!(target: "likeguard::audit", decision_id = %d.id, route = %s.route,
                side = s.side.as_str(), client, action = %d.action, rule = %d.rule, items = 0,
                "decision");
        } else {
            // A watermark's payload leads back here from a marked file.
            let payload = (d.action == Action::Watermark)
                .then(|| format!("{:08x}", crate::actions::watermark::payload_for(&d.id)));
            tracing::info!(target: "likeguard::audit", decision_id = %d.id, route = %s.route,
                side = s.side.as_str(), client, action = %d.action, rule = %d.rule,
                items = items.len(), watermark = payload.as_deref().unwrap_or("-"),
                explanation = %d.explanation, "decision");
        }
    }

    /// Turn a verdict into what happens next.
    async fn enforce(&self, s: &Subject<'_>, body: &Bytes, verdict: Verdict) -> Outcome {
        match verdict {
            Verdict::Decided(d, items, decoded) => {
                let (outcome, failure) = match d.action {
                    Action::Allow => (Outcome::pass(), None),
                    Action::Block => (Outcome::Refuse(Problem::blocked(&d.rule, &d.id)), None),
                    Action::Tag | Action::Watermark => {
                        let body = decoded.as_ref().unwrap_or(body);
                        match self.rewrite(s.side, s.class, body, &items, &d).await {
                            Ok(body) => (
                                Outcome::Forward {
                                    headers: self.tags.for_decision(&d),
                                    body,
                                },
                                None,
                            ),
                            Err(reason) => {
                                let reason = format!("{}: {reason}", d.action.as_str());
                                let outcome = self.failed(s, Failure::new(reason.clone()));
                                (outcome, Some(reason))
                            }
                        }
                    }
                };
                // Logged as carried out: a mark that could not be made is said so.
                if let Some(log) = &self.log {
                    let handing = Instant::now();
                    log_record(log, s, &d, &items, failure);
                    self.metrics
                        .decision_log
                        .record_seconds
                        .observe(handing.elapsed().as_secs_f64());
                }
                outcome
            }
            Verdict::Rejected(problem) => match s.side {
                Side::Request => Outcome::Refuse(problem),
                Side::Response => self.failed(s, Failure::new(problem.detail)),
            },
            Verdict::Unsupported(detail) => match s.inspect.on_unsupported {
                UnsupportedMedia::Pass => Outcome::pass(),
                UnsupportedMedia::Reject => Outcome::Refuse(on_side(
                    s.side,
                    Problem::new(ProblemKind::UnsupportedMedia, detail),
                )),
            },
            Verdict::Failed(failure) => self.failed(s, failure),
        }
    }
}

/// Hand a decision to the decision log (when it keeps it): identifiers, hashes and places,
/// never bytes. Hashes an inspector already computed are reused; the writer computes the rest.
fn log_record(
    log: &DecisionLog,
    s: &Subject<'_>,
    d: &Decision,
    items: &[MediaItem],
    failure: Option<String>,
) {
    // A watermark's payload leads back here from a marked file (only when it was marked).
    let watermark = (d.action == Action::Watermark && failure.is_none())
        .then(|| format!("{:08x}", crate::actions::watermark::payload_for(&d.id)));
    use crate::audit::{Item, Matched, Pending, Record};
    let mut identities: Vec<Matched> = Vec::new();
    for (id, similarity) in d.findings.iter().filter_map(|f| f.identity.as_ref()) {
        match identities.iter_mut().find(|m| m.identity == *id) {
            Some(m) => m.similarity = m.similarity.max(*similarity),
            None => identities.push(Matched {
                identity: id.clone(),
                similarity: *similarity,
            }),
        }
    }
    if !log.keeps(d.action, !identities.is_empty()) {
        return;
    }
    let mut unhashed = Vec::new();
    let items = items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let sha256 = item.digest.get().map(hex::encode);
            if sha256.is_none() {
                unhashed.push((i, item.data.clone()));
            }
            Item {
                kind: item.media.kind.as_str().to_string(),
                format: item.media.format.to_string(),
                size: item.data.len() as u64,
                sha256,
                location: item.location.to_string(),
            }
        })
        .collect();
    log.record(Pending {
        record: Record {
            id: d.id.clone(),
            at: crate::audit::now_ms(),
            instance: log.instance().to_string(),
            route: s.route.to_string(),
            side: s.side.as_str().to_string(),
            action: d.action,
            rule: d.rule.clone(),
            policy_version: d.policy_version.clone(),
            licensee: s.ctx.licensee.clone(),
            license: d.license.clone(),
            explanation: d.explanation.clone(),
            client: s.ctx.client.map(|a| a.to_string()),
            watermark,
            failure,
            identities,
            items,
        },
        unhashed,
    });
}

/// A refusal of what the upstream sent is the upstream's fault: 502 to the client.
fn on_side(side: Side, p: Problem) -> Problem {
    match side {
        Side::Request => p,
        Side::Response => p.with_status(502),
    }
}

enum Judged {
    Extract(ExtractError),
    Inspect(crate::inspect::InspectError),
    Fetch(String),
}

/// Name where the deciding item was found in the decision's explanation.
fn locate(d: &mut Decision, items: &[MediaItem]) {
    let winner = d
        .findings
        .iter()
        .find(|f| f.action == d.action && f.rule == d.rule);
    if let Some(f) = winner
        && let Some(item) = items.get(f.item)
    {
        d.explanation = format!("item {} at {}: {}", f.item, item.location, f.detail);
    }
}
