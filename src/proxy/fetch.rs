//! Fetching media behind URLs found in bodies (`inspect.extract.fetch`), over pingora's client.
//!
//! SSRF rules: only allow-listed scheme/host/port; the host is resolved here and *every*
//! address it resolves to must be public (unless `allow_private`) — a name that answers with one
//! public and one private address is refused, so DNS cannot steer the connection inward; the
//! connection goes to the checked address (no second lookup); no credentials, cookies or client
//! headers are sent; each redirect is checked like the first URL; size and time are bounded.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use http::header::{ACCEPT, CONTENT_LENGTH, HOST, LOCATION, USER_AGENT};
use pingora::connectors::http::Connector;
use pingora::http::RequestHeader;
use pingora::upstreams::peer::HttpPeer;
use tokio::time::timeout_at;

use super::upstream::Roots;
use crate::config::FetchConfig;

/// The proxy's `decide::Fetcher`.
pub struct UrlFetcher {
    connector: Connector,
    roots: Roots,
}

impl UrlFetcher {
    pub fn new(config: &crate::config::Config) -> Result<Self, super::ProxyError> {
        Ok(Self {
            connector: Connector::new(None),
            roots: super::upstream::load_roots(config.upstream_ca_file.as_deref())
                .map_err(super::ProxyError::Config)?,
        })
    }

