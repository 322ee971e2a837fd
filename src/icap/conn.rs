//! One ICAP connection's bytes: heads, encapsulated sections and chunked bodies read through
//! the sans-IO parsers, each read bounded in time; answers written as ICAP responses.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout_at};

use super::chunk::{ChunkError, Dechunker, Piece, chunk_header};
use super::head::{self, Head, HeadError};

/// Why a connection stops being read.
#[derive(Debug, thiserror::Error)]
pub enum ConnError {
    #[error("the client closed the connection")]
    Closed,
    #[error("the client sent nothing in time")]
    Timeout,
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Head(#[from] HeadError),
    #[error(transparent)]
    Chunk(#[from] ChunkError),
}

impl ConnError {
    /// The ICAP status a still-listening client is told before the connection closes.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Head(e) => Some(e.status()),
            Self::Chunk(_) => Some(400),
            Self::Timeout => Some(408),
            Self::Closed | Self::Io(_) => None,
        }
    }
}

pub struct Conn {
    stream: TcpStream,
    buf: BytesMut,
    /// Each read waits at most this long.
    read_timeout: Duration,
    /// A final answer to the current request has begun.
    answering: bool,
}

impl Conn {
    pub fn new(stream: TcpStream, read_timeout: Duration) -> Self {
        Self {
            stream,
            buf: BytesMut::with_capacity(16 * 1024),
            read_timeout,
            answering: false,
        }
    }

    pub fn answering(&self) -> bool {
        self.answering
    }

    /// Read more bytes, by `deadline` and within the read timeout.
    async fn fill(&mut self, deadline: Instant) -> Result<(), ConnError> {
        if self.buf.capacity() - self.buf.len() < 4096 {
            self.buf.reserve(16 * 1024);
        }
        let until = deadline.min(Instant::now() + self.read_timeout);
        match timeout_at(until, self.stream.read_buf(&mut self.buf)).await {
            Err(_) => Err(ConnError::Timeout),
            Ok(Ok(0)) => Err(ConnError::Closed),
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(e.into()),
        }
    }

    /// The next ICAP head; `None` when the client closes (or idles past `idle`) between
    /// requests.
    pub async fn head(&mut self, max: usize, idle: Duration) -> Result<Option<Head>, ConnError> {
        self.answering = false;
        if self.buf.is_empty() {
            match timeout_at(Instant::now() + idle, self.stream.read_buf(&mut self.buf)).await {
                Err(_) | Ok(Ok(0)) => return Ok(None),
                Ok(Err(e)) => return Err(e.into()),
                Ok(Ok(_)) => {}
            }
        }
        let deadline = Instant::now() + self.read_timeout;
        loop {
            if let Some((h, len)) = head::parse(&self.buf, max)? {
                let _ = self.buf.split_to(len);
                return Ok(Some(h));
            }
            self.fill(deadline).await?;
        }
    }

    /// Exactly `n` bytes (the encapsulated heads).
    pub async fn take(&mut self, n: usize, deadline: Instant) -> Result<Bytes, ConnError> {
        while self.buf.len() < n {
            self.fill(deadline).await?;
        }
        Ok(self.buf.split_to(n).freeze())
    }

    /// The next piece of a chunked body.
    pub async fn piece(
        &mut self,
        d: &mut Dechunker,
        deadline: Instant,
    ) -> Result<Piece, ConnError> {
        loop {
            if let Some(p) = d.next(&mut self.buf)? {
                return Ok(p);
            }
            self.fill(deadline).await?;
        }
    }

    /// (Part of) a final answer.
    pub async fn write(&mut self, bytes: &[u8]) -> Result<(), ConnError> {
        self.answering = true;
        self.send(bytes).await
    }

    /// Write all of `bytes`, within the read timeout (a client that stops reading does not
    /// hold its connection slot for ever).
    async fn send(&mut self, bytes: &[u8]) -> Result<(), ConnError> {
        match tokio::time::timeout(self.read_timeout, self.stream.write_all(bytes)).await {
            Ok(r) => Ok(r?),
            Err(_) => Err(ConnError::Closed),
        }
    }

    /// `100 Continue`: an interim answer, the final one still to come.
    pub async fn write_continue(&mut self) -> Result<(), ConnError> {
        self.send(b"ICAP/1.0 100 Continue\r\n\r\n").await
    }

    /// One body chunk (nothing for empty data: a zero chunk would end the body).
    pub async fn write_chunk(&mut self, data: &[u8]) -> Result<(), ConnError> {
        if data.is_empty() {
            return Ok(());
        }
        self.send(chunk_header(data.len()).as_bytes()).await?;
        self.send(data).await?;
        self.send(b"\r\n").await
    }

    /// Before closing: stop writing, then read and drop what the client still sends, for at
    /// most `time` and `max` bytes, so it reads the answer instead of a reset (closing with
    /// unread bytes makes the kernel send RST).
    pub async fn linger(&mut self, time: Duration, max: usize) {
        let _ = self.stream.shutdown().await;
        let deadline = Instant::now() + time;
        let mut seen = self.buf.len();
        self.buf.clear();
        while seen < max {
            match timeout_at(deadline, self.stream.read_buf(&mut self.buf)).await {
                Ok(Ok(n)) if n > 0 => {
                    seen += n;
                    self.buf.clear();
                }
                _ => return,
            }
        }
    }

    pub async fn end_body(&mut self) -> Result<(), ConnError> {
        self.send(b"0\r\n\r\n").await
    }
}
