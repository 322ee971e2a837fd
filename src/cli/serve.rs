//! `likeguard serve`: build everything once, then hand the listener to pingora.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use crate::admin::{self, AdminState};
use crate::config::{Config, StoreConfig};
use crate::decide::Decider;
use crate::inference::FaceEngine;
use crate::inspect::Inspection;
use crate::inspect::faces::{FaceInspector, FaceService};
use crate::knownmedia::{Bank, KnownMediaInspector};
use crate::license::Licenses;
use crate::license::requester::Requester;
use crate::media::Decoder;
use crate::policy::store::PolicyStore;
use crate::proxy::Proxy;
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
                    .with_context(|| format!("connecting to redis at {}", redacted(url)))?,
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

pub fn serve(mut config: Config) -> anyhow::Result<()> {
    // Bind both listeners first so a taken port is a clear start-up error, before any slower
    // start-up work (models).
    drop(
        std::net::TcpListener::bind(config.listen)
            .with_context(|| format!("cannot listen on {}", config.listen))?,
    );
    let admin_listener = std::net::TcpListener::bind(config.admin.listen)
        .with_context(|| format!("cannot listen on {} (admin)", config.admin.listen))?;
    admin_listener.set_nonblocking(true)?;
    let icap_listener = config
        .icap
        .as_ref()
        .map(|i| {
            crate::icap::bind(i.listen)
                .with_context(|| format!("cannot listen on {} (icap)", i.listen))
        })
        .transpose()?;
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
    let mut decider = Decider::new(&config, Inspection::new(inspectors), metrics.clone())?;
    let log = open_decision_log(&config, &metrics)?;
    if let Some(log) = &log {
        decider = decider.with_log(log.clone());
    }
    if config.watermark.enabled {
        settle_watermark_key(&mut config)?;
        decider = decider.with_watermarker(Arc::new(
            crate::actions::watermark::MediaWatermarker::new(&config.watermark, &config.media)?,
        ));
    }
    if config.provenance.enabled {
        let signer = crate::actions::provenance::Provenance::load(&config.provenance)?;
        decider = decider.with_provenance(Arc::new(signer));
    }
    if config
        .routes
        .iter()
        .any(|r| r.inspect.extract.fetch.is_some())
    {
        decider = decider.with_fetcher(Arc::new(crate::proxy::UrlFetcher::new(&config)?));
    }
    let decider = Arc::new(decider);
    if let Some(listener) = icap_listener {
        let istag = state_tag(faces.as_deref(), &bank);
        crate::icap::spawn(
            listener,
            &config,
            decider.clone(),
            metrics.icap.clone(),
            istag,
        )
        .context("starting the ICAP service")?;
    }
    let proxy = Proxy::new(&config, decider, metrics.clone())?;

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
    )
    .with_log(log.clone());
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

    crate::proxy::run(&config, proxy, ready)?;
    // Decisions still queued go to the file before the process ends.
    if let Some(log) = log {
        log.close(Duration::from_secs(2));
    }
    std::process::exit(0)
}

/// The ICAP `ISTag`: a fingerprint of what rulings depend on — the policy in force, the
/// registry's and licenses' change counts, the known-media bank — and of this process (the
/// counts start again at 0 on restart), so it changes whenever a ruling could.
fn state_tag(faces: Option<&FaceService>, bank: &Arc<Bank>) -> crate::icap::StateTag {
    use sha2::{Digest, Sha256};
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let state = faces.map(|f| (f.policy.clone(), f.registry.clone(), f.licenses.clone()));
    let bank = bank.clone();
    Arc::new(move || {
        let mut h = Sha256::new();
        h.update(started.to_le_bytes());
        if let Some((policy, registry, licenses)) = &state {
            h.update(policy.current().version.as_bytes());
            h.update(registry.version().to_le_bytes());
            h.update(licenses.version().to_le_bytes());
        }
        h.update(bank.len().to_le_bytes());
        format!("lg-{}", hex::encode(&h.finalize()[..8]))
    })
}

/// The decision log, when `decision_log.enabled`; with `store: redis` it also shares records
/// through the fleet stream.
fn open_decision_log(
    config: &Config,
    metrics: &Metrics,
) -> anyhow::Result<Option<Arc<crate::audit::DecisionLog>>> {
    if !config.decision_log.enabled {
        return Ok(None);
    }
    let stream = match &config.store {
        StoreConfig::Redis { url, prefix } => Some(crate::audit::StreamTarget {
            url: url.clone(),
            prefix: prefix.clone(),
        }),
        StoreConfig::Embedded => None,
    };
    let log = crate::audit::DecisionLog::open(
        &config.decision_log,
        &config.state_dir,
        stream,
        metrics.decision_log.clone(),
    )
    .context("opening the decision log")?;
    Ok(Some(log))
}

/// The watermark key in force: the environment's, the config's, or one kept in (and, the first
/// time, generated into) `state_dir` — never a public default. A well-known key is refused; a
/// short one is warned about.
pub fn settle_watermark_key(config: &mut Config) -> anyhow::Result<()> {
    use crate::config::KeySource;
    let source = config
        .watermark
        .resolve_key(&config.state_dir)
        .map_err(|e| anyhow::anyhow!("watermark key: {e}"))?;
    let file = config.state_dir.join(crate::config::WATERMARK_KEY_FILE);
    match source {
        KeySource::Generated => tracing::warn!(file = %file.display(),
            "no watermark key configured: generated one and stored it (mode 0600); back it up — marks made with it can only be read with it"),
        KeySource::StateFile => {
            tracing::info!(file = %file.display(), "watermark key read from state_dir")
        }
        KeySource::Environment | KeySource::Config => {}
    }
    match config.watermark.weak_key() {
        Some(why) if why.contains("well-known") => anyhow::bail!(
            "{why}: set LIKEGUARD_WATERMARK_KEY or watermark.key to a random secret, or unset both to have one generated"
        ),
        Some(why) => tracing::warn!("{why}"),
        None => {}
    }
    Ok(())
}

/// A URL fit for logs and errors: any password replaced by `***`.
fn redacted(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        Ok(u) => u.to_string(),
        Err(_) => "(unparseable URL)".into(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn redis_passwords_stay_out_of_messages() {
        assert_eq!(
            super::redacted("redis://:s3cret@redis.internal:6379/0"),
            "redis://:***@redis.internal:6379/0"
        );
        assert_eq!(
            super::redacted("redis://127.0.0.1:6379"),
            "redis://127.0.0.1:6379"
        );
    }
}
