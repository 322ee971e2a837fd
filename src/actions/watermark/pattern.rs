//! The keyed chip pattern: a tile of `TILE × TILE` chips repeated over the image. Each chip
//! carries a sync value (finds scale and shift) plus one spread-spectrum chip of a coded bit.

use sha2::{Digest, Sha256};

use super::code::CODED_BITS;

/// Chips per tile side.
pub const TILE: usize = 24;
pub const CHIPS: usize = TILE * TILE;
/// Share of the amplitude for sync and for data (unit power in total).
pub const SYNC_WEIGHT: f32 = 0.5;
pub const DATA_WEIGHT: f32 = 0.866;

/// Sync signs, data signs and the coded bit of every chip, derived from the key.
pub struct Pattern {
    pub sync: [f32; CHIPS],
    pub pn: [f32; CHIPS],
    pub bit_of: [u16; CHIPS],
}

/// SplitMix64: small, fast, good enough to spread chips.
struct Mix(u64);

impl Mix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn sign(&mut self) -> f32 {
        if self.next() & 1 == 1 { 1.0 } else { -1.0 }
    }
}

impl Pattern {
    pub fn new(key: &str) -> Self {
        let seed = Sha256::digest(key.as_bytes());
        let mut rng = Mix(u64::from_le_bytes(seed[..8].try_into().expect("8 bytes")));
        let mut sync = [0f32; CHIPS];
        let mut pn = [0f32; CHIPS];
        sync.iter_mut().for_each(|s| *s = rng.sign());
        pn.iter_mut().for_each(|s| *s = rng.sign());
        // Every coded bit gets an equal share of chips, scattered over the tile.
        let mut order: Vec<usize> = (0..CHIPS).collect();
        for i in (1..CHIPS).rev() {
            order.swap(i, (rng.next() % (i as u64 + 1)) as usize);
        }
        let mut bit_of = [0u16; CHIPS];
        for (rank, chip) in order.into_iter().enumerate() {
            bit_of[chip] = (rank % CODED_BITS) as u16;
        }
        Self { sync, pn, bit_of }
    }

    /// Chip values for these coded bits.
    pub fn chips(&self, coded: &[u8; CODED_BITS]) -> [f32; CHIPS] {
        let mut out = [0f32; CHIPS];
        for (m, v) in out.iter_mut().enumerate() {
            let bit = if coded[self.bit_of[m] as usize] == 1 {
                1.0
            } else {
                -1.0
            };
            *v = SYNC_WEIGHT * self.sync[m] + DATA_WEIGHT * self.pn[m] * bit;
        }
        out
    }
}
