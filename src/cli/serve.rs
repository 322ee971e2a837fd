//! `likeguard serve`: build everything once, then hand the listener to pingora.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context;
use pingora::proxy::http_proxy_service;
use pingora::server::configuration::ServerConf;
use pingora::server::{
    RunArgs, Server, ShutdownSignal, ShutdownSignalWatch, UnixShutdownSignalWatch,
};

use crate::admin::{self, AdminState};
use crate::config::{Config, FrontKind, StoreConfig};
use crate::inference::FaceEngine;
use crate::inspect::Inspection;
use crate::inspect::faces::{FaceInspector, FaceService};
use crate::knownmedia::{Bank, KnownMediaInspector};
use crate::license::Licenses;
use crate::license::requester::Requester;
use crate::media::Decoder;
use crate::policy::store::PolicyStore;
use crate::proxy::Proxy;
use crate::proxy::fast::Front;
use crate::registry::Registry;
use crate::store::redis::{Event, Kind, RedisStore};
use crate::telemetry::Metrics;

/// The identity registry and licenses, embedded or shared through Redis (then, with `follow`,
/// applying other instances' changes as they happen).
pub(super) fn open_registry(
    config: &Config,
    follow: bool,
) -> anyhow::Result<(Arc<Registry>, Arc<Licenses>)> {
    match &config.store {
        StoreConfig::Embedded => Ok((
            Arc::new(
                Registry::open(&config.state_dir, &config.search)
                    .context("opening the identity registry")?,
            ),
            Arc::new(Licenses::open(&config.state_dir).context("opening the licenses")?),
        )),
        StoreConfig::Redis { url, prefix } => {
            let store = Arc::new(
                RedisStore::connect(url, prefix)
                    .with_context(|| format!("connecting to redis at {url}"))?,
            );
            let registry = Arc::new(Registry::shared(store.clone(), &config.search)?);
            let licenses = Arc::new(Licenses::shared(store.clone())?);
            if !follow {
                return Ok((registry, licenses));
            }
            let (r, l) = (registry.clone(), licenses.clone());
            store.subscribe(move |event| {
                let outcome = match &event {
                    Event::Resync => r
                        .resync()
                        .map_err(|e| e.to_string())
                        .and_then(|()| l.resync().map_err(|e| e.to_string())),
                    Event::Changed(Kind::Identity, id) => r.refresh(id).map_err(|e| e.to_string()),
                    Event::Changed(Kind::License, id) => l.refresh(id).map_err(|e| e.to_string()),
                };
                if let Err(e) = outcome {
                    tracing::error!(error = %e, ?event, "applying a shared change failed");
                }
            });
            Ok((registry, licenses))
        }
    }
}

