//! The client for the inspected path: a pooled HTTP/1.1 client to the route's upstream, over
//! TLS for `https://` upstreams (OpenSSL, the same library pingora links).
//! (Non-inspected traffic never comes here: the fast front or pingora streams it.)

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::HeaderMap;
use http::header::{self, HeaderName};
use http_body_util::combinators::BoxBody;
use hyper_openssl::client::legacy::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use openssl::ssl::{SslConnector, SslMethod};

pub type UpBody = BoxBody<Bytes, std::io::Error>;
pub type UpClient = Client<HttpsConnector<HttpConnector>, UpBody>;

/// The pooled client; `ca_file` adds trusted roots to the system's for TLS upstreams.
pub fn client(connect_timeout: Duration, ca_file: Option<&Path>) -> Result<UpClient, String> {
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(connect_timeout));
    connector.set_nodelay(true);
    connector.enforce_http(false);
    let tls_err = |e: openssl::error::ErrorStack| format!("upstream TLS: {e}");
    // Verifies the peer against the system roots by default.
    let mut ssl = SslConnector::builder(SslMethod::tls_client()).map_err(tls_err)?;
    if let Some(ca) = ca_file {
        ssl.set_ca_file(ca)
            .map_err(|e| format!("upstream_ca_file: {}: {e}", ca.display()))?;
    }
    // The inspected path speaks HTTP/1.1 to the upstream.
    ssl.set_alpn_protos(b"\x08http/1.1").map_err(tls_err)?;
    let https = HttpsConnector::with_connector(connector, ssl).map_err(tls_err)?;
    Ok(Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(60))
        .build(https))
}

/// `upstream_ca_file`'s certificates, for pingora's peers (loaded once).
pub fn load_roots(
    ca_file: Option<&Path>,
) -> Result<Option<Arc<Box<[pingora::tls::x509::X509]>>>, String> {
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

/// Copy end-to-end headers, dropping hop-by-hop ones (RFC 9110 §7.6.1), including any the
/// Connection header names.
pub fn copy_end_to_end(from: &HeaderMap) -> HeaderMap {
    let named: Vec<HeaderName> = from
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::try_from(n.trim()).ok())
        .collect();
    let mut out = HeaderMap::with_capacity(from.len());
    for (name, value) in from {
        if is_hop_by_hop(name) || named.contains(name) {
            continue;
        }
        out.append(name.clone(), value.clone());
    }
    out
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
}
