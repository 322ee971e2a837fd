//! Error correction for the watermark payload: CRC-16 (is this a real mark?) and a rate-1/3,
//! constraint-length-7 convolutional code with soft-decision Viterbi decoding (which bits).

/// Payload bits carried.
pub const PAYLOAD_BITS: usize = 32;
const CRC_BITS: usize = 16;
const K: usize = 7;
const TAIL: usize = K - 1;
/// Bits into the encoder: payload, CRC, zero tail.
const INPUT_BITS: usize = PAYLOAD_BITS + CRC_BITS + TAIL;
/// Generator polynomials (octal 133, 171, 165: the classic K=7 rate-1/3 set).
const POLYS: [u32; 3] = [0o133, 0o171, 0o165];
/// Coded bits embedded.
pub const CODED_BITS: usize = INPUT_BITS * POLYS.len();
const STATES: usize = 1 << (K - 1);

/// CRC-16/CCITT-FALSE over the payload's four big-endian bytes.
fn crc16(payload: u32) -> u16 {
    let mut crc: u16 = 0xFFFF;
    for byte in payload.to_be_bytes() {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

fn input_bits(payload: u32) -> [u8; INPUT_BITS] {
    let word = (u64::from(payload) << CRC_BITS) | u64::from(crc16(payload));
    let mut bits = [0u8; INPUT_BITS];
    for (i, b) in bits.iter_mut().take(PAYLOAD_BITS + CRC_BITS).enumerate() {
        *b = ((word >> (PAYLOAD_BITS + CRC_BITS - 1 - i)) & 1) as u8;
    }
    bits
}

fn parity(x: u32) -> u8 {
    (x.count_ones() & 1) as u8
}

/// Payload → coded bits (0/1).
pub fn encode(payload: u32) -> [u8; CODED_BITS] {
    let mut out = [0u8; CODED_BITS];
    let mut reg: u32 = 0;
    for (i, bit) in input_bits(payload).into_iter().enumerate() {
        reg = ((reg << 1) | u32::from(bit)) & ((1 << K) - 1);
        for (j, p) in POLYS.iter().enumerate() {
            out[i * POLYS.len() + j] = parity(reg & p);
        }
    }
    out
}

/// Soft values (positive = bit 1) → the payload, when the CRC agrees.
#[cfg(test)]
pub fn decode(soft: &[f32; CODED_BITS]) -> Option<u32> {
    let (payload, ok) = decode_raw(soft);
    ok.then_some(payload)
}

/// The most likely payload and whether its CRC checks.
pub fn decode_raw(soft: &[f32; CODED_BITS]) -> (u32, bool) {
    // Path metric per state (higher is better) and the survivor bits.
    let mut metric = [f32::NEG_INFINITY; STATES];
    metric[0] = 0.0;
    let mut history = [[0u8; STATES]; INPUT_BITS];
    for (step, hist) in history.iter_mut().enumerate() {
        let mut next = [f32::NEG_INFINITY; STATES];
        let s = &soft[step * POLYS.len()..(step + 1) * POLYS.len()];
        for (state, &m) in metric.iter().enumerate() {
            if m == f32::NEG_INFINITY {
                continue;
            }
            let tail = step >= PAYLOAD_BITS + CRC_BITS;
            for bit in 0..(if tail { 1 } else { 2 }) {
                let reg = ((state as u32) << 1) | bit;
                let gain: f32 = POLYS
                    .iter()
                    .zip(s)
                    .map(|(p, v)| if parity(reg & p) == 1 { *v } else { -*v })
                    .sum();
                let to = (reg as usize) & (STATES - 1);
                if m + gain > next[to] {
                    next[to] = m + gain;
                    // The state's oldest bit, shifted out, identifies the predecessor.
                    hist[to] = (state >> (K - 2)) as u8;
                }
            }
        }
        metric = next;
    }
    // The tail forces state 0; trace back.
    let mut state = 0usize;
    let mut bits = [0u8; INPUT_BITS];
    for step in (0..INPUT_BITS).rev() {
        bits[step] = (state & 1) as u8;
        let dropped = history[step][state] as usize;
        state = (state >> 1) | (dropped << (K - 2));
    }
    let word = bits[..PAYLOAD_BITS + CRC_BITS]
        .iter()
        .fold(0u64, |w, b| (w << 1) | u64::from(*b));
    let payload = (word >> CRC_BITS) as u32;
    (payload, crc16(payload) == (word & 0xFFFF) as u16)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn soft(coded: &[u8; CODED_BITS]) -> [f32; CODED_BITS] {
        let mut s = [0f32; CODED_BITS];
        for (v, b) in s.iter_mut().zip(coded) {
            *v = if *b == 1 { 1.0 } else { -1.0 };
        }
        s
    }

    #[test]
    fn round_trips_and_corrects_errors() {
        for payload in [0, 1, 0xDEAD_BEEF, u32::MAX, 0x1234_5678] {
            let coded = encode(payload);
            assert_eq!(decode(&soft(&coded)), Some(payload));
            // Flip every 9th coded bit (18 of 162): still decodes.
            let mut s = soft(&coded);
            for v in s.iter_mut().step_by(9) {
                *v = -*v;
            }
            assert_eq!(decode(&s), Some(payload), "{payload:x}");
        }
    }

    #[test]
    fn noise_is_not_a_payload() {
        // Deterministic pseudo-noise: the CRC rejects what Viterbi makes of it.
        let mut x = 0x9E37_79B9u32;
        let mut accepted = 0;
        for _ in 0..2000 {
            let mut s = [0f32; CODED_BITS];
            for v in s.iter_mut() {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                *v = (x as f32 / u32::MAX as f32) - 0.5;
            }
            accepted += usize::from(decode(&s).is_some());
        }
        assert!(
            accepted <= 2,
            "{accepted} of 2000 noise vectors passed the CRC"
        );
    }
}
