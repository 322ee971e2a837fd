//! Capture: holding a body in memory for `hold` inspection, bounded in size (the transport
//! bounds the time: `proxy` reads, this module keeps).
//!
//! A body that arrives in one chunk is kept as that chunk (no copy); only multi-chunk bodies
//! are gathered into one buffer, allocated once from Content-Length when it is known.

use bytes::{Bytes, BytesMut};
use http::HeaderMap;

use crate::actions::{Problem, ProblemKind};

#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("body is larger than the inspection limit of {limit} bytes")]
    TooLarge { limit: u64 },
    #[error("body not received in time")]
    Timeout,
    #[error("connection error while reading the body: {0}")]
    Connection(String),
}

/// The length a message is framed by: every Content-Length value (repeated headers and comma
/// lists, which pingora accepts when they agree) must be the same number.
pub fn content_length(headers: &HeaderMap) -> Result<Option<u64>, Problem> {
    let mut found = None;
    for v in headers.get_all(http::header::CONTENT_LENGTH) {
        for part in v.to_str().unwrap_or("x").split(',') {
            let n = part.trim().parse::<u64>().map_err(|_| {
                Problem::new(ProblemKind::BadRequest, "Content-Length is not a number")
            })?;
            if found.is_some_and(|f| f != n) {
                return Err(Problem::new(
                    ProblemKind::AmbiguousRequest,
                    "Content-Length values disagree",
                ));
            }
            found = Some(n);
        }
    }
    Ok(found)
}

/// Accumulates a body up to a limit.
pub struct BodyBuf {
    first: Option<Bytes>,
    rest: Option<BytesMut>,
    len: u64,
    limit: u64,
    capacity_hint: usize,
}

impl BodyBuf {
    pub fn new(limit: u64, content_length: Option<u64>) -> Self {
        Self {
            first: None,
            rest: None,
            len: 0,
            limit,
            capacity_hint: content_length.unwrap_or(0).min(limit) as usize,
        }
    }

    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Add a chunk; `Err` once the total would pass the limit (the chunk is still kept, so
    /// a fail-open caller can forward everything it read).
    pub fn push(&mut self, chunk: Bytes) -> Result<(), CaptureError> {
        self.len += chunk.len() as u64;
        match (&mut self.first, &mut self.rest) {
            (None, _) => self.first = Some(chunk),
            (Some(first), None) => {
                let mut buf =
                    BytesMut::with_capacity(self.capacity_hint.max(first.len() + chunk.len()));
                buf.extend_from_slice(first);
                buf.extend_from_slice(&chunk);
                self.rest = Some(buf);
            }
            (Some(_), Some(buf)) => buf.extend_from_slice(&chunk),
        }
        if self.len > self.limit {
            return Err(CaptureError::TooLarge { limit: self.limit });
        }
        Ok(())
    }

    pub fn finish(self) -> Bytes {
        match (self.rest, self.first) {
            (Some(buf), _) => buf.freeze(),
            (None, Some(b)) => b,
            (None, None) => Bytes::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_chunk_is_not_copied() {
        let chunk = Bytes::from_static(b"hello world");
        let mut b = BodyBuf::new(100, None);
        b.push(chunk.clone()).unwrap();
        let out = b.finish();
        assert_eq!(out.as_ptr(), chunk.as_ptr());
    }

    #[test]
    fn chunks_gather_and_limit_holds() {
        let mut b = BodyBuf::new(8, Some(8));
        b.push(Bytes::from_static(b"abcd")).unwrap();
        b.push(Bytes::from_static(b"efgh")).unwrap();
        assert!(matches!(
            b.push(Bytes::from_static(b"i")),
            Err(CaptureError::TooLarge { limit: 8 })
        ));
        assert_eq!(&b.finish()[..], b"abcdefghi");
    }
}
