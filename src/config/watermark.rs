//! `watermark:` — the invisible mark the `watermark` action puts on images.

use serde::Deserialize;

/// Environment variable holding the watermark key (overrides `watermark.key`).
pub const WATERMARK_KEY_ENV: &str = "LIKEGUARD_WATERMARK_KEY";

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WatermarkConfig {
    /// Mark images when policy says `watermark` (off: such decisions fail, per the route's
    /// `on_failure`).
    pub enabled: bool,
    /// Secret that derives the pattern: only holders of the key can read (or forge) marks.
    /// Prefer the environment variable; the built-in default is public.
    pub key: Option<String>,
    /// Amplitude in 8-bit luminance levels (3.4 keeps PSNR above 40 dB on the testdata photos).
    pub strength: f32,
    /// The visible mark, for rules that ask for one (`visible: true`); unset = none.
    pub visible: Option<VisibleConfig>,
}

impl Default for WatermarkConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            key: None,
            strength: 3.4,
            visible: None,
        }
    }
}

impl WatermarkConfig {
    pub fn key(&self) -> String {
        std::env::var(WATERMARK_KEY_ENV)
            .ok()
            .filter(|k| !k.is_empty())
            .or_else(|| self.key.clone())
            .unwrap_or_else(|| "likeguard-public-default".into())
    }
}

/// `watermark.visible`: the visible mark (text or logo) stamped on watermark decisions whose
/// rule says `visible: true`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VisibleConfig {
    /// Text to stamp (one line), e.g. "AI-generated". Exactly one of `text` and `logo_file`.
    #[serde(default)]
    pub text: Option<String>,
    /// A PNG (with alpha) to stamp instead of text.
    #[serde(default)]
    pub logo_file: Option<std::path::PathBuf>,
    /// TrueType/OpenType font for `text`.
    #[serde(default = "d_font")]
    pub font_file: std::path::PathBuf,
    #[serde(default)]
    pub position: Position,
    /// 0 (invisible) to 1 (opaque).
    #[serde(default = "d_opacity")]
    pub opacity: f32,
    /// Height of the stamp as a share of the picture's shorter side.
    #[serde(default = "d_size")]
    pub size: f32,
    /// Distance from the edges as a share of the shorter side.
    #[serde(default = "d_margin")]
    pub margin: f32,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Position {
    TopLeft,
    TopRight,
    BottomLeft,
    #[default]
    BottomRight,
    Center,
}

fn d_font() -> std::path::PathBuf {
    // Debian's fonts-dejavu-core (scripts/setup-system installs it).
    "/usr/share/fonts/truetype/dejavu/DejaVuSans-Bold.ttf".into()
}
fn d_opacity() -> f32 {
    0.6
}
fn d_size() -> f32 {
    0.06
}
fn d_margin() -> f32 {
    0.03
}
