//! Discovery by content: every shape media hides in, and every bound.

use std::io::Write;
use std::time::{Duration, Instant};

use base64::Engine;
use bytes::Bytes;
use http::HeaderMap;
use http::header::{CONTENT_ENCODING, CONTENT_TYPE};

use super::*;

/// A PNG signature and IHDR: enough for sniffing (extraction never decodes).
const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x10\0\0\0\x10\x08\x02\0\0\0 padding to look like a real file";

fn b64(d: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(d)
}

fn headers(ct: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(CONTENT_TYPE, ct.parse().unwrap());
    h
}

fn run(class: &BodyClass, body: impl Into<Bytes>) -> Result<Found, ExtractError> {
    run_with(class, body, &ExtractConfig::default())
}

fn run_with(
    class: &BodyClass,
    body: impl Into<Bytes>,
    cfg: &ExtractConfig,
) -> Result<Found, ExtractError> {
    let deadline = Instant::now() + Duration::from_secs(10);
    extract_blocking(class, body.into(), cfg, 16, deadline)
}

fn places(found: &Found) -> Vec<String> {
    found.items.iter().map(|i| i.location.to_string()).collect()
}

fn zip_of(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    for (name, data) in files {
        w.start_file(*name, opts).unwrap();
        w.write_all(data).unwrap();
    }
    w.finish().unwrap().into_inner()
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in files {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, name, *data).unwrap();
    }
    b.into_inner().unwrap()
}

/// (name, filename, content type, data)
type FormPart<'a> = (&'a str, Option<&'a str>, Option<&'a str>, &'a [u8]);

