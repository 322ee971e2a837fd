//! likeguard: an inline reverse proxy that looks inside the media passing through it,
//! recognises protected identities and enforces their license policy.
//!
//! Module map (one concern each): `config` → `proxy` (pingora: listeners, request targets,
//! routes, pass-through, inspected exchange) → `capture` (holding bodies) → `decide` (the one
//! decision pipeline: `extract` finds media items, `inspect` runs the inspectors — `knownmedia`,
//! faces through `media`, `inference`, `registry`, `license` — `policy` rules, `actions`
//! enforce: 451, tags, watermark, provenance); `admin`, `store`, `telemetry`, `cli` around them.

pub mod actions;
pub mod admin;
pub mod audit;
pub mod capture;
pub mod cli;
pub mod config;
pub mod decide;
pub mod extract;
pub mod icap;
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
