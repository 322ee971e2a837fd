//! The Prometheus registry. One instance per process, shared by the proxy and the admin API.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};

pub struct Metrics {
    registry: Registry,
    /// Requests by route, path taken (`passthrough` | `inspected`) and status class.
    pub requests: IntCounterVec,
    /// Body bytes carried, by direction (`request` | `response`).
    pub bytes: IntCounterVec,
    /// Media items inspected, by kind and format.
    pub items: IntCounterVec,
    /// Decisions by action and rule.
    pub decisions: IntCounterVec,
    /// Time spent extracting and inspecting one body, by direction.
    pub inspection_seconds: HistogramVec,
    /// Errors by kind (the problem type).
    pub errors: IntCounterVec,
    /// Entries in the known-media bank.
    pub known_media: IntGauge,
    /// Entries in the face-decision cache (bounded: `inspect/faces.rs`).
    pub decision_cache: IntGauge,
    /// Shadow policy rules whose condition held, by rule.
    pub policy_shadow: IntCounterVec,
    /// Policy reloads by outcome (`ok` | `refused`): a refused one leaves the old rules in force.
    pub policy_reloads: IntCounterVec,
    /// 1 for the policy version in force.
    pub policy_version: prometheus::IntGaugeVec,
    /// Media fetched from allow-listed URLs found in bodies, by outcome (`ok` | `failed`).
    pub url_fetches: IntCounterVec,
    /// Upstream failures per route (and `upstream_failures_total`), for `/readyz`.
    pub upstreams: super::UpstreamHealth,
    /// 1 while `/readyz` says `degraded` (Redis unreachable or an upstream failing); set when
    /// scraped.
    pub degraded: IntGauge,
    /// 0 while the shared store (Redis) is unreachable, else 1; set when scraped.
    pub store_up: IntGauge,
    /// Items waiting for each model's inference worker, by model; set when scraped.
    pub inference_queue: prometheus::IntGaugeVec,
    /// The decision log's own health.
    pub decision_log: LogMetrics,
    /// The ICAP service (`icap/`).
    pub icap: IcapMetrics,
}

/// The ICAP service: what it answered, how fast, and how busy it is.
#[derive(Clone)]
pub struct IcapMetrics {
    /// ICAP requests by method and outcome (`options`, `unmodified`, `modified`, `refused`,
    /// `error`).
    pub requests: IntCounterVec,
    /// Time from an ICAP head to its answer, by method.
    pub seconds: HistogramVec,
    /// ICAP connections open now.
    pub connections: IntGauge,
    /// Connections refused because `max_connections` were open.
    pub refused: IntCounter,
}

/// The decision log (`audit/`): what it wrote, dropped and holds.
#[derive(Clone)]
pub struct LogMetrics {
    /// Records written, by sink (`sqlite` | `redis`).
    pub written: IntCounterVec,
    /// Records not written, by reason (`queue_full`, `store_error`, `stream_error`, `stopped`).
    pub dropped: IntCounterVec,
    /// Records waiting for the writer.
    pub queue: IntGauge,
    /// Bytes the SQLite file and its WAL take.
    pub store_bytes: IntGauge,
    /// Fleet-stream entries read from Redis.
    pub imported: IntCounter,
    /// Items logged without a SHA-256 (the hashing budget was spent).
    pub unhashed: IntCounter,
    /// Records removed by retention.
    pub expired: IntCounter,
    /// Time the request path spends handing one decision to the log (building the record and
    /// queueing it).
    pub record_seconds: prometheus::Histogram,
}

/// Buckets (s) for per-body and per-ICAP-request latency: 0.5 ms to 10 s.
const LATENCY_BUCKETS: [f64; 14] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

