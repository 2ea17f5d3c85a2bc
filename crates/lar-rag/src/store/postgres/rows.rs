//! How values go in and out of the PostgreSQL store's SQL: bind parameters numbered as they are added, a
//! [`Filter`] as SQL conditions (the path glob as an anchored regular expression), rows read back into chunks and
//! rankings, and a file's chunks as column arrays for one `UNNEST` insert (their words analyzed for the full-text
//! side by the store's [`Analyzer`]).

use pgvector::Vector;
use sqlx::postgres::PgRow;
use sqlx::{AssertSqlSafe, Row};

use crate::lang::{Analyzer, Lang};
use crate::store::{Filter, Ranked, StoredChunk};
use crate::{Chunk, Error, Location, Meta, Result, SourceKind};

/// A bind parameter of a query built at run time.
pub(super) enum Arg {
    Text(String),
    Texts(Vec<String>),
    Int(i64),
    Vector(Vector),
}

/// Bind parameters numbered as they are added, for SQL assembled from a [`Filter`].
#[derive(Default)]
pub(super) struct SqlArgs(pub(super) Vec<Arg>);

impl SqlArgs {
    /// Adds a parameter; returns its placeholder (`$n`).
    pub(super) fn bind(&mut self, arg: Arg) -> String {
        self.0.push(arg);
        format!("${}", self.0.len())
    }

    /// `sql` with the parameters bound. Everything in `sql` besides placeholders comes from this file or is a
    /// checked schema name.
    pub(super) fn query<'q>(
        &self,
        sql: &str,
    ) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
        let mut q = sqlx::query(AssertSqlSafe(sql.to_string()));
        for a in &self.0 {
            q = match a {
                Arg::Text(s) => q.bind(s.clone()),
                Arg::Texts(v) => q.bind(v.clone()),
                Arg::Int(i) => q.bind(*i),
                Arg::Vector(v) => q.bind(v.clone()),
            };
        }
        q
    }
}

/// The `AND ...` conditions on chunk alias `c` for `filter` (empty when it does not restrict), its values bound.
pub(super) fn filter_sql(filter: &Filter, q: &mut SqlArgs) -> String {
    let mut sql = String::new();
    if !filter.kinds.is_empty() {
        let kinds = filter
            .kinds
            .iter()
            .map(|k| k.as_str().to_string())
            .collect();
        sql += &format!(" AND c.kind = ANY({}::text[])", q.bind(Arg::Texts(kinds)));
    }
    if let Some(glob) = &filter.path_glob {
        sql += &format!(" AND c.path ~ {}", q.bind(Arg::Text(glob_to_regex(glob))));
    }
    if let Some(since) = filter.since {
        sql += &format!(" AND c.date >= {}", q.bind(Arg::Int(since)));
    }
    if let Some(until) = filter.until {
        sql += &format!(" AND c.date <= {}", q.bind(Arg::Int(until)));
    }
    if let Some(sender) = &filter.sender {
        let pattern = format!("%{}%", like_escape(&pg_text(&sender.to_lowercase())));
        sql += &format!(
            " AND c.sender ILIKE {} ESCAPE '\\'",
            q.bind(Arg::Text(pattern))
        );
    }
    sql
}

/// A path glob as an anchored PostgreSQL regular expression: `**` matches across `/` (`**/` also matches no
/// directory at all), `*` and `?` do not; everything else is literal.
pub fn glob_to_regex(glob: &str) -> String {
    let mut re = String::from("^");
    let mut chars = glob.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '*' if chars.peek() == Some(&'*') => {
                chars.next();
                while chars.peek() == Some(&'*') {
                    chars.next();
                }
                if chars.peek() == Some(&'/') {
                    chars.next();
                    re.push_str("(.*/)?");
                } else {
                    re.push_str(".*");
                }
            }
            '*' => re.push_str("[^/]*"),
            '?' => re.push_str("[^/]"),
            c if c.is_ascii_punctuation() => {
                re.push('\\');
                re.push(c);
            }
            c => re.push(c),
        }
    }
    re.push('$');
    re
}

/// `s` with LIKE's wildcards (and its escape character `\`) taken literally.
pub(super) fn like_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '\\' | '%' | '_') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// PostgreSQL text cannot hold NUL characters: they are dropped.
pub(super) fn pg_text(s: &str) -> String {
    s.replace('\0', "")
}

pub(super) fn limit(k: usize) -> i64 {
    i64::try_from(k).unwrap_or(i64::MAX)
}

pub(super) fn dim_i32(dim: usize) -> Result<i32> {
    i32::try_from(dim).map_err(|_| Error::Invalid(format!("vector length {dim} too large")))
}

