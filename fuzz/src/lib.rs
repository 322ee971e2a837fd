//! What the fuzz targets share.

use std::time::{Duration, Instant};

use bytes::Bytes;
use likeguard::config::ExtractConfig;
use likeguard::extract::{self, BodyClass, Found};

/// Extract `body` as declared by `content_type` (and `Content-Encoding`), narrowed by JSON
/// `pointers`, under the default bounds and a 2 s deadline. The class and what was found.
pub fn extract(
    content_type: &str,
    coding: Option<&str>,
    body: &[u8],
    pointers: &[&str],
) -> Option<(BodyClass, Found)> {
    let mut headers = http::HeaderMap::new();
    if !content_type.is_empty() {
        headers.insert("content-type", http::HeaderValue::from_str(content_type).ok()?);
    }
    if let Some(c) = coding {
        headers.insert("content-encoding", http::HeaderValue::from_str(c).ok()?);
    }
    let cfg = ExtractConfig {
        json_pointers: pointers.iter().map(|p| p.to_string()).collect(),
        ..ExtractConfig::default()
    };
    let class = extract::classify(&headers, &cfg);
    let deadline = Instant::now() + Duration::from_secs(2);
    let found =
        extract::extract_blocking(&class, Bytes::copy_from_slice(body), &cfg, 64, deadline).ok()?;
    Some((class, found))
}

/// A valid 1×1 PNG.
pub fn png() -> Bytes {
    Bytes::from_static(&[
        0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44,
        0x52, 0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1f,
        0x15, 0xc4, 0x89, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9c, 0x63, 0x60,
        0x00, 0x02, 0x00, 0x00, 0x05, 0x00, 0x01, 0xe9, 0xfa, 0xdc, 0xd8, 0x00, 0x00, 0x00, 0x00,
        0x49, 0x45, 0x4e, 0x44, 0xae, 0x42, 0x60, 0x82,
    ])
}
