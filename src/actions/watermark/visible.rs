//! The visible mark: a text or logo stamp alpha-blended onto images and video frames, for
//! rules that want viewers to see that a picture was marked. Built once at start-up (font
//! rasterised or logo decoded), scaled to each picture's size.

use ab_glyph::{Font, FontVec, PxScale, ScaleFont, point};
use image::{RgbImage, Rgba, RgbaImage, imageops};

use super::WatermarkError;
use crate::config::{StampPosition as Position, VisibleConfig};

/// Text is rasterised at this height (px) and scaled down per picture.
const TEXT_PX: f32 = 96.0;
/// The dark outline behind text, in rasterised px (legible on light and dark pictures).
const OUTLINE: i32 = 4;

/// The stamp, ready to be placed on pictures of any size.
pub struct Stamp {
    rgba: RgbaImage,
    position: Position,
    opacity: f32,
    size: f32,
    margin: f32,
}

impl Stamp {
    pub fn load(cfg: &VisibleConfig) -> Result<Self, WatermarkError> {
        let bad = |m: String| WatermarkError::Unsupported(format!("watermark.visible: {m}"));
        if !(0.0..=1.0).contains(&cfg.opacity) || !(0.005..=1.0).contains(&cfg.size) {
            return Err(bad("opacity must be 0..1 and size 0.005..1".into()));
        }
        let rgba = match (&cfg.text, &cfg.logo_file) {
            (Some(text), None) if !text.trim().is_empty() => {
                let data = std::fs::read(&cfg.font_file)
                    .map_err(|e| bad(format!("font_file {}: {e}", cfg.font_file.display())))?;
                let font = FontVec::try_from_vec(data).map_err(|_| {
                    bad(format!("font_file {}: not a font", cfg.font_file.display()))
                })?;
                render_text(&font, text.trim())
            }
            (None, Some(logo)) => image::open(logo)
                .map_err(|e| bad(format!("logo_file {}: {e}", logo.display())))?
                .to_rgba8(),
            _ => return Err(bad("give exactly one of `text` and `logo_file`".into())),
        };
        Ok(Self {
            rgba,
            position: cfg.position,
            opacity: cfg.opacity,
            size: cfg.size,
            margin: cfg.margin,
        })
    }

    /// The stamp scaled and positioned for a `w`×`h` picture.
    pub fn place(&self, w: u32, h: u32) -> Placed {
        let short = w.min(h) as f32;
        let height = (short * self.size).round().max(8.0);
        let width = (height * self.rgba.width() as f32 / self.rgba.height() as f32).round();
        // Never wider than the picture (long text on a narrow picture).
        let k = (w as f32 * (1.0 - 2.0 * self.margin) / width).min(1.0);
        let (sw, sh) = (
            ((width * k) as u32).clamp(1, w),
            ((height * k) as u32).clamp(1, h),
        );
        let img = imageops::resize(&self.rgba, sw, sh, imageops::FilterType::Triangle);
        let m = (short * self.margin).round() as u32;
        let (right, bottom) = (w.saturating_sub(sw + m), h.saturating_sub(sh + m));
        let (x, y) = match self.position {
            Position::TopLeft => (m, m),
            Position::TopRight => (right, m),
            Position::BottomLeft => (m, bottom),
            Position::BottomRight => (right, bottom),
            Position::Center => ((w - sw) / 2, (h - sh) / 2),
        };
        Placed {
            img,
            x,
            y,
            opacity: self.opacity,
        }
    }
}

/// A stamp at its place on one picture size.
pub struct Placed {
    img: RgbaImage,
    x: u32,
    y: u32,
    opacity: f32,
}

impl Placed {
    pub fn apply_rgb(&self, pic: &mut RgbImage) {
        for (sx, sy, &Rgba([r, g, b, a])) in self.img.enumerate_pixels() {
            let a = a as f32 / 255.0 * self.opacity;
            if a <= 0.0 {
                continue;
            }
            if let Some(px) = pic.get_pixel_mut_checked(self.x + sx, self.y + sy) {
                for (d, s) in px.0.iter_mut().zip([r, g, b]) {
                    *d = (*d as f32 * (1.0 - a) + s as f32 * a).round() as u8;
                }
            }
        }
    }