impl Metrics {
    pub fn new() -> Self {
        let registry = Registry::new_custom(Some("likeguard".into()), None)
            .expect("static registry prefix is valid");
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels).expect("static metric");
            registry
                .register(Box::new(c.clone()))
                .expect("unique metric");
            c
        };
        let requests = counter(
            "requests_total",
            "Proxied requests by route, path and status class",
            &["route", "path", "status"],
        );
        let bytes = counter("body_bytes_total", "Body bytes carried", &["direction"]);
        let items = counter(
            "inspected_items_total",
            "Media items inspected",
            &["kind", "format"],
        );
        let decisions = counter(
            "decisions_total",
            "Decisions by action and rule",
            &["action", "rule"],
        );
        let errors = counter("errors_total", "Errors by kind", &["kind"]);
        let upstream_failures = counter(
            "upstream_failures_total",
            "Upstream failures by route and kind (connect, timeout, exchange, 5xx)",
            &["route", "kind"],
        );
        let url_fetches = counter(
            "url_fetches_total",
            "Media fetched from allow-listed URLs found in bodies, by outcome",
            &["outcome"],
        );
        let policy_reloads = counter(
            "policy_reloads_total",
            "Policy reloads by outcome (ok, refused: the previous policy stays in force)",
            &["outcome"],
        );
        let policy_shadow = counter(
            "policy_shadow_matches_total",
            "Shadow policy rules whose condition held (not enforced)",
            &["rule"],
        );
        let policy_version = prometheus::IntGaugeVec::new(
            Opts::new(
                "policy_info",
                "1 for the policy in force, by name and version",
            ),
            &["name", "version"],
        )
        .expect("static metric");
        registry
            .register(Box::new(policy_version.clone()))
            .expect("unique metric");
        let inspection_seconds = HistogramVec::new(
            HistogramOpts::new(
                "inspection_seconds",
                "Extraction and inspection time per body",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["direction"],
        )
        .expect("static metric");
        registry
            .register(Box::new(inspection_seconds.clone()))
            .expect("unique metric");
        let gauge = |name: &str, help: &str| {
            let g = IntGauge::new(name, help).expect("static metric");
            registry
                .register(Box::new(g.clone()))
                .expect("unique metric");
            g
        };
        let known_media = gauge("known_media_entries", "Entries in the known-media bank");
        let decision_cache = gauge(
            "decision_cache_entries",
            "Entries in the face-decision cache (bounded)",
        );
        let degraded = gauge(
            "degraded",
            "1 while /readyz says degraded (shared store unreachable or an upstream failing)",
        );
        let store_up = gauge(
            "store_up",
            "0 while the shared store (Redis) is unreachable, else 1",
        );
        store_up.set(1);
        let inference_queue = prometheus::IntGaugeVec::new(
            Opts::new(
                "inference_queue_depth",
                "Items waiting for a model's inference worker (bounded by inference.batch.queue)",
            ),
            &["model"],
        )
        .expect("static metric");
        registry
            .register(Box::new(inference_queue.clone()))
            .expect("unique metric");
        let build_info = prometheus::IntGaugeVec::new(
            Opts::new("build_info", "1, labelled with the running version"),
            &["version"],
        )
        .expect("static metric");
        build_info
            .with_label_values(&[env!("CARGO_PKG_VERSION")])
            .set(1);
        registry
            .register(Box::new(build_info))
            .expect("unique metric");
        let plain = |name: &str, help: &str| {
            let c = IntCounter::new(name, help).expect("static metric");
            registry
                .register(Box::new(c.clone()))
                .expect("unique metric");
            c
        };
        let record_seconds = prometheus::Histogram::with_opts(
            HistogramOpts::new(
                "decision_log_record_seconds",
                "Time the request path spends handing one decision to the decision log",
            )
            .buckets(vec![
                0.000_001,
                0.000_002_5,
                0.000_005,
                0.000_01,
                0.000_025,
                0.000_05,
                0.000_1,
                0.000_2,
                0.000_5,
                0.001,
                0.005,
            ]),
        )
        .expect("static metric");
        registry
            .register(Box::new(record_seconds.clone()))
            .expect("unique metric");
        let decision_log = LogMetrics {
            record_seconds,
            written: counter(
                "decision_log_written_total",
                "Decision records written, by sink (sqlite, redis)",
                &["sink"],
            ),
            dropped: counter(
                "decision_log_dropped_total",
                "Decision records not written, by reason",
                &["reason"],
            ),
            queue: gauge(
                "decision_log_queue_depth",
                "Decision records waiting for the writer",
            ),
            store_bytes: gauge(
                "decision_log_store_bytes",
                "Bytes the decision log's SQLite file and WAL take",
            ),
            imported: plain(
                "decision_log_stream_read_total",
                "Fleet decision-stream entries read from Redis",
            ),
            unhashed: plain(
                "decision_log_unhashed_items_total",
                "Items logged without a SHA-256 (hashing budget spent)",
            ),
            expired: plain(
                "decision_log_expired_total",
                "Decision records removed by retention",
            ),
        };
        let icap_seconds = HistogramVec::new(
            HistogramOpts::new(
                "icap_seconds",
                "Time from an ICAP request head to its answer, by method",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["method"],
        )
        .expect("static metric");
        registry
            .register(Box::new(icap_seconds.clone()))
            .expect("unique metric");
        let icap = IcapMetrics {
            requests: counter(
                "icap_requests_total",
                "ICAP requests by method and outcome (options, unmodified, modified, refused, error)",
                &["method", "outcome"],
            ),
            seconds: icap_seconds,
            connections: gauge("icap_connections", "ICAP connections open now"),
            refused: plain(
                "icap_connections_refused_total",
                "ICAP connections refused because max_connections were open",
            ),
        };
        // Every series an alert or a dashboard reads exists from the start, at 0.
        for method in ["REQMOD", "RESPMOD"] {
            for outcome in ["unmodified", "modified", "refused", "error"] {
                icap.requests.with_label_values(&[method, outcome]);
            }
        }
        for sink in ["sqlite", "redis"] {
            decision_log.written.with_label_values(&[sink]);
        }
        for reason in ["queue_full", "store_error", "stream_error", "stopped"] {
            decision_log.dropped.with_label_values(&[reason]);
        }
        Self {
            registry,
            decision_log,
            icap,
            degraded,
            store_up,
            inference_queue,
            decision_cache,
            requests,
            bytes,
            items,
            decisions,
            inspection_seconds,
            errors,
            known_media,
            policy_shadow,
            policy_reloads,
            policy_version,
            url_fetches,
            upstreams: super::UpstreamHealth::with_counter(upstream_failures),
        }
    }

    /// Marks `name`/`version` as the policy in force.
    pub fn set_policy(&self, name: &str, version: &str) {
        self.policy_version.reset();
        self.policy_version
            .with_label_values(&[name, version])
            .set(1);
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        // Encoding into a Vec cannot fail for the text format.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
