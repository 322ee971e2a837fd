//! The ICAP service (RFC 3507): likeguard's rulings for proxies that already hand content to
//! inspection over ICAP — Squid, Traffic Server, secure web gateways. Two services,
//! `icap://host:port/reqmod` (uploads: REQMOD) and `/respmod` (generated media: RESPMOD),
//! decide with the same `Decider` as the proxy: the same routes, limits, failure modes,
//! 451 problem, tag headers and watermark.
//!
//! No maintained ICAP crate exists, so the protocol is parsed here, strictly and sans-IO
//! (`head`, `chunk`, `message`; fuzzed by `fuzz/fuzz_targets/icap_parse.rs`): anything
//! malformed is an ICAP 400 and the connection closes. docs/icap.md,
//! docs/decisions/0012-icap.md.

mod answer;
mod body;
mod chunk;
mod conn;
pub mod head;
mod message;
mod service;

use std::net::{IpAddr, SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::Semaphore;

pub use service::StateTag;
use service::{Ended, Service};

use crate::config::Config;
use crate::decide::Decider;
use crate::proxy::Router;
use crate::telemetry::IcapMetrics;

/// Header fields taken per head (ICAP or encapsulated HTTP); more is a 400.
const MAX_FIELDS: usize = 128;

/// Before closing a connection the client may still be writing to, read (and drop) what it
/// sends for at most this long and this much (the proxy's lingering close).
const LINGER_TIME: std::time::Duration = std::time::Duration::from_secs(2);
const LINGER_BYTES: usize = 64 * 1024 * 1024;

/// Parse everything a client can send in one request, for the fuzz target: an ICAP head, the
/// encapsulated heads it announces, and a chunked body after them. Never panics.
pub fn parse_all(input: &[u8]) -> Result<usize, String> {
    use bytes::BytesMut;
    let (h, len) = head::parse(input, 64 * 1024)
        .map_err(|e| e.to_string())?
        .ok_or("incomplete head")?;
    let rest = &input[len..];
    let heads_len = h.encapsulated.heads_len;
    if rest.len() < heads_len {
        return Err("incomplete sections".into());
    }
    let heads = bytes::Bytes::copy_from_slice(&rest[..heads_len]);
    if let Some(r) = h.encapsulated.req_hdr.clone() {
        message::request(heads.slice(r)).map_err(|e| e.to_string())?;
    }
    if let Some(r) = h.encapsulated.res_hdr.clone() {
        message::response(heads.slice(r)).map_err(|e| e.to_string())?;
    }
    let mut buf = BytesMut::from(&rest[heads_len..]);
    let mut d = chunk::Dechunker::default();
    let mut total = 0;
    while let Some(p) = d.next(&mut buf).map_err(|e| e.to_string())? {
        match p {
            chunk::Piece::Data(b) => total += b.len(),
            chunk::Piece::End { .. } => break,
        }
    }
    Ok(total)
}

/// The ICAP listener, bound at start so a taken port is a start-up error.
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let l = TcpListener::bind(addr)?;
    l.set_nonblocking(true)?;
    Ok(l)
}

/// Serve ICAP on `listener` from a thread of its own (its own runtime, `workers` threads), for
/// the life of the process.
pub fn spawn(
    listener: TcpListener,
    config: &Config,
    decider: Arc<Decider>,
    metrics: IcapMetrics,
    istag: StateTag,
) -> std::io::Result<()> {
    let Some(icap) = config.icap.clone() else {
        return Ok(());
    };
    let workers = config.worker_threads();
    let service = Arc::new(Service {
        decider,
        router: Router::new(&config.routes),
        slashes: config.paths.encoded_slashes,
        timeouts: config.timeouts.clone(),
        config: icap,
        istag,
    });
    std::thread::Builder::new()
        .name("likeguard-icap".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_multi_thread()
                .worker_threads(workers)
                .thread_name("likeguard-icap-worker")
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => return tracing::error!(error = %e, "ICAP runtime failed"),
            };
            rt.block_on(accept(listener, service, metrics));
        })?;
    Ok(())
}

async fn accept(listener: TcpListener, service: Arc<Service>, metrics: IcapMetrics) {
    let listener = match tokio::net::TcpListener::from_std(listener) {
        Ok(l) => l,
        Err(e) => return tracing::error!(error = %e, "ICAP listener failed"),
    };
    tracing::info!(listen = ?listener.local_addr().ok(), "ICAP service listening");
    let slots = Arc::new(Semaphore::new(service.config.max_connections));
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                // Out of descriptors and the like: pause rather than spin.
                tracing::warn!(error = %e, "ICAP accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let service = service.clone();
        let metrics = metrics.clone();
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            // Over Max-Connections (which OPTIONS announced): say so and close.
            metrics.refused.inc();
            tokio::spawn(async move {
                use tokio::io::AsyncWriteExt;
                let mut stream = stream;
                let text = answer::error(503, &service.tag());
                let _ = tokio::time::timeout(
                    std::time::Duration::from_secs(1),
                    stream.write_all(&text),
                )
                .await;
            });
            continue;
        };
        tokio::spawn(async move {
            metrics.connections.inc();
            serve(&service, stream, &metrics).await;
            metrics.connections.dec();
            drop(slot);
        });
    }
}

