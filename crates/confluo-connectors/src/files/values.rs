//! Fast parsers from text to typed values, shared by the CSV decoder and inference.
//!
//! The ISO shapes (`2024-03-15`, `2024-03-15 10:23:45.123+02:00`) have hand-written fast
//! paths; anything else goes through chrono with the user's format.

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime};

/// Days from 1970-01-01 to a civil date (proleptic Gregorian).
pub fn days_from_civil(y: i32, m: u32, d: u32) -> i32 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = (y - era * 400) as u32;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe as i32 - 719468
}

fn days_in_month(y: i32, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        _ => 0,
    }
}

#[inline]
fn digits<const N: usize>(b: &[u8]) -> Option<u32> {
    if b.len() < N {
        return None;
    }
    let mut v = 0u32;
    for &c in &b[..N] {
        let d = c.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        v = v * 10 + d as u32;
    }
    Some(v)
}

/// Trims ASCII whitespace.
#[inline]
pub fn trim(b: &[u8]) -> &[u8] {
    b.trim_ascii()
}

/// Parses a whole signed 64-bit integer.
#[inline]
pub fn parse_i64(b: &[u8]) -> Option<i64> {
    let b = trim(b);
    let (neg, digits) = match b.first()? {
        b'-' => (true, &b[1..]),
        b'+' => (false, &b[1..]),
        _ => (false, b),
    };
    if digits.is_empty() || digits.len() > 19 {
        return None;
    }
    let mut v: u64 = 0;
    for &c in digits {
        let d = c.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(d as u64)?;
    }
    if neg {
        if v <= i64::MAX as u64 + 1 {
            Some((v as i64).wrapping_neg())
        } else {
            None
        }
    } else {
        i64::try_from(v).ok()
    }
}

/// Parses a float, including `NaN` and `Infinity`.
#[inline]
pub fn parse_f64(b: &[u8]) -> Option<f64> {
    let b = trim(b);
    if b.is_empty() {
        return None;
    }
    match lexical_core::parse::<f64>(b) {
        Ok(v) => Some(v),
        Err(_) => match b.to_ascii_lowercase().as_slice() {
            b"nan" => Some(f64::NAN),
            b"infinity" | b"+infinity" | b"inf" | b"+inf" => Some(f64::INFINITY),
            b"-infinity" | b"-inf" => Some(f64::NEG_INFINITY),
            _ => None,
        },
    }
}

/// Parses `true`/`false` (and the usual yes/no, 1/0, t/f spellings).
#[inline]
pub fn parse_bool(b: &[u8]) -> Option<bool> {
    let b = trim(b);
    if b.eq_ignore_ascii_case(b"true")
        || b.eq_ignore_ascii_case(b"t")
        || b == b"1"
        || b.eq_ignore_ascii_case(b"yes")
        || b.eq_ignore_ascii_case(b"y")
    {
        Some(true)
    } else if b.eq_ignore_ascii_case(b"false")
        || b.eq_ignore_ascii_case(b"f")
        || b == b"0"
        || b.eq_ignore_ascii_case(b"no")
        || b.eq_ignore_ascii_case(b"n")
    {
        Some(false)
    } else {
        None
    }
}

/// Parses a decimal into its unscaled integer at `scale`, rounding half away from zero.
/// Fails when the value needs more than `precision` digits.
pub fn parse_decimal(b: &[u8], precision: u8, scale: i8) -> Option<i128> {
    let b = trim(b);
    let (neg, body) = match b.first()? {
        b'-' => (true, &b[1..]),
        b'+' => (false, &b[1..]),
        _ => (false, b),
    };
    let (int_part, frac_part) = match body.iter().position(|&c| c == b'.') {
        Some(i) => (&body[..i], &body[i + 1..]),
        None => (body, &body[..0]),
    };
    if int_part.is_empty() && frac_part.is_empty() {
        return None;
    }
    let scale = scale.max(0) as usize;
    let mut v: i128 = 0;
    for &c in int_part {
        let d = c.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(d as i128)?;
    }
    for i in 0..scale {
        let d = match frac_part.get(i) {
            Some(&c) => {
                let d = c.wrapping_sub(b'0');
                if d > 9 {
                    return None;
                }
                d
            }
            None => 0,
        };
        v = v.checked_mul(10)?.checked_add(d as i128)?;
    }
    if let Some(&c) = frac_part.get(scale) {
        let d = c.wrapping_sub(b'0');
        if d > 9 {
            return None;
        }
        if !frac_part[scale..].iter().all(u8::is_ascii_digit) {
            return None;
        }
        if d >= 5 {
            v += 1;
        }
    }
    if v >= 10i128.checked_pow(precision as u32)? {
        return None;
    }
    Some(if neg { -v } else { v })
}

