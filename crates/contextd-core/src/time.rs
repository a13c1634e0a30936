//! Timestamps: UTC, millisecond precision, RFC 3339 on the wire.

use chrono::{DateTime, TimeZone, Utc};

/// The current time truncated to whole milliseconds, so that what is stored equals what is shown.
pub fn now_ms() -> DateTime<Utc> {
    from_millis(Utc::now().timestamp_millis())
}

/// A timestamp from milliseconds since the Unix epoch (clamped to the representable range).
pub fn from_millis(ms: i64) -> DateTime<Utc> {
    Utc.timestamp_millis_opt(ms)
        .single()
        .unwrap_or(DateTime::<Utc>::UNIX_EPOCH)
}

pub use contextd_proto::time::{format, rfc3339_ms};

#[cfg(test)]
mod tests {
    #[test]
    fn millisecond_format() {
        let t = super::from_millis(1_700_000_000_000);
        assert_eq!(super::format(&t), "2023-11-14T22:13:20.000Z");
    }
}
