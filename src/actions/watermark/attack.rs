//! Ordinary handling a mark must survive, and image-quality measures: shared by
//! `likeguard eval watermark`, the tests and the benches.

use image::{ImageEncoder, RgbImage, imageops};

/// One way an image gets handled after it leaves the proxy.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Attack {
    None,
    Jpeg(u8),
    Resize(f32),
    /// Centre crop keeping this fraction of each side.
    Crop(f32),
    /// Multiply every channel (1.1 = +10%).
    Brightness(f32),
}

impl Attack {
    /// The set the robustness table reports.
    pub const TABLE: [Attack; 7] = [
        Attack::None,
        Attack::Jpeg(75),
        Attack::Jpeg(50),
        Attack::Resize(0.5),
        Attack::Crop(0.9),
        Attack::Brightness(1.1),
        Attack::Brightness(0.9),
    ];

    pub fn name(&self) -> String {
        match self {
            Self::None => "none".into(),
            Self::Jpeg(q) => format!("jpeg{q}"),
            Self::Resize(k) => format!("resize{k}"),
            Self::Crop(k) => format!("crop{:.0}", k * 100.0),
            Self::Brightness(k) if *k >= 1.0 => format!("brightness+{:.0}%", (k - 1.0) * 100.0),
            Self::Brightness(k) => format!("brightness-{:.0}%", (1.0 - k) * 100.0),
        }
    }

    pub fn apply(&self, img: &RgbImage) -> RgbImage {
        let (w, h) = img.dimensions();
        match *self {
            Self::None => img.clone(),
            Self::Jpeg(q) => {
                let mut out = Vec::new();
                image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, q)
                    .write_image(img.as_raw(), w, h, image::ExtendedColorType::Rgb8)
                    .expect("encoding to memory");
                image::load_from_memory(&out).expect("own JPEG").to_rgb8()
            }
            Self::Resize(k) => {
                let (nw, nh) = (
                    ((w as f32 * k).round() as u32).max(1),
                    ((h as f32 * k).round() as u32).max(1),
                );
                imageops::resize(img, nw, nh, imageops::FilterType::Triangle)
            }
            Self::Crop(k) => {
                let (nw, nh) = ((w as f32 * k).round() as u32, (h as f32 * k).round() as u32);
                imageops::crop_imm(img, (w - nw) / 2, (h - nh) / 2, nw, nh).to_image()
            }
            Self::Brightness(k) => {
                let mut out = img.clone();
                for v in out.iter_mut() {
                    *v = (*v as f32 * k).round().clamp(0.0, 255.0) as u8;
                }
                out
            }
        }
    }
}

/// Peak signal-to-noise ratio over RGB, dB.
pub fn psnr(a: &RgbImage, b: &RgbImage) -> f64 {
    let mse = a
        .iter()
        .zip(b.iter())
        .map(|(x, y)| (f64::from(*x) - f64::from(*y)).powi(2))
        .sum::<f64>()
        / a.as_raw().len() as f64;
    if mse == 0.0 {
        f64::INFINITY
    } else {
        10.0 * (255.0f64 * 255.0 / mse).log10()
    }
}

/// Mean SSIM of the luminance over 8×8 windows (stride 4), the usual constants.
pub fn ssim(a: &RgbImage, b: &RgbImage) -> f64 {
    let luma = |img: &RgbImage| -> Vec<f64> {
        img.pixels()
            .map(|p| 0.299 * f64::from(p[0]) + 0.587 * f64::from(p[1]) + 0.114 * f64::from(p[2]))
            .collect()
    };
    let (la, lb) = (luma(a), luma(b));
    let (w, h) = (a.width() as usize, a.height() as usize);
    let (c1, c2) = ((0.01f64 * 255.0).powi(2), (0.03f64 * 255.0).powi(2));
    let (mut total, mut n) = (0.0, 0usize);
    for y in (0..h.saturating_sub(7)).step_by(4) {
        for x in (0..w.saturating_sub(7)).step_by(4) {
            let (mut sa, mut sb, mut saa, mut sbb, mut sab) = (0.0, 0.0, 0.0, 0.0, 0.0);
            for j in y..y + 8 {
                for i in x..x + 8 {
                    let (p, q) = (la[j * w + i], lb[j * w + i]);
                    sa += p;
                    sb += q;
                    saa += p * p;
                    sbb += q * q;
                    sab += p * q;
                }
            }
            let (ma, mb) = (sa / 64.0, sb / 64.0);
            let (va, vb, cov) = (
                saa / 64.0 - ma * ma,
                sbb / 64.0 - mb * mb,
                sab / 64.0 - ma * mb,
            );
            total += ((2.0 * ma * mb + c1) * (2.0 * cov + c2))
                / ((ma * ma + mb * mb + c1) * (va + vb + c2));
            n += 1;
        }
    }
    if n == 0 { 1.0 } else { total / n as f64 }
}
