//! Faces in a media item: decode (sampled frames) → detect → optionally embed, with boxes in
//! the source's pixel coordinates. Blocking: run it off the async runtime.

use std::ops::ControlFlow;

use bytes::Bytes;

use std::sync::Arc;

use crate::inference::{Embedding, Face, FaceEngine, Image, InferenceError};
use crate::license::{License, Licenses};
use crate::media::MediaKind;
use crate::media::{DecodeError, Decoder, Frame, Input, Output, Summary};
use crate::policy::rules::{Input as PolicyInput, LicenseInfo, MatchInfo, MediaInfo, RequestInfo};
use crate::policy::store::PolicyStore;
use crate::policy::{Action, Finding};
use crate::registry::Registry;
use crate::telemetry::Metrics;

/// One face found in one sampled frame.
#[derive(Debug, Clone)]
pub struct FoundFace {
    /// Index of the frame among decoded frames (0 for a still image).
    pub frame: u64,
    /// In source pixels.
    pub face: Face,
    pub embedding: Option<Embedding>,
}

#[derive(Debug, thiserror::Error)]
pub enum FaceScanError {
    #[error(transparent)]
    Decode(#[from] DecodeError),
    #[error(transparent)]
    Inference(#[from] InferenceError),
}

/// Decodes `data` and finds the faces of every sampled frame (embedding them when `embed`).
pub fn faces_in_media(
    decoder: &Decoder,
    engine: &FaceEngine,
    data: Bytes,
    kind: Option<MediaKind>,
    embed: bool,
) -> Result<(Summary, Vec<FoundFace>), FaceScanError> {
    faces_in_media_until(decoder, engine, data, kind, embed, &mut |_, _| {
        ControlFlow::Continue(())
    })
}

/// `faces_in_media`, handing each sampled frame's faces (boxes in the source's pixels) to
/// `on_frame` as they are found; `Break` stops the decode there (the summary says
/// `stopped_early`).
pub fn faces_in_media_until(
    decoder: &Decoder,
    engine: &FaceEngine,
    data: Bytes,
    kind: Option<MediaKind>,
    embed: bool,
    on_frame: &mut dyn FnMut(&Frame, &[FoundFace]) -> ControlFlow<()>,
) -> Result<(Summary, Vec<FoundFace>), FaceScanError> {
    let mut found = Vec::new();
    let mut failure = None;
    let summary = decoder.decode(Input::Bytes(data), kind, &mut |out: Output<'_>| {
        let Output::Frame(frame) = out else {
            return ControlFlow::Continue(());
        };
        let result = Image::try_from(frame).and_then(|image| {
            let faces = engine.detect(&image)?;
            let embeddings = if embed {
                engine
                    .embed(&image, &faces)?
                    .into_iter()
                    .map(Some)
                    .collect()
            } else {
                vec![None; faces.len()]
            };
            Ok((faces, embeddings))
        });
        match result {
            Ok((faces, embeddings)) => {
                // Frames are scaled to `media.max_side`; report boxes in the source's pixels.
                let scale = match frame.width {
                    0 => 1.0,
                    w => frame.source.0 as f32 / w as f32,
                };
                let first = found.len();
                for (face, embedding) in faces.into_iter().zip(embeddings) {
                    found.push(FoundFace {
                        frame: frame.index,
                        face: face.scaled(scale),
                        embedding,
                    });
                }
                on_frame(frame, &found[first..])
            }
            Err(e) => {
                failure = Some(e);
                ControlFlow::Break(())
            }
        }
    })?;
    if let Some(e) = failure {
        return Err(e.into());
    }
    Ok((summary, found))
}

/// One embedding per reference photo, each required to show exactly one face (enrolment).
/// Errors name the photo and the reason. Blocking.
pub fn reference_embeddings(
    decoder: &Decoder,
    engine: &FaceEngine,
    photos: Vec<(String, Bytes)>,
) -> Result<(Vec<Embedding>, Vec<ReferenceFace>), String> {
    let mut out = Vec::new();
    let mut used = Vec::new();
    for (label, data) in photos {
        let Some(media) = crate::media::sniff(&data) else {
            return Err(format!("{label}: not an image likeguard reads"));
        };
        let (_, faces) = faces_in_media(decoder, engine, data, Some(media.kind), true)
            .map_err(|e| format!("{label}: {e}"))?;
        match faces.as_slice() {
            [one] => {
                out.extend(one.embedding.clone());
                used.push(ReferenceFace {
                    photo: label,
                    face: one.face,
                });
            }
            [] => return Err(format!("{label}: no face found")),
            many => {
                // Say which faces, so the sender can crop to the right one.
                let seen: Vec<String> = many
                    .iter()
                    .map(|f| {
                        let [x, y, w, h] = f.face.bbox;
                        format!("[{x:.0}, {y:.0}, {w:.0}×{h:.0}] score {:.2}", f.face.score)
                    })
                    .collect();
                return Err(format!(
                    "{label}: {} faces found ({}); a reference photo must show exactly one — crop it to the person",
                    many.len(),
                    seen.join("; ")
                ));
            }
        }
    }
    Ok((out, used))
}

/// The face a reference photo gave (its box and detector score, in source pixels): what the
/// enrolment answer shows, so the enroller sees which face was taken.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ReferenceFace {
    pub photo: String,
    #[serde(flatten)]
    pub face: Face,
}

