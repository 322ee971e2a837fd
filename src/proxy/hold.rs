//! Reading a client's request body from pingora into a `capture::BodyBuf`.

use std::time::Duration;

use bytes::Bytes;
use pingora::proxy::Session;
use tokio::time::{Instant, timeout_at};

use crate::capture::{BodyBuf, CaptureError};

/// Read a client's whole request body: at most `limit` bytes, each chunk within `read_timeout`,
/// the whole body within `total`.
pub(super) async fn read_request_body(
    session: &mut Session,
    limit: u64,
    read_timeout: Duration,
    total: Duration,
) -> Result<Bytes, CaptureError> {
    let content_length = session
        .req_header()
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if content_length.is_some_and(|n| n > limit) {
        return Err(CaptureError::TooLarge { limit });
    }
    let deadline = Instant::now() + total;
    let mut buf = BodyBuf::new(limit, content_length);
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
