//! Wall-clock helpers. Wire and store use Unix milliseconds; domain code
//! uses `SystemTime`/`Duration`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Unix milliseconds of `t` (0 before the epoch).
pub fn to_unix_ms(t: SystemTime) -> i64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Unix milliseconds of now.
pub fn now_ms() -> i64 {
    to_unix_ms(SystemTime::now())
}

/// `SystemTime` of Unix milliseconds (negative values clamp to the epoch).
pub fn from_unix_ms(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

/// A duration as a short human string ("1h 5m", "250ms"), for tables.
pub fn short_duration(d: Duration) -> String {
    let secs = d.as_secs();
    if secs == 0 {
        return format!("{}ms", d.as_millis());
    }
    let (days, hours, mins, s) = (secs / 86_400, secs / 3600 % 24, secs / 60 % 60, secs % 60);
    if days > 0 {
        format!("{days}d {hours}h")
    } else if hours > 0 {
        format!("{hours}h {mins}m")
    } else if mins > 0 {
        format!("{mins}m {s}s")
    } else {
        format!("{s}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unix_ms_round_trips() {
        let t = from_unix_ms(1_700_000_000_123);
        assert_eq!(to_unix_ms(t), 1_700_000_000_123);
    }

    #[test]
    fn short_durations_read_like_a_person_would_write_them() {
        assert_eq!(short_duration(Duration::from_millis(250)), "250ms");
        assert_eq!(short_duration(Duration::from_secs(42)), "42s");
        assert_eq!(short_duration(Duration::from_secs(125)), "2m 5s");
        assert_eq!(short_duration(Duration::from_secs(3 * 3600 + 60)), "3h 1m");
        assert_eq!(
            short_duration(Duration::from_secs(2 * 86_400 + 3600)),
            "2d 1h"
        );
    }
}