/// The face a single-subject photo is about: confident and central (size alone picks
/// bystanders in the foreground).
pub fn main_face(faces: &[FoundFace], width: u32, height: u32) -> Option<&FoundFace> {
    let (cx, cy) = (width as f32 / 2.0, height as f32 / 2.0);
    let half_diagonal = (cx * cx + cy * cy).sqrt().max(1.0);
    let weight = |f: &FoundFace| {
        let [x, y, w, h] = f.face.bbox;
        let d = ((x + w / 2.0 - cx).powi(2) + (y + h / 2.0 - cy).powi(2)).sqrt() / half_diagonal;
        f.face.score * (1.0 - 0.5 * d.min(1.0))
    };
    faces.iter().max_by(|a, b| weight(a).total_cmp(&weight(b)))
}

/// Everything face recognition needs, built once at start and shared (proxy inspector, admin
/// enrolment, verification).
pub struct FaceService {
    pub decoder: Decoder,
    pub engine: FaceEngine,
    pub registry: Arc<Registry>,
    pub licenses: Arc<Licenses>,
    pub policy: Arc<PolicyStore>,
    pub metrics: Arc<Metrics>,
}

/// Called with each recognised face and the source's (width, height) as its frame is decoded.
pub type OnMatch<'a> = dyn FnMut(&Recognised, (u32, u32)) -> ControlFlow<()> + 'a;

/// A recognised face in a media item.
pub struct Recognised {
    pub face: FoundFace,
    pub identity: crate::registry::Match,
}

/// What the policy makes of one recognised face.
#[derive(Debug, Clone)]
pub struct Ruling {
    pub action: Action,
    pub rule: String,
    pub policy_version: String,
    /// The license in force for the requester, when there is one.
    pub license: Option<License>,
    /// Shadow rules whose condition held.
    pub shadow: Vec<String>,
    /// The deciding rule's extra headers.
    pub headers: Vec<(String, String)>,
    /// The deciding rule asks for the visible mark.
    pub visible: bool,
}

impl FaceService {
    /// Source summary and identity matches for every face of every sampled frame. Blocking.
    pub fn recognise(
        &self,
        data: Bytes,
        kind: Option<MediaKind>,
    ) -> Result<(Summary, Vec<Recognised>), FaceScanError> {
        self.recognise_until(data, kind, &mut |_, _| ControlFlow::Continue(()))
    }

    /// `recognise`, handing each recognised face to `on_match` as its frame is decoded, with
    /// the source's size (the policy's `media.width/height`); `Break` stops the decode there.
    /// Blocking.
    pub fn recognise_until(
        &self,
        data: Bytes,
        kind: Option<MediaKind>,
        on_match: &mut OnMatch<'_>,
    ) -> Result<(Summary, Vec<Recognised>), FaceScanError> {
        let threshold = self.engine.threshold();
        let mut recognised = Vec::new();
        let (summary, _) = faces_in_media_until(
            &self.decoder,
            &self.engine,
            data,
            kind,
            true,
            &mut |frame, faces| {
                for face in faces {
                    let Some(identity) = face
                        .embedding
                        .as_ref()
                        .and_then(|e| self.registry.search(e, threshold))
                    else {
                        continue;
                    };
                    let r = Recognised {
                        face: face.clone(),
                        identity,
                    };
                    let flow = on_match(&r, frame.source);
                    recognised.push(r);
                    if flow.is_break() {
                        return ControlFlow::Break(());
                    }
                }
                ControlFlow::Continue(())
            },
        )?;
        Ok((summary, recognised))
    }

