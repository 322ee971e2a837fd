//! `Content-Encoding`: compressed bodies are inflated for inspection (bounded like any other
//! decoding); when allowed they go on as they came, and a changed body goes on uncompressed.

use bytes::Bytes;

use super::ExtractError;
use super::location::Location;
use super::walk::{Walker, read_error};

/// A content coding likeguard can undo.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Coding {
    Gzip,
    /// HTTP's `deflate` is zlib-wrapped (RFC 9110 §8.4.1.2); raw deflate is accepted too.
    Deflate,
    Br,
    Zstd,
}

impl Coding {
    /// The coding named by one `Content-Encoding` token; `None` for one we cannot undo.
    pub fn parse(token: &str) -> Option<Self> {
        match token {
            "gzip" | "x-gzip" => Some(Self::Gzip),
            "deflate" => Some(Self::Deflate),
            "br" => Some(Self::Br),
            "zstd" => Some(Self::Zstd),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Gzip => "gzip",
            Self::Deflate => "deflate",
            Self::Br => "br",
            Self::Zstd => "zstd",
        }
    }
}

/// Undo `codings` (listed in the order they were applied) on `body`.
pub(super) fn decode(
    w: &mut Walker<'_>,
    body: Bytes,
    codings: &[Coding],
) -> Result<Bytes, ExtractError> {
    let loc = Location::body();
    let mut data = body;
    for coding in codings.iter().rev() {
        let input = &data[..];
        let out = match coding {
            Coding::Gzip => w.read_bounded(flate2::read::MultiGzDecoder::new(input), 0),
            Coding::Deflate => {
                let zlib =
                    input.len() >= 2 && u16::from_be_bytes([input[0], input[1]]).is_multiple_of(31);
                if zlib {
                    w.read_bounded(flate2::read::ZlibDecoder::new(input), 0)
                } else {
                    w.read_bounded(flate2::read::DeflateDecoder::new(input), 0)
                }
            }
            Coding::Br => w.read_bounded(brotli_decompressor::Decompressor::new(input, 4096), 0),
            Coding::Zstd => super::archive::zstd_reader(input).and_then(|d| w.read_bounded(d, 0)),
        }
        .map_err(|e| match read_error(e, coding.as_str(), &loc) {
            ExtractError::Malformed { detail, .. } => ExtractError::Malformed {
                format: "Content-Encoding",
                detail: format!("{}: {detail}", coding.as_str()),
            },
            other => other,
        })?;
        data = Bytes::from(out);
    }
    Ok(data)
}
