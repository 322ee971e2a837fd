//! Decisions: the four actions, findings from inspectors, and how findings combine.
//!
//! The combination rule is fixed and simple so admins can predict it: the most severe action
//! wins (block > watermark > tag > allow); among equals, the first finding (in media-item order)
//! names the rule. No finding means `allow` by the rule `default`.

pub mod rules;
pub mod store;

use std::fmt;

use serde::{Deserialize, Serialize};

/// What happens to the traffic. Declared in increasing severity: `Ord` is the severity order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Allow,
    Tag,
    Watermark,
    Block,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Tag => "tag",
            Self::Watermark => "watermark",
            Self::Block => "block",
        }
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One inspector's verdict on one media item.
#[derive(Debug, Clone, Serialize)]
pub struct Finding {
    /// Index of the media item in the body (0-based, extraction order).
    pub item: usize,
    /// The inspector that produced it (`known-media`, later `faces`, ...).
    pub inspector: &'static str,
    pub action: Action,
    /// The rule id that asked for the action.
    pub rule: String,
    /// Why, for the audit log. Never personal data or embeddings.
    pub detail: String,
    /// Extra headers the deciding policy rule asks for (validated when the policy loaded).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<(String, String)>,
    /// The deciding rule asks for the visible mark as well (watermark decisions).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub visible: bool,
    /// The license in force and the policy version, when a policy rule decided.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub license: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy_version: Option<String>,
    /// The identity recognised and its similarity (for the decision log; the `detail` says it
    /// for people).
    #[serde(skip)]
    pub identity: Option<(String, f32)>,
}

/// The decision on one body, with what produced it.
#[derive(Debug, Clone, Serialize)]
pub struct Decision {
    pub id: String,
    pub action: Action,
    pub rule: String,
    pub explanation: String,
    pub findings: Vec<Finding>,
    /// The winning finding's extra headers.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<(String, String)>,
    /// The winning finding asks for the visible mark as well.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub visible: bool,
    /// The winning finding's license and policy version (provenance records them).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub license: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy_version: Option<String>,
}

/// Rule id of the decision when nothing matched.
pub const DEFAULT_RULE: &str = "default";

impl Decision {
    /// Combine findings: most severe action wins; the first such finding names the rule.
    pub fn combine(findings: Vec<Finding>) -> Self {
        let id = uuid::Uuid::now_v7().to_string();
        let winner = findings
            .iter()
            .enumerate()
            // max_by_key keeps the last maximum; rank earlier items higher to keep the first.
            .max_by_key(|(i, f)| (f.action, std::cmp::Reverse(*i)))
            .map(|(_, f)| f);
        match winner {
            Some(f) => Self {
                id,
                action: f.action,
                rule: f.rule.clone(),
                explanation: format!("item {}: {}", f.item, f.detail),
                headers: f.headers.clone(),
                visible: f.visible,
                license: f.license.clone(),
                policy_version: f.policy_version.clone(),
                findings,
            },
            None => Self {
                id,
                action: Action::Allow,
                rule: DEFAULT_RULE.into(),
                explanation: "no inspector reported a finding".into(),
                findings,
                headers: Vec::new(),
                visible: false,
                license: None,
                policy_version: None,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(item: usize, action: Action, rule: &str) -> Finding {
        Finding {
            item,
            inspector: "test",
            action,
            rule: rule.into(),
            detail: rule.into(),
            headers: Vec::new(),
            visible: false,
            license: None,
            policy_version: None,
            identity: None,
        }
    }

    #[test]
    fn most_severe_wins_first_among_equals() {
        let d = Decision::combine(vec![
            f(0, Action::Tag, "t"),
            f(1, Action::Block, "b1"),
            f(2, Action::Block, "b2"),
            f(3, Action::Watermark, "w"),
        ]);
        assert_eq!((d.action, d.rule.as_str()), (Action::Block, "b1"));
        assert_eq!(d.findings.len(), 4);
    }

    #[test]
    fn nothing_found_is_allow_default() {
        let d = Decision::combine(vec![]);
        assert_eq!((d.action, d.rule.as_str()), (Action::Allow, DEFAULT_RULE));
        assert_ne!(d.id, Decision::combine(vec![]).id);
    }

    #[test]
    fn severity_order() {
        assert!(Action::Block > Action::Watermark);
        assert!(Action::Watermark > Action::Tag);
        assert!(Action::Tag > Action::Allow);
    }
}