    /// Evaluates the policy in force for one recognised face; shadow matches are logged and
    /// counted here.
    pub fn rule_on(
        &self,
        r: &Recognised,
        summary: &Summary,
        kind: MediaKind,
        ctx: &super::Context,
        now: std::time::SystemTime,
    ) -> Result<Ruling, String> {
        let identity = &r.identity.identity;
        let license = ctx
            .licensee
            .as_deref()
            .and_then(|who| self.licenses.active_for(&identity.id, who, kind, now));
        let input = PolicyInput {
            request: RequestInfo {
                method: ctx.method.clone(),
                path: ctx.path.clone(),
                route: ctx.route.clone(),
                headers: ctx.headers.clone(),
            },
            licensee: ctx.licensee.clone().unwrap_or_default(),
            media: MediaInfo {
                kind: kind.as_str().into(),
                width: summary.width.unwrap_or(0).into(),
                height: summary.height.unwrap_or(0).into(),
                frame: r.face.frame,
            },
            face: MatchInfo {
                identity: identity.id.clone(),
                protection: identity.protection.as_str().into(),
                similarity: r.identity.similarity.into(),
            },
            license: match &license {
                Some(l) => LicenseInfo {
                    active: true,
                    id: l.id.clone(),
                    usages: l.usages.clone(),
                    obligations: l
                        .obligations
                        .iter()
                        .map(|o| o.as_str().to_string())
                        .collect(),
                    valid_until: l.valid_until.clone().unwrap_or_default(),
                },
                None => LicenseInfo::default(),
            },
            signals: Default::default(),
        };
        let policy = self.policy.current();
        let outcome = policy.evaluate(&input)?;
        for rule in &outcome.shadow {
            self.metrics.policy_shadow.with_label_values(&[rule]).inc();
            tracing::info!(target: "likeguard::audit", rule, identity = %identity.id, policy = %policy.version, "shadow rule matched (not enforced)");
        }
        Ok(Ruling {
            action: outcome.action,
            rule: outcome.rule,
            policy_version: policy.version.clone(),
            license,
            shadow: outcome.shadow,
            headers: outcome.headers,
            visible: outcome.visible,
        })
    }
}

/// The proxy's face inspector: every face matching an enrolled identity is ruled on by the
/// policy in force (`policies/default.yaml` unless configured).
pub struct FaceInspector {
    service: Arc<FaceService>,
    /// Findings by (content, registry, licenses, policy, request) — see `cache_key`.
    cache: moka::sync::Cache<[u8; 32], Arc<Vec<Finding>>>,
}

/// Most cached decisions, and how long one lives at most.
const CACHE_ENTRIES: u64 = 10_000;
const CACHE_TTL: std::time::Duration = std::time::Duration::from_secs(600);

/// Everything a face finding depends on: the bytes, the registry, licenses and policy versions
/// (any enrolment, erasure, grant, revocation or reload changes the key, so no hit outlives
/// one) and the request fields the policy can see.
fn cache_key(
    service: &FaceService,
    sha256: [u8; 32],
    kind: MediaKind,
    ctx: &super::Context,
) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(sha256);
    h.update(service.registry.version().to_le_bytes());
    h.update(service.licenses.version().to_le_bytes());
    h.update(service.policy.current().version.as_bytes());
    for field in [
        kind.as_str(),
        ctx.licensee.as_deref().unwrap_or(""),
        &ctx.method,
        &ctx.path,
        &ctx.route,
    ] {
        h.update((field.len() as u64).to_le_bytes());
        h.update(field.as_bytes());
    }
    for (name, value) in &ctx.headers {
        for field in [name, value] {
            h.update((field.len() as u64).to_le_bytes());
            h.update(field.as_bytes());
        }
    }
    h.finalize().into()
}

pub const INSPECTOR: &str = "faces";

impl FaceInspector {
    pub fn new(service: Arc<FaceService>) -> Self {
        Self {
            service,
            cache: moka::sync::Cache::builder()
                .max_capacity(CACHE_ENTRIES)
                .time_to_live(CACHE_TTL)
                .build(),
        }
    }
}

