//! Calendar formatting of timestamps the way JavaScript prints them (UTC), for fields that
//! Node.js peers read as `Date` text.

use std::time::{SystemTime, UNIX_EPOCH};

/// A UTC calendar time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Civil {
    /// Year (proleptic Gregorian).
    pub year: i64,
    /// Month, 1 to 12.
    pub month: u32,
    /// Day of the month, 1 to 31.
    pub day: u32,
    /// Hours, minutes, seconds.
    pub hms: (u32, u32, u32),
    /// Day of the week, 0 = Sunday.
    pub weekday: u32,
}

impl Civil {
    /// The calendar time of `secs` seconds since the Unix epoch.
    pub fn from_unix(secs: i64) -> Civil {
        let days = secs.div_euclid(86_400);
        let rem = secs.rem_euclid(86_400) as u32;
        // Days since 1970-01-01 to a civil date, counting in 400-year eras from 0000-03-01.
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z.rem_euclid(146_097);
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
        let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
        let year = yoe + era * 400 + i64::from(month <= 2);
        Civil {
            year,
            month,
            day,
            hms: (rem / 3600, rem % 3600 / 60, rem % 60),
            // 1970-01-01 was a Thursday.
            weekday: (days + 4).rem_euclid(7) as u32,
        }
    }
}

/// `Date.prototype.toISOString()`: `2026-11-22T03:07:59.000Z`; a year outside 0000–9999 in
/// JavaScript's expanded form (`+010000-01-01T…`, `-000001-…`).
pub fn iso8601(secs: i64, millis: u32) -> String {
    let c = Civil::from_unix(secs);
    let (h, m, s) = c.hms;
    let year = if (0..=9999).contains(&c.year) {
        format!("{:04}", c.year)
    } else {
        format!("{}{:06}", if c.year < 0 { '-' } else { '+' }, c.year.abs())
    };
    format!(
        "{year}-{:02}-{:02}T{h:02}:{m:02}:{s:02}.{millis:03}Z",
        c.month, c.day
    )
}

/// `Date.prototype.toString()` of a Node.js process running in UTC, which is what Node's
/// Socket.IO puts in `handshake.time`: `Sun Nov 22 2026 03:07:59 GMT+0000 (Coordinated
/// Universal Time)`.
pub fn js_date_string(t: SystemTime) -> String {
    const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let c = Civil::from_unix(secs);
    let (h, m, s) = c.hms;
    format!(
        "{} {} {:02} {:04} {h:02}:{m:02}:{s:02} GMT+0000 (Coordinated Universal Time)",
        DAYS[c.weekday as usize % 7],
        MONTHS[(c.month as usize + 11) % 12],
        c.day,
        c.year
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn formats_like_javascript() {
        // new Date(1795316879000) in a UTC Node process.
        let t = UNIX_EPOCH + Duration::from_secs(1_795_316_879);
        assert_eq!(
            js_date_string(t),
            "Sun Nov 22 2026 03:07:59 GMT+0000 (Coordinated Universal Time)"
        );
        assert_eq!(iso8601(0, 0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso8601(951_782_400, 5), "2000-02-29T00:00:00.005Z");
        assert_eq!(Civil::from_unix(-1).year, 1969);
        // new Date(8.64e15).toISOString() and new Date(-62198755200000).toISOString()
        assert_eq!(iso8601(8_640_000_000_000, 0), "+275760-09-13T00:00:00.000Z");
        assert_eq!(iso8601(-62_198_755_200, 0), "-000001-01-01T00:00:00.000Z");
    }
}
