//! `likeguard decisions show|list|export`: the decision log, read straight from its file
//! (read-only; works beside a running proxy, and on a copy of the file offline).

use std::io::Write;

use anyhow::Context;
use clap::{Args, Subcommand, ValueEnum};

use crate::audit::{self, Db, Query};
use crate::config::Config;
use crate::policy::Action;

#[derive(Subcommand)]
pub enum DecisionsCommand {
    /// One decision, by the `decision_id` a 451 or an audit line carries.
    Show { id: String },
    /// Decisions, newest first, one JSON object per line.
    List {
        #[command(flatten)]
        filters: Filters,
        /// How many.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// `next_cursor` of a previous page (printed on stderr).
        #[arg(long)]
        cursor: Option<String>,
    },
    /// Every matching decision, as CSV or JSON lines, to stdout.
    Export {
        #[command(flatten)]
        filters: Filters,
        #[arg(long, value_enum, default_value_t = ExportFormat::Jsonl)]
        format: ExportFormat,
    },
}

#[derive(Clone, Copy, ValueEnum)]
pub enum ExportFormat {
    Jsonl,
    Csv,
}

#[derive(Args)]
pub struct Filters {
    #[arg(long)]
    identity: Option<String>,
    #[arg(long)]
    licensee: Option<String>,
    #[arg(long)]
    rule: Option<String>,
    #[arg(long, value_parser = parse_action)]
    action: Option<Action>,
    #[arg(long)]
    route: Option<String>,
    /// RFC 3339 time or a duration before now (`24h`).
    #[arg(long)]
    since: Option<String>,
    #[arg(long)]
    until: Option<String>,
}

fn parse_action(s: &str) -> Result<Action, String> {
    match s {
        "allow" => Ok(Action::Allow),
        "tag" => Ok(Action::Tag),
        "watermark" => Ok(Action::Watermark),
        "block" => Ok(Action::Block),
        _ => Err("one of allow, tag, watermark, block".into()),
    }
}

impl Filters {
    fn query(&self, limit: usize, cursor: Option<String>) -> anyhow::Result<Query> {
        let time = |v: &Option<String>| {
            v.as_deref()
                .map(audit::parse_instant_or_ago)
                .transpose()
                .map_err(anyhow::Error::msg)
        };
        Ok(Query {
            identity: self.identity.clone(),
            licensee: self.licensee.clone(),
            rule: self.rule.clone(),
            action: self.action,
            route: self.route.clone(),
            since: time(&self.since).context("--since")?,
            until: time(&self.until).context("--until")?,
            limit: limit.clamp(1, audit::MAX_LIMIT),
            cursor,
        })
    }
}

pub fn run(config: &Config, command: DecisionsCommand) -> anyhow::Result<()> {
    let path = audit::file_path(&config.decision_log, &config.state_dir);
    if !path.exists() {
        anyhow::bail!(
            "no decision log at {} (is decision_log.enabled, and has the proxy run with this state_dir?)",
            path.display()
        );
    }
    let db = Db::open(&path).with_context(|| format!("opening {}", path.display()))?;
    let mut out = std::io::stdout().lock();
    match command {
        DecisionsCommand::Show { id } => match db.get(&id)? {
            Some(r) => writeln!(out, "{}", serde_json::to_string_pretty(&r)?)?,
            None => anyhow::bail!("no decision {id} in {}", path.display()),
        },
        DecisionsCommand::List {
            filters,
            limit,
            cursor,
        } => {
            let page = db.list(&filters.query(limit, cursor)?)?;
            for r in &page.decisions {
                writeln!(out, "{}", serde_json::to_string(r)?)?;
            }
            if let Some(c) = page.next_cursor {
                eprintln!("more: --cursor {c}");
            }
        }
        DecisionsCommand::Export { filters, format } => {
            // The same rows as the admin API's export, page by page.
            let mut q = filters.query(audit::MAX_LIMIT, None)?;
            let mut first = true;
            loop {
                let page = db.list(&q)?;
                out.write_all(&match format {
                    ExportFormat::Jsonl => audit::jsonl(&page.decisions),
                    ExportFormat::Csv => audit::csv_rows(&page.decisions, first),
                })?;
                first = false;
                match page.next_cursor {
                    Some(c) => q.cursor = Some(c),
                    None => break,
                }
            }
        }
    }
    Ok(())
}
