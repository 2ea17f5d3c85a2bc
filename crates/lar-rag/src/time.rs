//! Dates without a time-zone database: RFC 3339 / ISO dates as people type them on the command line (`--since`,
//! `--until`) and the civil-date arithmetic the calendar connector shares. UTC throughout; an offset is applied,
//! named zones are not known.

/// `YYYY-MM-DD` (midnight UTC), or RFC 3339 `YYYY-MM-DDTHH:MM[:SS[.fraction]]` with `Z`, an offset `+HH:MM` /
/// `-HH:MM`, or neither (UTC), as Unix seconds. A date that does not exist (`2024-02-30`) is `None`.
pub fn parse_date(s: &str) -> Option<i64> {
    let s = s.trim();
    if !s.is_ascii() {
        return None; // and so every slice below is on a character boundary
    }
    let num = |x: &str, len: usize| -> Option<i64> {
        (x.len() == len && x.bytes().all(|b| b.is_ascii_digit()))
            .then(|| x.parse().ok())
            .flatten()
    };
    let (d, t) = match s.split_once(['T', 't', ' ']) {
        Some((d, t)) => (d, Some(t)),
        None => (s, None),
    };
    let mut dp = d.split('-');
    let (y, m, day) = (
        num(dp.next()?, 4)?,
        num(dp.next()?, 2)?,
        num(dp.next()?, 2)?,
    );
    if dp.next().is_some() || !(1..=12).contains(&m) || day < 1 || day > days_in_month(y, m) {
        return None;
    }
    let days = days_from_civil(y, m, day);
    let Some(t) = t else {
        return Some(days * 86400);
    };
    // The zone: Z, +HH:MM, -HH:MM or none (UTC).
    let (clock, offset) = if let Some(c) = t.strip_suffix(['Z', 'z']) {
        (c, 0)
    } else if let Some(at) = t.rfind(['+', '-']) {
        let (c, z) = t.split_at(at);
        let (zh, zm) = z[1..].split_once(':')?;
        let (zh, zm) = (num(zh, 2)?, num(zm, 2)?);
        if zh > 23 || zm > 59 {
            return None;
        }
        let sign = if z.starts_with('-') { -1 } else { 1 };
        (c, sign * (zh * 3600 + zm * 60))
    } else {
        (t, 0)
    };
    let mut tp = clock.split(':');
    let (h, mi) = (num(tp.next()?, 2)?, num(tp.next()?, 2)?);
    let sec = match tp.next() {
        None => 0,
        Some(x) => {
            // Fractions of a second are dropped.
            let (whole, frac) = x.split_once('.').unwrap_or((x, "0"));
            if frac.is_empty() || !frac.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            num(whole, 2)?
        }
    };
    if tp.next().is_some() || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    Some(days * 86400 + h * 3600 + mi * 60 + sec - offset)
}

/// Days in month `m` (1-12) of year `y`, proleptic Gregorian.
pub fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
pub fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::parse_date;

    #[test]
    fn dates_parse_to_unix_seconds() {
        assert_eq!(parse_date("1970-01-01"), Some(0));
        assert_eq!(parse_date("2024-03-01T10:30:00Z"), Some(1709289000));
        assert_eq!(parse_date("2024-02-29"), Some(1709164800));
        assert_eq!(parse_date("2024-13-01"), None);
        assert_eq!(parse_date("yesterday"), None);
    }

    #[test]
    fn rfc3339_offsets_fractions_and_impossible_dates() {
        // An offset used to be dropped silently (10:30+02:00 read as 10:30 UTC), 2024-02-31 read as March 2nd, a
        // negative hour accepted, and a huge year overflowed.
        assert_eq!(parse_date("2024-03-01T10:30:00+02:00"), Some(1709281800));
        assert_eq!(parse_date("2024-03-01T10:30:00-01:30"), Some(1709294400));
        assert_eq!(parse_date("2024-03-01T10:30:00.250Z"), Some(1709289000));
        assert_eq!(parse_date("2024-03-01T10:30Z"), Some(1709289000));
        assert_eq!(parse_date("2024-03-01 10:30:00"), Some(1709289000));
        for bad in [
            "2024-02-30",
            "2023-02-29",
            "2024-04-31",
            "2024-03-01T-1:00",
            "2024-03-01T10:-5",
            "2024-03-01T10:30:00+25:00",
            "2024-03-01T10:30:00:00",
            "2024-03-01T10:30:xx",
            "2024-03-01T",
            "2024-03-01-02",
            "999999999999999999-01-01",
            "2024-3-1",
            "2024-03-01T10:30:00.",
            "２０２４-03-01",
        ] {
            assert_eq!(parse_date(bad), None, "{bad}");
        }
    }
}
