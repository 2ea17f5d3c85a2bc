//! A chart written to a file in the format its name asks for: `.svg` as drawn by [`crate::chart`], `.png` rendered
//! from that SVG by resvg at twice its size, its text set in a sans-serif family found among the system's fonts
//! (DejaVu Sans, Liberation Sans, Noto Sans, Arial, Helvetica, or else the first that is not monospaced or serif).
//! A machine with no fonts at all gets an error saying so, never a PNG with its labels silently missing. The file
//! is written whole under a temporary name and renamed into place.

use std::path::Path;

use resvg::{tiny_skia, usvg};

use crate::{Error, Result};

/// Pixels per SVG unit in a PNG: crisp on high-density screens and in documents.
const SCALE: f32 = 2.0;

const PREFERRED: [&str; 6] = [
    "DejaVu Sans",
    "Liberation Sans",
    "Noto Sans",
    "Arial",
    "Helvetica",
    "Cantarell",
];

/// The family to set `sans-serif` text in, among the fonts in `db`.
fn sans_serif(db: &usvg::fontdb::Database) -> Option<String> {
    let families: Vec<&str> = db
        .faces()
        .flat_map(|f| f.families.iter().map(|(name, _)| name.as_str()))
        .collect();
    PREFERRED
        .iter()
        .find(|p| families.contains(p))
        .map(|p| p.to_string())
        .or_else(|| {
            families
                .iter()
                .find(|f| !f.contains("Mono") && !f.contains("Serif"))
                .or(families.first())
                .map(|f| f.to_string())
        })
}

/// `svg` (a chart from [`crate::chart`]) as PNG bytes, on white.
pub fn png(svg: &str) -> Result<Vec<u8>> {
    let mut opt = usvg::Options::default();
    let db = opt.fontdb_mut();
    db.load_system_fonts();
    let family = sans_serif(db).ok_or_else(|| {
        Error::Invalid(
            "no fonts on this system to set the chart's text in a PNG (install one, e.g. fonts-dejavu-core, \
             or write the chart as .svg)"
                .into(),
        )
    })?;
    db.set_sans_serif_family(family.clone());
    opt.font_family = family;
    let tree = usvg::Tree::from_str(svg, &opt)
        .map_err(|e| Error::Invalid(format!("the chart is not valid SVG: {e}")))?;
    let size = tree.size();
    let (w, h) = (
        (size.width() * SCALE).ceil() as u32,
        (size.height() * SCALE).ceil() as u32,
    );
    let mut pixmap = tiny_skia::Pixmap::new(w, h)
        .ok_or_else(|| Error::Invalid(format!("a chart of {w}x{h} pixels cannot be drawn")))?;
    pixmap.fill(tiny_skia::Color::WHITE);
    resvg::render(
        &tree,
        tiny_skia::Transform::from_scale(SCALE, SCALE),
        &mut pixmap.as_mut(),
    );
    pixmap
        .encode_png()
        .map_err(|e| Error::Invalid(format!("encoding the PNG: {e}")))
}

/// Writes `svg` to `path` as SVG or PNG, by the file's extension (anything else is refused).
pub fn write(path: &Path, svg: &str) -> Result<()> {
    let ext = path
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase());
    let bytes = match ext.as_deref() {
        Some("svg") => svg.as_bytes().to_vec(),
        Some("png") => png(svg)?,
        _ => {
            return Err(Error::Invalid(format!(
                "{}: a chart is written as .svg or .png",
                path.display()
            )));
        }
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.partial"));
    std::fs::write(&tmp, &bytes)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            Error::Io(format!("writing {}", path.display()), e)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The PNG's width, height and pixels (RGBA), decoded by tiny-skia.
    fn decode(png: &[u8]) -> tiny_skia::Pixmap {
        tiny_skia::Pixmap::decode_png(png).expect("a PNG")
    }

    fn dark(p: &tiny_skia::Pixmap) -> usize {
        p.pixels()
            .iter()
            .filter(|c| u32::from(c.red()) + u32::from(c.green()) + u32::from(c.blue()) < 200)
            .count()
    }

    #[test]
    fn a_chart_becomes_a_png_of_twice_its_size_with_its_text() {
        let items = vec![("a".to_string(), 3.0), ("b".to_string(), 5.0)];
        let svg = crate::chart::bars("tokens/s", "t/s", &items);
        let p = decode(&png(&svg).expect("png"));
        let tree = usvg::Tree::from_str(&svg, &usvg::Options::default()).expect("svg");
        assert_eq!(p.width(), (tree.size().width() * SCALE).ceil() as u32);
        assert_eq!(p.height(), (tree.size().height() * SCALE).ceil() as u32);
        // Text is drawn: a longer title darkens more pixels than the same chart's shorter one.
        let long = crate::chart::bars(
            "tokens per second for every model we measured today",
            "t/s",
            &items,
        );
        let q = decode(&png(&long).expect("png"));
        assert!(
            dark(&q) > dark(&p) + 200,
            "the title's text is missing: {} vs {} dark pixels",
            dark(&q),
            dark(&p)
        );
    }

    #[test]
    fn the_extension_chooses_the_format() {
        let dir = std::env::temp_dir().join(format!("lar-chart-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let svg = crate::chart::scatter("s", "x", "y", &[("p".into(), 1.0, 2.0)]);
        write(&dir.join("c.svg"), &svg).unwrap();
        assert_eq!(std::fs::read_to_string(dir.join("c.svg")).unwrap(), svg);
        write(&dir.join("c.PNG"), &svg).unwrap();
        assert!(
            std::fs::read(dir.join("c.PNG"))
                .unwrap()
                .starts_with(b"\x89PNG\r\n\x1a\n")
        );
        let e = write(&dir.join("c.jpg"), &svg).unwrap_err().to_string();
        assert!(e.contains(".svg or .png"), "{e}");
        assert!(!dir.join("c.jpg").exists());
        let e = write(&dir.join("missing/c.png"), &svg)
            .unwrap_err()
            .to_string();
        assert!(e.contains("writing"), "{e}");
        assert!(!dir.join("missing").exists());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
