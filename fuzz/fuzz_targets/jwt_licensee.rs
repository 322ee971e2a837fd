//! Who a request acts for: a bearer JWT (HS256), an API key or the licensee header.
#![no_main]
use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use likeguard::license::requester::Requester;

static REQUESTER: LazyLock<Requester> = LazyLock::new(|| {
    // SAFETY: set once, before any other thread of this process reads the environment.
    unsafe { std::env::set_var("LIKEGUARD_FUZZ_JWT", "fuzz-secret-fuzz-secret-fuzz-secret!") };
    let c = likeguard::config::Config::parse(
        "licensing:\n  api_keys: {'6ab9f1eb8f7d3388f4f9d586f66e99fd54080df2c446f0e58668b09c08a16dd0': acme}\n  jwt: {algorithm: HS256, secret_env: LIKEGUARD_FUZZ_JWT, claim: sub, issuer: iss, audience: aud}\n",
        "fuzz",
    )
    .expect("config");
    Requester::new(&c.licensing).expect("requester")
});

fuzz_target!(|data: &[u8]| {
    let mut headers = http::HeaderMap::new();
    let Ok(v) = http::HeaderValue::from_bytes(data) else {
        return;
    };
    headers.insert("authorization", v.clone());
    headers.insert("x-api-key", v.clone());
    headers.insert("likeguard-licensee", v);
    let _ = REQUESTER.licensee(&headers);
});
