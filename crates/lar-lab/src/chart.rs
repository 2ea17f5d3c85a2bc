//! Charts of runs as SVG, written by hand (no dependency): [`bars`] for one metric across runs (tokens/s of each
//! model), [`scatter`] for one metric against another (size against perplexity), each point labelled. Axes get
//! round ticks; labels are escaped; the output is a complete, standalone SVG document.

use std::fmt::Write;

const W: f64 = 720.0;
const FONT: &str = "font-family=\"sans-serif\" font-size=\"12\"";

/// Text escaped for XML.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A number as a tick or bar label: short and round.
fn fmt(v: f64) -> String {
    let a = v.abs();
    if a >= 1e9 {
        format!("{:.1}G", v / 1e9)
    } else if a >= 1e6 {
        format!("{:.1}M", v / 1e6)
    } else if a >= 1e4 {
        format!("{:.1}k", v / 1e3)
    } else if a >= 100.0 || v.fract() == 0.0 {
        format!("{v:.0}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

/// Round ticks covering `lo..=hi`: (first, step, count).
fn ticks(lo: f64, hi: f64) -> (f64, f64, usize) {
    let span = (hi - lo).max(f64::EPSILON * hi.abs().max(1.0));
    let raw = span / 5.0;
    let mag = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * mag)
        .find(|s| span / s <= 6.0)
        .unwrap_or(10.0 * mag);
    let first = (lo / step).floor() * step;
    let count = ((hi - first) / step).ceil().max(1.0) as usize;
    (first, step, count)
}

fn header(out: &mut String, h: f64, title: &str) {
    let _ = write!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{h}\" viewBox=\"0 0 {W} {h}\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{}\" y=\"24\" text-anchor=\"middle\" font-family=\"sans-serif\" font-size=\"16\">{}</text>\n",
        W / 2.0,
        esc(title)
    );
}

/// Horizontal bars: one per `(label, value)`, longest first as given, the value at the end of each bar.
pub fn bars(title: &str, metric: &str, items: &[(String, f64)]) -> String {
    let (left, right, top, row) = (220.0, 60.0, 44.0, 26.0);
    let h = top + row * items.len() as f64 + 40.0;
    let mut out = String::new();
    header(&mut out, h, title);
    let max = items.iter().map(|i| i.1).fold(0.0f64, f64::max);
    let (_, step, count) = ticks(0.0, max.max(f64::MIN_POSITIVE));
    let full = step * count as f64;
    let scale = (W - left - right) / full;
    for k in 0..=count {
        let v = step * k as f64;
        let x = left + v * scale;
        let _ = writeln!(
            out,
            "<line x1=\"{x:.1}\" y1=\"{top}\" x2=\"{x:.1}\" y2=\"{:.1}\" stroke=\"#ddd\"/>\
             <text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\" {FONT}>{}</text>",
            h - 36.0,
            h - 22.0,
            fmt(v)
        );
    }
    for (i, (label, v)) in items.iter().enumerate() {
        let y = top + row * i as f64 + 4.0;
        let w = (v.max(0.0) * scale).max(1.0);
        let _ = writeln!(
            out,
            "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\" {FONT}>{}</text>\
             <rect x=\"{left}\" y=\"{y:.1}\" width=\"{w:.1}\" height=\"{:.1}\" fill=\"#4878a8\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" {FONT}>{}</text>",
            left - 8.0,
            y + row * 0.55,
            esc(label),
            row - 8.0,
            left + w + 4.0,
            y + row * 0.55,
            fmt(*v)
        );
    }
    let _ = writeln!(
        out,
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" {FONT}>{}</text>\n</svg>",
        left + (W - left - right) / 2.0,
        h - 6.0,
        esc(metric)
    );
    out
}

/// Points `(label, x, y)` on linear axes named `x_name` and `y_name`.
pub fn scatter(title: &str, x_name: &str, y_name: &str, points: &[(String, f64, f64)]) -> String {
    let (left, right, top, bottom, h) = (80.0, 40.0, 44.0, 60.0, 480.0);
    let mut out = String::new();
    header(&mut out, h, title);
    let range = |f: &dyn Fn(&(String, f64, f64)) -> f64| {
        let lo = points.iter().map(f).fold(f64::INFINITY, f64::min);
        let hi = points.iter().map(f).fold(f64::NEG_INFINITY, f64::max);
        if lo.is_finite() { (lo, hi) } else { (0.0, 1.0) }
    };
    let (x0, x1) = range(&|p| p.1);
    let (y0, y1) = range(&|p| p.2);
    let (xf, xs, xn) = ticks(x0, x1);
    let (yf, ys, yn) = ticks(y0, y1);
    let (pw, ph) = (W - left - right, h - top - bottom);
    let px = |x: f64| left + (x - xf) / (xs * xn as f64) * pw;
    let py = |y: f64| top + ph - (y - yf) / (ys * yn as f64) * ph;
    for k in 0..=xn {
        let v = xf + xs * k as f64;
        let x = px(v);
        let _ = writeln!(
            out,
            "<line x1=\"{x:.1}\" y1=\"{top}\" x2=\"{x:.1}\" y2=\"{:.1}\" stroke=\"#ddd\"/>\
             <text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\" {FONT}>{}</text>",
            top + ph,
            top + ph + 16.0,
            fmt(v)
        );
    }
    for k in 0..=yn {
        let v = yf + ys * k as f64;
        let y = py(v);
        let _ = writeln!(
            out,
            "<line x1=\"{left}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"#ddd\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\" {FONT}>{}</text>",
            left + pw,
            left - 6.0,
            y + 4.0,
            fmt(v)
        );
    }
    for (label, x, y) in points {
        let (cx, cy) = (px(*x), py(*y));
        let _ = writeln!(
            out,
            "<circle cx=\"{cx:.1}\" cy=\"{cy:.1}\" r=\"5\" fill=\"#c8553d\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" {FONT}>{}</text>",
            cx + 8.0,
            cy - 6.0,
            esc(label)
        );
    }
    let _ = writeln!(
        out,
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" {FONT}>{}</text>\
         <text transform=\"translate(18 {:.1}) rotate(-90)\" text-anchor=\"middle\" {FONT}>{}</text>\n</svg>",
        left + pw / 2.0,
        h - 14.0,
        esc(x_name),
        top + ph / 2.0,
        esc(y_name)
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_and_cover_the_range() {
        assert_eq!(ticks(0.0, 97.0), (0.0, 20.0, 5));
        let (f, s, n) = ticks(61.3, 111.1);
        assert!(f <= 61.3 && f + s * n as f64 >= 111.1, "{f} {s} {n}");
        assert_eq!(s, 10.0);
        let (f, s, n) = ticks(5.0, 5.0);
        assert!(s > 0.0 && n >= 1 && f <= 5.0);
    }

    #[test]
    fn charts_are_whole_svg_with_every_label_escaped() {
        let b = bars(
            "Decode speed",
            "tokens/s",
            &[("qwen <q4>".into(), 34.6), ("smol & co".into(), 120.0)],
        );
        assert!(b.starts_with("<svg") && b.trim_end().ends_with("</svg>"));
        assert!(b.contains("qwen &lt;q4&gt;") && b.contains("smol &amp; co"));
        assert_eq!(b.matches("<rect x=").count(), 2);
        let s = scatter(
            "Size and quality",
            "bytes",
            "perplexity",
            &[("a".into(), 1e8, 75.5), ("b".into(), 4e8, 88.4)],
        );
        assert_eq!(s.matches("<circle").count(), 2);
        assert!(s.contains(">perplexity<") && s.contains("100.0M"));
        // Nothing to draw is still a document.
        assert!(scatter("t", "x", "y", &[]).contains("</svg>"));
    }
}
