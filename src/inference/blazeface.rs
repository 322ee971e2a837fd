//! MediaPipe BlazeFace detectors (short- and full-range): letterboxed input, SSD anchors,
//! 16 regressors per anchor (box + 6 keypoints), weighted non-maximum suppression.
//! Facts and numbers: ../shared/docs/MODELS.md and docs/inference.md.

use ort::session::Session;
use ort::value::TensorRef;

use super::batcher::Model;
use super::{Image, InferenceError};

/// One raw detection in the letterboxed square, coordinates in [0, 1].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Detection {
    /// Centre x, centre y, width, height.
    pub bbox: [f32; 4],
    /// Subject's right eye (image-left), left eye, nose tip, mouth centre, right ear, left ear.
    pub keypoints: [[f32; 2]; 6],
    pub score: f32,
}

/// The square of source pixels a detector input covers (may reach outside the image: the
/// outside is black). The whole image letterboxed is the square around it, centred.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Region {
    pub x0: f32,
    pub y0: f32,
    pub side: f32,
}

impl Region {
    /// The whole image, letterboxed (centred, black border).
    pub fn letterbox(width: u32, height: u32) -> Self {
        let side = width.max(height) as f32;
        Self {
            x0: -(side - width as f32) / 2.0,
            y0: -(side - height as f32) / 2.0,
            side,
        }
    }

    /// A point in the unit square → source pixels.
    pub fn to_source(self, p: [f32; 2]) -> [f32; 2] {
        [self.x0 + p[0] * self.side, self.y0 + p[1] * self.side]
    }
}

/// Writes `region` of `image` into an `s`×`s` NCHW tensor scaled to [−1, 1]. Downscaling
/// averages each output pixel's whole source footprint (area filter: no aliasing on large
/// frames); upscaling takes the nearest pixel.
pub fn preprocess(image: &Image<'_>, region: &Region, s: usize, out: &mut [f32]) {
    debug_assert_eq!(out.len(), 3 * s * s);
    let (w, h) = (image.width as usize, image.height as usize);
    let step = region.side / s as f32; // source pixels per output pixel
    let plane = s * s;
    for v in 0..s {
        let sy0 = region.y0 + v as f32 * step;
        let (y0, y1) = span(sy0, sy0 + step, h);
        for u in 0..s {
            let sx0 = region.x0 + u as f32 * step;
            let (x0, x1) = span(sx0, sx0 + step, w);
            let i = v * s + u;
            if x0 >= x1 || y0 >= y1 {
                out[i] = -1.0;
                out[plane + i] = -1.0;
                out[2 * plane + i] = -1.0;
                continue;
            }
            let mut sum = [0u32; 3];
            for y in y0..y1 {
                let row = &image.rgb[(y * w + x0) * 3..(y * w + x1) * 3];
                for px in row.chunks_exact(3) {
                    sum[0] += px[0] as u32;
                    sum[1] += px[1] as u32;
                    sum[2] += px[2] as u32;
                }
            }
            let n = ((x1 - x0) * (y1 - y0)) as f32;
            for c in 0..3 {
                out[c * plane + i] = sum[c] as f32 / n / 127.5 - 1.0;
            }
        }
    }
}

/// Source pixel indices covered by [a, b), clipped to [0, len); at least one pixel when the
/// span is inside the image (upscaling).
fn span(a: f32, b: f32, len: usize) -> (usize, usize) {
    if b <= 0.0 || a >= len as f32 {
        return (0, 0);
    }
    let lo = a.max(0.0) as usize;
    let hi = (b.min(len as f32).ceil() as usize).clamp(lo + 1, len);
    (lo, hi)
}

/// SSD anchor centres, in the order the model emits them: per stride group, row by row,
/// `anchors_per_cell` × (layers sharing that stride) per cell.
pub fn anchors(size: usize, strides: &[usize], anchors_per_cell: usize) -> Vec<[f32; 2]> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < strides.len() {
        let stride = strides[i];
        let mut layers = 0;
        while i < strides.len() && strides[i] == stride {
            layers += 1;
            i += 1;
        }
        let fm = size.div_ceil(stride);
        for y in 0..fm {
            for x in 0..fm {
                let centre = [(x as f32 + 0.5) / fm as f32, (y as f32 + 0.5) / fm as f32];
                out.extend(std::iter::repeat_n(centre, layers * anchors_per_cell));
            }
        }
    }
    out
}

