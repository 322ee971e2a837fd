//! The upstream side, for both paths: pingora's peers (its connection pool, its HTTP/1.1
//! client, OpenSSL for `https://` upstreams with `upstream_ca_file` added to the system roots),
//! and the header rules both paths share — hop-by-hop headers and `X-Forwarded-For`.

use std::path::Path;
use std::sync::Arc;

use http::HeaderMap;
use http::header::{self, HeaderName};
use pingora::upstreams::peer::HttpPeer;

use crate::config::{Timeouts, Upstream};

/// Roots for TLS upstreams, loaded once.
pub type Roots = Option<Arc<Box<[pingora::tls::x509::X509]>>>;

/// The peer for a route's upstream (HTTP/1.1; TLS with SNI = host when `https://`).
pub fn peer(up: &Upstream, roots: &Roots, t: &Timeouts) -> HttpPeer {
    let mut peer = HttpPeer::new(up.authority.as_str(), up.tls, up.host.clone());
    peer.options.ca = roots.clone();
    peer.options.connection_timeout = Some(t.upstream_connect);
    peer.options.read_timeout = Some(t.upstream_response);
    peer.options.write_timeout = Some(t.upstream_response);
    peer
}

/// `upstream_ca_file`'s certificates (loaded once).
pub fn load_roots(ca_file: Option<&Path>) -> Result<Roots, String> {
    let Some(path) = ca_file else {
        return Ok(None);
    };
    let pem =
        std::fs::read(path).map_err(|e| format!("upstream_ca_file: {}: {e}", path.display()))?;
    let certs = pingora::tls::x509::X509::stack_from_pem(&pem)
        .map_err(|e| format!("upstream_ca_file: {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!(
            "upstream_ca_file: {}: no certificate",
            path.display()
        ));
    }
    Ok(Some(Arc::new(certs.into_boxed_slice())))
}

pub const X_FORWARDED_FOR: &str = "x-forwarded-for";

/// Copy end-to-end headers, dropping hop-by-hop ones (RFC 9110 §7.6.1), including any the
/// Connection header names — except the ones that frame or route the message: naming
/// `Content-Length` in Connection must never change where a body ends.
pub fn copy_end_to_end(from: &HeaderMap) -> HeaderMap {
    let named = connection_named(from);
    let mut out = HeaderMap::with_capacity(from.len());
    for (name, value) in from {
        if is_hop_by_hop(name) || named.contains(name) {
            continue;
        }
        out.append(name.clone(), value.clone());
    }
    out
}

/// Names listed in Connection that may be dropped: never what frames, routes or types the
/// message (naming Content-Type must not hide an upload's type from inspection).
fn connection_named(from: &HeaderMap) -> Vec<HeaderName> {
    from.get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::try_from(n.trim()).ok())
        .filter(|n| {
            !matches!(
                *n,
                header::CONTENT_LENGTH
                    | header::TRANSFER_ENCODING
                    | header::CONTENT_TYPE
                    | header::CONTENT_ENCODING
                    | header::HOST
                    | header::UPGRADE
                    | header::CONNECTION
            )
        })
        .collect()
}

/// `X-Forwarded-For` with the client appended (what nginx's `$proxy_add_x_forwarded_for` sends).
pub fn forwarded_for(existing: Option<&http::HeaderValue>, client: std::net::IpAddr) -> String {
    match existing.and_then(|v| v.to_str().ok()) {
        Some(prior) if !prior.trim().is_empty() => format!("{prior}, {client}"),
        _ => client.to_string(),
    }
}

fn is_hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-connection"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_are_dropped() {
        let mut h = HeaderMap::new();
        h.insert("connection", "keep-alive, x-secret".parse().unwrap());
        h.insert("x-secret", "1".parse().unwrap());
        h.insert("transfer-encoding", "chunked".parse().unwrap());
        h.append("x-keep", "a".parse().unwrap());
        h.append("x-keep", "b".parse().unwrap());
        let out = copy_end_to_end(&h);
        assert_eq!(out.len(), 2);
        assert_eq!(out.get_all("x-keep").iter().count(), 2);
    }

    #[test]
    fn connection_never_removes_framing_headers() {
        let mut h = HeaderMap::new();
        h.insert(
            "connection",
            "content-length, host, content-type, x-a".parse().unwrap(),
        );
        h.insert("content-type", "image/png".parse().unwrap());
        h.insert("content-length", "5".parse().unwrap());
        h.insert("host", "a".parse().unwrap());
        h.insert("x-a", "1".parse().unwrap());
        let out = copy_end_to_end(&h);
        assert!(out.contains_key("content-length") && out.contains_key("host"));
        assert!(out.contains_key("content-type"));
        assert!(!out.contains_key("x-a"));
    }

    #[test]
    fn forwarded_for_appends() {
        let ip: std::net::IpAddr = "10.0.0.7".parse().unwrap();
        assert_eq!(forwarded_for(None, ip), "10.0.0.7");
        let prior = http::HeaderValue::from_static("1.2.3.4");
        assert_eq!(forwarded_for(Some(&prior), ip), "1.2.3.4, 10.0.0.7");
    }
}
