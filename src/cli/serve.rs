//! `likeguard serve`: build everything once, then hand the listener to pingora.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use anyhow::Context;
use pingora::proxy::http_proxy_service;
use pingora::server::Server;
use pingora::server::configuration::ServerConf;

use crate::admin::{self, AdminState};
use crate::config::Config;
use crate::inspect::Inspection;
use crate::knownmedia::{Bank, KnownMediaInspector};
use crate::proxy::Proxy;
use crate::telemetry::Metrics;

pub fn serve(config: Config) -> anyhow::Result<()> {
    let metrics = Arc::new(Metrics::new());
    let bank = Arc::new(
        Bank::open(
            &config.state_dir,
            &config.known_media,
            metrics.known_media.clone(),
        )
        .context("opening the known-media bank")?,
    );
    let inspection = Inspection::new(vec![Arc::new(KnownMediaInspector::new(bank.clone()))]);
    let proxy = Proxy::new(&config, inspection, metrics.clone())?;

    // Bind both listeners up front so a taken port is a clear start-up error.
    drop(
        std::net::TcpListener::bind(config.listen)
            .with_context(|| format!("cannot listen on {}", config.listen))?,
    );
    let admin_listener = std::net::TcpListener::bind(config.admin.listen)
        .with_context(|| format!("cannot listen on {} (admin)", config.admin.listen))?;
    admin_listener.set_nonblocking(true)?;
    let token = config.admin_token();
    if token.is_none() {
        tracing::warn!("no admin token configured: the admin API will answer 503");
    }
    let state = AdminState::new(metrics, bank, token, config.admin.metrics_public);
    let ready = state.ready.clone();
    std::thread::Builder::new()
        .name("likeguard-admin".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => return tracing::error!(error = %e, "admin runtime failed"),
            };
            rt.block_on(async move {
                let listener = match tokio::net::TcpListener::from_std(admin_listener) {
                    Ok(l) => l,
                    Err(e) => return tracing::error!(error = %e, "admin listener failed"),
                };
                if let Err(e) = axum::serve(listener, admin::router(state)).await {
                    tracing::error!(error = %e, "admin server stopped");
                }
            });
        })?;

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
    server.add_service(service);
    tracing::info!(listen = %config.listen, admin = %config.admin.listen,
        routes = config.routes.len(), "likeguard serving");
    ready.store(true, Ordering::Release);
    server.run_forever()
}