/// A BlazeFace session behind a batcher (fixed batch of 1).
pub struct BlazeFace {
    session: Session,
    size: usize,
    anchors: Vec<[f32; 2]>,
    input: String,
    regressors: String,
    scores: String,
    /// Raw logit equivalent of the score threshold: most anchors are rejected without a sigmoid.
    min_logit: f32,
}

impl BlazeFace {
    pub fn new(
        session: Session,
        size: usize,
        anchors: Vec<[f32; 2]>,
        names: [String; 3],
        threshold: f32,
    ) -> Self {
        let [input, regressors, scores] = names;
        Self {
            session,
            size,
            anchors,
            input,
            regressors,
            scores,
            min_logit: (threshold / (1.0 - threshold)).ln(),
        }
    }
}

/// Raw outputs → detections above the threshold, in the unit square.
fn decode(
    anchors: &[[f32; 2]],
    size: usize,
    min_logit: f32,
    reg: &[f32],
    logits: &[f32],
    out: &mut Vec<Detection>,
) {
    {
        let s = size as f32;
        for (k, (anchor, &logit)) in anchors.iter().zip(logits).enumerate() {
            if logit < min_logit {
                continue;
            }
            let r = &reg[k * 16..k * 16 + 16];
            let mut keypoints = [[0.0; 2]; 6];
            for (j, kp) in keypoints.iter_mut().enumerate() {
                *kp = [r[4 + 2 * j] / s + anchor[0], r[5 + 2 * j] / s + anchor[1]];
            }
            out.push(Detection {
                bbox: [
                    r[0] / s + anchor[0],
                    r[1] / s + anchor[1],
                    r[2] / s,
                    r[3] / s,
                ],
                keypoints,
                score: 1.0 / (1.0 + (-logit.clamp(-100.0, 100.0)).exp()),
            });
        }
    }
}

impl Model for BlazeFace {
    type Output = Vec<Detection>;

    fn item_len(&self) -> usize {
        3 * self.size * self.size
    }

    fn max_batch(&self) -> usize {
        1
    }

    fn run(
        &mut self,
        input: &[f32],
        n: usize,
        out: &mut Vec<Vec<Detection>>,
    ) -> Result<(), InferenceError> {
        let len = self.item_len();
        for item in input.chunks_exact(len).take(n) {
            let tensor = TensorRef::from_array_view(([1, 3, self.size, self.size], item))
                .map_err(|e| run_error("detector", e))?;
            let outputs = self
                .session
                .run(ort::inputs![self.input.as_str() => tensor])
                .map_err(|e| run_error("detector", e))?;
            let (_, reg) = outputs[self.regressors.as_str()]
                .try_extract_tensor::<f32>()
                .map_err(|e| run_error("detector", e))?;
            let (_, logits) = outputs[self.scores.as_str()]
                .try_extract_tensor::<f32>()
                .map_err(|e| run_error("detector", e))?;
            if reg.len() < self.anchors.len() * 16 || logits.len() < self.anchors.len() {
                return Err(run_error(
                    "detector",
                    format!(
                        "outputs hold {} regressors / {} scores for {} anchors",
                        reg.len() / 16,
                        logits.len(),
                        self.anchors.len()
                    ),
                ));
            }
            let mut found = Vec::new();
            decode(
                &self.anchors,
                self.size,
                self.min_logit,
                reg,
                logits,
                &mut found,
            );
            out.push(found);
        }
        Ok(())
    }
}

fn run_error(model: &str, e: impl std::fmt::Display) -> InferenceError {
    InferenceError::Run {
        model: model.to_string(),
        reason: e.to_string(),
    }
}

