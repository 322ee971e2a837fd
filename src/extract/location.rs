//! Where in a body a media item was found: a path of steps from the body inwards, e.g.
//! `part "files" › member "set/a.jpg"` or `json /artifacts/0/base64`. Shown by `scan`, in the
//! audit explanation, and used to put changed media back (`splice`). Never holds body bytes.

use std::fmt;

use serde::Serialize;

/// One step inwards.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "in", rename_all = "snake_case")]
pub enum Step {
    /// The whole body (or the whole of the enclosing item).
    Body,
    /// A `multipart/form-data` part.
    Part {
        name: Option<String>,
        filename: Option<String>,
    },
    /// An `application/x-www-form-urlencoded` field.
    Field { name: String },
    /// A JSON string (RFC 6901 pointer).
    Json { pointer: String },
    /// A member of a zip or tar archive.
    Member { path: String },
    /// A base64 run inside text that is not JSON or a form, at this byte offset.
    Text { offset: usize },
    /// The item inflated from a gzip or zstd stream.
    Decompressed { coding: &'static str },
    /// Media fetched from a URL found in the body (scheme, host and path only: a query may
    /// carry credentials).
    Url { url: String },
}

/// A path of steps; empty only while nothing has been entered yet.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Location(Vec<Step>);

impl Location {
    pub fn body() -> Self {
        Self(vec![Step::Body])
    }

    /// This location with one more step inwards.
    pub fn then(&self, step: Step) -> Self {
        let mut steps = Vec::with_capacity(self.0.len() + 1);
        steps.extend(self.0.iter().filter(|s| **s != Step::Body).cloned());
        steps.push(step);
        Self(steps)
    }

    pub fn steps(&self) -> &[Step] {
        &self.0
    }

    /// How many containers deep (the body itself is 0).
    pub fn depth(&self) -> usize {
        self.0.iter().filter(|s| **s != Step::Body).count()
    }

    /// The single step of a top-level item (`None` when it is nested): only such items can be
    /// put back into the body by `splice`.
    pub fn top(&self) -> Option<&Step> {
        match self.0.as_slice() {
            [one] => Some(one),
            _ => None,
        }
    }
}

impl From<Step> for Location {
    fn from(step: Step) -> Self {
        Self(vec![step])
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Body => f.write_str("body"),
            Self::Part { name, filename } => {
                write!(f, "part {:?}", name.as_deref().unwrap_or(""))?;
                match filename {
                    Some(file) => write!(f, " ({file:?})"),
                    None => Ok(()),
                }
            }
            Self::Field { name } => write!(f, "field {name:?}"),
            Self::Json { pointer } if pointer.is_empty() => f.write_str("json (root)"),
            Self::Json { pointer } => write!(f, "json {pointer}"),
            Self::Member { path } => write!(f, "member {path:?}"),
            Self::Text { offset } => write!(f, "text @{offset}"),
            Self::Decompressed { coding } => write!(f, "{coding}"),
            Self::Url { url } => write!(f, "url {url}"),
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("body");
        }
        for (i, step) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(" › ")?;
            }
            write!(f, "{step}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_read_outside_in() {
        let l = Location::body()
            .then(Step::Part {
                name: Some("files".into()),
                filename: Some("set.zip".into()),
            })
            .then(Step::Member {
                path: "a/b.jpg".into(),
            });
        assert_eq!(
            l.to_string(),
            r#"part "files" ("set.zip") › member "a/b.jpg""#
        );
        assert_eq!(l.depth(), 2);
        assert!(l.top().is_none());
        assert_eq!(Location::body().top(), Some(&Step::Body));
        assert_eq!(Location::body().depth(), 0);
    }
}