/// Parses `YYYY-MM-DD` into days since the epoch.
#[inline]
pub fn parse_iso_date(b: &[u8]) -> Option<i32> {
    let b = trim(b);
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let y = digits::<4>(b)? as i32;
    let m = digits::<2>(&b[5..])?;
    let d = digits::<2>(&b[8..])?;
    if m == 0 || m > 12 || d == 0 || d > days_in_month(y, m) {
        return None;
    }
    Some(days_from_civil(y, m, d))
}

/// Parses ISO 8601 timestamps into microseconds since the epoch (UTC). Accepts a `T` or a
/// space between date and time, optional seconds and fraction, and `Z`, `+hh`, `+hhmm` or
/// `+hh:mm` offsets; no offset means UTC. A date alone means midnight.
pub fn parse_iso_timestamp(b: &[u8]) -> Option<i64> {
    let b = trim(b);
    if b.len() < 10 {
        return None;
    }
    let days = parse_iso_date(&b[..10])? as i64;
    if b.len() == 10 {
        return Some(days * 86_400_000_000);
    }
    let sep = b[10];
    if sep != b'T' && sep != b' ' && sep != b't' {
        return None;
    }
    let t = &b[11..];
    let h = digits::<2>(t)?;
    if t.get(2) != Some(&b':') {
        return None;
    }
    let mi = digits::<2>(&t[3..])?;
    let mut i = 5;
    let mut s = 0;
    if t.get(i) == Some(&b':') {
        s = digits::<2>(&t[i + 1..])?;
        i += 3;
    }
    if h > 23 || mi > 59 || s > 60 {
        return None;
    }
    let mut micros: i64 = 0;
    if matches!(t.get(i), Some(b'.') | Some(b',')) {
        i += 1;
        let start = i;
        while i < t.len() && t[i].is_ascii_digit() {
            if i - start < 6 {
                micros = micros * 10 + (t[i] - b'0') as i64;
            }
            i += 1;
        }
        let n = i - start;
        if n == 0 {
            return None;
        }
        for _ in n..6 {
            micros *= 10;
        }
    }
    let mut offset_secs: i64 = 0;
    let rest = &t[i..];
    let rest = if rest.first() == Some(&b' ') {
        &rest[1..]
    } else {
        rest
    };
    match rest {
        [] => {}
        [b'Z'] | [b'z'] => {}
        b"UTC" | b"GMT" => {}
        [sign @ (b'+' | b'-'), tz @ ..] => {
            let oh = digits::<2>(tz)? as i64;
            let om = match tz.len() {
                2 => 0,
                4 => digits::<2>(&tz[2..])? as i64,
                5 if tz[2] == b':' => digits::<2>(&tz[3..])? as i64,
                _ => return None,
            };
            offset_secs = (oh * 3600 + om * 60) * if *sign == b'-' { -1 } else { 1 };
        }
        _ => return None,
    }
    let secs = days * 86_400 + (h as i64) * 3600 + (mi as i64) * 60 + s as i64 - offset_secs;
    Some(secs * 1_000_000 + micros)
}