pub(super) fn to_u64(v: i64, what: &str) -> Result<u64> {
    u64::try_from(v).map_err(|_| Error::Store(format!("negative {what} {v} in the database")))
}

pub(super) fn to_u32(v: Option<i64>, what: &str) -> Result<Option<u32>> {
    v.map(|v| {
        u32::try_from(v)
            .map_err(|_| Error::Store(format!("{what} {v} out of range in the database")))
    })
    .transpose()
}

pub(super) fn parse_kind(s: &str) -> Result<SourceKind> {
    SourceKind::parse(s)
        .ok_or_else(|| Error::Store(format!("unknown source kind '{s}' in the database")))
}

pub(super) fn to_ranked(row: &PgRow) -> Result<Ranked> {
    Ok(Ranked {
        id: row.try_get(0)?,
        score: row.try_get(1)?,
    })
}

pub(super) fn row_to_chunk(r: &PgRow) -> Result<StoredChunk> {
    let meta: String = r.try_get(6)?;
    let meta: Meta =
        serde_json::from_str(&meta).map_err(|e| Error::Store(format!("chunk metadata: {e}")))?;
    let ord: i64 = r.try_get(12)?;
    Ok(StoredChunk {
        id: r.try_get(0)?,
        chunk: Chunk {
            path: r.try_get(1)?,
            kind: parse_kind(&r.try_get::<String, _>(2)?)?,
            title: r.try_get(3)?,
            date: r.try_get(4)?,
            sender: r.try_get(5)?,
            meta,
            loc: Location {
                page: to_u32(r.try_get(7)?, "page")?,
                heading: r.try_get(8)?,
                speaker: r.try_get(9)?,
                start: r.try_get(10)?,
                end: r.try_get(11)?,
            },
            ord: to_u32(Some(ord), "ord")?.unwrap_or_default(),
            text: r.try_get(13)?,
        },
    })
}

/// A file's chunks as one array per column, for a single `INSERT ... SELECT FROM UNNEST(...)`.
#[derive(Default)]
pub(super) struct ChunkColumns {
    pub(super) path: Vec<String>,
    pub(super) kind: Vec<String>,
    pub(super) title: Vec<Option<String>>,
    pub(super) date: Vec<Option<i64>>,
    pub(super) sender: Vec<Option<String>>,
    pub(super) meta: Vec<String>,
    pub(super) page: Vec<Option<i64>>,
    pub(super) heading: Vec<Option<String>>,
    pub(super) speaker: Vec<Option<String>>,
    pub(super) start: Vec<Option<String>>,
    pub(super) end: Vec<Option<String>>,
    pub(super) ord: Vec<i64>,
    pub(super) text: Vec<String>,
    /// What the full-text index sees: the folded words of title and text, separated by spaces.
    pub(super) words: Vec<String>,
    pub(super) embedding: Vec<Vector>,
}

impl ChunkColumns {
    /// The columns of `chunks`, their words analyzed by `language`; the languages stemmed in are added to `langs`.
    pub(super) fn new(
        chunks: &[Chunk],
        vectors: &[Vec<f32>],
        language: Analyzer,
        langs: &mut Vec<Lang>,
    ) -> Result<Self> {
        let opt = |s: &Option<String>| s.as_deref().map(pg_text);
        let mut c = ChunkColumns::default();
        for (ch, v) in chunks.iter().zip(vectors) {
            let meta: Meta = ch
                .meta
                .iter()
                .map(|(k, v)| (pg_text(k), pg_text(v)))
                .collect();
            let meta = serde_json::to_string(&meta)
                .map_err(|e| Error::Invalid(format!("chunk metadata: {e}")))?;
            let (title, body, lang) =
                language.index(ch.title.as_deref().unwrap_or_default(), &ch.text);
            if let Some(l) = lang.filter(|l| !langs.contains(l)) {
                langs.push(l);
            }
            let words = [title, body];
            c.path.push(pg_text(&ch.path));
            c.kind.push(ch.kind.as_str().to_string());
            c.title.push(opt(&ch.title));
            c.date.push(ch.date);
            c.sender.push(opt(&ch.sender));
            c.meta.push(meta);
            c.page.push(ch.loc.page.map(i64::from));
            c.heading.push(opt(&ch.loc.heading));
            c.speaker.push(opt(&ch.loc.speaker));
            c.start.push(opt(&ch.loc.start));
            c.end.push(opt(&ch.loc.end));
            c.ord.push(i64::from(ch.ord));
            c.text.push(pg_text(&ch.text));
            c.words.push(words.join(" "));
            c.embedding.push(Vector::from(v.clone()));
        }
        Ok(c)
    }
}