/// Requests on one connection, one after another, until it closes or must close.
async fn serve(service: &Service, stream: tokio::net::TcpStream, m: &IcapMetrics) {
    let mut conn = conn::Conn::new(stream, service.timeouts.client_read);
    loop {
        let head = match conn
            .head(service.config.max_head_bytes, service.config.idle_timeout)
            .await
        {
            Ok(Some(h)) => h,
            Ok(None) => return,
            Err(e) => return fail(service, &mut conn, &e, "-", m).await,
        };
        let started = Instant::now();
        let method = head.method.as_str();
        let outcome = dispatch(service, &mut conn, &head).await;
        m.seconds
            .with_label_values(&[method])
            .observe(started.elapsed().as_secs_f64());
        match outcome {
            Ok((ended, keep)) => {
                m.requests.with_label_values(&[method, ended.label()]).inc();
                if !keep {
                    return conn.linger(LINGER_TIME, LINGER_BYTES).await;
                }
            }
            Err(e) => return fail(service, &mut conn, &e, method, m).await,
        }
    }
}

async fn dispatch(
    service: &Service,
    conn: &mut conn::Conn,
    h: &head::Head,
) -> Result<(Ended, bool), conn::ConnError> {
    use head::Method;
    let offered = match h.service.as_str() {
        "/reqmod" => Method::Reqmod,
        "/respmod" => Method::Respmod,
        _ => {
            conn.write(&answer::error(404, &service.tag())).await?;
            return Ok((Ended::Refused, false));
        }
    };
    match h.method {
        Method::Options => {
            let text = answer::options(&service.tag(), offered.as_str(), &service.config);
            conn.write(&text).await?;
            Ok((Ended::Options, !h.close))
        }
        m if m != offered => {
            conn.write(&answer::error(405, &service.tag())).await?;
            Ok((Ended::Refused, false))
        }
        _ => {
            // The ICAP client's word on who the HTTP client is (Squid: icap_send_client_ip);
            // the connection's peer is the ICAP client itself, not the HTTP client.
            let client = h
                .headers
                .get("x-client-ip")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<IpAddr>().ok());
            service.modify(conn, h, client).await
        }
    }
}

/// A request that cannot be answered normally: tell the client (when it still listens) and
/// close.
async fn fail(
    service: &Service,
    conn: &mut conn::Conn,
    e: &conn::ConnError,
    method: &str,
    m: &IcapMetrics,
) {
    m.requests.with_label_values(&[method, "error"]).inc();
    tracing::debug!(error = %e, method, "ICAP request refused");
    // Once an answer has begun, an error status would land inside it: just close.
    if let (Some(status), false) = (e.status(), conn.answering()) {
        let _ = conn.write(&answer::error(status, &service.tag())).await;
    }
    if !matches!(e, conn::ConnError::Closed | conn::ConnError::Io(_)) {
        conn.linger(LINGER_TIME, LINGER_BYTES).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the fuzz target checks, on a few shapes: no panic, and a head is found at the
    /// same length with or without what follows it.
    #[test]
    fn whole_requests_parse_and_heads_end_where_they_end() {
        let req = "POST http://up.example/upload HTTP/1.1\r\nHost: up.example\r\n\r\n";
        let whole = format!(
            "REQMOD icap://a/reqmod ICAP/1.0\r\nEncapsulated: req-hdr=0, req-body={}\r\n\r\n{req}5\r\nhello\r\n0\r\n\r\n",
            req.len()
        );
        assert_eq!(parse_all(whole.as_bytes()), Ok(5));
        for cut in 0..whole.len() {
            let data = &whole.as_bytes()[..cut];
            let _ = parse_all(data);
            if let Ok(Some((_, len))) = head::parse(data, 64 * 1024) {
                assert!(
                    matches!(head::parse(&data[..len], 64 * 1024), Ok(Some((_, l))) if l == len)
                );
            }
        }
        assert!(parse_all(b"REQMOD icap://a/reqmod ICAP/1.0\r\nEncapsulated: req-hdr=0, req-body=3\r\n\r\nabc").is_err());
    }
}