/// Translates a Java/Spark date pattern (`yyyy-MM-dd HH:mm:ss.SSS`) into chrono's
/// (`%Y-%m-%d %H:%M:%S%.3f`). Patterns that already use `%` pass through.
pub fn java_to_chrono(pattern: &str) -> String {
    if pattern.contains('%') {
        return pattern.to_string();
    }
    let mut out = String::new();
    let chars: Vec<char> = pattern.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let mut n = 1;
        while i + n < chars.len() && chars[i + n] == c {
            n += 1;
        }
        let piece = match (c, n) {
            ('y', 2) => "%y".to_string(),
            ('y', _) | ('u', _) => "%Y".to_string(),
            ('M', 1) => "%-m".to_string(),
            ('M', 2) => "%m".to_string(),
            ('M', 3) => "%b".to_string(),
            ('M', _) => "%B".to_string(),
            ('d', 1) => "%-d".to_string(),
            ('d', _) => "%d".to_string(),
            ('H', 1) => "%-H".to_string(),
            ('H', _) => "%H".to_string(),
            ('h', _) => "%I".to_string(),
            ('m', _) => "%M".to_string(),
            ('s', _) => "%S".to_string(),
            ('S', k) => {
                // Fraction follows a literal dot in the pattern already.
                if out.ends_with('.') {
                    out.pop();
                }
                format!("%.{}f", k.min(9))
            }
            ('a', _) => "%p".to_string(),
            ('E', 1..=3) => "%a".to_string(),
            ('E', _) => "%A".to_string(),
            ('X', _) | ('x', _) | ('Z', _) => "%:z".to_string(),
            ('\'', _) => {
                // Quoted literal text.
                let mut j = i + 1;
                let mut lit = String::new();
                while j < chars.len() && chars[j] != '\'' {
                    lit.push(chars[j]);
                    j += 1;
                }
                i = j + 1;
                out.push_str(&lit.replace('%', "%%"));
                continue;
            }
            (other, k) => other.to_string().repeat(k),
        };
        out.push_str(&piece);
        i += n;
    }
    out
}

/// Parses a date with a chrono format.
pub fn parse_date_with(b: &[u8], format: &str) -> Option<i32> {
    let s = std::str::from_utf8(trim(b)).ok()?;
    let d = NaiveDate::parse_from_str(s, format).ok()?;
    Some((d - NaiveDate::from_ymd_opt(1970, 1, 1)?).num_days() as i32)
}

/// Parses a timestamp with a chrono format; without an offset in the format, UTC.
pub fn parse_timestamp_with(b: &[u8], format: &str) -> Option<i64> {
    let s = std::str::from_utf8(trim(b)).ok()?;
    if let Ok(dt) = DateTime::parse_from_str(s, format) {
        return Some(dt.timestamp_micros());
    }
    if let Ok(ndt) = NaiveDateTime::parse_from_str(s, format) {
        return Some(ndt.and_utc().timestamp_micros());
    }
    let d = NaiveDate::parse_from_str(s, format).ok()?;
    Some(d.and_time(NaiveTime::MIN).and_utc().timestamp_micros())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ints_and_floats() {
        assert_eq!(parse_i64(b"123"), Some(123));
        assert_eq!(parse_i64(b" -9223372036854775808"), Some(i64::MIN));
        assert_eq!(parse_i64(b"9223372036854775808"), None);
        assert_eq!(parse_i64(b"12a"), None);
        assert_eq!(parse_i64(b""), None);
        assert_eq!(parse_f64(b"1.5e3"), Some(1500.0));
        assert!(parse_f64(b"NaN").unwrap().is_nan());
        assert_eq!(parse_f64(b"abc"), None);
    }

    #[test]
    fn decimals_round_and_check_precision() {
        assert_eq!(parse_decimal(b"12.345", 10, 2), Some(1235));
        assert_eq!(parse_decimal(b"-0.5", 10, 0), Some(-1));
        assert_eq!(parse_decimal(b"123", 4, 2), None);
        assert_eq!(parse_decimal(b"1.2.3", 10, 2), None);
    }

    #[test]
    fn dates_and_timestamps() {
        assert_eq!(parse_iso_date(b"1970-01-02"), Some(1));
        assert_eq!(parse_iso_date(b"2024-02-30"), None);
        assert_eq!(parse_iso_date(b"2000-02-29"), Some(11016));
        assert_eq!(
            parse_iso_timestamp(b"1970-01-01T00:00:01Z"),
            Some(1_000_000)
        );
        assert_eq!(parse_iso_timestamp(b"1970-01-01 01:00:00+01:00"), Some(0));
        assert_eq!(parse_iso_timestamp(b"1970-01-01 00:00:00.5"), Some(500_000));
        assert_eq!(parse_iso_timestamp(b"1970-01-01"), Some(0));
        assert_eq!(parse_iso_timestamp(b"1970-01-01X"), None);
        assert_eq!(
            java_to_chrono("dd/MM/yyyy HH:mm:ss.SSS"),
            "%d/%m/%Y %H:%M:%S%.3f"
        );
        assert_eq!(
            parse_date_with(b"15/03/2024", &java_to_chrono("dd/MM/yyyy")),
            parse_iso_date(b"2024-03-15")
        );
    }
}