fn form(parts: &[FormPart<'_>]) -> Bytes {
    let mut b = Vec::new();
    for (name, filename, ct, data) in parts {
        b.extend_from_slice(b"--XyZ\r\n");
        let mut disp = format!("Content-Disposition: form-data; name=\"{name}\"");
        if let Some(f) = filename {
            disp.push_str(&format!("; filename=\"{f}\""));
        }
        b.extend_from_slice(disp.as_bytes());
        b.extend_from_slice(b"\r\n");
        if let Some(ct) = ct {
            b.extend_from_slice(format!("Content-Type: {ct}\r\n").as_bytes());
        }
        b.extend_from_slice(b"\r\n");
        b.extend_from_slice(data);
        b.extend_from_slice(b"\r\n");
    }
    b.extend_from_slice(b"--XyZ--\r\n");
    b.into()
}

fn multipart() -> BodyClass {
    BodyClass::Multipart {
        boundary: "XyZ".into(),
    }
}

#[test]
fn classification() {
    let cfg = ExtractConfig::default();
    assert_eq!(
        classify(&headers("image/PNG"), &cfg),
        BodyClass::Raw {
            declared: "image/png".into()
        }
    );
    assert_eq!(classify(&HeaderMap::new(), &cfg), BodyClass::Sniff);
    let mut two = headers("text/plain");
    two.append(CONTENT_TYPE, "image/png".parse().unwrap());
    assert_eq!(classify(&two, &cfg), BodyClass::Sniff);
    let mut enc = headers("image/png");
    enc.append(CONTENT_ENCODING, "identity".parse().unwrap());
    enc.append(CONTENT_ENCODING, "gzip".parse().unwrap());
    assert!(matches!(
        classify(&enc, &cfg),
        BodyClass::Encoded { ref codings, ref inner } if codings == &[Coding::Gzip]
            && matches!(**inner, BodyClass::Raw { .. })
    ));
    let mut odd = headers("image/png");
    odd.insert(CONTENT_ENCODING, "compress".parse().unwrap());
    assert!(matches!(
        classify(&odd, &cfg),
        BodyClass::Undecodable { .. }
    ));
    assert_eq!(
        classify(&headers("multipart/form-data; boundary=abc"), &cfg),
        multipart_with("abc")
    );
    assert_eq!(
        classify(&headers("application/json; charset=utf-8"), &cfg),
        BodyClass::Json
    );
    assert_eq!(
        classify(&headers("application/vnd.api+json"), &cfg),
        BodyClass::Json
    );
    assert_eq!(
        classify(&headers("application/x-www-form-urlencoded"), &cfg),
        BodyClass::Form
    );
    assert_eq!(
        classify(&headers("application/zip"), &cfg),
        BodyClass::Sniff
    );
    assert_eq!(classify(&headers("text/html"), &cfg), BodyClass::Sniff);
    assert_eq!(
        classify(&headers("application/pdf"), &cfg),
        BodyClass::Opaque
    );
    let no_text = ExtractConfig {
        text: false,
        ..ExtractConfig::default()
    };
    assert_eq!(classify(&headers("text/html"), &no_text), BodyClass::Opaque);
}

fn multipart_with(b: &str) -> BodyClass {
    BodyClass::Multipart { boundary: b.into() }
}

#[test]
fn json_strings_anywhere_are_found_with_their_pointers() {
    let data_url = format!("data:image/png;base64,{}", b64(PNG));
    for (doc, place) in [
        (
            serde_json::json!({"artifacts": [{"base64": b64(PNG), "seed": 1}]}),
            "json /artifacts/0/base64",
        ),
        (
            serde_json::json!({"predictions": [{"bytesBase64Encoded": b64(PNG)}]}),
            "json /predictions/0/bytesBase64Encoded",
        ),
        (
            serde_json::json!({"images": [{"url": data_url}]}),
            "json /images/0/url",
        ),
        (
            serde_json::json!({"prompt": "a cat", "init_image": b64(PNG)}),
            "json /init_image",
        ),
        (
            serde_json::json!({"a/b": {"c~d": b64(PNG)}}),
            "json /a~1b/c~0d",
        ),
    ] {
        let found = run(&BodyClass::Json, serde_json::to_vec(&doc).unwrap()).unwrap();
        assert_eq!(places(&found), [place], "{doc}");
        assert_eq!(&found.items[0].data[..], PNG);
    }
}

#[test]
fn escaped_json_and_duplicate_keys_hide_nothing() {
    // Every `/` escaped, and the media under the first of two equal keys.
    let escaped = b64(PNG).replace('/', "\\/");
    let body = format!(r#"{{"image": "{escaped}", "image": "harmless"}}"#);
    let found = run(&BodyClass::Json, body).unwrap();
    assert_eq!(found.items.len(), 1);
    // \u escapes of every character.
    let unicode: String = b64(PNG)
        .chars()
        .map(|c| format!("\\u{:04x}", c as u32))
        .collect();
    let found = run(&BodyClass::Json, format!(r#"{{"x": "{unicode}"}}"#)).unwrap();
    assert_eq!(found.items.len(), 1);
}

#[test]
fn configured_pointers_narrow_the_json_search() {
    let body = serde_json::to_vec(&serde_json::json!({"a": b64(PNG), "b": [b64(PNG)]})).unwrap();
    let cfg = ExtractConfig {
        json_pointers: vec!["/b/*".into()],
        ..ExtractConfig::default()
    };
    let found = run_with(&BodyClass::Json, body, &cfg).unwrap();
    assert_eq!(places(&found), ["json /b/0"]);
}

#[test]
fn non_media_base64_and_text_are_left_alone() {
    let doc = serde_json::json!({
        "token": b64(&[0x42; 90]),
        "prompt": "a long prompt ".repeat(20),
        "url": "https://example.com/x.png",
    });
    let found = run(&BodyClass::Json, serde_json::to_vec(&doc).unwrap()).unwrap();
    assert!(found.items.is_empty() && found.urls.is_empty());
    // Base64 whose opening bytes are media and whose rest is not base64: what decodes before
    // the stray bytes is the item (as lenient receivers decode it).
    let broken = format!("{}!!!!", &b64(PNG)[..64]);
    let found = run(&BodyClass::Json, format!(r#"{{"x": "{broken}"}}"#)).unwrap();
    assert_eq!(found.items[0].data.len(), 48);
}

#[test]
fn bad_json_is_malformed_and_raw_non_media_is_unsupported() {
    let err = run(&BodyClass::Json, format!(r#"{{"data": ["{}""#, b64(PNG))).unwrap_err();
    assert!(
        matches!(err, ExtractError::Malformed { format: "JSON", .. }),
        "{err}"
    );
    let raw = BodyClass::Raw {
        declared: "image/png".into(),
    };
    let err = run(&raw, "hello").unwrap_err();
    assert!(matches!(err, ExtractError::Unsupported(_)), "{err}");
    // Deep nesting is refused by the parser's recursion limit, quickly.
    let deep = "[".repeat(100_000);
    let started = Instant::now();
    assert!(run(&BodyClass::Json, deep.clone()).is_err());
    // Undeclared, it is looked through as text instead (and holds nothing).
    assert!(run(&BodyClass::Sniff, deep).unwrap().items.is_empty());
    assert!(started.elapsed() < Duration::from_secs(1));
}

#[test]
fn form_fields_and_text_bodies() {
    let body = form_urlencoded::Serializer::new(String::new())
        .append_pair("prompt", "a cat")
        .append_pair("image", &b64(PNG))
        .finish();
    let found = run(&BodyClass::Form, body).unwrap();
    assert_eq!(places(&found), [r#"field "image""#]);
    let text = format!("<req><img>{}</img></req>", b64(PNG));
    let found = run(&BodyClass::Sniff, text).unwrap();
    assert_eq!(places(&found), ["text @10"]);
    // A whole body that is a data URL.
    let found = run(
        &BodyClass::Sniff,
        format!("data:image/png;base64,{}", b64(PNG)),
    )
    .unwrap();
    assert_eq!(found.items.len(), 1);
}

#[test]
fn every_multipart_part_is_looked_at_by_content() {
    let json_part = serde_json::to_vec(&serde_json::json!({"ref": b64(PNG)})).unwrap();
    let body = form(&[
        ("prompt", None, None, b"a cat"),
        ("image", Some("a.png"), Some("image/png"), PNG),
        ("mask", None, None, PNG),
        ("params", None, Some("application/json"), &json_part),
        ("b64", None, None, b64(PNG).as_bytes()),
    ]);
    let found = run(&multipart(), body).unwrap();
    assert_eq!(
        places(&found),
        [
            r#"part "image" ("a.png")"#,
            r#"part "mask""#,
            r#"part "params" › json /ref"#,
            r#"part "b64""#,
        ]
    );
    let body = form(&[("image", Some("a.png"), Some("image/png"), b"not an image")]);
    assert!(matches!(
        run(&multipart(), body),
        Err(ExtractError::Unsupported(_))
    ));
    let body = form(&[("image", Some("a.png"), Some("image/png"), PNG)]);
    let cut = body.slice(..body.len() - 12);
    assert!(matches!(
        run(&multipart(), cut),
        Err(ExtractError::Malformed { .. })
    ));
}

#[test]
fn archives_raw_in_parts_and_nested() {
    let zip = zip_of(&[
        ("set/a.png", PNG),
        ("set/notes.txt", b"caption"),
        ("set/b.png", PNG),
    ]);
    let found = run(&BodyClass::Sniff, zip.clone()).unwrap();
    assert_eq!(
        places(&found),
        [r#"member "set/a.png""#, r#"member "set/b.png""#]
    );
    let tgz = gzip(&tar_of(&[("x/a.png", PNG)]));
    let found = run(&BodyClass::Sniff, tgz).unwrap();
    assert_eq!(places(&found), [r#"gzip › member "x/a.png""#]);
    // A zip in a JSON string in a multipart part.
    let json_part = serde_json::to_vec(&serde_json::json!({"dataset": b64(&zip)})).unwrap();
    let body = form(&[("meta", None, Some("application/json"), &json_part)]);
    let found = run(&multipart(), body).unwrap();
    assert_eq!(
        places(&found)[0],
        r#"part "meta" › json /dataset › member "set/a.png""#
    );
    // A zip appended to an image (polyglot): both seen.
    let mut poly = PNG.to_vec();
    poly.extend_from_slice(&zip_of(&[("hidden.png", PNG)]));
    let found = run(&BodyClass::Sniff, poly).unwrap();
    assert_eq!(places(&found), ["body", r#"member "hidden.png""#]);
    // Archives that cannot be opened are not passed unseen.
    let err = run(&BodyClass::Sniff, &b"7z\xbc\xaf\x27\x1c\0\x04rest"[..]).unwrap_err();
    assert!(matches!(err, ExtractError::Unsupported(_)), "{err}");
}

#[test]
fn content_encoding_is_undone_and_the_decoded_body_kept() {
    let body = serde_json::to_vec(&serde_json::json!({"image": b64(PNG)})).unwrap();
    for (coding, packed) in [
        (Coding::Gzip, gzip(&body)),
        (Coding::Zstd, zstd::encode_all(&body[..], 3).unwrap()),
        (Coding::Deflate, {
            let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(&body).unwrap();
            e.finish().unwrap()
        }),
    ] {
        let class = BodyClass::Encoded {
            codings: vec![coding],
            inner: Box::new(BodyClass::Json),
        };
        let found = run(&class, packed).unwrap();
        assert_eq!(places(&found), ["json /image"], "{coding:?}");
        assert_eq!(found.decoded.as_deref(), Some(&body[..]));
    }
    let class = BodyClass::Encoded {
        codings: vec![Coding::Gzip],
        inner: Box::new(BodyClass::Json),
    };
    assert!(matches!(
        run(&class, &b"not gzip"[..]),
        Err(ExtractError::Malformed { .. })
    ));
}

#[test]
fn bombs_and_bounds_stop_the_walk() {
    let cfg = ExtractConfig {
        max_expanded: 8 << 20,
        ..ExtractConfig::default()
    };
    // A gzip bomb: 64 MiB of zeros.
    let bomb = gzip(&vec![0u8; 64 << 20]);
    let started = Instant::now();
    let err = run_with(&BodyClass::Sniff, bomb.clone(), &cfg).unwrap_err();
    assert!(matches!(err, ExtractError::Limit(_)), "{err}");
    let class = BodyClass::Encoded {
        codings: vec![Coding::Gzip],
        inner: Box::new(BodyClass::Sniff),
    };
    assert!(matches!(
        run_with(&class, bomb, &cfg),
        Err(ExtractError::Limit(_))
    ));
    // Nested zips (42.zip-style): every level a zip of zips of zeros.
    let mut level = zip_of(&[("zeros", &vec![0u8; 4 << 20])]);
    for _ in 0..4 {
        let copies: Vec<(String, Vec<u8>)> = (0..8)
            .map(|i| (format!("{i}.zip"), level.clone()))
            .collect();
        let refs: Vec<(&str, &[u8])> = copies.iter().map(|(n, d)| (n.as_str(), &d[..])).collect();
        level = zip_of(&refs);
    }
    let err = run_with(&BodyClass::Sniff, level, &cfg).unwrap_err();
    assert!(matches!(err, ExtractError::Limit(_)), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    // Depth: a zip in a zip ... deeper than max_depth.
    let mut nested = PNG.to_vec();
    for i in 0..8 {
        nested = zip_of(&[(&format!("{i}"), &nested)]);
    }
    let err = run(&BodyClass::Sniff, nested).unwrap_err();
    assert!(
        matches!(err, ExtractError::Limit(ref m) if m.contains("max_depth")),
        "{err}"
    );
    // Too many items.
    let many: Vec<(String, &[u8])> = (0..20).map(|i| (format!("{i}.png"), PNG)).collect();
    let refs: Vec<(&str, &[u8])> = many.iter().map(|(n, d)| (n.as_str(), *d)).collect();
    let err = run(&BodyClass::Sniff, zip_of(&refs)).unwrap_err();
    assert!(matches!(err, ExtractError::TooManyItems(16)), "{err}");
    // Out of time.
    let err = extract_blocking(
        &BodyClass::Sniff,
        zip_of(&[("a.png", PNG)]).into(),
        &ExtractConfig::default(),
        16,
        Instant::now() - Duration::from_millis(1),
    )
    .unwrap_err();
    assert!(matches!(err, ExtractError::Limit(_)), "{err}");
}

#[test]
fn allow_listed_urls_are_collected_others_ignored() {
    let cfg: ExtractConfig = serde_yaml_ng::from_str("fetch: {hosts: [cdn.example.com]}").unwrap();
    let doc = serde_json::json!({"data": [
        {"url": "https://cdn.example.com/img/1.png?sig=abc"},
        {"url": "https://elsewhere.example.org/2.png"},
    ]});
    let found = run_with(&BodyClass::Json, serde_json::to_vec(&doc).unwrap(), &cfg).unwrap();
    assert_eq!(found.urls.len(), 1);
    assert_eq!(found.urls[0].location.to_string(), "json /data/0/url");
}

/// What an attacker (or an unusual client) sends, from the outside review of this walk.
#[test]
fn tricks_from_the_review() {
    let img = b64(PNG);
    // Non-ASCII text around media never panics, and the media is found.
    let doc = serde_json::json!({"name": "Françoise 😀 日本語のテキストです", "img": img});
    let found = run(&BodyClass::Json, serde_json::to_vec(&doc).unwrap()).unwrap();
    assert_eq!(places(&found), ["json /img"]);
    assert!(
        run(&BodyClass::Sniff, "😀".repeat(100))
            .unwrap()
            .items
            .is_empty()
    );
    // Data URLs inside data URLs end at a bound, not in a stack overflow.
    let nested = format!("{}{}", "data:,".repeat(3000), "A".repeat(64));
    assert!(matches!(
        run(&BodyClass::Sniff, nested),
        Err(ExtractError::Limit(_))
    ));
    // A raw image declared JSON or a form is still an image.
    for class in [BodyClass::Json, BodyClass::Form] {
        let found = run(&class, PNG).unwrap();
        assert_eq!(found.items.len(), 1, "{class:?}");
    }
    // Declared JSON that is not UTF-8 JSON is refused.
    let utf16: Vec<u8> = "{\"a\": 1}"
        .encode_utf16()
        .flat_map(u16::to_le_bytes)
        .collect();
    assert!(matches!(
        run(&BodyClass::Json, utf16),
        Err(ExtractError::Malformed { .. })
    ));
    // A percent-encoded image in a form keeps its bytes.
    let pct: String = PNG.iter().map(|b| format!("%{b:02X}")).collect();
    let found = run(&BodyClass::Form, format!("a=1&img={pct}")).unwrap();
    assert_eq!(places(&found), [r#"field "img""#]);
    // Mixed alphabets, spaces inside a data URL, a hash line before the base64.
    let mixed = img.replacen('/', "_", 1).replacen('+', "-", 1);
    let spaced: String = img
        .as_bytes()
        .chunks(10)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect::<Vec<_>>()
        .join(" ");
    let hashed = format!("{}\n{img}", "ab".repeat(40));
    for value in [mixed, format!("data:image/png;base64,{spaced}"), hashed] {
        let doc = serde_json::json!({ "v": value });
        let found = run(&BodyClass::Json, serde_json::to_vec(&doc).unwrap()).unwrap();
        assert_eq!(found.items.len(), 1, "{value}");
    }
    // An event stream with escaped slashes in its JSON lines.
    let sse = format!(
        "event: image\ndata: {{\"b64_json\": \"{}\"}}\n\n",
        img.replace('/', "\\/")
    );
    assert_eq!(run(&BodyClass::Sniff, sse).unwrap().items.len(), 1);
    // SVG text with an embedded raster image.
    let svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg"><image href="data:image/png;base64,{img}"/></svg>"#
    );
    let class = classify(&headers("image/svg+xml"), &ExtractConfig::default());
    assert_eq!(run(&class, svg).unwrap().items.len(), 1);
    // A zip behind a junk prefix.
    let mut junk = b"X".to_vec();
    junk.extend_from_slice(&zip_of(&[("a.png", PNG)]));
    assert_eq!(run(&BodyClass::Sniff, junk).unwrap().items.len(), 1);
    // A zip whose central directory hides one of its local entries.
    let listed = zip_of(&[("a.txt", b"text")]);
    let hidden = zip_of(&[("b.png", PNG)]);
    let cd = memchr::memmem::find(&hidden, b"PK\x01\x02").unwrap();
    let mut sneaky = hidden[..cd].to_vec();
    sneaky.extend_from_slice(&listed);
    assert!(matches!(
        run(&BodyClass::Sniff, sneaky),
        Err(ExtractError::Unsupported(_))
    ));
    // Multipart with no (or a wrong) Content-Type, found by its boundary line.
    let body = form(&[("image", Some("a.png"), None, PNG)]);
    assert_eq!(run(&BodyClass::Sniff, body).unwrap().items.len(), 1);
    // A quoted-printable part is refused; a base64 part is decoded.
    let qp = b"--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n=89PNG\r\n--XyZ--\r\n";
    assert!(matches!(
        run(&multipart(), &qp[..]),
        Err(ExtractError::Unsupported(_))
    ));
    let b64part = format!(
        "--XyZ\r\nContent-Disposition: form-data; name=\"a\"\r\nContent-Transfer-Encoding: base64\r\n\r\n{img}\r\n--XyZ--\r\n"
    );
    assert_eq!(run(&multipart(), b64part).unwrap().items.len(), 1);
}

/// What an outside attack on the running proxy got through, now found or refused.
#[test]
fn tricks_from_the_outside_attack() {
    let img = b64(PNG);
    // A zip whose local header says deflate where its directory says stored.
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let stored =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    w.start_file("a.png", stored).unwrap();
    w.write_all(PNG).unwrap();
    let mut mismatch = w.finish().unwrap().into_inner();
    mismatch[8] = 8;
    assert!(matches!(
        run(&BodyClass::Sniff, mismatch),
        Err(ExtractError::Unsupported(_))
    ));
    // A bare-LF delimiter inside a part (parsers that accept LF see another part).
    let lf = b"--XyZ\r\nContent-Disposition: form-data; name=\"t\"\r\n\r\nhello\n--XyZ\nContent-Disposition: form-data; name=\"f\"; filename=\"a.png\"\n\nPNG\n--XyZ--\n\r\n--XyZ--\r\n";
    assert!(matches!(
        run(&multipart(), &lf[..]),
        Err(ExtractError::Malformed { .. })
    ));
    // UTF-16 JSON sent as text.
    let utf16: Vec<u8> = format!("{{\"a\":\"{img}\"}}")
        .encode_utf16()
        .flat_map(u16::to_le_bytes)
        .collect();
    assert_eq!(run(&BodyClass::Sniff, utf16).unwrap().items.len(), 1);
    // HTML data URLs with character references, percent-escapes and whitespace.
    for payload in [
        img.replace('/', "&#47;"),
        img.replace('/', "%2F").replace('+', "%2B"),
        img.as_bytes()
            .chunks(3)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect::<Vec<_>>()
            .join("\n "),
    ] {
        let html = format!("<p>hi</p><img src=\"data:image/png;base64,{payload}\"><p>bye</p>");
        assert_eq!(
            run(&BodyClass::Sniff, html).unwrap().items.len(),
            1,
            "{payload}"
        );
    }
    // A v7 tar (no ustar magic), a zstd stream behind a skippable frame, LZMA-alone.
    let mut t = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_old();
    h.set_path("a.png").unwrap();
    h.set_size(PNG.len() as u64);
    h.set_mode(0o644);
    h.set_cksum();
    t.append(&h, PNG).unwrap();
    assert_eq!(
        run(&BodyClass::Sniff, t.into_inner().unwrap())
            .unwrap()
            .items
            .len(),
        1
    );
    let mut skippable = vec![0x50, 0x2A, 0x4D, 0x18, 4, 0, 0, 0, 1, 2, 3, 4];
    skippable.extend(zstd::encode_all(PNG, 3).unwrap());
    assert_eq!(run(&BodyClass::Sniff, skippable).unwrap().items.len(), 1);
    let lzma = [
        0x5D, 0, 0, 0x80, 0, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0, 1,
    ];
    assert!(matches!(
        run(&BodyClass::Sniff, lzma.to_vec()),
        Err(ExtractError::Unsupported(_))
    ));
    // An e-mail with a base64 attachment and its closing boundary right after.
    let wrapped: Vec<&str> = img
        .as_bytes()
        .chunks(76)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    let eml = format!(
        "Subject: hi\r\nContent-Type: multipart/mixed; boundary=\"B\"\r\n\r\n--B\r\nContent-Type: image/png\r\nContent-Transfer-Encoding: base64\r\n\r\n{}\r\n--B--\r\n",
        wrapped.join("\r\n")
    );
    assert_eq!(run(&BodyClass::Sniff, eml).unwrap().items.len(), 1);
}

/// Found by the hostile corpus (issue 18): base64 whose content is text — here a multipart
/// body whose JSON part holds the image as base64 — was left undecoded, so media nested
/// JSON → base64 → multipart → JSON → base64 reached the upstream.
#[test]
fn base64_of_text_is_followed_into_what_the_text_holds() {
    let mut layer = PNG.to_vec();
    for depth in 1..=6 {
        layer = if depth % 2 == 1 {
            serde_json::to_vec(&serde_json::json!({"d": depth, "data": b64(&layer)})).unwrap()
        } else {
            let mut mp = format!(
                "--b{depth}\r\nContent-Disposition: form-data; name=\"f\"\r\nContent-Type: application/json\r\n\r\n"
            )
            .into_bytes();
            mp.extend_from_slice(&layer);
            mp.extend_from_slice(format!("\r\n--b{depth}--\r\n").as_bytes());
            mp
        };
        let class = if depth % 2 == 1 {
            BodyClass::Json
        } else {
            BodyClass::Multipart {
                boundary: format!("b{depth}"),
            }
        };
        let found = run(&class, layer.clone()).unwrap();
        assert_eq!(found.items.len(), 1, "depth {depth}: {:?}", places(&found));
    }
}

/// From the review of that fix: base64 whose opening decodes to text must not hide media
/// on a later line, and base64 whose content opens with control bytes is still looked into.
#[test]
fn base64_of_anything_is_looked_into_and_later_lines_still_tried() {
    let text = "lorem ipsum dolor sit amet ".repeat(220); // ~6 KB of plain text
    let body = format!("{}\n{}", b64(text.as_bytes()), b64(PNG));
    let found = run(
        &BodyClass::Json,
        serde_json::to_vec(&serde_json::json!({"a": body})).unwrap(),
    )
    .unwrap();
    assert_eq!(found.items.len(), 1, "{:?}", places(&found));
    // Text opening with control bytes and a Latin-1 byte, base64 media inside it.
    let mut text = b"\0\x01\xe9 caption: ".to_vec();
    text.extend_from_slice(b64(PNG).as_bytes());
    let inner = serde_json::json!({"x": b64(&text)});
    let found = run(&BodyClass::Json, serde_json::to_vec(&inner).unwrap()).unwrap();
    assert_eq!(found.items.len(), 1, "{:?}", places(&found));
}
