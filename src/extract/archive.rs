//! Archives and compressed streams inside bodies: zip, tar, gzip, zstd. Every member is walked
//! (a training-data upload is a zip of photos); member count, bytes produced and time are
//! bounded, so a zip bomb or a gzip bomb costs at most `max_expanded` bytes.

use std::io::Cursor;

use bytes::Bytes;

use super::ExtractError;
use super::location::{Location, Step};
use super::walk::{Hint, Walker, read_error};

fn malformed(format: &'static str, loc: &Location, e: impl std::fmt::Display) -> ExtractError {
    ExtractError::Malformed {
        format,
        detail: format!("{loc}: {e}"),
    }
}

fn too_many(loc: &Location, max: usize) -> ExtractError {
    ExtractError::Limit(format!(
        "{loc}: archive has more than {max} members (inspect.extract.max_members)"
    ))
}

pub(super) fn zip(w: &mut Walker<'_>, data: &[u8], loc: &Location) -> Result<(), ExtractError> {
    let mut zip =
        ::zip::ZipArchive::new(Cursor::new(data)).map_err(|e| malformed("zip", loc, e))?;
    if zip.len() > w.cfg.max_members {
        return Err(too_many(loc, w.cfg.max_members));
    }
    // Where each member's local header and data are: a local header outside them is an entry
    // the central directory does not list, which streaming unzippers would still extract.
    let mut known: Vec<(u64, u64)> = Vec::with_capacity(zip.len());
    for i in 0..zip.len() {
        w.tick()?;
        let member = match zip.by_index(i) {
            Ok(m) => m,
            // Encrypted members and compression methods we do not build cannot be seen into.
            Err(::zip::result::ZipError::UnsupportedArchive(why)) => {
                return Err(ExtractError::Unsupported(format!(
                    "{loc}: zip member {i}: {why}"
                )));
            }
            Err(e) => return Err(malformed("zip", loc, e)),
        };
        let start = member.header_start();
        // The local header must say what the directory says: a member stored per one and
        // deflated per the other reads as two different files to two kinds of unzipper.
        let local_method = usize::try_from(start)
            .ok()
            .and_then(|at| data.get(at + 8..at + 10))
            .map(|m| u16::from_le_bytes([m[0], m[1]]));
        let listed_method = match member.compression() {
            ::zip::CompressionMethod::Stored => Some(0u16),
            ::zip::CompressionMethod::Deflated => Some(8),
            _ => None,
        };
        if listed_method.is_some() && local_method != listed_method {
            return Err(ExtractError::Unsupported(format!(
                "{loc}: zip member {i}: its local header and the directory disagree on how it is stored"
            )));
        }
        let data_end = member
            .data_start()
            .map_or(start, |d| d.saturating_add(member.compressed_size()));
        known.push((start, data_end.max(start + 1)));
        if member.is_dir() && member.size() == 0 {
            continue;
        }
        let at = loc.then(Step::Member {
            path: member.name().to_owned(),
        });
        let size = member.size();
        // The zip crate checks each member's CRC when it reaches the end.
        let bytes = w
            .read_bounded(member, size)
            .map_err(|e| read_error(e, "zip", &at))?;
        w.blob(Bytes::from(bytes), &at, Hint::None)?;
    }
    unlisted_entries(data, &known, loc)
}

/// Refuse a zip with local entries its central directory does not list (outside every listed
/// member's header and data, so a stored zip inside a member does not count).
/// Bytes before the archive count too: a streaming unzipper starts reading there.
fn unlisted_entries(data: &[u8], known: &[(u64, u64)], loc: &Location) -> Result<(), ExtractError> {
    for pos in memchr::memmem::find_iter(data, b"PK\x03\x04") {
        let pos = pos as u64;
        let covered = known
            .iter()
            .any(|(header, end)| *header <= pos && pos < *end);
        if !covered {
            return Err(ExtractError::Unsupported(format!(
                "{loc}: zip holds a local entry at byte {pos} that its directory does not list"
            )));
        }
    }
    Ok(())
}

pub(super) fn tar(w: &mut Walker<'_>, data: &[u8], loc: &Location) -> Result<(), ExtractError> {
    let mut archive = ::tar::Archive::new(Cursor::new(data));
    let entries = archive.entries().map_err(|e| malformed("tar", loc, e))?;
    for (n, entry) in entries.enumerate() {
        w.tick()?;
        if n == w.cfg.max_members {
            return Err(too_many(loc, w.cfg.max_members));
        }
        let entry = entry.map_err(|e| malformed("tar", loc, e))?;
        // Regular, contiguous and sparse entries carry file data (GNU tar and Python extract
        // all three); links, directories and metadata entries do not.
        let kind = entry.header().entry_type();
        if !(kind.is_file() || kind.is_contiguous() || kind.is_gnu_sparse()) {
            continue;
        }
        let path = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let at = loc.then(Step::Member { path });
        let size = entry.size();
        let bytes = w
            .read_bounded(entry, size)
            .map_err(|e| read_error(e, "tar", &at))?;
        w.blob(Bytes::from(bytes), &at, Hint::None)?;
    }
    Ok(())
}

/// A gzip or zstd stream inside a body (a `.tar.gz`, a gzipped photo).
pub(super) fn inflate(
    w: &mut Walker<'_>,
    data: &[u8],
    loc: &Location,
    coding: &'static str,
) -> Result<(), ExtractError> {
    let bytes = match coding {
        "gzip" => w.read_bounded(flate2::read::MultiGzDecoder::new(data), 0),
        _ => zstd_reader(data).and_then(|d| w.read_bounded(d, 0)),
    }
    .map_err(|e| read_error(e, coding, loc))?;
    let at = loc.then(Step::Decompressed { coding });
    w.blob(Bytes::from(bytes), &at, Hint::None)
}

/// A zstd decoder whose window is capped at 8 MiB (RFC 9659's limit for HTTP): a frame asking
/// for more memory is an error, not an allocation.
pub(super) fn zstd_reader(data: &[u8]) -> std::io::Result<impl std::io::Read + '_> {
    let mut d = zstd::stream::read::Decoder::new(data)?;
    d.window_log_max(23)?;
    Ok(d)
}
