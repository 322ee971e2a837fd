//! Message bodies for the fast front: bytes are forwarded as they arrive, in their own framing;
//! the framer only finds where the body ends (so the next message on the connection starts in
//! the right place) and refuses malformed chunked framing.

use std::time::Duration;

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// How a body's end is found (RFC 9112 §6.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    None,
    Length(u64),
    Chunked,
    /// Until the sender closes (responses only).
    Close,
}

/// A chunk-size line or trailer section larger than this is refused.
const MAX_LINE: usize = 4096;
const MAX_TRAILERS: usize = 16 * 1024;
/// Read size for heads (and the bytes that come with them).
pub const READ_CHUNK: usize = 16 * 1024;
/// Read size inside a body: large bodies cross in fewer system calls (the buffer is kept for
/// the connection's life, so this is per-connection memory once a body passed).
const BODY_CHUNK: usize = 64 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Chunk {
    /// In a chunk-size line: the size so far, digits seen, in an extension.
    Size {
        size: u64,
        digits: u8,
        ext: bool,
    },
    SizeLf {
        size: u64,
    },
    Data(u64),
    DataCr,
    DataLf,
    /// In the trailer section (after the last chunk); `line` = bytes on the current line.
    Trailer {
        line: usize,
    },
    TrailerLf {
        empty: bool,
    },
}

/// Finds the end of one body.
#[derive(Debug)]
pub struct Framer {
    state: State,
    line: usize,
    trailers: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Length(u64),
    Chunked(Chunk),
    Close,
    Done,
}

#[derive(Debug, PartialEq, Eq)]
pub struct MalformedChunk;

impl Framer {
    pub fn new(framing: Framing) -> Self {
        let state = match framing {
            Framing::None | Framing::Length(0) => State::Done,
            Framing::Length(n) => State::Length(n),
            Framing::Chunked => State::Chunked(Chunk::Size {
                size: 0,
                digits: 0,
                ext: false,
            }),
            Framing::Close => State::Close,
        };
        Self {
            state,
            line: 0,
            trailers: 0,
        }
    }

    pub fn done(&self) -> bool {
        self.state == State::Done
    }

    /// How many leading bytes of `avail` belong to the body (the body ends within them when
    /// `done()` turns true).
    pub fn take(&mut self, avail: &[u8]) -> Result<usize, MalformedChunk> {
        match &mut self.state {
            State::Done => Ok(0),
            State::Close => Ok(avail.len()),
            State::Length(left) => {
                let n = (*left).min(avail.len() as u64);
                *left -= n;
                if *left == 0 {
                    self.state = State::Done;
                }
                Ok(n as usize)
            }
            State::Chunked(_) => self.take_chunked(avail),
        }
    }

    fn take_chunked(&mut self, avail: &[u8]) -> Result<usize, MalformedChunk> {
        let mut i = 0;
        while i < avail.len() {
            let State::Chunked(chunk) = self.state else {
                break;
            };
            let b = avail[i];
            let next = match chunk {
                Chunk::Data(left) => {
                    let n = left.min((avail.len() - i) as u64);
                    i += n as usize;
                    self.state = State::Chunked(if n == left {
                        Chunk::DataCr
                    } else {
                        Chunk::Data(left - n)
                    });
                    continue;
                }
                Chunk::Size { size, digits, ext } => {
                    self.line += 1;
                    if self.line > MAX_LINE {
                        return Err(MalformedChunk);
                    }
                    match (b, ext) {
                        (b'\r', _) if digits > 0 => Chunk::SizeLf { size },
                        (b';' | b' ' | b'\t', _) if digits > 0 => Chunk::Size {
                            size,
                            digits,
                            ext: true,
                        },
                        (_, true) if b != b'\n' => Chunk::Size { size, digits, ext },
                        (_, false) if b.is_ascii_hexdigit() && digits < 15 => Chunk::Size {
                            size: size * 16 + u64::from((b as char).to_digit(16).unwrap_or(0)),
                            digits: digits + 1,
                            ext,
                        },
                        _ => return Err(MalformedChunk),
                    }
                }
                Chunk::SizeLf { size } => {
                    if b != b'\n' {
                        return Err(MalformedChunk);
                    }
                    self.line = 0;
                    if size == 0 {
                        Chunk::Trailer { line: 0 }
                    } else {
                        Chunk::Data(size)
                    }
                }
                Chunk::DataCr if b == b'\r' => Chunk::DataLf,
                Chunk::DataLf if b == b'\n' => Chunk::Size {
                    size: 0,
                    digits: 0,
                    ext: false,
                },
                Chunk::DataCr | Chunk::DataLf => return Err(MalformedChunk),
                Chunk::Trailer { line } => {
                    self.trailers += 1;
                    if self.trailers > MAX_TRAILERS {
                        return Err(MalformedChunk);
                    }
                    if b == b'\r' {
                        Chunk::TrailerLf { empty: line == 0 }
                    } else if b == b'\n' {
                        return Err(MalformedChunk);
                    } else {
                        Chunk::Trailer { line: line + 1 }
                    }
                }
                Chunk::TrailerLf { empty } => {
                    if b != b'\n' {
                        return Err(MalformedChunk);
                    }
                    i += 1;
                    if empty {
                        self.state = State::Done;
                        return Ok(i);
                    }
                    self.state = State::Chunked(Chunk::Trailer { line: 0 });
                    continue;
                }
            };
            self.state = State::Chunked(next);
            i += 1;
        }
        Ok(i)
    }
}

