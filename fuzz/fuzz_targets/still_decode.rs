//! The still-image decoders used in-process (BMP, TIFF, GIF, PNG, JPEG, WebP through the
//! image crate; HEIF/AVIF through libheif), under the default limits.
#![no_main]
use libfuzzer_sys::fuzz_target;
use likeguard::config::MediaConfig;

fuzz_target!(|data: &[u8]| {
    let cfg = MediaConfig::default();
    let _ = likeguard::media::decode_still(data, &cfg);
    let mut summary = likeguard::media::Summary::default();
    let _ = likeguard::media::decode_gif(data, &cfg, &mut summary, &mut |_| {
        std::ops::ControlFlow::Continue(())
    });
});
