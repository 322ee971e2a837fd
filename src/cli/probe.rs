//! `likeguard probe`: the container HEALTHCHECK. A GET on this instance's own admin listener
//! (`/healthz`, or `/readyz` with `--ready`), so an image needs no curl. Exit status 0 on 2xx.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use anyhow::Context;
use http_body_util::Empty;
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;

/// Where to reach an admin listener bound to `listen`: an unspecified address (0.0.0.0, ::)
/// is reached on loopback.
pub fn target(listen: SocketAddr) -> SocketAddr {
    match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => (Ipv4Addr::LOCALHOST, listen.port()).into(),
        IpAddr::V6(ip) if ip.is_unspecified() => (Ipv6Addr::LOCALHOST, listen.port()).into(),
        _ => listen,
    }
}

pub fn probe(admin: SocketAddr, path: &str, timeout: Duration) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let status = runtime.block_on(async {
        tokio::time::timeout(timeout, get(admin, path))
            .await
            .with_context(|| format!("no answer from {admin} within {timeout:?}"))?
    })?;
    anyhow::ensure!(
        status.is_success(),
        "http://{admin}{path} answered {status}"
    );
    Ok(())
}

async fn get(admin: SocketAddr, path: &str) -> anyhow::Result<hyper::StatusCode> {
    let stream = tokio::net::TcpStream::connect(admin)
        .await
        .with_context(|| format!("cannot connect to the admin listener at {admin}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let request = hyper::Request::get(path)
        .header(hyper::header::HOST, admin.to_string())
        .body(Empty::<Bytes>::new())?;
    Ok(sender.send_request(request).await?.status())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unspecified_listeners_are_probed_on_loopback() {
        assert_eq!(
            target("0.0.0.0:9090".parse().unwrap()),
            "127.0.0.1:9090".parse().unwrap()
        );
        assert_eq!(
            target("[::]:9090".parse().unwrap()),
            "[::1]:9090".parse().unwrap()
        );
        assert_eq!(
            target("10.0.0.7:9090".parse().unwrap()),
            "10.0.0.7:9090".parse().unwrap()
        );
    }
}
