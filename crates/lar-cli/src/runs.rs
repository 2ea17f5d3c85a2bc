//! `lar runs list / show / compare / rm / chart`: the record of every bench, evaluation and quantization
//! (`$LAR_HOME/runs.sqlite`, see lar_lab::runs).

use anyhow::{Result, bail};
use lar_lab::runs::{Filter, Run, RunStore};

#[derive(clap::Subcommand, Debug)]
pub enum Cmd {
    /// The runs, newest first.
    List(ListArgs),
    /// One run: what, when, where, parameters, metrics, artifacts.
    Show(ShowArgs),
    /// Runs side by side: their parameters and metrics.
    Compare(CompareArgs),
    /// Remove runs from the record (not the files they made).
    Rm(RmArgs),
    /// Draw runs as SVG: bars of one metric (--metric), or one metric against another (--x, --y).
    Chart(ChartArgs),
    /// Copy runs to an MLflow tracking server (its REST API): parameters, metric histories, tags, artifacts.
    Export(ExportArgs),
}

#[derive(clap::Args, Debug)]
pub struct ExportArgs {
    /// These runs (default: all; runs already exported are skipped).
    pub ids: Vec<String>,
    /// The tracking server, e.g. http://127.0.0.1:5000.
    #[arg(long)]
    pub mlflow: String,
    /// The MLflow experiment (created when missing).
    #[arg(long, default_value = "lar")]
    pub experiment: String,
    /// Upload each run's artifact files up to this size (e.g. 64MiB; default: only list them as tags).
    #[arg(long, value_parser = lar_plan::size::parse_bytes)]
    pub upload_artifacts: Option<u64>,
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::Args, Debug)]
pub struct ChartArgs {
    /// These runs (default: those --kind and --model select).
    pub ids: Vec<String>,
    /// Bars of this metric, one per run.
    #[arg(long, conflicts_with_all = ["x", "y"])]
    pub metric: Option<String>,
    /// A scatter plot: this metric across...
    #[arg(long, requires = "y")]
    pub x: Option<String>,
    /// ...and this one up.
    #[arg(long, requires = "x")]
    pub y: Option<String>,
    #[arg(long)]
    pub kind: Option<String>,
    #[arg(long)]
    pub model: Option<String>,
    /// The chart's title (default: what it shows).
    #[arg(long)]
    pub title: Option<String>,
    /// Where to write the chart: `.svg`, or `.png` (rendered with the system's fonts).
    #[arg(short, long)]
    pub output: std::path::PathBuf,
}

#[derive(clap::Args, Debug)]
pub struct ListArgs {
    /// Only runs of this kind (`bench`, `eval`, `eval.perplexity`, ...).
    #[arg(long)]
    pub kind: Option<String>,
    /// Only runs of this model (as it was named).
    #[arg(long)]
    pub model: Option<String>,
    #[arg(long)]
    pub limit: Option<usize>,
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::Args, Debug)]
pub struct ShowArgs {
    /// A run's id, or the start of it.
    pub id: String,
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::Args, Debug)]
pub struct CompareArgs {
    /// Two or more runs.
    #[arg(required = true, num_args = 2..)]
    pub ids: Vec<String>,
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::Args, Debug)]
pub struct RmArgs {
    #[arg(required = true)]
    pub ids: Vec<String>,
}

fn open() -> Result<RunStore> {
    Ok(RunStore::open_home(&lar_store::default_home())?)
}

/// A Unix time as `YYYY-MM-DD HH:MM` (UTC).
pub fn when(t: f64) -> String {
    let secs = t as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60
    )
}

fn short(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e12 {
        format!("{v:.0}")
    } else if v.abs() >= 100.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.4}")
    }
}

pub fn main(cmd: Cmd) -> Result<()> {
    let store = open()?;
    match cmd {
        Cmd::Export(a) => {
            let o = lar_lab::mlflow::Options {
                url: a.mlflow.clone(),
                experiment: a.experiment.clone(),
                upload_up_to: a.upload_artifacts,
            };
            let s = lar_lab::mlflow::export(&store, &a.ids, &o)?;
            if a.json {
                println!("{}", serde_json::to_string(&s)?);
            } else {
                println!(
                    "exported {} runs to experiment '{}' ({}) at {}; {} already there or running; {} artifacts uploaded",
                    s.exported.len(),
                    a.experiment,
                    s.experiment_id,
                    a.mlflow,
                    s.skipped.len(),
                    s.uploaded
                );
            }
        }
        Cmd::List(a) => {
            let runs = store.list(&Filter {
                kind: a.kind,
                model: a.model,
                limit: a.limit,
            })?;
            if a.json {
                println!("{}", serde_json::to_string_pretty(&runs)?);
                return Ok(());
            }
            println!(
                "{:<15} {:<16} {:<9} {:<16} {:<28} METRICS",
                "ID", "KIND", "STATUS", "STARTED", "MODEL"
            );
            for r in runs {
                let metrics: Vec<String> = r
                    .metrics
                    .iter()
                    .take(3)
                    .map(|(k, v)| format!("{k}={}", short(*v)))
                    .collect();
                println!(
                    "{:<15} {:<16} {:<9} {:<16} {:<28} {}",
                    r.id,
                    r.kind,
                    format!("{:?}", r.status).to_lowercase(),
                    when(r.started_at),
                    r.model.as_deref().unwrap_or("-"),
                    metrics.join(" ")
                );
            }
        }
        Cmd::Show(a) => {
            let r = store.get(&a.id)?;
            if a.json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                show(&r);
            }
        }
        Cmd::Compare(a) => {
            let runs = a
                .ids
                .iter()
                .map(|id| store.get(id))
                .collect::<lar_lab::Result<Vec<Run>>>()?;
            if a.json {
                println!("{}", serde_json::to_string_pretty(&runs)?);
                return Ok(());
            }
            compare(&runs);
        }
        Cmd::Chart(a) => chart(&store, a)?,
        Cmd::Rm(a) => {
            for id in &a.ids {
                let id = store.remove(id)?;
                println!("removed run {id}");
            }
        }
    }
    Ok(())
}