#[async_trait::async_trait]
impl super::Inspector for FaceInspector {
    fn name(&self) -> &'static str {
        INSPECTOR
    }

    async fn inspect(
        &self,
        item: &crate::extract::MediaItem,
        ctx: &super::Context,
    ) -> Result<Vec<Finding>, super::InspectError> {
        // Nobody enrolled: nothing to recognise, no decode.
        if self.service.registry.is_empty() || item.media.kind == MediaKind::Audio {
            return Ok(Vec::new());
        }
        let fail = |(detail, cause): (String, super::Cause)| super::InspectError {
            inspector: INSPECTOR,
            detail,
            cause,
        };
        let service = self.service.clone();
        let cache = self.cache.clone();
        let (data, kind, ctx) = (item.data.clone(), item.media.kind, ctx.clone());
        let digest = item.digest.clone();
        let index = item.index;
        // Hashing, decode, inference and policy: CPU work, off the runtime.
        let found = tokio::task::spawn_blocking(move || {
            let key = cache_key(&service, digest.of(&data), kind, &ctx);
            if let Some(hit) = cache.get(&key) {
                return Ok(hit);
            }
            let now = std::time::SystemTime::now();
            // Each face is ruled on as its frame is decoded; the first block ends the decode
            // (nothing outranks it, so the rest of the medium cannot change the decision).
            let mut rulings = Vec::new();
            let mut rule_failure = None;
            let decoded = service.recognise_until(data, Some(kind), &mut |r, (width, height)| {
                let seen = Summary {
                    width: Some(width),
                    height: Some(height),
                    ..Summary::default()
                };
                match service.rule_on(r, &seen, kind, &ctx, now) {
                    Ok(ruling) => {
                        let block = ruling.action == Action::Block;
                        rulings.push(ruling);
                        if block {
                            ControlFlow::Break(())
                        } else {
                            ControlFlow::Continue(())
                        }
                    }
                    Err(e) => {
                        rule_failure = Some(e);
                        ControlFlow::Break(())
                    }
                }
            });
            if let Some(e) = rule_failure {
                return Err((e, super::Cause::Failed));
            }
            let (summary, recognised) = decoded.map_err(|e| {
                use super::Cause;
                let cause = match &e {
                    FaceScanError::Inference(InferenceError::Overloaded { .. }) => Cause::Overloaded,
                    FaceScanError::Decode(DecodeError::Corrupt(_) | DecodeError::Empty) => {
                        Cause::Corrupt
                    }
                    FaceScanError::Decode(DecodeError::Unsupported(_)) => Cause::Unsupported,
                    _ => Cause::Failed,
                };
                (e.to_string(), cause)
            })?;
            // A license with an end date can lapse without any change: not cached.
            let mut cacheable = true;
            let findings = recognised
                .iter()
                .zip(rulings)
                .map(|(r, ruling)| {
                    cacheable &= ruling
                        .license
                        .as_ref()
                        .is_none_or(|l| l.valid_until.is_none());
                    let [x, y, w, h] = r.face.face.bbox;
                    let license = ruling.license.as_ref().map(|l| l.id.clone());
                    let licensed = license
                        .as_ref()
                        .map(|id| format!(", license {id}"))
                        .unwrap_or_default();
                    Finding {
                        item: index,
                        inspector: INSPECTOR,
                        action: ruling.action,
                        rule: ruling.rule,
                        headers: ruling.headers,
                        visible: ruling.visible,
                        license,
                        policy_version: Some(ruling.policy_version.clone()),
                        identity: Some((
                            r.identity.identity.id.clone(),
                            r.identity.similarity,
                        )),
                        // The identity's id, never its name: decisions may reach clients.
                        detail: format!(
                            "face matches identity {} ({}) with similarity {:.3} in frame {} at [{x:.0}, {y:.0}, {w:.0}, {h:.0}]{licensed}, policy {}",
                            r.identity.identity.id,
                            r.identity.identity.protection.as_str(),
                            r.identity.similarity,
                            r.face.frame,
                            ruling.policy_version
                        ),
                    }
                })
                .collect::<Vec<_>>();
            // Part of the medium went unseen: a block found in the part seen stands (nothing
            // outranks it); anything less is no finding at all.
            if let Some(incomplete) = &summary.incomplete
                && !findings.iter().any(|f| f.action == Action::Block)
            {
                return Err((incomplete.to_string(), super::Cause::Incomplete));
            }
            let findings = Arc::new(findings);
            if cacheable {
                cache.insert(key, findings.clone());
                service
                    .metrics
                    .decision_cache
                    .set(i64::try_from(cache.entry_count()).unwrap_or(i64::MAX));
            }
            Ok(findings)
        })
        .await
        .map_err(|e| fail((format!("recognition task failed: {e}"), super::Cause::Failed)))?
        .map_err(fail)?;
        // Same bytes may sit at another position in this body.
        Ok(found
            .iter()
            .cloned()
            .map(|mut f| {
                f.item = index;
                f
            })
            .collect())
    }
}
