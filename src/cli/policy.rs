//! `likeguard policy check|test`: for policy admins, before a file goes live.

use std::path::Path;

use anyhow::Context;
use serde::Deserialize;

use crate::policy::Action;
use crate::policy::rules::{Input, Policy};

pub fn check(file: &Path) -> anyhow::Result<()> {
    let p = Policy::load(file)?;
    let shadow = p.rules.iter().filter(|r| r.shadow).count();
    println!(
        "{}: ok (policy {:?}, version {}, {} rules, {} shadow, default {})",
        file.display(),
        p.name,
        p.version,
        p.rules.len(),
        shadow,
        p.default
    );
    Ok(())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Cases {
    cases: Vec<Case>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    #[serde(default)]
    context: Input,
    expect: Expect,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Expect {
    action: Action,
    #[serde(default)]
    rule: Option<String>,
    #[serde(default)]
    shadow: Option<Vec<String>>,
}

/// Runs every case; fails listing the cases whose outcome differs.
pub fn test(file: &Path, cases: &Path) -> anyhow::Result<()> {
    let policy = Policy::load(file)?;
    let text =
        std::fs::read_to_string(cases).with_context(|| format!("reading {}", cases.display()))?;
    let de = serde_yaml_ng::Deserializer::from_str(&text);
    let spec: Cases = serde_path_to_error::deserialize(de)
        .map_err(|e| anyhow::anyhow!("{}: {}: {}", cases.display(), e.path(), e.inner()))?;
    anyhow::ensure!(!spec.cases.is_empty(), "{}: no cases", cases.display());
    let mut failed = Vec::new();
    for case in &spec.cases {
        let got = policy
            .evaluate(&case.context)
            .map_err(|e| anyhow::anyhow!("case {:?}: {e}", case.name))?;
        let ok = got.action == case.expect.action
            && case.expect.rule.as_ref().is_none_or(|r| *r == got.rule)
            && case.expect.shadow.as_ref().is_none_or(|s| *s == got.shadow);
        println!(
            "{} {}: {} by {}{}",
            if ok { "ok  " } else { "FAIL" },
            case.name,
            got.action,
            got.rule,
            if got.shadow.is_empty() {
                String::new()
            } else {
                format!(" (shadow: {})", got.shadow.join(", "))
            }
        );
        if !ok {
            failed.push(case.name.clone());
        }
    }
    anyhow::ensure!(
        failed.is_empty(),
        "{} of {} case(s) failed: {}",
        failed.len(),
        spec.cases.len(),
        failed.join(", ")
    );
    Ok(())
}
