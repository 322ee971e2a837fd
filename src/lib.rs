//! likeguard: an inline reverse proxy that looks inside the media passing through it,
//! recognises protected identities and enforces their license policy.
//!
//! Module map (one concern each): `config` → `proxy` (routes, pass-through, inspected exchange)
//! → `capture` (holding bodies) → `extract` (media items) → `inspect` (inspectors, e.g.
//! `knownmedia`) → `policy` (decisions) → `actions` (451, tags, watermark seam); `admin`,
//! `store`, `telemetry`, `cli` around them.

pub mod actions;
pub mod admin;
pub mod capture;
pub mod cli;
pub mod config;
pub mod extract;
pub mod inference;
pub mod inspect;
pub mod knownmedia;
pub mod license;
pub mod media;
pub mod policy;
pub mod proxy;
pub mod registry;
pub mod store;
pub mod telemetry;
