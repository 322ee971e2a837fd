//! Embedding and detection on pixels.
//!
//! Geometry is tied to the image's size, not to pixels: the chip grid is laid out on a
//! "working" raster whose long side is fixed (`Grid::work`), so a resized copy maps back onto the same
//! grid. A crop changes the scale (the long side shrinks) and the phase: detection searches
//! scales up to `MAX_SCALE` and every cyclic shift of the tile. The tile repeats over the
//! image; detection folds every repetition onto one tile, which multiplies the mark's energy
//! against the image's by the number of tiles.

use super::code::{CODED_BITS, decode_raw, encode};
use super::luma::{Luma, LumaMut};
use super::pattern::{CHIPS, Pattern, TILE};

/// How coarse the mark is: the long side of the working raster (chips are `CHIP` working px).
/// Images use a fine grid (more tiles to fold, invisible); video uses a coarser one, since
/// H.264/VP9 quantise the finest detail away while JPEG keeps it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Grid {
    work: f32,
}

impl Grid {
    pub const IMAGE: Grid = Grid { work: 512.0 };
    pub const VIDEO: Grid = Grid { work: 256.0 };
}
/// Working pixels per chip.
const CHIP: f32 = 3.0;
/// Detection bins per chip side (sub-chip phase resolution).
const SUB: usize = 3;
const BINS: usize = TILE * SUB;
/// Largest scale searched: a crop keeping 1/1.2 ≈ 83% of the long side.
const MAX_SCALE: f32 = 1.2;
const SCALE_STEP: f32 = 0.002;
/// Box-blur radius (working px) whose output is subtracted to leave the mark's band.
const BLUR: usize = 4;
/// Sync z-score from which a CRC-valid payload is reported as a mark.
const Z_MIN: f32 = 4.5;
/// Activity floor (8-bit levels) and clip (in local standard deviations) of the whitened
/// residual.
const FLOOR: f32 = 1.5;
const CLIP: f32 = 2.5;
/// How much of a chip's own value its 3×3-bin sum holds, and of each side / corner neighbour's
/// (bilinear rendering spreads chips; detection filters with the same kernel).
const KERNEL: [f32; 3] = [0.5625, 0.09375, 0.015625];
/// Bounds of the perceptual mask (relative amplitude).
const MASK_MIN: f32 = 0.35;
const MASK_MAX: f32 = 1.8;
/// Smallest long side accepted for embedding (chips under ~2 px do not survive JPEG).
pub const MIN_SIDE: u32 = 384;

/// What detection found.
#[derive(Debug, Clone, PartialEq)]
pub struct Detection {
    pub marked: bool,
    pub payload: Option<u32>,
    /// 1 − the chance that noise gives a sync peak this strong (over every position tried).
    pub confidence: f32,
    /// Sync correlation in standard deviations of noise.
    pub sync_z: f32,
    /// Detected scale (1.0 = uncropped; resizes do not change it).
    pub scale: f32,
    /// The decoder's best guess even when the CRC fails (for measuring bit accuracy).
    pub raw_payload: u32,
}

/// Adds the mark for `payload` to the image's luminance, `strength` in 8-bit levels.
pub fn embed(img: &mut impl LumaMut, payload: u32, pattern: &Pattern, strength: f32, grid: Grid) {
    let (w, h) = img.dimensions();
    let chips = pattern.chips(&encode(payload));
    let per_chip = grid.work / w.max(h) as f32 / CHIP;
    let axis = |n: u32| -> Vec<(usize, usize, f32)> {
        (0..n)
            .map(|i| {
                let u = (i as f32 + 0.5) * per_chip - 0.5;
                let u0 = u.floor();
                let a = (u0 as i64).rem_euclid(TILE as i64) as usize;
                (a, (a + 1) % TILE, u - u0)
            })
            .collect()
    };
    let (cols, rows) = (axis(w), axis(h));
    let (mw, mh, mask) = texture_mask(img, grid);
    let k = grid.work / w.max(h) as f32;
    let mask_col: Vec<usize> = (0..w)
        .map(|x| ((x as f32 * k) as usize).min(mw - 1))
        .collect();
    let mut delta = vec![0f32; w as usize];
    for (y, &(r0, r1, fy)) in rows.iter().enumerate() {
        let m_row = &mask[((y as f32 * k) as usize).min(mh - 1) * mw..][..mw];
        let (t0, t1) = (
            &chips[r0 * TILE..(r0 + 1) * TILE],
            &chips[r1 * TILE..(r1 + 1) * TILE],
        );
        for ((d, &(c0, c1, fx)), &mc) in delta.iter_mut().zip(&cols).zip(&mask_col) {
            let top = t0[c0] + (t0[c1] - t0[c0]) * fx;
            let bottom = t1[c0] + (t1[c1] - t1[c0]) * fx;
            *d = strength * m_row[mc] * (top + (bottom - top) * fy);
        }
        img.add_row(y as u32, &delta);
    }
}

