//! Model names in the store: `name[:tag]`, tag `latest` by default. A name becomes a directory under the store, so
//! only a safe alphabet is accepted (letters, digits, `.`, `_`, `-`, not starting with `.`), never separators or
//! `..`: a name cannot reach outside the store.

use std::fmt;

use crate::{Error, Result};

/// A validated `name:tag`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ModelName {
    pub name: String,
    pub tag: String,
}

const MAX_LEN: usize = 128;

fn valid_part(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_LEN
        && !s.starts_with('.')
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

impl ModelName {
    /// Parses `name` or `name:tag`.
    pub fn parse(s: &str) -> Result<Self> {
        let (name, tag) = match s.split_once(':') {
            Some((n, t)) => (n, t),
            None => (s, "latest"),
        };
        if !valid_part(name) || !valid_part(tag) {
            return Err(Error::BadName(s.to_string()));
        }
        Ok(Self {
            name: name.to_ascii_lowercase(),
            tag: tag.to_string(),
        })
    }
}

impl fmt::Display for ModelName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.name, self.tag)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_and_tags() {
        let n = ModelName::parse("SmolLM2:q4_1").unwrap();
        assert_eq!((n.name.as_str(), n.tag.as_str()), ("smollm2", "q4_1"));
        assert_eq!(ModelName::parse("gemma3-270m").unwrap().tag, "latest");
        assert_eq!(
            ModelName::parse("a.b_c-d:1.0").unwrap().to_string(),
            "a.b_c-d:1.0"
        );
    }

    #[test]
    fn refuses_path_tricks() {
        for bad in [
            "", "../etc", "a/b", "a\\b", ".hidden", "a:", ":t", "a:../x", "a:b:c", "a b", "é",
            "a\0b",
        ] {
            assert!(ModelName::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert!(ModelName::parse(&"x".repeat(200)).is_err());
    }
}