pub fn serve(config: Config) -> anyhow::Result<()> {
    // Bind both listeners first so a taken port is a clear start-up error, before any slower
    // start-up work (models).
    drop(
        std::net::TcpListener::bind(config.listen)
            .with_context(|| format!("cannot listen on {}", config.listen))?,
    );
    let admin_listener = std::net::TcpListener::bind(config.admin.listen)
        .with_context(|| format!("cannot listen on {} (admin)", config.admin.listen))?;
    admin_listener.set_nonblocking(true)?;
    let metrics = Arc::new(Metrics::new());
    let bank = Arc::new(
        Bank::open(
            &config.state_dir,
            &config.known_media,
            metrics.known_media.clone(),
        )
        .context("opening the known-media bank")?,
    );
    let mut inspectors: Vec<Arc<dyn crate::inspect::Inspector>> =
        vec![Arc::new(KnownMediaInspector::new(bank.clone()))];
    let faces = if config.inference.enabled {
        let policy = Arc::new(
            PolicyStore::open(config.policy.file.as_deref()).context("loading the policy")?,
        );
        let shown = policy.current();
        metrics.set_policy(&shown.name, &shown.version);
        tracing::info!(policy = %shown.name, version = %shown.version, rules = shown.rules.len(), "policy loaded");
        policy.watch(Duration::from_millis(500), metrics.clone());
        let (registry, licenses) = open_registry(&config, true)?;
        let service = Arc::new(FaceService {
            decoder: Decoder::new(&config.media).context("starting media decoding")?,
            engine: FaceEngine::load(&config.inference)
                .context("loading the face models (or set inference.enabled: false)")?,
            registry: registry.clone(),
            licenses: licenses.clone(),
            policy,
            metrics: metrics.clone(),
        });
        inspectors.push(Arc::new(FaceInspector::new(service.clone())));
        Some(service)
    } else {
        None
    };
    let inspection = Inspection::new(inspectors);
    let mut proxy = Proxy::new(&config, inspection, metrics.clone())?;
    if config.watermark.enabled {
        proxy = proxy.with_watermarker(Arc::new(crate::actions::watermark::MediaWatermarker::new(
            &config.watermark,
            &config.media,
        )?));
    }
    if config.provenance.enabled {
        let signer = crate::actions::provenance::Provenance::load(&config.provenance)?;
        proxy = proxy.with_provenance(Arc::new(signer));
    }

    let token = config.admin_token();
    if token.is_none() {
        tracing::warn!("no admin token configured: the admin API will answer 503");
    }
    let state = AdminState::new(
        metrics.clone(),
        bank,
        faces,
        Arc::new(Requester::new(&config.licensing).map_err(anyhow::Error::msg)?),
        token,
        config.admin.metrics_public,
    );
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
    let mut drain_first = None;
    let mut handover_socket = None;
    match config.front {
        FrontKind::Pingora => service.add_tcp(&config.listen.to_string()),
        FrontKind::Fast => {
            // pingora takes what the front hands over on a socket only this user can open.
            let socket = handover_socket_path();
            service.add_uds(
                &socket.to_string_lossy(),
                Some(std::fs::Permissions::from_mode(0o600)),
            );
            handover_socket = Some(socket.clone());
            let front = Arc::new(Front::new(&config, metrics.clone(), socket));
            front
                .clone()
                .start(config.listen, config.worker_threads())
                .with_context(|| format!("cannot listen on {}", config.listen))?;
            drain_first = Some(front);
        }
    }
    if let Some(tls) = &config.tls {
        let path = |p: &std::path::Path| p.to_string_lossy().into_owned();
        let mut settings = pingora::listeners::tls::TlsSettings::intermediate(
            &path(&tls.cert_file),
            &path(&tls.key_file),
        )
        .map_err(|e| anyhow::anyhow!("tls: cannot load the certificate or key: {e}"))?;
        if tls.http2 {
            settings.enable_h2();
        }
        service.add_tls_with_settings(&tls.listen.to_string(), None, settings);
    }
    server.add_service(service);
    tracing::info!(listen = %config.listen, tls = ?config.tls.as_ref().map(|t| t.listen), admin = %config.admin.listen,
        routes = config.routes.len(), "likeguard serving");
    ready.store(true, Ordering::Release);
    let shutdown_signal: Box<dyn ShutdownSignalWatch> = match drain_first {
        Some(front) => Box::new(DrainFrontFirst {
            front,
            grace: config.timeouts.shutdown_grace,
        }),
        None => Box::new(UnixShutdownSignalWatch),
    };
    server.run(RunArgs { shutdown_signal });
    if let Some(socket) = handover_socket {
        let _ = std::fs::remove_file(socket);
    }
    std::process::exit(0)
}

/// On SIGTERM, drain the fast front's exchanges before pingora starts its own graceful
/// shutdown (which ends the process when pingora is done).
struct DrainFrontFirst {
    front: Arc<Front>,
    grace: Duration,
}

#[async_trait::async_trait]
impl ShutdownSignalWatch for DrainFrontFirst {
    async fn recv(&self) -> ShutdownSignal {
        let signal = UnixShutdownSignalWatch.recv().await;
        if let ShutdownSignal::GracefulTerminate = signal {
            tracing::info!("shutting down: draining the front");
            self.front.drain(self.grace).await;
        }
        signal
    }
}

/// pingora's private listener for what the fast front hands over: per process, in the runtime
/// directory when there is one (systemd's `RuntimeDirectory=`, else `$XDG_RUNTIME_DIR`), else the
/// temp directory.
fn handover_socket_path() -> PathBuf {
    let dir = ["RUNTIME_DIRECTORY", "XDG_RUNTIME_DIR"]
        .iter()
        .filter_map(std::env::var_os)
        .map(PathBuf::from)
        .find(|d| d.is_dir())
        .unwrap_or_else(std::env::temp_dir);
    dir.join(format!("likeguard-{}.sock", std::process::id()))
}
