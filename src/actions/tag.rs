//! The `tag` action's headers, parsed once from config.

use http::{HeaderName, HeaderValue};

use crate::config::TagConfig;
use crate::policy::Decision;

#[derive(Debug, Clone)]
pub struct TagHeaders {
    decision: HeaderName,
    rule: HeaderName,
    decision_id: HeaderName,
    extra: Vec<(HeaderName, HeaderValue)>,
}

impl TagHeaders {
    /// Names were validated when the config loaded.
    pub fn new(cfg: &TagConfig) -> Result<Self, http::Error> {
        Ok(Self {
            decision: HeaderName::try_from(&cfg.decision_header)?,
            rule: HeaderName::try_from(&cfg.rule_header)?,
            decision_id: HeaderName::try_from(&cfg.decision_id_header)?,
            extra: cfg
                .extra
                .iter()
                .map(|(k, v)| Ok((HeaderName::try_from(k)?, HeaderValue::try_from(v)?)))
                .collect::<Result<_, http::Error>>()?,
        })
    }

    /// Headers for a decision (tag and watermark carry them; block answers for itself).
    pub fn for_decision(&self, d: &Decision) -> Vec<(HeaderName, HeaderValue)> {
        let mut out = vec![
            (
                self.decision.clone(),
                HeaderValue::from_static(d.action.as_str()),
            ),
            (self.decision_id.clone(), value(&d.id)),
            (self.rule.clone(), value(&d.rule)),
        ];
        out.extend(self.extra.iter().cloned());
        // The deciding rule's own headers (names and values checked when the policy loaded).
        out.extend(d.headers.iter().filter_map(|(k, v)| {
            Some((
                HeaderName::try_from(k).ok()?,
                HeaderValue::try_from(v).ok()?,
            ))
        }));
        out
    }

    /// Marks traffic that passed un-inspected because inspection failed on a fail-open route.
    pub fn for_failure(&self) -> (HeaderName, HeaderValue) {
        (self.decision.clone(), HeaderValue::from_static("error"))
    }

    /// Marks traffic that passed on a fail-open route although only part of its media was
    /// inspected (the frame budget ran out before the end).
    pub fn for_incomplete(&self) -> (HeaderName, HeaderValue) {
        (
            self.decision.clone(),
            HeaderValue::from_static("incomplete"),
        )
    }
}

fn value(s: &str) -> HeaderValue {
    HeaderValue::try_from(s).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
}
