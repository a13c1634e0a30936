//! Timestamps: UTC, millisecond precision, RFC 3339 on the wire.

use chrono::{DateTime, SecondsFormat, TimeZone, Utc};

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

/// Formats as `2026-11-21T08:00:00.123Z`.
pub fn format(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Serde adapter writing RFC 3339 with exactly three fraction digits.
pub mod rfc3339_ms {
    use chrono::{DateTime, Utc};
    use serde::{Deserialize, Deserializer, Serializer};

    /// Serializes.
    pub fn serialize<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format(t))
    }

    /// Deserializes any RFC 3339 timestamp.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
        let s = String::deserialize(d)?;
        DateTime::parse_from_rfc3339(&s)
            .map(|t| t.with_timezone(&Utc))
            .map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn millisecond_format() {
        let t = super::from_millis(1_700_000_000_000);
        assert_eq!(super::format(&t), "2023-11-14T22:13:20.000Z");
    }
}
