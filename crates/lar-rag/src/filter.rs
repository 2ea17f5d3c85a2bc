//! A search filter as people write it (the CLI's `--kind --path --since --until --from`, the server's JSON fields)
//! turned into the store's [`Filter`], with the same rules everywhere: kinds by name, a relative path glob matching
//! at any depth (stored paths are absolute), dates as `YYYY-MM-DD` or RFC 3339 with a date alone for `until`
//! including its whole day, and a range that starts after it ends refused.

use serde::Deserialize;

use crate::store::Filter;
use crate::{Error, Result, SourceKind};

/// The filter's fields as text; empty ones do not restrict.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilterSpec {
    /// Source kinds by name (`text`, `markdown`, `html`, `pdf`, `docx`, `mail`, `calendar`, `transcript`).
    #[serde(default)]
    pub kinds: Vec<String>,
    /// A path glob (`*.pdf`, `contracts/*.pdf`, `/abs/**`).
    #[serde(default)]
    pub path: Option<String>,
    #[serde(default)]
    pub since: Option<String>,
    #[serde(default)]
    pub until: Option<String>,
    /// Mail sender: a case-insensitive substring of the From address.
    #[serde(default, rename = "from")]
    pub sender: Option<String>,
}

impl FilterSpec {
    /// The store's filter, or an error naming the field that is wrong.
    pub fn to_filter(&self) -> Result<Filter> {
        let kinds = self
            .kinds
            .iter()
            .map(|k| {
                SourceKind::parse(k).ok_or_else(|| {
                    Error::Invalid(format!(
                        "unknown kind '{k}' (text, markdown, html, pdf, docx, mail, calendar, transcript)"
                    ))
                })
            })
            .collect::<Result<_>>()?;
        let path_glob = self.path.as_ref().map(|g| {
            if g.starts_with('/') || g.starts_with("**") {
                g.clone()
            } else {
                format!("**/{g}")
            }
        });
        if let Some(g) = &path_glob {
            globset::Glob::new(g)
                .map_err(|e| Error::Invalid(format!("bad path glob '{g}': {e}")))?;
        }
        let date = |s: &Option<String>, field: &str| -> Result<Option<i64>> {
            s.as_deref()
                .map(|d| {
                    crate::time::parse_date(d).ok_or_else(|| {
                        Error::Invalid(format!(
                            "{field}: '{d}' is not a date (YYYY-MM-DD, or RFC 3339 such as 2024-03-01T09:30:00+01:00)"
                        ))
                    })
                })
                .transpose()
        };
        let since = date(&self.since, "since")?;
        // A date alone includes its whole day: until 2024-03-31 keeps what happened on the 31st.
        let whole_day = self
            .until
            .as_deref()
            .is_some_and(|d| !d.trim().contains(['T', 't', ' ']));
        let until = date(&self.until, "until")?.map(|t| if whole_day { t + 86_399 } else { t });
        let f = Filter {
            kinds,
            path_glob,
            since,
            until,
            sender: self.sender.clone().filter(|s| !s.is_empty()),
        };
        f.validate()?;
        Ok(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_become_the_stores_filter() {
        let f = FilterSpec {
            kinds: vec!["pdf".into(), "mail".into()],
            path: Some("contracts/*.pdf".into()),
            since: Some("2024-03-01".into()),
            until: Some("2024-03-31".into()),
            sender: Some("anna@".into()),
        }
        .to_filter()
        .unwrap();
        assert_eq!(f.kinds, [SourceKind::Pdf, SourceKind::Mail]);
        assert_eq!(f.path_glob.as_deref(), Some("**/contracts/*.pdf"));
        assert_eq!(f.until.unwrap() - f.since.unwrap(), 31 * 86_400 - 1);
        assert!(FilterSpec::default().to_filter().unwrap().is_empty());
    }

    #[test]
    fn bad_fields_are_named() {
        let err = |s: FilterSpec| s.to_filter().unwrap_err().to_string();
        let e = err(FilterSpec {
            kinds: vec!["spreadsheet".into()],
            ..Default::default()
        });
        assert!(e.contains("unknown kind 'spreadsheet'"), "{e}");
        let e = err(FilterSpec {
            since: Some("yesterday".into()),
            ..Default::default()
        });
        assert!(e.contains("since: 'yesterday' is not a date"), "{e}");
        let e = err(FilterSpec {
            since: Some("2024-05-01".into()),
            until: Some("2024-04-01".into()),
            ..Default::default()
        });
        assert!(e.contains("starts after it ends"), "{e}");
        let e = err(FilterSpec {
            path: Some("a[".into()),
            ..Default::default()
        });
        assert!(e.contains("bad path glob"), "{e}");
    }
}
