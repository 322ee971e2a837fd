//! `likeguard identity …` and `likeguard license …`: the admin API's registry operations from
//! the command line, on the configured store. With `store.kind: redis` running instances apply
//! them within a second; the embedded store's files are read by `serve` at start, so with it
//! use these while the server is stopped (or use the admin API).

use std::path::PathBuf;

use anyhow::Context;
use bytes::Bytes;

use super::serve::open_registry;
use crate::config::Config;
use crate::inference::FaceEngine;
use crate::inspect::faces::reference_embeddings;
use crate::license::{NewLicense, Obligation};
use crate::media::Decoder;
use crate::registry::{Consent, NewIdentity, Protection};

#[derive(clap::Subcommand)]
pub enum IdentityCommand {
    /// Enrol from reference photos (each with exactly one face).
    Add {
        #[arg(long)]
        name: String,
        #[arg(long, default_value = "strict", value_parser = parse_protection)]
        protection: Protection,
        #[arg(long)]
        owner: Option<String>,
        /// Who consented (with --consent-method and optionally --consent-at).
        #[arg(long)]
        consent_by: Option<String>,
        #[arg(long, default_value = "")]
        consent_method: String,
        #[arg(long, default_value = "")]
        consent_at: String,
        #[arg(required = true)]
        photos: Vec<PathBuf>,
    },
    /// List identities (no embeddings).
    List,
    /// Erase an identity, its embeddings and its licenses.
    Rm { id: String },
}

#[derive(clap::Subcommand)]
pub enum LicenseCommand {
    Grant {
        #[arg(long)]
        identity: String,
        #[arg(long)]
        licensee: String,
        #[arg(long = "usage")]
        usages: Vec<String>,
        #[arg(long = "obligation", value_parser = parse_obligation)]
        obligations: Vec<Obligation>,
        /// RFC 3339
        #[arg(long)]
        from: Option<String>,
        /// RFC 3339
        #[arg(long)]
        until: Option<String>,
    },
    List,
    Revoke {
        id: String,
    },
}

fn parse_protection(s: &str) -> Result<Protection, String> {
    Protection::parse(s).ok_or_else(|| format!("{s:?} is not one of strict, standard, monitor"))
}

fn parse_obligation(s: &str) -> Result<Obligation, String> {
    match s {
        "watermark" => Ok(Obligation::Watermark),
        "tag" => Ok(Obligation::Tag),
        _ => Err(format!("{s:?} is not one of watermark, tag")),
    }
}

pub fn identity(config: &Config, command: IdentityCommand) -> anyhow::Result<()> {
    let (registry, licenses) = open_registry(config, false)?;
    match command {
        IdentityCommand::Add {
            name,
            protection,
            owner,
            consent_by,
            consent_method,
            consent_at,
            photos,
        } => {
            let decoder = Decoder::new(&config.media)?;
            let engine = FaceEngine::load(&config.inference)?;
            let mut files = Vec::new();
            for p in &photos {
                let data = std::fs::read(p).with_context(|| format!("reading {}", p.display()))?;
                files.push((p.display().to_string(), Bytes::from(data)));
            }
            let (embeddings, faces) =
                reference_embeddings(&decoder, &engine, files).map_err(anyhow::Error::msg)?;
            let identity = registry.add(NewIdentity {
                name,
                protection,
                owner,
                consent: consent_by.map(|by| Consent {
                    by,
                    at: consent_at,
                    method: consent_method,
                }),
                embeddings,
            })?;
            let mut shown = serde_json::to_value(identity.view())?;
            shown["faces"] = serde_json::to_value(&faces)?;
            println!("{}", serde_json::to_string(&shown)?);
        }
        IdentityCommand::List => {
            let all = registry.list();
            if all.is_empty() {
                // Say where it looked: an empty list from the wrong folder looks like data loss.
                let dir = std::path::absolute(&config.state_dir)
                    .unwrap_or_else(|_| config.state_dir.clone());
                eprintln!(
                    "no identities in {} (another state_dir? pass --config or set LIKEGUARD_CONFIG)",
                    dir.display()
                );
            }
            for i in all {
                println!("{}", serde_json::to_string(&i)?);
            }
        }
        IdentityCommand::Rm { id } => {
            let dropped = licenses.remove_identity(&id)?;
            anyhow::ensure!(registry.remove(&id)?, "no identity {id:?}");
            println!("erased {id} and {dropped} license(s)");
        }
    }
    Ok(())
}

pub fn license(config: &Config, command: LicenseCommand) -> anyhow::Result<()> {
    let (registry, licenses) = open_registry(config, false)?;
    match command {
        LicenseCommand::Grant {
            identity,
            licensee,
            usages,
            obligations,
            from,
            until,
        } => {
            anyhow::ensure!(
                registry.get(&identity).is_some(),
                "no identity {identity:?}"
            );
            let l = licenses.grant(NewLicense {
                identity_id: identity,
                licensee,
                usages,
                media_kinds: Vec::new(),
                valid_from: from,
                valid_until: until,
                obligations,
            })?;
            println!("{}", serde_json::to_string(&l)?);
        }
        LicenseCommand::List => {
            for l in licenses.list() {
                println!("{}", serde_json::to_string(&l)?);
            }
        }
        LicenseCommand::Revoke { id } => {
            anyhow::ensure!(licenses.revoke(&id)?, "no license {id:?}");
            println!("revoked {id}");
        }
    }
    Ok(())
}
