//! The `likeguard` command line.

mod scan;
mod serve;

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::{Config, EXAMPLE, RouteConfig, Upstream};

#[derive(Parser)]
#[command(
    name = "likeguard",
    version,
    about = "Inline proxy that protects people's likeness"
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the proxy (and its admin listener).
    Serve(ServeArgs),
    /// Decode media files and report what is in them (kind, format, size, frames sampled).
    Scan {
        files: Vec<PathBuf>,
        /// One JSON object per line per file.
        #[arg(long)]
        json: bool,
        /// Config file whose `media` section to use (default: built-in defaults).
        #[arg(long, short, env = "LIKEGUARD_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Print or check configuration files.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Config file (YAML). Without one, an embedded default inspects every path.
    #[arg(long, short, env = "LIKEGUARD_CONFIG")]
    config: Option<PathBuf>,
    /// Proxy listen address (overrides the file).
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Upstream origin, e.g. http://127.0.0.1:3000: replaces every route's upstream, or makes
    /// the single catch-all route when there is no file.
    #[arg(long, value_parser = parse_upstream)]
    upstream: Option<Upstream>,
    /// Admin listen address (overrides the file).
    #[arg(long)]
    admin_listen: Option<SocketAddr>,
}

#[derive(Subcommand)]
enum ConfigCommand {
    /// Print a complete, commented example configuration.
    Example,
    /// Validate a configuration file; exits non-zero with file, field and reason.
    Check { file: PathBuf },
}

fn parse_upstream(s: &str) -> Result<Upstream, String> {
    Upstream::parse(s)
}

pub fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => {
            crate::telemetry::init_logging();
            serve::serve(resolve(args)?)
        }
        Command::Scan {
            files,
            json,
            config,
        } => {
            anyhow::ensure!(!files.is_empty(), "give one or more files to scan");
            let media = match config {
                Some(path) => Config::load(&path)?.media,
                None => Default::default(),
            };
            scan::scan(&files, json, &media)
        }
        Command::Config {
            command: ConfigCommand::Example,
        } => {
            print!("{EXAMPLE}");
            Ok(())
        }
        Command::Config {
            command: ConfigCommand::Check { file },
        } => {
            let c = Config::load(&file)?;
            println!(
                "{}: ok ({} route{})",
                file.display(),
                c.routes.len(),
                if c.routes.len() == 1 { "" } else { "s" }
            );
            Ok(())
        }
    }
}

/// File (or embedded default) + flags → the config to serve.
fn resolve(args: ServeArgs) -> anyhow::Result<Config> {
    let mut config = match (&args.config, &args.upstream) {
        (Some(path), _) => Config::load(path)?,
        (None, Some(up)) => Config::embedded(up.clone()),
        (None, None) => anyhow::bail!(
            "give --config FILE or --upstream URL (e.g. likeguard serve --upstream http://127.0.0.1:3000)"
        ),
    };
    if let Some(up) = args.upstream {
        if config.routes.is_empty() {
            config.routes.push(RouteConfig::catch_all(up));
        } else {
            for r in &mut config.routes {
                r.upstream = up.clone();
            }
        }
    }
    if let Some(l) = args.listen {
        config.listen = l;
    }
    if let Some(l) = args.admin_listen {
        config.admin.listen = l;
    }
    anyhow::ensure!(
        config.listen != config.admin.listen,
        "--listen and --admin-listen must differ (both {})",
        config.listen
    );
    anyhow::ensure!(
        !config.routes.is_empty(),
        "the configuration has no routes: add one, or pass --upstream"
    );
    Ok(config)
}
