//! Times in the log: milliseconds since the epoch inside, RFC 3339 outside, and the UUID v7
//! bounds that turn a time range into an id range (ids sort by time, so one index serves both).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Milliseconds since the epoch, now.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// The last millisecond RFC 3339 can write (9999-12-31T23:59:59.999Z).
const MAX_MS: i64 = 253_402_300_799_999;

/// `2026-12-02T07:00:00.123Z`.
pub fn rfc3339_ms(ms: i64) -> String {
    let t = UNIX_EPOCH + Duration::from_millis(u64::try_from(ms.min(MAX_MS)).unwrap_or(0));
    humantime::format_rfc3339_millis(t).to_string()
}

/// An API `since`/`until`: an RFC 3339 date-time, any offset (`2026-12-01T00:00:00Z`,
/// `2026-12-01T01:00:00+01:00`). Times before 1970 read as 1970 (nothing is older).
pub fn parse_instant(s: &str) -> Result<i64, String> {
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.timestamp_millis().clamp(0, MAX_MS))
        .map_err(|e| format!("{s:?} is not an RFC 3339 date-time (2026-12-01T00:00:00Z): {e}"))
}

/// The command line's `--since`/`--until`: RFC 3339, or a duration before now (`24h`, `7days`).
pub fn parse_instant_or_ago(s: &str) -> Result<i64, String> {
    if let Ok(ms) = parse_instant(s) {
        return Ok(ms);
    }
    humantime::parse_duration(s)
        .map(|d| now_ms().saturating_sub(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)))
        .map_err(|_| {
            format!("{s:?} is neither an RFC 3339 time (2026-12-01T00:00:00Z) nor a duration (24h)")
        })
}

/// The smallest UUID v7 (as text) made at or after `ms`: ids compare as text in time order.
pub fn id_floor(ms: i64) -> String {
    let ms = u64::try_from(ms.max(0)).unwrap_or(0) & 0xffff_ffff_ffff;
    format!(
        "{:08x}-{:04x}-0000-0000-000000000000",
        ms >> 16,
        ms & 0xffff
    )
}

/// `at` as RFC 3339 in JSON, milliseconds inside.
pub mod serde_ms {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(ms: &i64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::rfc3339_ms(*ms))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
        let s = String::deserialize(d)?;
        let t = humantime::parse_rfc3339(&s).map_err(serde::de::Error::custom)?;
        t.duration_since(std::time::UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_floor_orders_v7_ids_by_time() {
        let id = uuid::Uuid::now_v7().to_string();
        let now = now_ms();
        assert!(id_floor(now - 1000) <= id, "{id}");
        assert!(id_floor(now + 1000) > id, "{id}");
    }

    #[test]
    fn instants_parse_both_ways_and_round_trip() {
        let ms = parse_instant("2026-12-01T00:00:00Z").unwrap();
        assert_eq!(rfc3339_ms(ms), "2026-12-01T00:00:00.000Z");
        assert_eq!(parse_instant("2026-12-01T01:00:00+01:00").unwrap(), ms);
        assert_eq!(parse_instant("0001-01-01T00:00:00Z").unwrap(), 0);
        assert!(
            parse_instant("1h").is_err(),
            "the API takes date-times only"
        );
        let ago = parse_instant_or_ago("1h").unwrap();
        assert!((now_ms() - ago - 3_600_000).abs() < 5_000);
        assert!(parse_instant_or_ago("yesterday-ish").is_err());
        let late = parse_instant("9999-12-31T23:59:59-23:59").unwrap();
        assert_eq!(rfc3339_ms(late), "9999-12-31T23:59:59.999Z");
    }
}
