//! The watermark detector on arbitrary images.
#![no_main]
use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use likeguard::actions::watermark::ImageWatermarker;
use likeguard::config::WatermarkConfig;

static MARKER: LazyLock<ImageWatermarker> =
    LazyLock::new(|| ImageWatermarker::new(&WatermarkConfig::default()));

fuzz_target!(|data: &[u8]| {
    let _ = MARKER.detect_file(data);
});