fn show(r: &Run) {
    println!("run        {}", r.id);
    println!("kind       {}", r.kind);
    println!("status     {:?}", r.status);
    if let Some(e) = &r.error {
        println!("error      {e}");
    }
    println!("started    {}", when(r.started_at));
    if let Some(f) = r.finished_at {
        println!("took       {:.1} s", f - r.started_at);
    }
    println!("model      {}", r.model.as_deref().unwrap_or("-"));
    println!("sha256     {}", r.model_sha256.as_deref().unwrap_or("-"));
    println!("lar        {}", r.lar_version);
    println!("params     {}", r.params);
    println!("machine    {}", r.machine);
    if !r.lineage.as_object().is_some_and(|o| o.is_empty()) {
        println!("lineage    {}", r.lineage);
    }
    for (k, v) in &r.metrics {
        println!("  {k:<24} {}", short(*v));
    }
    for a in &r.artifacts {
        println!(
            "artifact   {} {}",
            a.path,
            a.sha256.as_deref().unwrap_or_default()
        );
    }
}

fn compare(runs: &[Run]) {
    let mut keys: Vec<&String> = runs.iter().flat_map(|r| r.metrics.keys()).collect();
    keys.sort();
    keys.dedup();
    let mut params: Vec<String> = runs
        .iter()
        .flat_map(|r| {
            r.params
                .as_object()
                .into_iter()
                .flatten()
                .map(|(k, _)| k.clone())
        })
        .collect();
    params.sort();
    params.dedup();
    print!("| |");
    for r in runs {
        print!(" {} |", &r.id[..r.id.len().min(10)]);
    }
    println!();
    println!("|---|{}", "---|".repeat(runs.len()));
    let row = |name: &str, cell: &dyn Fn(&Run) -> String| {
        print!("| {name} |");
        for r in runs {
            print!(" {} |", cell(r));
        }
        println!();
    };
    row("kind", &|r| r.kind.clone());
    row("model", &|r| r.model.clone().unwrap_or_default());
    for p in &params {
        row(p, &|r| {
            r.params.get(p).map_or(String::new(), |v| v.to_string())
        });
    }
    for k in keys {
        row(k, &|r| {
            r.metrics.get(k).map_or(String::new(), |v| short(*v))
        });
    }
}

/// A run's label in a chart: its model's file name (or name) and the start of its id.
fn label(r: &Run) -> String {
    let m = r.model.as_deref().unwrap_or("?");
    let name = std::path::Path::new(m)
        .file_name()
        .map_or(m.to_string(), |n| n.to_string_lossy().into_owned());
    format!("{name} ({})", &r.id[..r.id.len().min(6)])
}

fn chart(store: &RunStore, a: ChartArgs) -> Result<()> {
    let runs = if a.ids.is_empty() {
        store.list(&Filter {
            kind: a.kind.clone(),
            model: a.model.clone(),
            limit: None,
        })?
    } else {
        a.ids
            .iter()
            .map(|id| store.get(id))
            .collect::<lar_lab::Result<Vec<Run>>>()?
    };
    let svg = match (&a.metric, &a.x, &a.y) {
        (Some(m), _, _) => {
            let items: Vec<(String, f64)> = runs
                .iter()
                .filter_map(|r| r.metrics.get(m).map(|v| (label(r), *v)))
                .collect();
            if items.is_empty() {
                bail!("no run has the metric '{m}'");
            }
            lar_lab::chart::bars(a.title.as_deref().unwrap_or(m), m, &items)
        }
        (None, Some(x), Some(y)) => {
            let points: Vec<(String, f64, f64)> = runs
                .iter()
                .filter_map(|r| Some((label(r), *r.metrics.get(x)?, *r.metrics.get(y)?)))
                .collect();
            if points.is_empty() {
                bail!("no run has both '{x}' and '{y}'");
            }
            let title = a
                .title
                .clone()
                .unwrap_or_else(|| format!("{y} against {x}"));
            lar_lab::chart::scatter(&title, x, y, &points)
        }
        _ => bail!("give --metric, or --x and --y"),
    };
    lar_lab::chart_file::write(&a.output, &svg)?;
    println!("wrote {}", a.output.display());
    Ok(())
}