/// Looks for a mark; never fails (an image too small or flat simply is not marked).
pub fn detect(img: &impl Luma, pattern: &Pattern, grid: Grid) -> Detection {
    Residual::new(img, grid).read(pattern)
}

impl Residual {
    /// Adds another picture's residual (a later frame of the same clip): the mark is the same
    /// in every frame while content and noise vary, so the mark's share grows with each frame.
    /// Pictures of another size are ignored (returns false).
    pub fn accumulate(&mut self, other: &Residual) -> bool {
        if (self.w, self.h) != (other.w, other.h) {
            return false;
        }
        self.r.iter_mut().zip(&other.r).for_each(|(a, b)| *a += b);
        true
    }

    /// Reads the mark: the unscaled grid first, then a scale search for crops.
    pub fn read(&self, pattern: &Pattern) -> Detection {
        let mut best = self.analyse(1.0, pattern);
        if best.marked {
            return best;
        }
        // Scale search by fold energy (phase-independent): every second row is enough to find
        // the peak; the neighbourhood of the peak is then refined on every row.
        let steps = ((MAX_SCALE - 1.0) / SCALE_STEP).round() as usize;
        let coarse = self.peak((0..=steps).map(|i| 1.0 + i as f32 * SCALE_STEP), 2);
        let fine = self.peak((-4..=4).map(|i| coarse + i as f32 * SCALE_STEP / 4.0), 1);
        let found = self.analyse(fine, pattern);
        if found.marked || found.sync_z > best.sync_z {
            best = found;
        }
        best
    }
}

/// The working raster's high-pass residual: image content mostly gone, the mark's band kept.
pub struct Residual {
    w: usize,
    h: usize,
    r: Vec<f32>,
}

impl Residual {
    pub fn new(img: &impl Luma, grid: Grid) -> Self {
        let (w, h, y) = working_luma(img, grid);
        // Subtract a box blur; divide by the local activity (busy areas hide the mark but add
        // the most noise: whitening weighs each area by how well it carries the mark); clip.
        let r = high_pass(&y, w, h);
        let energy: Vec<f32> = r.iter().map(|v| v * v).collect();
        let local = box_blur(&energy, w, h);
        let r = r
            .iter()
            .zip(local)
            .map(|(v, e)| (v / (e.max(0.0) + FLOOR * FLOOR).sqrt()).clamp(-CLIP, CLIP))
            .collect();
        Self { w, h, r }
    }

    /// Folds every tile repetition at `scale` onto `BINS × BINS` sub-chip bins.
    fn fold(&self, scale: f32, row_step: usize) -> Vec<f32> {
        let per_bin = CHIP * scale / SUB as f32;
        let bin = |i: usize| ((i as f32 + 0.5) / per_bin) as usize % BINS;
        let cols: Vec<usize> = (0..self.w).map(bin).collect();
        let mut f = vec![0f32; BINS * BINS];
        for j in (0..self.h).step_by(row_step) {
            let row = &mut f[bin(j) * BINS..(bin(j) + 1) * BINS];
            for (v, &c) in self.r[j * self.w..(j + 1) * self.w].iter().zip(&cols) {
                row[c] += v;
            }
        }
        f
    }

    /// Energy of the fold: peaks where the scale lines the tiles up, whatever the shift.
    fn energy(&self, scale: f32, row_step: usize) -> f32 {
        self.fold(scale, row_step).iter().map(|v| v * v).sum()
    }

    /// The scale among `scales` with the most fold energy (each folded once).
    fn peak(&self, scales: impl Iterator<Item = f32>, row_step: usize) -> f32 {
        scales
            .map(|s| (s, self.energy(s, row_step)))
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .map_or(1.0, |(s, _)| s)
    }

