//! Policy rule files: YAML rules with CEL conditions over a typed context, compiled and checked
//! at load, evaluated per recognised face.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::Action;

/// What a condition can see (the CEL variables). Every field is always present, so a condition
/// that names one that does not exist fails at load, not on a request.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Input {
    pub request: RequestInfo,
    /// The requesting licensee ("" when the request names none).
    pub licensee: String,
    pub media: MediaInfo,
    #[serde(rename = "match")]
    pub face: MatchInfo,
    pub license: LicenseInfo,
    /// Further signals by name (e.g. a synthetic-media score), 0 when absent.
    pub signals: BTreeMap<String, f64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RequestInfo {
    pub method: String,
    pub path: String,
    pub route: String,
    /// The headers listed in `policy.expose_headers` that the request carried.
    pub headers: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MediaInfo {
    /// image | video
    pub kind: String,
    pub width: u64,
    pub height: u64,
    /// Frame index the face was found in.
    pub frame: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MatchInfo {
    pub identity: String,
    /// strict | standard | monitor
    pub protection: String,
    pub similarity: f64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LicenseInfo {
    pub active: bool,
    pub id: String,
    pub usages: Vec<String>,
    pub obligations: Vec<String>,
    /// RFC 3339, "" when open-ended.
    pub valid_until: String,
}

impl Input {
    /// A context with every field filled, to check conditions against at load.
    fn sample() -> Self {
        Self {
            request: RequestInfo {
                method: "POST".into(),
                path: "/upload".into(),
                route: "r".into(),
                headers: BTreeMap::from([("x".into(), "y".into())]),
            },
            licensee: "l".into(),
            media: MediaInfo {
                kind: "image".into(),
                width: 1,
                height: 1,
                frame: 0,
            },
            face: MatchInfo {
                identity: "i".into(),
                protection: "strict".into(),
                similarity: 0.5,
            },
            license: LicenseInfo {
                active: true,
                id: "x".into(),
                usages: vec!["commercial".into()],
                obligations: vec!["tag".into()],
                valid_until: String::new(),
            },
            signals: BTreeMap::from([("synthetic".into(), 0.0)]),
        }
    }

    fn context(&self) -> Result<cel::Context<'static, 'static>, String> {
        let mut ctx = cel::Context::default();
        let add = |ctx: &mut cel::Context, name: &str, v: &dyn erased::Ser| -> Result<(), String> {
            ctx.add_variable_from_value(name, v.value()?);
            Ok(())
        };
        add(&mut ctx, "request", &self.request)?;
        add(&mut ctx, "licensee", &self.licensee)?;
        add(&mut ctx, "media", &self.media)?;
        add(&mut ctx, "match", &self.face)?;
        add(&mut ctx, "license", &self.license)?;
        add(&mut ctx, "signals", &self.signals)?;
        Ok(ctx)
    }
}

mod erased {
    /// Serialize-to-CEL without generics at the call site.
    pub trait Ser {
        fn value(&self) -> Result<cel::Value, String>;
    }
    impl<T: serde::Serialize> Ser for T {
        fn value(&self) -> Result<cel::Value, String> {
            cel::to_value(self).map_err(|e| e.to_string())
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default)]
    name: Option<String>,
    #[serde(default = "allow")]
    default: Action,
    rules: Vec<RuleSpec>,
}

fn allow() -> Action {
    Action::Allow
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleSpec {
    id: String,
    #[serde(default)]
    description: String,
    when: String,
    action: Action,
    #[serde(default)]
    shadow: bool,
    /// Extra headers sent when this rule decides (with the tag headers).
    #[serde(default)]
    headers: std::collections::BTreeMap<String, String>,
    /// A `watermark` decision by this rule also stamps the visible mark (`watermark.visible`).
    #[serde(default)]
    visible: bool,
}

pub struct Rule {
    pub id: String,
    pub description: String,
    pub when: String,
    pub action: Action,
    pub shadow: bool,
    /// Validated header names (lower case) and values.
    pub headers: Vec<(String, String)>,
    /// Stamp the visible mark too (watermark decisions).
    pub visible: bool,
    program: cel::Program,
}

/// A compiled, checked rule file.
pub struct Policy {
    pub name: String,
    /// First 12 hex digits of the file's SHA-256: in metrics and decisions.
    pub version: String,
    pub source: String,
    pub default: Action,
    pub rules: Vec<Rule>,
}

#[derive(Debug, thiserror::Error)]
#[error("{file}:{line}: {reason}")]
pub struct PolicyError {
    pub file: String,
    pub line: usize,
    pub reason: String,
}

/// What the policy says about one recognised face.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub action: Action,
    /// The rule that decided (`default` when none matched).
    pub rule: String,
    /// Shadow rules whose condition held (recorded, not enforced).
    pub shadow: Vec<String>,
    /// The deciding rule's extra headers.
    pub headers: Vec<(String, String)>,
    /// The deciding rule asks for the visible mark.
    pub visible: bool,
}

impl Policy {
    pub fn load(path: &Path) -> Result<Self, PolicyError> {
        let text = std::fs::read_to_string(path).map_err(|e| PolicyError {
            file: path.display().to_string(),
            line: 0,
            reason: format!("cannot read: {e}"),
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Parses, compiles and checks every rule; `file` names the source in errors.
    pub fn parse(text: &str, file: &str) -> Result<Self, PolicyError> {
        let err = |line: usize, reason: String| PolicyError {
            file: file.to_string(),
            line,
            reason,
        };
        let spec: File = serde_yaml_ng::from_str(text)
            .map_err(|e| err(e.location().map_or(0, |l| l.line()), e.to_string()))?;
        let sample = Input::sample().context().map_err(|e| err(0, e))?;
        let mut rules = Vec::with_capacity(spec.rules.len());
        let mut seen = std::collections::HashSet::new();
        for r in spec.rules {
            let line = line_of(text, &r.id);
            if !seen.insert(r.id.clone()) {
                return Err(err(line, format!("duplicate rule id {:?}", r.id)));
            }
            let program = cel::Program::compile(&r.when).map_err(|e| {
                err(
                    line,
                    format!("rule {:?}: condition does not parse: {e}", r.id),
                )
            })?;
            // Type check by evaluation against a complete sample context: unknown variables or
            // fields, wrong operand types and non-boolean results fail here, not on traffic.
            match program.execute(&sample) {
                Ok(cel::Value::Bool(_)) => {}
                Ok(other) => {
                    return Err(err(
                        line,
                        format!(
                            "rule {:?}: condition must be true or false, it gives {:?}",
                            r.id,
                            other.type_of()
                        ),
                    ));
                }
                Err(e) => return Err(err(line, format!("rule {:?}: {e}", r.id))),
            }
            let mut headers = Vec::with_capacity(r.headers.len());
            for (name, value) in r.headers {
                let name = name.to_ascii_lowercase();
                if http::HeaderName::try_from(&name).is_err() {
                    return Err(err(
                        line,
                        format!("rule {:?}: {name:?} is not a header name", r.id),
                    ));
                }
                if http::HeaderValue::try_from(&value).is_err() {
                    return Err(err(
                        line,
                        format!(
                            "rule {:?}: header {name}: value is not a valid header value",
                            r.id
                        ),
                    ));
                }
                headers.push((name, value));
            }
            rules.push(Rule {
                id: r.id,
                headers,
                visible: r.visible,
                description: r.description,
                when: r.when,
                action: r.action,
                shadow: r.shadow,
                program,
            });
        }
        Ok(Self {
            name: spec.name.unwrap_or_else(|| "unnamed".into()),
            version: hex::encode(&Sha256::digest(text.as_bytes())[..6]),
            source: text.to_string(),
            default: spec.default,
            rules,
        })
    }

    /// Evaluates every rule: the most severe enforced match wins (first in file order among
    /// equals); shadow matches are returned for the record.
    pub fn evaluate(&self, input: &Input) -> Result<Outcome, String> {
        let ctx = input.context()?;
        let mut best: Option<&Rule> = None;
        let mut shadow = Vec::new();
        for rule in &self.rules {
            let hit = match rule.program.execute(&ctx) {
                Ok(cel::Value::Bool(b)) => b,
                Ok(other) => return Err(format!("rule {:?} gave {:?}", rule.id, other.type_of())),
                Err(e) => return Err(format!("rule {:?}: {e}", rule.id)),
            };
            if !hit {
                continue;
            }
            if rule.shadow {
                shadow.push(rule.id.clone());
            } else if best.is_none_or(|b| rule.action > b.action) {
                best = Some(rule);
            }
        }
        Ok(match best {
            Some(r) => Outcome {
                action: r.action,
                rule: r.id.clone(),
                shadow,
                headers: r.headers.clone(),
                visible: r.visible,
            },
            None => Outcome {
                action: self.default,
                rule: super::DEFAULT_RULE.into(),
                shadow,
                headers: Vec::new(),
                visible: false,
            },
        })
    }
}

/// 1-based line of `id: <id>` in the file (0 when not found).
fn line_of(text: &str, id: &str) -> usize {
    text.lines()
        .position(|l| {
            let l = l.trim_start().trim_start_matches("- ").trim();
            l.strip_prefix("id:")
                .is_some_and(|v| v.trim().trim_matches(['"', '\'']) == id)
        })
        .map_or(0, |i| i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEFAULT: &str = include_str!("../../policies/default.yaml");

    fn face(protection: &str, license: Option<&[&str]>) -> Input {
        let mut i = Input::default();
        i.face.protection = protection.into();
        if let Some(obligations) = license {
            i.license.active = true;
            i.license.obligations = obligations.iter().map(|s| s.to_string()).collect();
        }
        i
    }

    #[test]
    fn the_default_policy_does_what_it_says() {
        let p = Policy::parse(DEFAULT, "default.yaml").unwrap();
        let eval = |i: Input| p.evaluate(&i).unwrap();
        assert_eq!(eval(face("strict", None)).action, Action::Block);
        assert_eq!(eval(face("strict", None)).rule, "strict-unlicensed");
        assert_eq!(eval(face("strict", Some(&[]))).action, Action::Allow);
        assert_eq!(eval(face("strict", Some(&["tag"]))).action, Action::Tag);
        let wm = eval(face("strict", Some(&["tag", "watermark"])));
        assert_eq!(
            (wm.action, wm.rule.as_str()),
            (Action::Watermark, "license-watermark")
        );
        assert_eq!(eval(face("standard", None)).action, Action::Tag);
        assert_eq!(eval(face("monitor", None)).action, Action::Allow);
    }

    #[test]
    fn bad_rules_are_refused_with_file_line_and_reason() {
        let bad = "rules:\n  - id: ok\n    when: 'true'\n    action: tag\n  - id: typo\n    when: match.protecton == 'strict'\n    action: block\n";
        let e = Policy::parse(bad, "p.yaml").err().unwrap();
        assert_eq!((e.file.as_str(), e.line), ("p.yaml", 5), "{e}");
        assert!(e.reason.contains("typo"), "{e}");

        let e = Policy::parse(
            "rules:\n  - id: n\n    when: 'match.similarity'\n    action: tag\n",
            "p.yaml",
        )
        .err()
        .unwrap();
        assert!(e.reason.contains("true or false"), "{e}");

        let e = Policy::parse(
            "rules:\n  - id: x\n    when: '(('\n    action: tag\n",
            "p.yaml",
        )
        .err()
        .unwrap();
        assert!(e.reason.contains("does not parse"), "{e}");

        let e = Policy::parse(
            "rules:\n  - id: x\n    when: 'true'\n    action: explode\n",
            "p.yaml",
        )
        .err()
        .unwrap();
        assert!(e.line > 0, "{e}");
    }

    #[test]
    fn a_deciding_rule_brings_its_headers_and_bad_ones_are_refused() {
        let p = Policy::parse(
            "rules:\n  - id: ed\n    when: 'true'\n    action: tag\n    headers:\n      X-Usage: editorial\n",
            "p.yaml",
        )
        .unwrap();
        let o = p.evaluate(&Input::sample()).unwrap();
        assert_eq!(
            o.headers,
            vec![("x-usage".to_string(), "editorial".to_string())]
        );
        assert!(!o.visible);
        let p = Policy::parse(
            "rules:\n  - id: wm\n    when: 'true'\n    action: watermark\n    visible: true\n",
            "p.yaml",
        )
        .unwrap();
        assert!(p.evaluate(&Input::sample()).unwrap().visible);
        let e = Policy::parse(
            "rules:\n  - id: ed\n    when: 'true'\n    action: tag\n    headers:\n      'bad name': x\n",
            "p.yaml",
        )
        .err()
        .unwrap();
        assert_eq!(e.line, 2, "{e}");
        assert!(e.reason.contains("not a header name"), "{e}");
    }

    #[test]
    fn shadow_rules_are_recorded_not_enforced() {
        let p = Policy::parse(
            "rules:\n  - id: trial\n    when: match.similarity > 0.9\n    action: block\n    shadow: true\n",
            "p.yaml",
        )
        .unwrap();
        let mut i = face("standard", None);
        i.face.similarity = 0.95;
        let o = p.evaluate(&i).unwrap();
        assert_eq!(o.action, Action::Allow);
        assert_eq!(o.shadow, vec!["trial".to_string()]);
    }
}
