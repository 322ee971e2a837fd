//! ICAP bodies are always chunked (RFC 3507 §4.4.1), with one ICAP addition: `0; ieof` ends a
//! preview that holds the whole body. Sans-IO and strict: hex sizes of at most 16 digits,
//! CRLF only, the data followed by exactly CRLF, no trailer fields; unknown chunk extensions
//! are ignored as HTTP requires, `ieof` on a chunk with data is an error.

use bytes::{Bytes, BytesMut};

/// The longest size line taken (size, extensions, CRLF).
const MAX_LINE: usize = 1024;

/// One step of a body.
#[derive(Debug, PartialEq, Eq)]
pub enum Piece {
    Data(Bytes),
    /// The zero chunk: `ieof` says nothing follows (the preview was the whole body).
    End {
        ieof: bool,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("chunked body: {0}")]
pub struct ChunkError(String);

fn bad(why: impl Into<String>) -> ChunkError {
    ChunkError(why.into())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Size,
    Data(u64),
    DataEnd,
    Last { ieof: bool },
    Done,
}

/// Decodes one chunked body (a preview, or what follows a `100 Continue`).
#[derive(Debug)]
pub struct Dechunker {
    state: State,
}

impl Default for Dechunker {
    fn default() -> Self {
        Self { state: State::Size }
    }
}

impl Dechunker {
    /// The next piece from the front of `buf` (taken out of it), or `None` until more bytes
    /// arrive. After `End`, the decoder is done; a new body needs a new one.
    pub fn next(&mut self, buf: &mut BytesMut) -> Result<Option<Piece>, ChunkError> {
        loop {
            match self.state {
                State::Done => return Err(bad("the body already ended")),
                State::Size => {
                    let Some(line) = line(buf)? else {
                        return Ok(None);
                    };
                    let (size, ieof) = size_line(&line)?;
                    self.state = match size {
                        0 => State::Last { ieof },
                        n => State::Data(n),
                    };
                }
                State::Data(left) => {
                    if buf.is_empty() {
                        return Ok(None);
                    }
                    let take = usize::try_from(left).unwrap_or(usize::MAX).min(buf.len());
                    let data = buf.split_to(take).freeze();
                    let left = left - take as u64;
                    self.state = if left == 0 {
                        State::DataEnd
                    } else {
                        State::Data(left)
                    };
                    return Ok(Some(Piece::Data(data)));
                }
                State::DataEnd | State::Last { .. } => {
                    if buf.len() < 2 {
                        return Ok(None);
                    }
                    if &buf[..2] != b"\r\n" {
                        return Err(match self.state {
                            State::DataEnd => bad("chunk data is not followed by CRLF"),
                            _ => bad("trailer fields are not accepted"),
                        });
                    }
                    let _ = buf.split_to(2);
                    if let State::Last { ieof } = self.state {
                        self.state = State::Done;
                        return Ok(Some(Piece::End { ieof }));
                    }
                    self.state = State::Size;
                }
            }
        }
    }
}

/// A CRLF-terminated line from the front of `buf`, without its CRLF.
fn line(buf: &mut BytesMut) -> Result<Option<Bytes>, ChunkError> {
    let window = &buf[..buf.len().min(MAX_LINE)];
    match memchr::memchr(b'\n', window) {
        Some(at) if at > 0 && window[at - 1] == b'\r' => {
            let l = buf.split_to(at + 1).freeze();
            Ok(Some(l.slice(..at - 1)))
        }
        Some(_) => Err(bad("a size line ends in a bare LF")),
        None if buf.len() >= MAX_LINE => Err(bad("a size line is too long")),
        None => Ok(None),
    }
}

/// `1a2b` or `0; ieof` → (size, ieof).
fn size_line(l: &[u8]) -> Result<(u64, bool), ChunkError> {
    let digits = l.iter().take_while(|b| b.is_ascii_hexdigit()).count();
    if digits == 0 || digits > 16 {
        return Err(bad("a chunk size is not 1 to 16 hex digits"));
    }
    let text = std::str::from_utf8(&l[..digits]).map_err(|_| bad("size"))?;
    let size = u64::from_str_radix(text, 16).map_err(|_| bad("a chunk size overflows"))?;
    let mut ieof = false;
    let mut rest = &l[digits..];
    loop {
        rest = trim_ws(rest);
        if rest.is_empty() {
            break;
        }
        let Some(after) = rest.strip_prefix(b";") else {
            return Err(bad("unexpected bytes after a chunk size"));
        };
        let after = trim_ws(after);
        let name_len = after.iter().take_while(|b| is_tchar(**b)).count();
        if name_len == 0 {
            return Err(bad("an empty chunk extension"));
        }
        ieof |= after[..name_len].eq_ignore_ascii_case(b"ieof");
        rest = &after[name_len..];
        let t = trim_ws(rest);
        if let Some(v) = t.strip_prefix(b"=") {
            let v = trim_ws(v);
            let n = v.iter().take_while(|b| is_tchar(**b)).count();
            if n == 0 {
                return Err(bad("a chunk extension value is empty or quoted"));
            }
            rest = &v[n..];
        }
    }
    if ieof && size != 0 {
        return Err(bad("ieof on a chunk with data"));
    }
    Ok((size, ieof))
}

fn trim_ws(mut b: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = b {
        b = rest;
    }
    b
}

fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Frame `data` as one chunk, for writing.
pub fn chunk_header(len: usize) -> String {
    format!("{len:x}\r\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(input: &[u8]) -> Result<(Vec<u8>, Option<bool>, usize), ChunkError> {
        let mut d = Dechunker::default();
        let mut buf = BytesMut::from(input);
        let mut data = Vec::new();
        while let Some(p) = d.next(&mut buf)? {
            match p {
                Piece::Data(b) => data.extend_from_slice(&b),
                Piece::End { ieof } => return Ok((data, Some(ieof), buf.len())),
            }
        }
        Ok((data, None, buf.len()))
    }

    #[test]
    fn chunks_decode_with_ieof_and_leave_what_follows() {
        assert_eq!(
            all(b"5\r\nhello\r\n1;x=y\r\n!\r\n0; ieof\r\n\r\nNEXT").unwrap(),
            (b"hello!".to_vec(), Some(true), 4)
        );
        assert_eq!(
            all(b"A\r\n0123456789\r\n0\r\n\r\n").unwrap(),
            (b"0123456789".to_vec(), Some(false), 0)
        );
    }

    #[test]
    fn pieces_arrive_byte_by_byte() {
        let input = b"3\r\nabc\r\n0; ieof\r\n\r\n";
        let mut d = Dechunker::default();
        let mut buf = BytesMut::new();
        let mut data = Vec::new();
        let mut end = None;
        for b in input {
            buf.extend_from_slice(&[*b]);
            while end.is_none()
                && let Some(p) = d.next(&mut buf).unwrap()
            {
                match p {
                    Piece::Data(x) => data.extend_from_slice(&x),
                    Piece::End { ieof } => end = Some(ieof),
                }
            }
        }
        assert_eq!((data.as_slice(), end), (&b"abc"[..], Some(true)));
    }

    #[test]
    fn bad_chunking_is_an_error() {
        for input in [
            &b"5\nhello\r\n0\r\n\r\n"[..],   // bare LF
            b"5\r\nhelloX\r\n0\r\n\r\n",     // no CRLF after data
            b"x\r\n",                        // not hex
            b"-5\r\n",                       // sign
            b" 5\r\n",                       // leading space
            b"11111111111111111\r\n",        // 17 digits
            b"5;ieof\r\nhello\r\n0\r\n\r\n", // ieof with data
            b"5; \"q\"\r\n",                 // quoted extension name
            b"0\r\nTrailer: x\r\n\r\n",      // trailer
            b"5 x\r\n",                      // junk after size
        ] {
            assert!(all(input).is_err(), "{:?}", String::from_utf8_lossy(input));
        }
        let long = vec![b'1'; MAX_LINE + 1];
        assert!(all(&long).is_err());
    }

    #[test]
    fn a_huge_declared_size_streams_without_allocating_it() {
        let (data, end, _) = all(b"ffffffffffffffff\r\nabc").unwrap();
        assert_eq!((data.as_slice(), end), (&b"abc"[..], None));
    }
}
