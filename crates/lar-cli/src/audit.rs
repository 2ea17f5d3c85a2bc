//! `lar audit [--since T] [--until T] [--model M] [--key K] [--source serve|run] [--limit N] [--json]`: what the
//! audit log (lar_lab::audit, written by `lar serve --audit` and `lar run --audit`) holds, oldest first: a table,
//! or one JSON array with every field. Times are `YYYY-MM-DD`, `YYYY-MM-DDTHH:MM[:SS]` (UTC) or a span back from
//! now (`30m`, `24h`, `7d`).

use anyhow::{Result, anyhow, bail};
use lar_lab::audit::{AuditLog, Filter};

#[derive(clap::Args, Debug)]
pub struct Args {
    /// From this time on.
    #[arg(long)]
    pub since: Option<String>,
    /// Up to this time.
    #[arg(long)]
    pub until: Option<String>,
    /// A model's name or the start of its sha256.
    #[arg(long)]
    pub model: Option<String>,
    /// An API key, or its fingerprint (`key-` and 8 hex digits).
    #[arg(long)]
    pub key: Option<String>,
    /// `serve` or `run`.
    #[arg(long)]
    pub source: Option<String>,
    /// Only the newest N.
    #[arg(long)]
    pub limit: Option<usize>,
    #[arg(long)]
    pub json: bool,
}

/// Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// A time as the flags take it, in Unix seconds; `now` for the spans.
pub fn parse_time(s: &str, now: f64) -> Result<f64> {
    let bad = || {
        anyhow!(
            "'{s}' is not a time (YYYY-MM-DD, YYYY-MM-DDTHH:MM[:SS] or a span such as 24h or 7d)"
        )
    };
    if let Some(unit) = s.chars().last().filter(|c| "smhd".contains(*c))
        && let Ok(n) = s[..s.len() - 1].parse::<f64>()
    {
        let secs = match unit {
            's' => 1.0,
            'm' => 60.0,
            'h' => 3600.0,
            _ => 86_400.0,
        };
        if n < 0.0 || !n.is_finite() {
            return Err(bad());
        }
        return Ok(now - n * secs);
    }
    let (date, time) = s.split_once(['T', ' ']).unwrap_or((s, "00:00"));
    let d: Vec<i64> = date
        .split('-')
        .map(|p| p.parse().map_err(|_| bad()))
        .collect::<Result<_>>()?;
    let t: Vec<i64> = time
        .split(':')
        .map(|p| p.parse().map_err(|_| bad()))
        .collect::<Result<_>>()?;
    let ok = d.len() == 3
        && (1..=12).contains(&d[1])
        && (1..=31).contains(&d[2])
        && (2..=3).contains(&t.len())
        && (0..24).contains(&t[0])
        && (0..60).contains(&t[1])
        && t.get(2).is_none_or(|s| (0..61).contains(s));
    if !ok {
        return Err(bad());
    }
    let days = days_from_civil(d[0], d[1], d[2]);
    Ok((days * 86_400 + t[0] * 3600 + t[1] * 60 + t.get(2).copied().unwrap_or(0)) as f64)
}

pub fn main(a: Args) -> Result<()> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64());
    if let Some(s) = &a.source
        && s != "serve"
        && s != "run"
    {
        bail!("--source is serve or run, not '{s}'");
    }
    let f = Filter {
        since: a.since.as_deref().map(|s| parse_time(s, now)).transpose()?,
        until: a.until.as_deref().map(|s| parse_time(s, now)).transpose()?,
        model: a.model.clone(),
        key: a.key.clone(),
        source: a.source.clone(),
        limit: a.limit,
    };
    let records = AuditLog::open_home(&lar_store::default_home())?.query(&f)?;
    if a.json {
        println!("{}", serde_json::to_string(&records)?);
        return Ok(());
    }
    if records.is_empty() {
        println!("no generations recorded (lar serve --audit, lar run --audit)");
        return Ok(());
    }
    println!(
        "| # | time (UTC) | source | route | key | model | tokens | end | prompt sha256 | output sha256 |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for r in &records {
        println!(
            "| {} | {} | {} | {} | {} | {} | {}+{} | {} | {} | {} |",
            r.id,
            crate::runs::when(r.time),
            r.source,
            r.route.as_deref().unwrap_or("-"),
            r.key.as_deref().unwrap_or("-"),
            r.model,
            r.prompt_tokens,
            r.completion_tokens,
            r.finish,
            &r.prompt_sha256[..12],
            &r.output_sha256[..12],
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_spans() {
        assert_eq!(parse_time("1970-01-02", 0.0).unwrap(), 86_400.0);
        assert_eq!(
            parse_time("2026-12-05T10:30", 0.0).unwrap(),
            1_796_466_600.0
        );
        assert_eq!(
            parse_time("2026-12-05 10:30:15", 0.0).unwrap(),
            1_796_466_615.0
        );
        assert_eq!(parse_time("24h", 100_000.0).unwrap(), 100_000.0 - 86_400.0);
        assert_eq!(parse_time("7d", 1e6).unwrap(), 1e6 - 7.0 * 86_400.0);
        for bad in ["yesterday", "2026-13-01", "2026-12-05T25:00", "-3h", "12"] {
            assert!(parse_time(bad, 0.0).is_err(), "{bad}");
        }
    }
}
