//! A line chart from a JSON file, for benchmark scripts in other languages to draw with Lar's own charts:
//! `cargo run -p lar-lab --example lines-chart -- IN.json OUT.svg`, where IN holds
//! `{"title": ..., "x": ..., "y": ..., "series": [{"name": ..., "points": [[x, y], ...]}, ...]}`.

use serde_json::Value;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, input, output] = args.as_slice() else {
        return Err("usage: lines-chart IN.json OUT.svg".into());
    };
    let v: Value = serde_json::from_slice(&std::fs::read(input)?)?;
    let text = |k: &str| v[k].as_str().unwrap_or("").to_string();
    let mut series = Vec::new();
    for s in v["series"].as_array().ok_or("'series' must be a list")? {
        let points = s["points"]
            .as_array()
            .ok_or("each series needs 'points'")?
            .iter()
            .map(|p| Some((p[0].as_f64()?, p[1].as_f64()?)))
            .collect::<Option<Vec<_>>>()
            .ok_or("each point is [x, y]")?;
        series.push((s["name"].as_str().unwrap_or("").to_string(), points));
    }
    let svg = lar_lab::chart::lines(&text("title"), &text("x"), &text("y"), &series);
    std::fs::write(output, svg)?;
    println!("{output}");
    Ok(())
}
