//! When to try a registry request again, and after how long. Pure, so the
//! policy can be tested without a clock.

use std::time::{Duration, SystemTime};

#[derive(Clone, Debug)]
pub(crate) struct RetryPolicy {
    /// Total attempts, the first included.
    pub(crate) attempts: u32,
    pub(crate) base: Duration,
    pub(crate) max_delay: Duration,
    /// A `Retry-After` longer than this is not waited for: the request fails
    /// and the caller (a reconcile with its own backoff) tries later.
    pub(crate) max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 4,
            base: Duration::from_millis(250),
            max_delay: Duration::from_secs(8),
            max_retry_after: Duration::from_secs(30),
        }
    }
}

/// What went wrong with one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Status(u16),
    /// Could not connect, or the connection broke before a response.
    Transport,
}

impl RetryPolicy {
    /// The delay before attempt `attempt + 1` (attempts count from 1), or
    /// `None` when the outcome is final or the attempts are spent.
    pub(crate) fn delay(&self, attempt: u32, outcome: Outcome, retry_after: Option<Duration>) -> Option<Duration> {
        let retryable = match outcome {
            Outcome::Transport => true,
            Outcome::Status(s) => s == 429 || s == 408 || (500..600).contains(&s) && s != 501 && s != 505,
        };
        if !retryable || attempt >= self.attempts {
            return None;
        }
        let backoff = self.base.saturating_mul(1 << (attempt - 1).min(16)).min(self.max_delay);
        match retry_after {
            Some(ra) if ra > self.max_retry_after => None,
            Some(ra) => Some(ra),
            None => Some(backoff),
        }
    }
}

/// `Retry-After` is either delta-seconds or an HTTP date.
pub(crate) fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    httpdate(v).map(|t| t.duration_since(now).unwrap_or(Duration::ZERO))
}

/// IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`), the only form RFC 9110
/// requires senders to use.
fn httpdate(s: &str) -> Option<SystemTime> {
    let parts: Vec<&str> = s.split_whitespace().collect();
    let [_, day, mon, year, time, "GMT"] = parts.as_slice() else {
        return None;
    };
    let month = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
        .iter()
        .position(|m| m == mon)? as i64
        + 1;
    let (day, year): (i64, i64) = (day.parse().ok()?, year.parse().ok()?);
    let hms: Vec<i64> = time.split(':').map(|x| x.parse().ok()).collect::<Option<_>>()?;
    let [h, m, sec] = hms.as_slice() else {
        return None;
    };
    // Out-of-range fields are a malformed date, not arithmetic to overflow.
    if !(1..=31).contains(&day)
        || !(1970..=9999).contains(&year)
        || *h > 23
        || *m > 59
        || *sec > 60
        || *h < 0
        || *m < 0
        || *sec < 0
    {
        return None;
    }
    // days from civil (Howard Hinnant's algorithm)
    let (y, mo) = if month <= 2 { (year - 1, month + 9) } else { (year, month - 3) };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * mo + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146097 + doe - 719468;
    let secs = days * 86400 + h * 3600 + m * 60 + sec;
    Some(SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(secs).ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backs_off_and_stops() {
        let p = RetryPolicy::default();
        assert_eq!(p.delay(1, Outcome::Status(503), None), Some(Duration::from_millis(250)));
        assert_eq!(p.delay(2, Outcome::Status(503), None), Some(Duration::from_millis(500)));
        assert_eq!(p.delay(3, Outcome::Transport, None), Some(Duration::from_secs(1)));
        assert_eq!(p.delay(4, Outcome::Status(503), None), None, "attempts are bounded");
        for final_status in [400, 401, 403, 404, 501] {
            assert_eq!(p.delay(1, Outcome::Status(final_status), None), None, "{final_status}");
        }
    }

    #[test]
    fn honours_retry_after_within_bounds() {
        let p = RetryPolicy::default();
        assert_eq!(p.delay(1, Outcome::Status(429), Some(Duration::from_secs(2))), Some(Duration::from_secs(2)));
        assert_eq!(p.delay(1, Outcome::Status(429), Some(Duration::from_secs(31))), None);
        assert_eq!(p.delay(1, Outcome::Status(429), Some(Duration::ZERO)), Some(Duration::ZERO));
    }

    #[test]
    fn parses_retry_after() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784111777); // Sun, 06 Nov 1994 08:49:37 GMT
        assert_eq!(parse_retry_after("3", now), Some(Duration::from_secs(3)));
        assert_eq!(parse_retry_after("Sun, 06 Nov 1994 08:49:47 GMT", now), Some(Duration::from_secs(10)));
        assert_eq!(parse_retry_after("Sun, 06 Nov 1994 08:49:00 GMT", now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon", now), None);
        // hostile dates are refused, never overflowed
        assert_eq!(parse_retry_after("Sun, 06 Nov 9223372036854775807 08:49:47 GMT", now), None);
        assert_eq!(parse_retry_after("Sun, 99999999999 Nov 1994 08:49:47 GMT", now), None);
        assert_eq!(parse_retry_after("Sun, 06 Nov 1994 9223372036854775807:49:47 GMT", now), None);
        assert_eq!(parse_retry_after("Sun, 06 Nov 1994 -1:49:47 GMT", now), None);
        assert_eq!(parse_retry_after("18446744073709551615", now), Some(Duration::from_secs(u64::MAX)));
    }
}
