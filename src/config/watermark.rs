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
    /// Prefer the environment variable. Unset: `likeguard serve` generates one at first start
    /// and keeps it in `state_dir/watermark.key` (mode 0600).
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

/// Keys that protect nothing: the public default of earlier versions, and placeholders.
const WELL_KNOWN_KEYS: &[&str] = &["likeguard-public-default", "changeme", "secret", "test"];

/// File in `state_dir` holding a generated key.
pub const KEY_FILE: &str = "watermark.key";

/// Where the key in force came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeySource {
    Environment,
    Config,
    /// Read from `state_dir/watermark.key`.
    StateFile,
    /// Generated now and written to `state_dir/watermark.key`.
    Generated,
}

impl WatermarkConfig {
    /// The key: `LIKEGUARD_WATERMARK_KEY`, else `watermark.key`, else a random key for this
    /// process only (library users and tests; `serve` and the CLI call `resolve_key` first).
    /// There is no public default: a mark made with a known key could be read and forged.
    pub fn key(&self) -> String {
        static EPHEMERAL: std::sync::LazyLock<String> = std::sync::LazyLock::new(random_key);
        std::env::var(WATERMARK_KEY_ENV)
            .ok()
            .filter(|k| !k.is_empty())
            .or_else(|| self.key.clone())
            .unwrap_or_else(|| EPHEMERAL.clone())
    }

    /// Settle the key for a process that marks or reads marks: the environment or the config,
    /// else the key kept in `state_dir/watermark.key`, generated (256 random bits, hex, mode
    /// 0600) when there is none yet.
    pub fn resolve_key(&mut self, state_dir: &std::path::Path) -> Result<KeySource, String> {
        if std::env::var(WATERMARK_KEY_ENV).is_ok_and(|k| !k.is_empty()) {
            return Ok(KeySource::Environment);
        }
        if self.key.is_some() {
            return Ok(KeySource::Config);
        }
        let path = state_dir.join(KEY_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) if !text.trim().is_empty() => {
                self.key = Some(text.trim().to_string());
                return Ok(KeySource::StateFile);
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(format!("{}: {e}", path.display())),
        }
        let key = random_key();
        std::fs::create_dir_all(state_dir).map_err(|e| format!("{}: {e}", state_dir.display()))?;
        write_private(&path, &key).map_err(|e| format!("{}: {e}", path.display()))?;
        self.key = Some(key);
        Ok(KeySource::Generated)
    }

    /// Why the key in force is unsafe, if it is (a well-known or short key).
    pub fn weak_key(&self) -> Option<String> {
        let key = self.key();
        if WELL_KNOWN_KEYS
            .iter()
            .any(|k| k.eq_ignore_ascii_case(key.trim()))
        {
            return Some(
                "the watermark key is a well-known value: anyone can read and forge the marks"
                    .into(),
            );
        }
        (key.len() < 16).then(|| {
            format!(
                "the watermark key has {} characters: use at least 16 random ones",
                key.len()
            )
        })
    }
}

/// 256 random bits as hex.
fn random_key() -> String {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the operating system's random source");
    hex::encode(bytes)
}

/// Write `text` to a new file readable by its owner only.
fn write_private(path: &std::path::Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()
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

#[cfg(test)]
mod key_tests {
    use super::*;

    #[test]
    fn a_key_is_generated_once_kept_private_and_weak_keys_are_named() {
        if std::env::var(WATERMARK_KEY_ENV).is_ok() {
            return; // the environment decides; nothing to generate
        }
        let dir = tempfile::tempdir().unwrap();
        let mut a = WatermarkConfig::default();
        assert_eq!(a.resolve_key(dir.path()).unwrap(), KeySource::Generated);
        let file = dir.path().join(KEY_FILE);
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(
            std::fs::metadata(&file).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let mut b = WatermarkConfig::default();
        assert_eq!(b.resolve_key(dir.path()).unwrap(), KeySource::StateFile);
        assert_eq!(a.key(), b.key());
        assert_eq!(a.key().len(), 64);
        assert!(a.weak_key().is_none());
        let weak = WatermarkConfig {
            key: Some("likeguard-public-default".into()),
            ..WatermarkConfig::default()
        };
        assert!(weak.weak_key().unwrap().contains("well-known"));
        // Two processes' unset keys are never a shared public value.
        assert_ne!(WatermarkConfig::default().key(), "likeguard-public-default");
    }
}
