//! Face alignment: a least-squares similarity transform (Umeyama, no reflection) from detected
//! landmarks to the embedder's template, and a bilinear warp that writes the model's normalised
//! NCHW input directly (no intermediate image).

use super::Image;

/// ArcFace 112×112 template, in order: image-left eye, image-right eye, nose tip, image-left
/// mouth corner, image-right mouth corner.
pub const ARCFACE_112: [[f32; 2]; 5] = [
    [38.2946, 51.6963],
    [73.5318, 51.5014],
    [56.0252, 71.7366],
    [41.5493, 92.3655],
    [70.7299, 92.2041],
];

/// The four points alignment fits: both eyes, nose tip, mouth centre (midpoint of the corners).
/// BlazeFace gives a mouth centre, not corners; fitting the midpoint serves both kinds of
/// detector with one path.
pub fn fit_points(five: &[[f32; 2]; 5]) -> [[f32; 2]; 4] {
    [
        five[0],
        five[1],
        five[2],
        [
            (five[3][0] + five[4][0]) / 2.0,
            (five[3][1] + five[4][1]) / 2.0,
        ],
    ]
}

/// `p' = [a −b; b a]·p + t`: rotation, uniform scale and translation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Similarity {
    pub a: f32,
    pub b: f32,
    pub tx: f32,
    pub ty: f32,
}

impl Similarity {
    /// Least-squares fit mapping `src[i]` onto `dst[i]`; `None` when the source points coincide.
    pub fn estimate(src: &[[f32; 2]], dst: &[[f32; 2]]) -> Option<Self> {
        let n = src.len().min(dst.len());
        if n < 2 {
            return None;
        }
        let mean = |pts: &[[f32; 2]]| {
            let (sx, sy) = pts[..n].iter().fold((0.0f64, 0.0f64), |(x, y), p| {
                (x + p[0] as f64, y + p[1] as f64)
            });
            (sx / n as f64, sy / n as f64)
        };
        let (sx, sy) = mean(src);
        let (dx, dy) = mean(dst);
        let (mut num_a, mut num_b, mut den) = (0.0f64, 0.0f64, 0.0f64);
        for (p, q) in src[..n].iter().zip(&dst[..n]) {
            let (x, y) = (p[0] as f64 - sx, p[1] as f64 - sy);
            let (u, v) = (q[0] as f64 - dx, q[1] as f64 - dy);
            num_a += x * u + y * v;
            num_b += x * v - y * u;
            den += x * x + y * y;
        }
        if den <= f64::EPSILON {
            return None;
        }
        let (a, b) = (num_a / den, num_b / den);
        Some(Self {
            a: a as f32,
            b: b as f32,
            tx: (dx - (a * sx - b * sy)) as f32,
            ty: (dy - (b * sx + a * sy)) as f32,
        })
    }

    pub fn apply(&self, p: [f32; 2]) -> [f32; 2] {
        [
            self.a * p[0] - self.b * p[1] + self.tx,
            self.b * p[0] + self.a * p[1] + self.ty,
        ]
    }

    pub fn inverse(&self) -> Self {
        let d = self.a * self.a + self.b * self.b;
        let (a, b) = (self.a / d, -self.b / d);
        Self {
            a,
            b,
            tx: -(a * self.tx - b * self.ty),
            ty: -(b * self.tx + a * self.ty),
        }
    }
}

/// Warps `image` by `to_template` into a `size`×`size` NCHW tensor, each channel value
/// `(x − mean) · scale`; pixels outside the image are black (as OpenCV's `warpAffine`).
pub fn warp(
    image: &Image<'_>,
    to_template: &Similarity,
    size: usize,
    mean: f32,
    scale: f32,
    out: &mut [f32],
) {
    debug_assert_eq!(out.len(), 3 * size * size);
    let back = to_template.inverse();
    let (w, h) = (image.width as usize, image.height as usize);
    let plane = size * size;
    let black = (0.0 - mean) * scale;
    for v in 0..size {
        for u in 0..size {
            let [x, y] = back.apply([u as f32, v as f32]);
            let i = v * size + u;
            if !(x > -1.0 && y > -1.0 && x < w as f32 && y < h as f32) {
                out[i] = black;
                out[plane + i] = black;
                out[2 * plane + i] = black;
                continue;
            }
            let (x0, y0) = (x.floor(), y.floor());
            let (fx, fy) = (x - x0, y - y0);
            let (x0, y0) = (x0 as isize, y0 as isize);
            let px = |xx: isize, yy: isize, c: usize| -> f32 {
                if xx < 0 || yy < 0 || xx >= w as isize || yy >= h as isize {
                    0.0
                } else {
                    image.rgb[(yy as usize * w + xx as usize) * 3 + c] as f32
                }
            };
            for c in 0..3 {
                let top = px(x0, y0, c) * (1.0 - fx) + px(x0 + 1, y0, c) * fx;
                let bottom = px(x0, y0 + 1, c) * (1.0 - fx) + px(x0 + 1, y0 + 1, c) * fx;
                out[c * plane + i] = ((top * (1.0 - fy) + bottom * fy) - mean) * scale;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn estimate_recovers_a_known_transform() {
        let t = Similarity {
            a: 0.8,
            b: 0.3,
            tx: 5.0,
            ty: -2.0,
        };
        let src = [[10.0, 20.0], [40.0, 22.0], [25.0, 35.0], [26.0, 50.0]];
        let dst: Vec<_> = src.iter().map(|p| t.apply(*p)).collect();
        let got = Similarity::estimate(&src, &dst).unwrap();
        for (g, e) in [got.a, got.b, got.tx, got.ty]
            .iter()
            .zip([0.8, 0.3, 5.0, -2.0])
        {
            assert!((g - e).abs() < 1e-3, "{got:?}");
        }
        let round = got.inverse().apply(got.apply([7.0, 9.0]));
        assert!((round[0] - 7.0).abs() < 1e-3 && (round[1] - 9.0).abs() < 1e-3);
    }

    #[test]
    fn coincident_points_have_no_transform() {
        assert!(Similarity::estimate(&[[1.0, 1.0]; 4], &ARCFACE_112[..4]).is_none());
    }

    #[test]
    fn identity_warp_copies_pixels() {
        let rgb: Vec<u8> = (0..4 * 4 * 3).map(|i| i as u8).collect();
        let image = Image {
            rgb: &rgb,
            width: 4,
            height: 4,
        };
        let id = Similarity {
            a: 1.0,
            b: 0.0,
            tx: 0.0,
            ty: 0.0,
        };
        let mut out = vec![0.0; 3 * 16];
        warp(&image, &id, 4, 0.0, 1.0, &mut out);
        assert_eq!(out[16 + 5], rgb[5 * 3 + 1] as f32);
    }
}
