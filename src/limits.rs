//! Size checks before allocation: a request whose arrays cannot fit is
//! refused (exit 2) naming its size and the limit, instead of aborting in the
//! allocator.
//!
//! The limit is the memory available now (`MemAvailable` in `/proc/meminfo`),
//! or `MEMKIN_MEMORY_LIMIT` (bytes, or with a suffix `k`, `M`, `G`, `T`:
//! decimal, `Ki`, `Mi`, `Gi`, `Ti`: binary) when that is set and smaller.

use crate::{Error, Result};

/// The environment variable that states a memory limit.
pub const LIMIT_ENV: &str = "MEMKIN_MEMORY_LIMIT";

/// Parses `8G`, `512Mi`, `1e9`, `123`.
pub fn parse_size(s: &str) -> Option<u128> {
    let s = s.trim();
    let units: [(&str, f64); 8] = [
        ("Ki", 1024.0),
        ("Mi", 1024.0 * 1024.0),
        ("Gi", 1024.0 * 1024.0 * 1024.0),
        ("Ti", 1024.0 * 1024.0 * 1024.0 * 1024.0),
        ("k", 1e3),
        ("M", 1e6),
        ("G", 1e9),
        ("T", 1e12),
    ];
    let s = s.strip_suffix('B').unwrap_or(s);
    let (num, mult) = units
        .iter()
        .find_map(|(u, m)| s.strip_suffix(u).map(|n| (n, *m)))
        .unwrap_or((s, 1.0));
    let v: f64 = num.trim().parse().ok()?;
    (v.is_finite() && v >= 0.0).then_some((v * mult) as u128)
}

/// `MemAvailable` of `/proc/meminfo`, in bytes (None where there is none).
pub fn mem_available() -> Option<u128> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kb: u128 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// The limit in bytes and where it comes from; None when nothing is known.
pub fn memory_limit() -> Result<Option<(u128, String)>> {
    let stated = match std::env::var(LIMIT_ENV) {
        Ok(v) => Some(parse_size(&v).ok_or_else(|| {
            Error::invalid(LIMIT_ENV, &v, "a size in bytes, e.g. 8G, 512Mi or 1e9")
        })?),
        Err(_) => None,
    };
    let avail = mem_available();
    Ok(match (stated, avail) {
        (Some(s), Some(a)) if a < s => {
            Some((a, "available (MemAvailable in /proc/meminfo)".into()))
        }
        (Some(s), _) => Some((s, format!("allowed ({LIMIT_ENV})"))),
        (None, Some(a)) => Some((a, "available (MemAvailable in /proc/meminfo)".into())),
        (None, None) => None,
    })
}

/// Refuses a request of `needed` bytes beyond the limit; `what` names it as
/// the user asked for it (e.g. `simulate: 100 parameter sets x 4000000
/// sequences x 28 steps`).
pub fn check_memory(what: impl Into<String>, needed: u128) -> Result<()> {
    if let Some((limit, source)) = memory_limit()?
        && needed > limit
    {
        return Err(Error::TooLarge {
            what: what.into(),
            needed,
            limit,
            limit_source: source,
        });
    }
    Ok(())
}

/// `a * b * ...` in u128, saturating (sizes of user requests can overflow u64).
pub fn product(factors: &[u128]) -> u128 {
    factors.iter().fold(1u128, |acc, &f| acc.saturating_mul(f))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_decimal_and_binary_suffixes() {
        assert_eq!(parse_size("123"), Some(123));
        assert_eq!(parse_size("8G"), Some(8_000_000_000));
        assert_eq!(parse_size("512Mi"), Some(512 * 1024 * 1024));
        assert_eq!(parse_size("1e9"), Some(1_000_000_000));
        assert_eq!(parse_size("2GB"), Some(2_000_000_000));
        assert_eq!(parse_size("lots"), None);
        assert_eq!(parse_size("-1"), None);
    }

    #[test]
    fn a_request_beyond_available_memory_is_a_user_error_naming_both_sizes() {
        let Some(avail) = mem_available() else {
            return;
        };
        let e = check_memory("test request", avail.saturating_mul(4)).unwrap_err();
        assert!(e.is_user_error());
        let m = e.to_string();
        assert!(m.starts_with("test request needs "), "{m}");
        assert!(m.contains("MemAvailable"), "{m}");
        check_memory("small", 1024).unwrap();
    }
}
