//! Idle upstream connections, one pool per front thread (each thread runs its own single-threaded
//! runtime, so no locks): taken for a request, given back when its response ended cleanly.

use std::cell::RefCell;
use std::time::{Duration, Instant};

use tokio::net::TcpStream;

/// Idle connections kept per upstream and thread.
const MAX_IDLE: usize = 128;
/// An idle connection older than this is closed rather than reused (upstreams drop idle ones).
const MAX_IDLE_TIME: Duration = Duration::from_secs(30);

thread_local! {
    static IDLE: RefCell<Vec<Vec<(TcpStream, Instant)>>> = const { RefCell::new(Vec::new()) };
}

/// A live idle connection to upstream `up`, if one is kept.
pub fn take(up: usize) -> Option<TcpStream> {
    IDLE.with_borrow_mut(|pools| {
        let pool = pools.get_mut(up)?;
        while let Some((stream, since)) = pool.pop() {
            // Readable while idle means closed by the peer (or a stray byte): unusable. This
            // reads tokio's readiness first, so a quiet socket costs no system call.
            let mut probe = [0u8; 1];
            let quiet = matches!(stream.try_read(&mut probe), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock);
            if quiet && since.elapsed() < MAX_IDLE_TIME {
                return Some(stream);
            }
        }
        None
    })
}

pub fn give_back(up: usize, stream: TcpStream) {
    IDLE.with_borrow_mut(|pools| {
        if pools.len() <= up {
            pools.resize_with(up + 1, Vec::new);
        }
        let pool = &mut pools[up];
        if pool.len() < MAX_IDLE {
            pool.push((stream, Instant::now()));
        }
    });
}