    /// Sync search over sub-chip phases and tile shifts at one scale, then decoding.
    fn analyse(&self, scale: f32, pattern: &Pattern) -> Detection {
        let f = self.fold(scale, 1);
        let mut best = (f32::NEG_INFINITY, [0f32; CHIPS]);
        for p in 0..SUB {
            for q in 0..SUB {
                // Chip sums at this phase.
                let mut g = [0f32; CHIPS];
                for (i, gi) in g.chunks_exact_mut(TILE).enumerate() {
                    for (j, v) in gi.iter_mut().enumerate() {
                        for a in 0..SUB {
                            let row = (SUB * i + p + a) % BINS;
                            for b in 0..SUB {
                                *v += f[row * BINS + (SUB * j + q + b) % BINS];
                            }
                        }
                    }
                }
                let g = matched(&g);
                let norm = g.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-9);
                for dy in 0..TILE {
                    for dx in 0..TILE {
                        let mut corr = 0f32;
                        for i in 0..TILE {
                            let gi = &g[((i + dy) % TILE) * TILE..((i + dy) % TILE + 1) * TILE];
                            let si = &pattern.sync[i * TILE..(i + 1) * TILE];
                            let (a, b) = gi.split_at(dx);
                            let (s1, s2) = si.split_at(TILE - dx);
                            corr += dot(b, s1) + dot(a, s2);
                        }
                        let z = corr / norm;
                        if z > best.0 {
                            let mut aligned = [0f32; CHIPS];
                            for i in 0..TILE {
                                for j in 0..TILE {
                                    aligned[i * TILE + j] =
                                        g[((i + dy) % TILE) * TILE + (j + dx) % TILE];
                                }
                            }
                            best = (z, aligned);
                        }
                    }
                }
            }
        }
        let (z, g) = best;
        // Remove the sync's share, then despread each coded bit.
        let beta = g.iter().zip(&pattern.sync).map(|(a, b)| a * b).sum::<f32>() / CHIPS as f32;
        let mut soft = [0f32; CODED_BITS];
        for m in 0..CHIPS {
            soft[pattern.bit_of[m] as usize] += (g[m] - beta * pattern.sync[m]) * pattern.pn[m];
        }
        let (raw_payload, crc_ok) = decode_raw(&soft);
        let payload = (z >= Z_MIN && crc_ok).then_some(raw_payload);
        // Positions tried: sub-chip phases × shifts × (at most) two scales.
        let tries = (SUB * SUB * CHIPS * 2) as f64;
        let chance = (tries * 0.5 * erfc(z as f64 / std::f64::consts::SQRT_2)).min(1.0);
        Detection {
            marked: payload.is_some(),
            payload,
            confidence: (1.0 - chance) as f32,
            sync_z: z,
            scale,
            raw_payload,
        }
    }
}

/// Luminance on the working raster: box-averaged when shrinking, bilinear when enlarging.
fn working_luma(img: &impl Luma, grid: Grid) -> (usize, usize, Vec<f32>) {
    let (iw, ih) = img.dimensions();
    let k = grid.work / iw.max(ih) as f32;
    let (w, h) = (
        ((iw as f32 * k).round() as usize).max(1),
        ((ih as f32 * k).round() as usize).max(1),
    );
    let mut line = vec![0f32; iw as usize];
    if k >= 1.0 {
        // Small pictures: the whole luminance first (smaller than the raster), then interpolate.
        let mut full = vec![0f32; (iw * ih) as usize];
        for (y, row) in full.chunks_exact_mut(iw as usize).enumerate() {
            img.luma_row(y as u32, row);
        }
        let luma = |x: u32, y: u32| full[(y * iw + x) as usize];
        let mut out = vec![0f32; w * h];
        for j in 0..h {
            let sy = ((j as f32 + 0.5) / k - 0.5).clamp(0.0, (ih - 1) as f32);
            let (y0, fy) = (sy.floor() as u32, sy.fract());
            let y1 = (y0 + 1).min(ih - 1);
            for i in 0..w {
                let sx = ((i as f32 + 0.5) / k - 0.5).clamp(0.0, (iw - 1) as f32);
                let (x0, fx) = (sx.floor() as u32, sx.fract());
                let x1 = (x0 + 1).min(iw - 1);
                let top = luma(x0, y0) + (luma(x1, y0) - luma(x0, y0)) * fx;
                let bottom = luma(x0, y1) + (luma(x1, y1) - luma(x0, y1)) * fx;
                out[j * w + i] = top + (bottom - top) * fy;
            }
        }
        return (w, h, out);
    }
    // Each source pixel into its working cell.
    let mut sum = vec![0f32; w * h];
    let mut count = vec![0u32; w * h];
    let col: Vec<usize> = (0..iw)
        .map(|x| ((x as f32 * k) as usize).min(w - 1))
        .collect();
    for y in 0..ih {
        img.luma_row(y, &mut line);
        let base = ((y as f32 * k) as usize).min(h - 1) * w;
        for (&v, &c) in line.iter().zip(&col) {
            sum[base + c] += v;
            count[base + c] += 1;
        }
    }
    for (v, n) in sum.iter_mut().zip(&count) {
        *v /= (*n).max(1) as f32;
    }
    (w, h, sum)
}

/// `v` minus its box blur of radius `BLUR` (an integral image).
fn high_pass(v: &[f32], w: usize, h: usize) -> Vec<f32> {
    let blurred = box_blur(v, w, h);
    v.iter().zip(blurred).map(|(a, b)| a - b).collect()
}

