//! Debian's Squid, started for one test as a forward proxy on 127.0.0.1 with likeguard as its
//! ICAP REQMOD and RESPMOD service (the configuration docs/icap.md shows).

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Squid {
    pub addr: SocketAddr,
    child: Child,
    pub dir: tempfile::TempDir,
}

impl Squid {
    /// Squid with likeguard's ICAP services at `icap` (`None`: Squid alone, for comparison).
    pub fn start(icap: Option<SocketAddr>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        // Squid drops root for its `proxy` user, which must write its logs here.
        let _ = Command::new("chmod").arg("0777").arg(dir.path()).status();
        let port = super::free_port();
        let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let d = dir.path().display();
        let mut conf = format!(
            "http_port 127.0.0.1:{port}
visible_hostname likeguard-test
pid_filename {d}/squid.pid
cache_log {d}/cache.log
access_log stdio:{d}/access.log
netdb_filename none
coredump_dir {d}
cache deny all
cache_mem 8 MB
http_access allow all
shutdown_lifetime 0 seconds
via off
"
        );
        if let Some(icap) = icap {
            conf.push_str(&format!(
                "icap_enable on
icap_send_client_ip on
icap_persistent_connections on
icap_preview_enable on
icap_service likeguard_req reqmod_precache icap://{icap}/reqmod bypass=off
icap_service likeguard_resp respmod_precache icap://{icap}/respmod bypass=off
adaptation_access likeguard_req allow all
adaptation_access likeguard_resp allow all
"
            ));
        }
        let path = dir.path().join("squid.conf");
        std::fs::write(&path, conf).unwrap();
        let child = Command::new("squid")
            .args(["-N", "-f"])
            .arg(&path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("squid (Debian package `squid`; scripts/setup-system installs it)");
        let mut s = Self { addr, child, dir };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(addr).is_err() {
            if let Ok(Some(status)) = s.child.try_wait() {
                panic!("squid exited at start-up: {status}\n{}", s.log());
            }
            assert!(
                Instant::now() < deadline,
                "squid did not start\n{}",
                s.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        s
    }

    /// A client that sends everything through this Squid.
    pub fn client(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .proxy(reqwest::Proxy::http(format!("http://{}", self.addr)).unwrap())
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap()
    }

    /// Squid's own log (for failure messages).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("cache.log")).unwrap_or_default()
    }
}

impl Drop for Squid {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