    /// Blends into an I420 frame (BT.601, video range): luminance per pixel, chroma per 2×2.
    pub fn apply_i420(&self, frame: &mut crate::media::LumaFrame<'_>) {
        let (fw, fh) = (frame.width as usize, frame.height as usize);
        for (sx, sy, &Rgba([r, g, b, a])) in self.img.enumerate_pixels() {
            let a = a as f32 / 255.0 * self.opacity;
            let (x, y) = ((self.x + sx) as usize, (self.y + sy) as usize);
            if a <= 0.0 || x >= fw || y >= fh {
                continue;
            }
            let (r, g, b) = (r as f32, g as f32, b as f32);
            let luma = 16.0 + 219.0 / 255.0 * (0.299 * r + 0.587 * g + 0.114 * b);
            let v = &mut frame.data[y * frame.stride + x];
            *v = (*v as f32 * (1.0 - a) + luma * a).round() as u8;
            if let Some(c) = frame.chroma.as_mut() {
                // Each chroma sample takes a quarter of each of its four pixels' blend.
                let (a4, i) = (a / 4.0, (y / 2) * c.stride + x / 2);
                let cb = 128.0 + 224.0 / 255.0 * (-0.1687 * r - 0.3313 * g + 0.5 * b);
                let cr = 128.0 + 224.0 / 255.0 * (0.5 * r - 0.4187 * g - 0.0813 * b);
                if let (Some(u), Some(vv)) = (c.u.get(i).copied(), c.v.get(i).copied()) {
                    c.u[i] = (u as f32 * (1.0 - a4) + cb * a4).round() as u8;
                    c.v[i] = (vv as f32 * (1.0 - a4) + cr * a4).round() as u8;
                }
            }
        }
    }
}

/// White text with a dark outline on a transparent background.
fn render_text(font: &FontVec, text: &str) -> RgbaImage {
    let scale = PxScale::from(TEXT_PX);
    let sf = font.as_scaled(scale);
    let pad = OUTLINE + 2;
    let mut glyphs = Vec::new();
    let (mut x, mut prev) = (0f32, None);
    for c in text.chars() {
        let id = sf.glyph_id(c);
        if let Some(p) = prev {
            x += sf.kern(p, id);
        }
        glyphs.push(id.with_scale_and_position(scale, point(x, sf.ascent())));
        x += sf.h_advance(id);
        prev = Some(id);
    }
    let (w, h) = (
        x.ceil() as i32 + 2 * pad,
        (sf.ascent() - sf.descent()).ceil() as i32 + 2 * pad,
    );
    let mut cover = vec![0f32; (w * h) as usize];
    for g in glyphs {
        if let Some(outline) = font.outline_glyph(g) {
            let bounds = outline.px_bounds();
            outline.draw(|gx, gy, c| {
                let px = gx as i32 + bounds.min.x as i32 + pad;
                let py = gy as i32 + bounds.min.y as i32 + pad;
                if (0..w).contains(&px) && (0..h).contains(&py) {
                    let i = (py * w + px) as usize;
                    cover[i] = cover[i].max(c);
                }
            });
        }
    }
    // Outline: the coverage dilated by OUTLINE px (max over a disc).
    let mut halo = vec![0f32; cover.len()];
    for y in 0..h {
        for x in 0..w {
            let mut m = 0f32;
            for dy in -OUTLINE..=OUTLINE {
                for dx in -OUTLINE..=OUTLINE {
                    let (nx, ny) = (x + dx, y + dy);
                    if dx * dx + dy * dy <= OUTLINE * OUTLINE
                        && (0..w).contains(&nx)
                        && (0..h).contains(&ny)
                    {
                        m = m.max(cover[(ny * w + nx) as usize]);
                    }
                }
            }
            halo[(y * w + x) as usize] = m;
        }
    }
    RgbaImage::from_fn(w as u32, h as u32, |x, y| {
        let i = (y as i32 * w + x as i32) as usize;
        let (t, o) = (cover[i], halo[i] * 0.8);
        let a = t + o * (1.0 - t);
        let white = if a > 0.0 { t / a } else { 0.0 };
        let v = (255.0 * white).round() as u8;
        Rgba([v, v, v, (a * 255.0).round() as u8])
    })
}