fn box_blur(v: &[f32], w: usize, h: usize) -> Vec<f32> {
    let mut integral = vec![0f64; (w + 1) * (h + 1)];
    for j in 0..h {
        let mut run = 0f64;
        for i in 0..w {
            run += v[j * w + i] as f64;
            integral[(j + 1) * (w + 1) + i + 1] = integral[j * (w + 1) + i + 1] + run;
        }
    }
    let mut out = vec![0f32; w * h];
    for j in 0..h {
        let (y0, y1) = (j.saturating_sub(BLUR), (j + BLUR + 1).min(h));
        for i in 0..w {
            let (x0, x1) = (i.saturating_sub(BLUR), (i + BLUR + 1).min(w));
            let s = integral[y1 * (w + 1) + x1]
                - integral[y0 * (w + 1) + x1]
                - integral[y1 * (w + 1) + x0]
                + integral[y0 * (w + 1) + x0];
            out[j * w + i] = (s / ((y1 - y0) * (x1 - x0)) as f64) as f32;
        }
    }
    out
}

/// Perceptual mask on the working raster: stronger where the picture is busy (the mark hides
/// in texture), weaker on flat areas (where it would show), mean square 1 so the overall
/// strength holds.
fn texture_mask(img: &impl Luma, grid: Grid) -> (usize, usize, Vec<f32>) {
    let (w, h, y) = working_luma(img, grid);
    let r = high_pass(&y, w, h);
    let energy: Vec<f32> = r.iter().map(|v| v * v).collect();
    let local = box_blur(&energy, w, h);
    let mut sorted: Vec<f32> = local.clone();
    sorted.sort_by(f32::total_cmp);
    let median = sorted[sorted.len() / 2].max(1e-3);
    let mut mask: Vec<f32> = local
        .iter()
        // (Rounding in the integral image can leave tiny negatives.)
        .map(|e| (e.max(0.0) / median).powf(0.25).clamp(MASK_MIN, MASK_MAX))
        .collect();
    let rms = (mask.iter().map(|m| m * m).sum::<f32>() / mask.len() as f32).sqrt();
    mask.iter_mut().for_each(|m| *m /= rms);
    (w, h, mask)
}

/// Cyclic 3×3 filtering of chip sums with `KERNEL` (the rendering's spread, matched).
fn matched(g: &[f32; CHIPS]) -> [f32; CHIPS] {
    let mut out = [0f32; CHIPS];
    for i in 0..TILE {
        for j in 0..TILE {
            let mut v = 0f32;
            for di in [TILE - 1, 0, 1] {
                for dj in [TILE - 1, 0, 1] {
                    let k = KERNEL[usize::from(di != 0) + usize::from(dj != 0)];
                    v += k * g[((i + di) % TILE) * TILE + (j + dj) % TILE];
                }
            }
            out[i * TILE + j] = v;
        }
    }
    out
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Complementary error function (Numerical Recipes' erfcc, |error| < 1.2e-7).
fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let r = t
        * (-z * z - 1.265_512_23
            + t * (1.000_023_68
                + t * (0.374_091_96
                    + t * (0.096_784_18
                        + t * (-0.186_288_06
                            + t * (0.278_868_07
                                + t * (-1.135_203_98
                                    + t * (1.488_515_87
                                        + t * (-0.822_152_23 + t * 0.170_872_77)))))))))
            .exp();
    if x >= 0.0 { r } else { 2.0 - r }
}

#[cfg(test)]
mod tests {
    use super::super::luma::Plane;
    use super::*;

    /// A textured test picture (deterministic noise over a gradient).
    fn picture(w: u32, h: u32) -> Vec<u8> {
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        (0..w * h)
            .map(|i| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                let (x, y) = (i % w, i / w);
                ((x + y) / 8 % 160) as u8 + 40 + (state % 24) as u8
            })
            .collect()
    }

    #[test]
    fn planes_and_grids_round_trip() {
        let pattern = Pattern::new("test-key");
        for grid in [Grid::IMAGE, Grid::VIDEO] {
            let (w, h) = (640u32, 360u32);
            // A padded stride, as decoders hand out.
            let stride = 704;
            let mut data = vec![0u8; stride * h as usize];
            let pic = picture(w, h);
            for y in 0..h as usize {
                data[y * stride..y * stride + w as usize]
                    .copy_from_slice(&pic[y * w as usize..(y + 1) * w as usize]);
            }
            let mut plane = Plane::new(&mut data[..], w, h, stride).unwrap();
            embed(&mut plane, 0xC0FF_EE11, &pattern, 3.4, grid);
            let d = detect(&plane, &pattern, grid);
            assert_eq!(d.payload, Some(0xC0FF_EE11), "{grid:?}: {d:?}");
            let other = if grid == Grid::IMAGE {
                Grid::VIDEO
            } else {
                Grid::IMAGE
            };
            assert!(
                !detect(&plane, &pattern, other).marked,
                "{grid:?} read on another grid"
            );
        }
    }
}
