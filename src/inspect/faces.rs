//! Faces in a media item: decode (sampled frames) → detect → optionally embed, with boxes in
//! the source's pixel coordinates. Blocking: run it off the async runtime.

use std::ops::ControlFlow;

use bytes::Bytes;

use crate::extract::MediaKind;
use crate::inference::{Embedding, Face, FaceEngine, Image, InferenceError};
use crate::media::{DecodeError, Decoder, Input, Output, Summary};

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
    let mut found = Vec::new();
    let mut failure = None;
    let mut frames = Vec::new();
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
                frames.push((frame.index, frame.width));
                for (face, embedding) in faces.into_iter().zip(embeddings) {
                    found.push(FoundFace {
                        frame: frame.index,
                        face,
                        embedding,
                    });
                }
                ControlFlow::Continue(())
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
    // Frames are scaled to `media.max_side`; report boxes in the source's pixels.
    if let Some(source_w) = summary.width {
        for f in &mut found {
            if let Some((_, frame_w)) = frames.iter().find(|(i, _)| *i == f.frame)
                && *frame_w > 0
            {
                f.face = f.face.scaled(source_w as f32 / *frame_w as f32);
            }
        }
    }
    Ok((summary, found))
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
    pub registry: std::sync::Arc<crate::registry::Registry>,
    pub licenses: std::sync::Arc<crate::license::Licenses>,
}

impl FaceService {
    /// Identity matches for every face of every sampled frame of `data`. Blocking.
    pub fn matches(
        &self,
        data: Bytes,
        kind: Option<MediaKind>,
    ) -> Result<Vec<(FoundFace, crate::registry::Match)>, FaceScanError> {
        let (_, found) = faces_in_media(&self.decoder, &self.engine, data, kind, true)?;
        let threshold = self.engine.threshold();
        Ok(found
            .into_iter()
            .filter_map(|f| {
                let m = self.registry.search(f.embedding.as_ref()?, threshold)?;
                Some((f, m))
            })
            .collect())
    }
}

/// What one recognised face leads to.
#[derive(Debug, Clone)]
pub struct Ruling {
    pub action: crate::policy::Action,
    pub rule: String,
    /// The license in force for the requester, when there is one.
    pub license: Option<crate::license::License>,
}

impl FaceService {
    /// The built-in rule set (until policy files): an active license for the requester applies
    /// its obligations; otherwise the identity's protection decides.
    pub fn rule_on(
        &self,
        m: &crate::registry::Match,
        licensee: Option<&str>,
        kind: MediaKind,
        now: std::time::SystemTime,
    ) -> Ruling {
        use crate::license::Obligation;
        use crate::policy::Action;
        use crate::registry::Protection;
        let license =
            licensee.and_then(|who| self.licenses.active_for(&m.identity.id, who, kind, now));
        match license {
            Some(l) => {
                let action = if l.obligations.contains(&Obligation::Watermark) {
                    Action::Watermark
                } else if l.obligations.contains(&Obligation::Tag) {
                    Action::Tag
                } else {
                    Action::Allow
                };
                Ruling {
                    action,
                    rule: "license.obligations".into(),
                    license: Some(l),
                }
            }
            None => {
                let protection = m.identity.protection;
                Ruling {
                    action: match protection {
                        Protection::Strict => Action::Block,
                        Protection::Standard => Action::Tag,
                        Protection::Monitor => Action::Allow,
                    },
                    rule: format!("identity.{}", protection.as_str()),
                    license: None,
                }
            }
        }
    }
}

/// The proxy's face inspector: a face matching an enrolled identity becomes a finding. Without
/// a license for the request's licensee the identity's protection decides (strict → block,
/// standard → tag, monitor → allow, recorded); with an active license its obligations do
/// (watermark → watermark, tag → tag, none → allow). Rule files (CEL) are to refine this.
pub struct FaceInspector {
    service: std::sync::Arc<FaceService>,
}

pub const INSPECTOR: &str = "faces";

impl FaceInspector {
    pub fn new(service: std::sync::Arc<FaceService>) -> Self {
        Self { service }
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
    ) -> Result<Vec<crate::policy::Finding>, super::InspectError> {
        use crate::policy::Finding;
        // Nobody enrolled: nothing to recognise, no decode.
        if self.service.registry.is_empty() || item.media.kind == MediaKind::Audio {
            return Ok(Vec::new());
        }
        let service = self.service.clone();
        let (data, kind) = (item.data.clone(), item.media.kind);
        let found = tokio::task::spawn_blocking(move || service.matches(data, Some(kind)))
            .await
            .map_err(|e| super::InspectError {
                inspector: INSPECTOR,
                detail: format!("recognition task failed: {e}"),
            })?
            .map_err(|e| super::InspectError {
                inspector: INSPECTOR,
                detail: e.to_string(),
            })?;
        let now = std::time::SystemTime::now();
        Ok(found
            .into_iter()
            .map(|(face, m)| {
                let protection = m.identity.protection;
                let ruling = self
                    .service
                    .rule_on(&m, ctx.licensee.as_deref(), kind, now);
                let (action, rule) = (ruling.action, ruling.rule);
                let licensed = ruling
                    .license
                    .map(|l| format!(", license {}", l.id))
                    .unwrap_or_default();
                let [x, y, w, h] = face.face.bbox;
                Finding {
                    item: item.index,
                    inspector: INSPECTOR,
                    action,
                    rule,
                    // The identity's id, never its name: decisions may reach clients.
                    detail: format!(
                        "face matches identity {} ({}) with similarity {:.3} in frame {} at [{x:.0}, {y:.0}, {w:.0}, {h:.0}]{licensed}",
                        m.identity.id,
                        protection.as_str(),
                        m.similarity,
                        face.frame
                    ),
                }
            })
            .collect())
    }
}