/// Intersection over union of two centre-size boxes.
pub fn iou(a: &[f32; 4], b: &[f32; 4]) -> f32 {
    let (ax0, ay0, ax1, ay1) = (
        a[0] - a[2] / 2.0,
        a[1] - a[3] / 2.0,
        a[0] + a[2] / 2.0,
        a[1] + a[3] / 2.0,
    );
    let (bx0, by0, bx1, by1) = (
        b[0] - b[2] / 2.0,
        b[1] - b[3] / 2.0,
        b[0] + b[2] / 2.0,
        b[1] + b[3] / 2.0,
    );
    let iw = (ax1.min(bx1) - ax0.max(bx0)).max(0.0);
    let ih = (ay1.min(by1) - ay0.max(by0)).max(0.0);
    let inter = iw * ih;
    let union = a[2] * a[3] + b[2] * b[3] - inter;
    if union <= 0.0 { 0.0 } else { inter / union }
}

/// MediaPipe's weighted NMS: each cluster of boxes overlapping the best one by more than `iou`
/// is replaced by their score-weighted average (score = the best one's).
pub fn weighted_nms(mut dets: Vec<Detection>, threshold: f32) -> Vec<Detection> {
    dets.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut out = Vec::new();
    let mut used = vec![false; dets.len()];
    for i in 0..dets.len() {
        if used[i] {
            continue;
        }
        let best = dets[i];
        let (mut bbox, mut kps, mut total) = ([0.0f32; 4], [[0.0f32; 2]; 6], 0.0f32);
        for j in i..dets.len() {
            if used[j] || iou(&best.bbox, &dets[j].bbox) <= threshold {
                continue;
            }
            used[j] = true;
            let d = &dets[j];
            for (acc, v) in bbox.iter_mut().zip(&d.bbox) {
                *acc += v * d.score;
            }
            for (acc, kp) in kps.iter_mut().zip(&d.keypoints) {
                acc[0] += kp[0] * d.score;
                acc[1] += kp[1] * d.score;
            }
            total += d.score;
        }
        if total > 0.0 {
            bbox.iter_mut().for_each(|v| *v /= total);
            kps.iter_mut().for_each(|p| {
                p[0] /= total;
                p[1] /= total;
            });
            out.push(Detection {
                bbox,
                keypoints: kps,
                score: best.score,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anchor_counts_match_the_models() {
        assert_eq!(anchors(128, &[8, 16, 16, 16], 2).len(), 896);
        assert_eq!(anchors(192, &[4], 1).len(), 2304);
        let a = anchors(128, &[8, 16, 16, 16], 2);
        assert_eq!(a[0], [0.5 / 16.0, 0.5 / 16.0]);
        assert_eq!(a[512], [0.5 / 8.0, 0.5 / 8.0]);
    }

    #[test]
    fn nms_merges_overlaps_and_keeps_separate_faces() {
        let d = |cx: f32, score: f32| Detection {
            bbox: [cx, 0.5, 0.2, 0.2],
            keypoints: [[cx, 0.5]; 6],
            score,
        };
        let out = weighted_nms(vec![d(0.30, 0.9), d(0.32, 0.6), d(0.8, 0.7)], 0.3);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].score, 0.9);
        assert!(out[0].bbox[0] > 0.30 && out[0].bbox[0] < 0.32);
    }

    #[test]
    fn letterbox_round_trips_corners() {
        let lb = Region::letterbox(200, 100);
        assert_eq!(lb.to_source([0.0, 0.25]), [0.0, 0.0]);
        assert_eq!(lb.to_source([1.0, 0.75]), [200.0, 100.0]);
    }

    #[test]
    fn preprocess_averages_and_pads_black() {
        // 4×2 image: left half white, right half black; letterboxed to 2×2.
        let mut rgb = vec![0u8; 4 * 2 * 3];
        for y in 0..2 {
            for x in 0..2 {
                rgb[(y * 4 + x) * 3..(y * 4 + x) * 3 + 3].fill(255);
            }
        }
        let image = Image::new(&rgb, 4, 2).unwrap();
        let mut out = vec![0.0; 3 * 4];
        preprocess(&image, &Region::letterbox(4, 2), 2, &mut out);
        // Row 0 covers source rows -1..1 (half outside, clipped), row 1 rows 1..3.
        assert_eq!(out[0], 1.0);
        assert_eq!(out[1], -1.0);
    }
}
