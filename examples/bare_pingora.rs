//! Baseline for benches/passthrough: pingora with no hooks but `upstream_peer`, to separate
//! pingora's own per-request cost from likeguard's. Not part of the product.
//!
//!   cargo run --release --example bare_pingora -- 127.0.0.1:18006 127.0.0.1:18001

use async_trait::async_trait;
use pingora::prelude::*;
use pingora::proxy::{ProxyHttp, Session, http_proxy_service};
use pingora::server::configuration::ServerConf;

struct Bare(String);

#[async_trait]
impl ProxyHttp for Bare {
    type CTX = ();
    fn new_ctx(&self) {}
    async fn upstream_peer(&self, _s: &mut Session, _c: &mut ()) -> Result<Box<HttpPeer>> {
        Ok(Box::new(HttpPeer::new(
            self.0.as_str(),
            false,
            String::new(),
        )))
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let listen = args.next().expect("usage: bare_pingora LISTEN UPSTREAM");
    let upstream = args.next().expect("usage: bare_pingora LISTEN UPSTREAM");
    let conf = ServerConf {
        threads: 1,
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let mut svc = http_proxy_service(&server.configuration, Bare(upstream));
    svc.add_tcp(&listen);
    server.add_service(svc);
    server.run_forever()
}
