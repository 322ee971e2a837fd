//! Request targets: path normalisation and route matching. Property: the path forwarded
//! upstream, normalised again the way the origin normalises it, picks the same route (and the
//! normalisation is idempotent), so likeguard and the origin never disagree on the path.
#![no_main]
use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use likeguard::config::{Config, SlashMode};
use likeguard::proxy::Router;
use likeguard::proxy::target::normalize_path;

static ROUTER: LazyLock<Router> = LazyLock::new(|| {
    let c = Config::parse(
        "routes:\n  - {name: admin, match: {path_prefix: /admin/}, upstream: 'http://a:1'}\n  - {name: up, match: {path_prefix: /upload}, upstream: 'http://a:1'}\n  - {name: static, match: {path_prefix: /static/}, upstream: 'http://a:1', inspect: {direction: none}}\n  - {name: all, upstream: 'http://b:1'}\n",
        "fuzz",
    )
    .expect("config");
    Router::new(&c.routes)
});

fuzz_target!(|data: &[u8]| {
    let Ok(raw) = std::str::from_utf8(data) else {
        return;
    };
    for mode in [SlashMode::Reject, SlashMode::Decode] {
        let Ok(once) = normalize_path(raw, mode) else {
            continue;
        };
        let twice = normalize_path(&once.forward, mode).expect("a normalised path normalises");
        assert_eq!(once, twice, "normalisation is not idempotent for {raw:?}");
        let first = ROUTER.find(None, &once.matched).map(|r| r.name.clone());
        let again = ROUTER.find(None, &twice.matched).map(|r| r.name.clone());
        assert_eq!(first, again, "{raw:?} routes differently once forwarded");
        if once.forward != "*" {
            assert!(!once.forward.contains("//"), "{raw:?} → {:?}", once.forward);
            assert!(
                !once.forward.split('/').any(|s| matches!(s.split(';').next(), Some("." | ".."))),
                "{raw:?} → {:?} keeps a dot segment",
                once.forward
            );
        }
    }
});
