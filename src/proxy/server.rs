//! pingora's server: every client-facing listener, worker threads, graceful shutdown.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use pingora::listeners::tls::TlsSettings;
use pingora::proxy::http_proxy_service;
use pingora::server::configuration::ServerConf;
use pingora::server::{RunArgs, Server};

use super::{Proxy, ProxyError};
use crate::config::Config;

/// Serve `listen` (and the TLS listener) until SIGTERM/SIGINT; `ready` is set once the
/// listeners are configured. SIGTERM drains: listeners close, in-flight exchanges finish
/// within `timeouts.shutdown_grace`.
pub fn run(config: &Config, proxy: Proxy, ready: Arc<AtomicBool>) -> Result<(), ProxyError> {
    let conf = ServerConf {
        threads: config.worker_threads(),
        grace_period_seconds: Some(0),
        graceful_shutdown_timeout_seconds: Some(config.timeouts.shutdown_grace.as_secs()),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
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