/// Why forwarding a body stopped early.
#[derive(Debug)]
pub enum PumpError {
    /// The sender went quiet for longer than allowed.
    ReadTimeout,
    /// The sender closed or failed before the body ended.
    ReadFailed,
    Malformed,
    /// The receiver failed or stopped reading.
    WriteFailed,
}

/// Forward the rest of a body from `src` (bytes already read wait in `buf`) to `dst`. Bytes after
/// the body stay in `buf`. Returns the body bytes forwarded.
pub async fn pump<R, W>(
    framer: &mut Framer,
    src: &mut R,
    buf: &mut BytesMut,
    dst: &mut W,
    read_timeout: Duration,
    write_timeout: Duration,
) -> Result<u64, PumpError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut total = 0u64;
    loop {
        if !buf.is_empty() {
            let n = framer.take(buf).map_err(|_| PumpError::Malformed)?;
            if n > 0 {
                match tokio::time::timeout(write_timeout, dst.write_all(&buf[..n])).await {
                    Ok(Ok(())) => {}
                    _ => return Err(PumpError::WriteFailed),
                }
                buf.advance(n);
                total += n as u64;
            }
        }
        if framer.done() {
            return Ok(total);
        }
        buf.reserve(BODY_CHUNK);
        match tokio::time::timeout(read_timeout, src.read_buf(buf)).await {
            Err(_) => return Err(PumpError::ReadTimeout),
            Ok(Ok(0)) if framer.state == State::Close => return Ok(total),
            Ok(Ok(0) | Err(_)) => return Err(PumpError::ReadFailed),
            Ok(Ok(_)) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feed `body` in pieces of `step` bytes; return bytes taken and whether it ended.
    fn feed(framing: Framing, body: &[u8], step: usize) -> Result<(usize, bool), MalformedChunk> {
        let mut f = Framer::new(framing);
        let mut taken = 0;
        for piece in body.chunks(step) {
            let n = f.take(piece)?;
            taken += n;
            if n < piece.len() {
                break;
            }
        }
        Ok((taken, f.done()))
    }

    #[test]
    fn chunked_ends_exactly_where_the_body_ends_in_any_split() {
        let body = b"5;ext=1\r\nhello\r\n1A\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nX-T: 1\r\n\r\n";
        let next = b"GET / HTTP/1.1\r\n\r\n";
        let all = [&body[..], &next[..]].concat();
        for step in [1, 2, 3, 7, 64, 1000] {
            assert_eq!(
                feed(Framing::Chunked, &all, step),
                Ok((body.len(), true)),
                "step {step}"
            );
        }
        assert_eq!(feed(Framing::Chunked, b"0\r\n\r\nrest", 1), Ok((5, true)));
    }

    #[test]
    fn malformed_chunks_are_refused() {
        for bad in [
            &b"x\r\n"[..],
            b"5\r\nhelloXX",
            b"5\nhello",
            b"\r\n",
            b"10000000000000000\r\n",
            b"0\r\nbad\nline\r\n\r\n",
        ] {
            assert_eq!(
                feed(Framing::Chunked, bad, 1),
                Err(MalformedChunk),
                "{bad:?}"
            );
        }
        let long = [b"1;".as_slice(), &[b'a'; MAX_LINE]].concat();
        assert_eq!(feed(Framing::Chunked, &long, 512), Err(MalformedChunk));
    }

    #[test]
    fn lengths_and_close() {
        assert_eq!(feed(Framing::Length(4), b"abcdefg", 3), Ok((4, true)));
        assert_eq!(feed(Framing::Length(10), b"abc", 3), Ok((3, false)));
        assert_eq!(feed(Framing::None, b"abc", 3), Ok((0, true)));
        assert_eq!(feed(Framing::Close, b"abc", 2), Ok((3, false)));
    }

    #[tokio::test]
    async fn pump_leaves_the_next_message_in_the_buffer() {
        let (mut a, mut b) = tokio::io::duplex(64);
        let mut out = Vec::new();
        let mut buf = BytesMut::from(&b"3\r\nabc\r\n"[..]);
        a.write_all(b"0\r\n\r\nNEXT").await.unwrap();
        let mut f = Framer::new(Framing::Chunked);
        let t = Duration::from_secs(1);
        let n = pump(&mut f, &mut b, &mut buf, &mut out, t, t)
            .await
            .unwrap();
        assert_eq!(n, 13);
        assert_eq!(&out, b"3\r\nabc\r\n0\r\n\r\n");
        assert_eq!(&buf[..], b"NEXT");
        // A sender that stops mid-body is an error, not a short body.
        let mut f = Framer::new(Framing::Length(10));
        drop(a);
        let r = pump(&mut f, &mut b, &mut BytesMut::new(), &mut out, t, t).await;
        assert!(matches!(r, Err(PumpError::ReadFailed)));
    }
}
