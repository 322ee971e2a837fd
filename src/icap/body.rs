//! The encapsulated body as it arrives: the preview, the `100 Continue` that asks for the
//! rest, and the rest — each piece read through the strict chunk decoder.

use bytes::Bytes;
use tokio::time::Instant;

use super::chunk::{Dechunker, Piece};
use super::conn::{Conn, ConnError};
use super::head::{Body, Head};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading the preview (the first `Preview` bytes at most).
    Preview { left: usize },
    /// The preview ended without `ieof`: the rest comes only after `100 Continue`.
    AwaitContinue,
    /// Reading the body (after `100 Continue`, or with no preview at all).
    Rest,
    /// All of it read (or there was none).
    Done,
}

pub struct BodyIn {
    dechunker: Dechunker,
    state: State,
}

impl BodyIn {
    pub fn new(head: &Head) -> Self {
        let state = match (head.encapsulated.body, head.preview) {
            (Body::Null, _) => State::Done,
            (Body::Chunked, Some(n)) => State::Preview { left: n },
            (Body::Chunked, None) => State::Rest,
        };
        Self {
            dechunker: Dechunker::default(),
            state,
        }
    }

    /// Whether an answer now is an answer to a preview: the client sends nothing more, and
    /// `204` is allowed whatever `Allow` said (RFC 3507 §4.6).
    pub fn in_preview(&self) -> bool {
        matches!(self.state, State::Preview { .. } | State::AwaitContinue)
    }

    pub fn awaiting_continue(&self) -> bool {
        self.state == State::AwaitContinue
    }

    pub fn done(&self) -> bool {
        self.state == State::Done
    }

    /// The next data of the current part; `None` at its end (then see `awaiting_continue`).
    pub async fn next(
        &mut self,
        conn: &mut Conn,
        deadline: Instant,
    ) -> Result<Option<Bytes>, ConnError> {
        let preview = match self.state {
            State::Preview { .. } => true,
            State::Rest => false,
            State::AwaitContinue | State::Done => return Ok(None),
        };
        match conn.piece(&mut self.dechunker, deadline).await? {
            Piece::Data(b) => {
                if let State::Preview { left } = &mut self.state {
                    *left = left.checked_sub(b.len()).ok_or_else(|| {
                        ConnError::Head(super::head::HeadError::Malformed(
                            "the preview is longer than its Preview header says".into(),
                        ))
                    })?;
                }
                Ok(Some(b))
            }
            Piece::End { ieof } => {
                self.state = match (preview, ieof) {
                    (true, false) => State::AwaitContinue,
                    (true, true) => State::Done,
                    (false, false) => State::Done,
                    (false, true) => {
                        return Err(ConnError::Head(super::head::HeadError::Malformed(
                            "ieof outside a preview".into(),
                        )));
                    }
                };
                Ok(None)
            }
        }
    }

    /// Ask for the rest after a preview (`100 Continue`).
    pub async fn resume(&mut self, conn: &mut Conn) -> Result<(), ConnError> {
        if self.state == State::AwaitContinue {
            conn.write_continue().await?;
            self.dechunker = Dechunker::default();
            self.state = State::Rest;
        }
        Ok(())
    }

    /// Read what is left of the preview, discarding it (before a final answer to a preview).
    pub async fn finish_preview(
        &mut self,
        conn: &mut Conn,
        deadline: Instant,
    ) -> Result<(), ConnError> {
        while matches!(self.state, State::Preview { .. }) {
            self.next(conn, deadline).await?;
        }
        Ok(())
    }

    /// Read and discard the rest of the body, at most `max` bytes; `true` when it ended.
    pub async fn drain(
        &mut self,
        conn: &mut Conn,
        deadline: Instant,
        max: usize,
    ) -> Result<bool, ConnError> {
        let mut seen = 0usize;
        while self.state == State::Rest {
            match self.next(conn, deadline).await? {
                Some(b) => seen += b.len(),
                None => break,
            }
            if seen > max {
                return Ok(false);
            }
        }
        Ok(true)
    }
}
