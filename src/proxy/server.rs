//! pingora's server: every client-facing listener, worker threads, graceful shutdown.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use pingora::listeners::tls::TlsSettings;
use pingora::proxy::http_proxy_service;
use pingora::server::configuration::ServerConf;
use pingora::server::{ExecutionPhase, RunArgs, Server};

use super::{Proxy, ProxyError};
use crate::config::Config;

/// Serve `listen` (and the TLS listener) until SIGTERM/SIGINT; `ready` is set once the
/// listeners are configured. SIGTERM drains: listeners close at once, keep-alive connections
/// close after their current request, and requests in flight get up to
/// `timeouts.shutdown_grace` to finish; the process exits as soon as none is left.
pub fn run(config: &Config, proxy: Proxy, ready: Arc<AtomicBool>) -> Result<(), ProxyError> {
    let grace = config.timeouts.shutdown_grace;
    let conf = ServerConf {
        threads: config.worker_threads(),
        // pingora lets in-flight tasks run for the grace period, then stops its runtimes
        // (dropping whatever is left): the grace period is ours, rounded up to a second.
        grace_period_seconds: Some(grace.as_secs() + u64::from(grace.subsec_nanos() > 0)),
        graceful_shutdown_timeout_seconds: Some(1),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    drain_on_shutdown(server.watch_execution_phase(), proxy.in_flight(), grace);
    let mut service = http_proxy_service(&server.configuration, proxy);
    service.add_tcp(&config.listen.to_string());
    if let Some(tls) = &config.tls {
        let path = |p: &std::path::Path| p.to_string_lossy().into_owned();
        let mut settings = TlsSettings::intermediate(&path(&tls.cert_file), &path(&tls.key_file))
            .map_err(|e| {
            ProxyError::Config(format!("tls: cannot load the certificate or key: {e}"))
        })?;
        if tls.http2 {
            settings.enable_h2();
        }
        service.add_tls_with_settings(&tls.listen.to_string(), None, settings);
    }
    server.add_service(service);
    tracing::info!(listen = %config.listen, tls = ?config.tls.as_ref().map(|t| t.listen),
        admin = %config.admin.listen, routes = config.routes.len(), "likeguard serving");
    ready.store(true, Ordering::Release);
    server.run(RunArgs::default());
    Ok(())
}

/// pingora sleeps through the whole grace period even when nothing is in flight: once
/// shutdown has begun, exit as soon as the last request has finished (or the grace is spent).
fn drain_on_shutdown(
    mut phases: tokio::sync::broadcast::Receiver<ExecutionPhase>,
    in_flight: Arc<AtomicUsize>,
    grace: Duration,
) {
    use tokio::sync::broadcast::error::RecvError;
    let watcher = std::thread::Builder::new()
        .name("shutdown-drain".into())
        .spawn(move || {
            loop {
                match phases.blocking_recv() {
                    Ok(ExecutionPhase::ShutdownGracePeriod) => break,
                    Ok(_) | Err(RecvError::Lagged(_)) => continue,
                    Err(RecvError::Closed) => return,
                }
            }
            let deadline = Instant::now() + grace;
            let idle = || in_flight.load(Ordering::Acquire) == 0;
            loop {
                while !idle() && Instant::now() < deadline {
                    std::thread::sleep(Duration::from_millis(20));
                }
                // A last answer may still sit in a send buffer (HTTP/2 frames, TLS): a short
                // settle, then none must have started meanwhile.
                let settle = Duration::from_millis(300)
                    .min(deadline.saturating_duration_since(Instant::now()));
                std::thread::sleep(settle);
                if idle() || Instant::now() >= deadline {
                    break;
                }
            }
            let left = in_flight.load(Ordering::Acquire);
            if left == 0 {
                tracing::info!("shutdown: every request in flight finished; exiting");
            } else {
                tracing::warn!(
                    left,
                    "shutdown: grace period over with requests in flight; exiting"
                );
            }
            // Everything likeguard keeps is already on disk (each change is written
            // atomically when made): nothing is lost by not unwinding pingora's runtimes.
            std::process::exit(0);
        });
    if let Err(e) = watcher {
        tracing::warn!(error = %e, "no shutdown drain watcher: exit waits the whole grace period");
    }
}
