//! Luminance views. The mark lives in luminance only, so an RGB image and the Y plane of a
//! decoded video frame are marked and read by the same code.

use image::RgbImage;

/// Something with a luminance to read.
pub trait Luma {
    fn dimensions(&self) -> (u32, u32);
    /// Luminance (8-bit scale) of row `y` into `out` (`out.len()` = width).
    fn luma_row(&self, y: u32, out: &mut [f32]);
}

/// Something whose luminance can be changed.
pub trait LumaMut: Luma {
    /// Adds `delta[x]` (8-bit levels) to the luminance of row `y`, rounding and clamping.
    fn add_row(&mut self, y: u32, delta: &[f32]);
}

impl Luma for RgbImage {
    fn dimensions(&self) -> (u32, u32) {
        RgbImage::dimensions(self)
    }
    fn luma_row(&self, y: u32, out: &mut [f32]) {
        let w = self.width() as usize;
        let row = &self.as_raw()[y as usize * w * 3..][..w * 3];
        for (o, px) in out.iter_mut().zip(row.chunks_exact(3)) {
            *o = 0.299 * px[0] as f32 + 0.587 * px[1] as f32 + 0.114 * px[2] as f32;
        }
    }
}

impl LumaMut for RgbImage {
    fn add_row(&mut self, y: u32, delta: &[f32]) {
        // The same offset on R, G and B moves luminance by that offset and leaves chroma alone.
        let w = self.width() as usize;
        let row = &mut (**self)[y as usize * w * 3..][..w * 3];
        for (px, &d) in row.chunks_exact_mut(3).zip(delta) {
            for v in px {
                *v = (*v as f32 + d).round().clamp(0.0, 255.0) as u8;
            }
        }
    }
}

/// An 8-bit luminance plane with a row stride (the Y plane of an I420/NV12 frame, or GRAY8).
pub struct Plane<D> {
    pub data: D,
    pub width: u32,
    pub height: u32,
    pub stride: usize,
}

impl<D: AsRef<[u8]>> Plane<D> {
    /// A view of `data`, or `None` when it is too short for the geometry.
    pub fn new(data: D, width: u32, height: u32, stride: usize) -> Option<Self> {
        let need = stride * (height as usize).saturating_sub(1) + width as usize;
        (stride >= width as usize && data.as_ref().len() >= need && width > 0 && height > 0).then(
            || Self {
                data,
                width,
                height,
                stride,
            },
        )
    }

    fn row(&self, y: u32) -> &[u8] {
        &self.data.as_ref()[y as usize * self.stride..][..self.width as usize]
    }
}

impl<D: AsRef<[u8]>> Luma for Plane<D> {
    fn dimensions(&self) -> (u32, u32) {
        (self.width, self.height)
    }
    fn luma_row(&self, y: u32, out: &mut [f32]) {
        for (o, &v) in out.iter_mut().zip(self.row(y)) {
            *o = v as f32;
        }
    }
}

impl<D: AsRef<[u8]> + AsMut<[u8]>> LumaMut for Plane<D> {
    fn add_row(&mut self, y: u32, delta: &[f32]) {
        let (start, w) = (y as usize * self.stride, self.width as usize);
        for (v, &d) in self.data.as_mut()[start..start + w].iter_mut().zip(delta) {
            *v = (*v as f32 + d).round().clamp(0.0, 255.0) as u8;
        }
    }
}
