//! Charts of runs as SVG, written by hand (no dependency): [`bars`] for one metric across runs (tokens/s of each
//! model), [`scatter`] for one metric against another (size against perplexity), each point labelled, [`lines`]
//! for curves (a fine-tune's loss and held-out loss against steps). Axes get
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

/// Width of a character of the 12-pixel labels, generously (DejaVu Sans, the widest common sans-serif, averages
/// about 7 pixels).
const CHAR_W: f64 = 7.2;

/// The most characters a bar's label keeps: a longer one keeps its end (a file name and run id end there) after
/// an ellipsis.
const LABEL_CHARS: usize = 48;

fn bar_label(label: &str) -> String {
    let n = label.chars().count();
    if n <= LABEL_CHARS {
        return label.to_string();
    }
    let tail: String = label.chars().skip(n - (LABEL_CHARS - 1)).collect();
    format!("\u{2026}{tail}")
}

/// Horizontal bars: one per `(label, value)`, longest first as given, the value at the end of each bar; the
/// labels' column as wide as the longest label needs.
pub fn bars(title: &str, metric: &str, items: &[(String, f64)]) -> String {
    let labels: Vec<String> = items.iter().map(|i| bar_label(&i.0)).collect();
    let longest = labels.iter().map(|l| l.chars().count()).max().unwrap_or(0);
    let left = (longest as f64 * CHAR_W + 16.0).max(120.0);
    let (right, top, row) = (60.0, 44.0, 26.0);
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
    for (i, ((_, v), label)) in items.iter().zip(&labels).enumerate() {
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

/// Linear axes drawn on a plot: where a value lands.
struct Frame {
    x: (f64, f64, usize),
    y: (f64, f64, usize),
    left: f64,
    top: f64,
    pw: f64,
    ph: f64,
}

impl Frame {
    fn px(&self, v: f64) -> f64 {
        self.left + (v - self.x.0) / (self.x.1 * self.x.2 as f64) * self.pw
    }

    fn py(&self, v: f64) -> f64 {
        self.top + self.ph - (v - self.y.0) / (self.y.1 * self.y.2 as f64) * self.ph
    }
}

const PLOT_H: f64 = 480.0;

/// The title, grid, ticks and axis names of a plot covering `xr` and `yr`.
fn frame(
    out: &mut String,
    title: &str,
    names: (&str, &str),
    xr: (f64, f64),
    yr: (f64, f64),
) -> Frame {
    let (left, right, top, bottom, h) = (80.0, 40.0, 44.0, 60.0, PLOT_H);
    header(out, h, title);
    let f = Frame {
        x: ticks(xr.0, xr.1),
        y: ticks(yr.0, yr.1),
        left,
        top,
        pw: W - left - right,
        ph: h - top - bottom,
    };
    for k in 0..=f.x.2 {
        let v = f.x.0 + f.x.1 * k as f64;
        let x = f.px(v);
        let _ = writeln!(
            out,
            "<line x1=\"{x:.1}\" y1=\"{top}\" x2=\"{x:.1}\" y2=\"{:.1}\" stroke=\"#ddd\"/>\
             <text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\" {FONT}>{}</text>",
            top + f.ph,
            top + f.ph + 16.0,
            fmt(v)
        );
    }
    for k in 0..=f.y.2 {
        let v = f.y.0 + f.y.1 * k as f64;
        let y = f.py(v);
        let _ = writeln!(
            out,
            "<line x1=\"{left}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\" stroke=\"#ddd\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\" {FONT}>{}</text>",
            left + f.pw,
            left - 6.0,
            y + 4.0,
            fmt(v)
        );
    }
    let _ = writeln!(
        out,
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\" {FONT}>{}</text>\
         <text transform=\"translate(18 {:.1}) rotate(-90)\" text-anchor=\"middle\" {FONT}>{}</text>",
        left + f.pw / 2.0,
        h - 14.0,
        esc(names.0),
        top + f.ph / 2.0,
        esc(names.1)
    );
    f
}

/// The smallest and largest of `vs` (0..1 when there are none).
fn range(vs: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = vs
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), v| {
            (l.min(v), h.max(v))
        });
    if lo.is_finite() { (lo, hi) } else { (0.0, 1.0) }
}

