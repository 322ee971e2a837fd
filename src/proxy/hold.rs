//! Reading a client's request body from pingora: a first look at its opening bytes, and the
//! whole body into a `capture::BodyBuf`.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use pingora::proxy::Session;
use tokio::time::{Instant, timeout, timeout_at};

use crate::capture::{BodyBuf, CaptureError};

pub(super) use crate::extract::SNIFF_BYTES;

/// The opening bytes of a body, read as it arrives.
#[derive(Default)]
pub(super) struct Peeked {
    pub bytes: Bytes,
    /// The body ended within them.
    pub ended: bool,
}

/// Read until `SNIFF_BYTES` have arrived or the body ends (each chunk within `read_timeout`).
pub(super) async fn peek_request_body(
    session: &mut Session,
    read_timeout: Duration,
) -> Result<Peeked, CaptureError> {
    let mut first: Option<Bytes> = None;
    let mut gathered: Option<BytesMut> = None;
    loop {
        let have = gathered
            .as_ref()
            .map_or_else(|| first.as_ref().map_or(0, Bytes::len), BytesMut::len);
        if have >= SNIFF_BYTES {
            break;
        }
        let chunk = timeout(read_timeout, session.read_request_body())
            .await
            .map_err(|_| CaptureError::Timeout)?
            .map_err(|e| read_error(&e))?;
        let Some(chunk) = chunk else {
            return Ok(Peeked {
                bytes: joined(first, gathered),
                ended: true,
            });
        };
        match (&first, &mut gathered) {
            (None, _) => first = Some(chunk),
            (Some(f), None) => {
                let mut g = BytesMut::with_capacity(f.len() + chunk.len());
                g.extend_from_slice(f);
                g.extend_from_slice(&chunk);
                gathered = Some(g);
            }
            (Some(_), Some(g)) => g.extend_from_slice(&chunk),
        }
    }
    Ok(Peeked {
        bytes: joined(first, gathered),
        ended: session.is_body_done(),
    })
}

fn joined(first: Option<Bytes>, gathered: Option<BytesMut>) -> Bytes {
    gathered.map_or_else(|| first.unwrap_or_default(), BytesMut::freeze)
}

/// Read a client's whole request body after `prefix` (what a peek already took): at most
/// `limit` bytes in all, each chunk within `read_timeout`, the whole body within `total`.
pub(super) async fn read_request_body(
    session: &mut Session,
    prefix: Peeked,
    content_length: Option<u64>,
    limit: u64,
    read_timeout: Duration,
    total: Duration,
) -> Result<Bytes, CaptureError> {
    if content_length.is_some_and(|n| n > limit) {
        return Err(CaptureError::TooLarge { limit });
    }
    let deadline = Instant::now() + total;
    let mut buf = BodyBuf::new(limit, content_length);
    if !prefix.bytes.is_empty() {
        buf.push(prefix.bytes)?;
    }
    if prefix.ended {
        return Ok(buf.finish());
    }
    loop {
        let next = Instant::now() + read_timeout;
        let chunk = timeout_at(next.min(deadline), session.read_request_body())
            .await
            .map_err(|_| CaptureError::Timeout)?
            .map_err(|e| read_error(&e))?;
        match chunk {
            Some(c) => buf.push(c)?,
            None => return Ok(buf.finish()),
        }
    }
}

/// Classify a pingora read error: its own read timeout (`Session::set_read_timeout`) is a
/// slow client like ours, anything else a broken connection.
pub(super) fn read_error(e: &pingora::Error) -> CaptureError {
    match e.etype() {
        pingora::ErrorType::ReadTimedout => CaptureError::Timeout,
        _ => CaptureError::Connection(e.to_string()),
    }
}
