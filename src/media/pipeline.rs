//! Pipeline descriptions (`pipelines/*.yaml`): loaded and validated once at start.

use std::path::Path;

use gstreamer as gst;
use gstreamer::prelude::*;
use serde::Deserialize;

use super::MediaError;
use crate::media::MediaKind;

const IMAGE: &str = include_str!("../../pipelines/image.yaml");
const VIDEO: &str = include_str!("../../pipelines/video.yaml");
const AUDIO: &str = include_str!("../../pipelines/audio.yaml");

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    kind: String,
    launch: String,
}

/// A launch description with its `{parameters}` filled in, known to parse.
#[derive(Debug, Clone)]
pub struct Template {
    pub kind: MediaKind,
    pub launch: String,
    pub source: String,
}

/// The three templates.
#[derive(Debug, Clone)]
pub struct Templates {
    pub image: Template,
    pub video: Template,
    pub audio: Template,
}

impl Templates {
    pub fn get(&self, kind: MediaKind) -> &Template {
        match kind {
            MediaKind::Image => &self.image,
            MediaKind::Video => &self.video,
            MediaKind::Audio => &self.audio,
        }
    }

    /// Load from `dir` (or the built-in copies), fill parameters, and check each parses into
    /// a pipeline with the required elements.
    pub fn load(dir: Option<&Path>, params: &[(&str, String)]) -> Result<Self, MediaError> {
        let read = |name: &str, builtin: &str| -> Result<(String, String), MediaError> {
            match dir {
                Some(d) => {
                    let p = d.join(name);
                    std::fs::read_to_string(&p)
                        .map(|t| (t, p.display().to_string()))
                        .map_err(|e| MediaError::Pipeline {
                            file: p.display().to_string(),
                            reason: e.to_string(),
                        })
                }
                None => Ok((builtin.to_string(), format!("(built-in) pipelines/{name}"))),
            }
        };
        let one = |name: &str, builtin: &str, kind: MediaKind| -> Result<Template, MediaError> {
            let (text, source) = read(name, builtin)?;
            let bad = |reason: String| MediaError::Pipeline {
                file: source.clone(),
                reason,
            };
            let file: File = serde_yaml_ng::from_str(&text).map_err(|e| bad(e.to_string()))?;
            if file.kind != kind.as_str() {
                return Err(bad(format!(
                    "kind is {:?}, expected {:?}",
                    file.kind,
                    kind.as_str()
                )));
            }
            let mut launch = file.launch;
            for (k, v) in params {
                launch = launch.replace(&format!("{{{k}}}"), v);
            }
            if let Some(i) = launch.find('{') {
                let rest = &launch[i..];
                let end = rest.find('}').map_or(rest.len(), |e| e + 1);
                return Err(bad(format!("unknown parameter {}", &rest[..end])));
            }
            let t = Template {
                kind,
                launch,
                source: source.clone(),
            };
            t.check().map_err(bad)?;
            Ok(t)
        };
        Ok(Self {
            image: one("image.yaml", IMAGE, MediaKind::Image)?,
            video: one("video.yaml", VIDEO, MediaKind::Video)?,
            audio: one("audio.yaml", AUDIO, MediaKind::Audio)?,
        })
    }
}

impl Template {
    /// Parse into a pipeline and find the three named elements.
    pub fn build(&self) -> Result<Built, String> {
        let pipeline = gst::parse::launch(&self.launch)
            .map_err(|e| e.to_string())?
            .downcast::<gst::Pipeline>()
            .map_err(|_| "the description is not a pipeline".to_string())?;
        let by_name = |n: &str| {
            pipeline
                .by_name(n)
                .ok_or_else(|| format!("no element named {n:?}"))
        };
        let src = by_name("src")?
            .downcast::<gstreamer_app::AppSrc>()
            .map_err(|_| "element \"src\" must be an appsrc".to_string())?;
        let sink = by_name("sink")?
            .downcast::<gstreamer_app::AppSink>()
            .map_err(|_| "element \"sink\" must be an appsink".to_string())?;
        let decode = by_name("decode")?;
        if decode.find_property("caps").is_none() || decode.type_().name() != "GstDecodeBin" {
            return Err("element \"decode\" must be a decodebin".into());
        }
        Ok(Built {
            pipeline,
            src,
            decode,
            sink,
        })
    }

    fn check(&self) -> Result<(), String> {
        let b = self.build()?;
        let _ = b.pipeline.set_state(gst::State::Null);
        Ok(())
    }
}

/// A built pipeline and its named parts.
pub struct Built {
    pub pipeline: gst::Pipeline,
    pub src: gstreamer_app::AppSrc,
    pub decode: gst::Element,
    pub sink: gstreamer_app::AppSink,
}