    async fn get(
        &self,
        url: &url::Url,
        rules: &FetchConfig,
        deadline: tokio::time::Instant,
    ) -> Result<Got, String> {
        let host = url.host_str().ok_or("the URL has no host")?.to_string();
        let port = url.port_or_known_default().ok_or("the URL has no port")?;
        let addrs: Vec<SocketAddr> =
            timeout_at(deadline, tokio::net::lookup_host((host.as_str(), port)))
                .await
                .map_err(|_| format!("resolving {host} timed out"))?
                .map_err(|e| format!("resolving {host}: {e}"))?
                .collect();
        if addrs.is_empty() {
            return Err(format!("{host} has no address"));
        }
        if !rules.allow_private
            && let Some(a) = addrs.iter().find(|a| !is_public(a.ip()))
        {
            return Err(format!(
                "{host} resolves to {}, which is not a public address (fetch.allow_private is off)",
                a.ip()
            ));
        }
        let tls = url.scheme().eq_ignore_ascii_case("https");
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        // Every address was checked; connect to the first that answers.
        let mut failure = String::from("no address answered");
        let mut session = None;
        for addr in &addrs {
            let mut peer = HttpPeer::new(*addr, tls, host.clone());
            peer.options.ca = self.roots.clone();
            peer.options.connection_timeout = Some(left);
            peer.options.read_timeout = Some(left);
            peer.options.write_timeout = Some(left);
            match timeout_at(deadline, self.connector.get_http_session(&peer)).await {
                Ok(Ok((s, _))) => {
                    session = Some(s);
                    break;
                }
                Ok(Err(e)) => failure = format!("connecting to {addr}: {e}"),
                Err(_) => return Err("connecting timed out".into()),
            }
        }
        let mut s = session.ok_or(failure)?;
        let target = match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_string(),
        };
        let mut head =
            RequestHeader::build("GET", target.as_bytes(), Some(3)).map_err(|e| e.to_string())?;
        let authority = match url.port() {
            Some(p) => format!("{host}:{p}"),
            None => host.clone(),
        };
        for (k, v) in [
            (HOST, authority.as_str()),
            (USER_AGENT, "likeguard"),
            (ACCEPT, "image/*, video/*, audio/*, */*;q=0.5"),
        ] {
            head.insert_header(k, v).map_err(|e| e.to_string())?;
        }
        let io = |e: Box<pingora::Error>| e.to_string();
        let exchange = async {
            s.write_request_header(Box::new(head)).await.map_err(io)?;
            s.finish_request_body().await.map_err(io)?;
            loop {
                s.read_response_header().await.map_err(io)?;
                let informational = s
                    .response_header()
                    .is_some_and(|h| h.status.is_informational());
                if !informational {
                    break;
                }
            }
            let resp = s.response_header().ok_or("no response head")?;
            let status = resp.status;
            if status.is_redirection() {
                let to = resp
                    .headers
                    .get(LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .ok_or(format!("answered {status} without a Location"))?;
                let next = url
                    .join(to)
                    .map_err(|e| format!("redirect to {to:?}: {e}"))?;
                return Ok(Got::Redirect(next));
            }
            if !status.is_success() {
                return Err(format!("answered {status}"));
            }
            let declared = resp
                .headers
                .get(CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
            if declared.is_some_and(|n| n > rules.max_bytes) {
                return Err(format!(
                    "body is larger than fetch.max_bytes ({})",
                    rules.max_bytes
                ));
            }
            let mut body = BytesMut::new();
            while let Some(chunk) = s.read_response_body().await.map_err(io)? {
                if (body.len() + chunk.len()) as u64 > rules.max_bytes {
                    return Err(format!(
                        "body is larger than fetch.max_bytes ({})",
                        rules.max_bytes
                    ));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(Got::Body(body.freeze()))
        };
        timeout_at(deadline, exchange)
            .await
            .map_err(|_| "the fetch ran out of time".to_string())?
    }
}

enum Got {
    Body(Bytes),
    Redirect(url::Url),
}

#[async_trait::async_trait]
impl crate::decide::Fetcher for UrlFetcher {
    async fn fetch(
        &self,
        url: &url::Url,
        rules: &FetchConfig,
        deadline: Instant,
    ) -> Result<Bytes, String> {
        let now = Instant::now();
        let until = deadline.min(now + rules.timeout);
        let deadline = tokio::time::Instant::now() + until.saturating_duration_since(now);
        let mut current = url.clone();
        for _ in 0..=rules.max_redirects {
            if !rules.allows(&current) {
                return Err("a redirect leads off the allow-list".into());
            }
            match self.get(&current, rules, deadline).await? {
                Got::Body(b) => return Ok(b),
                Got::Redirect(next) => current = next,
            }
        }
        Err(format!("more than {} redirects", rules.max_redirects))
    }
}

/// Whether an address is on the public internet: not loopback, private, link-local, shared
/// (CGNAT), documentation, benchmarking, multicast, reserved or unspecified — for IPv6 too,
/// including IPv4 addresses embedded in IPv6 (mapped, NAT64).
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_public_v4(v4);
            }
            let s = v6.segments();
            // 64:ff9b::/96 (NAT64) carries an IPv4 address in its last 32 bits.
            if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
                let o = v6.octets();
                return is_public_v4(Ipv4Addr::new(o[12], o[13], o[14], o[15]));
            }
            !(v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || v6.is_unique_local()
                || v6.is_unicast_link_local()
                || (s[0] & 0xffc0) == 0xfec0 // site-local (deprecated)
                || (s[0] == 0x2001 && s[1] == 0x0db8) // documentation
                || s[0] == 0x2002 // 6to4: an IPv4 address inside
                || s[..3] == [0x64, 0xff9b, 1] // local-use NAT64 (RFC 8215)
                || s[..6] == [0, 0, 0, 0, 0, 0]) // IPv4-compatible (deprecated)
        }
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_private()
        || ip.is_loopback()
        || ip.is_link_local()
        || ip.is_broadcast()
        || ip.is_documentation()
        || ip.is_unspecified()
        || ip.is_multicast()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT)
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 198 && (18..20).contains(&b)) // benchmarking
        || a >= 240) // reserved
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_and_not() {
        let p = |s: &str| is_public(s.parse().unwrap());
        for public in [
            "93.184.215.14",
            "8.8.8.8",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            assert!(p(public), "{public}");
        }
        for inner in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "0.1.2.3",
            "255.255.255.255",
            "224.0.0.1",
            "198.18.0.1",
            "::1",
            "::",
            "fc00::1",
            "fd12::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a9fe:a9fe",
            "::127.0.0.1",
            "2001:db8::1",
            "2002:7f00:1::1",
            "64:ff9b:1::a00:1",
        ] {
            assert!(!p(inner), "{inner}");
        }
    }
}