/// Points `(label, x, y)` on linear axes named `x_name` and `y_name`.
pub fn scatter(title: &str, x_name: &str, y_name: &str, points: &[(String, f64, f64)]) -> String {
    let mut out = String::new();
    let xr = range(points.iter().map(|p| p.1));
    let yr = range(points.iter().map(|p| p.2));
    let f = frame(&mut out, title, (x_name, y_name), xr, yr);
    for (label, x, y) in points {
        let (cx, cy) = (f.px(*x), f.py(*y));
        let _ = writeln!(
            out,
            "<circle cx=\"{cx:.1}\" cy=\"{cy:.1}\" r=\"5\" fill=\"#c8553d\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" {FONT}>{}</text>",
            cx + 8.0,
            cy - 6.0,
            esc(label)
        );
    }
    out.push_str("</svg>\n");
    out
}

/// Colours of the series of [`lines`], in order.
const COLOURS: [&str; 6] = [
    "#4878a8", "#c8553d", "#5a9e5a", "#8e6bb0", "#d4a017", "#555555",
];

/// Curves `(name, points)` on linear axes (a loss against steps), each in its own colour with a legend.
pub fn lines(
    title: &str,
    x_name: &str,
    y_name: &str,
    series: &[(String, Vec<(f64, f64)>)],
) -> String {
    let mut out = String::new();
    let xr = range(series.iter().flat_map(|s| s.1.iter().map(|p| p.0)));
    let yr = range(series.iter().flat_map(|s| s.1.iter().map(|p| p.1)));
    let f = frame(&mut out, title, (x_name, y_name), xr, yr);
    for (i, (name, pts)) in series.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        let path: Vec<String> = pts
            .iter()
            .filter(|p| p.0.is_finite() && p.1.is_finite())
            .map(|p| format!("{:.1},{:.1}", f.px(p.0), f.py(p.1)))
            .collect();
        let _ = writeln!(
            out,
            "<polyline points=\"{}\" fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\"/>",
            path.join(" ")
        );
        if let [(x, y)] = pts[..] {
            let _ = writeln!(
                out,
                "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"{colour}\"/>",
                f.px(x),
                f.py(y)
            );
        }
        let ly = f.top + 8.0 + 18.0 * i as f64;
        let lx = f.left + f.pw - 160.0;
        let _ = writeln!(
            out,
            "<line x1=\"{lx:.1}\" y1=\"{ly:.1}\" x2=\"{:.1}\" y2=\"{ly:.1}\" stroke=\"{colour}\" stroke-width=\"3\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" {FONT}>{}</text>",
            lx + 24.0,
            lx + 30.0,
            ly + 4.0,
            esc(name)
        );
    }
    out.push_str("</svg>\n");
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

    /// A bar's label ends at `left - 8` (anchored at its end): its column must hold the longest label, and a label
    /// too long for any column keeps its end (the file name and run id).
    #[test]
    fn bar_labels_fit_their_column() {
        let long =
            "/root/.cache/lar/models/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf (1a24cc)".to_string();
        for label in [
            long.clone(),
            "SmolLM2-135M-Instruct.Q4_1.gguf (1a24cc)".into(),
        ] {
            let b = bars("t", "m", &[(label.clone(), 1.0), ("x".into(), 2.0)]);
            let shown = bar_label(&label);
            let at = format!("text-anchor=\"end\" {FONT}>{}</text>", esc(&shown));
            let i = b.find(&at).expect("the label");
            let x: f64 = b[..i]
                .rsplit("x=\"")
                .next()
                .and_then(|t| t.split('"').next())
                .and_then(|t| t.parse().ok())
                .expect("its x");
            assert!(
                x >= shown.chars().count() as f64 * CHAR_W,
                "{shown} ends at {x}"
            );
            assert!(
                label.ends_with(shown.trim_start_matches('\u{2026}')),
                "{shown}"
            );
        }
        assert!(
            bar_label(&long).starts_with('\u{2026}')
                && bar_label(&long).chars().count() == LABEL_CHARS
        );
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

    #[test]
    fn lines_draw_each_series_in_its_own_colour_with_a_legend() {
        let loss: Vec<(f64, f64)> = (1..=20).map(|s| (s as f64, 3.0 / s as f64)).collect();
        let svg = lines(
            "Fine-tune <toy>",
            "step",
            "loss",
            &[
                ("train".into(), loss),
                ("held-out".into(), vec![(10.0, 0.5), (20.0, 0.3)]),
            ],
        );
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<polyline").count(), 2);
        assert!(svg.contains(COLOURS[0]) && svg.contains(COLOURS[1]));
        assert!(svg.contains("Fine-tune &lt;toy&gt;") && svg.contains(">held-out<"));
        // 20 points in the first curve.
        let first = svg.split("<polyline points=\"").nth(1).expect("a curve");
        assert_eq!(
            first.split('"').next().map(|p| p.split(' ').count()),
            Some(20)
        );
    }
}
