//! The decision log as files: JSON lines and CSV (the admin export and `likeguard decisions
//! export` write the same thing).

use super::Record;

/// One JSON object per record, one per line.
pub fn jsonl(records: &[Record]) -> Vec<u8> {
    let mut out = Vec::new();
    for r in records {
        if serde_json::to_writer(&mut out, r).is_ok() {
            out.push(b'\n');
        }
    }
    out
}

/// One CSV row per record; list-valued fields are joined with `;` (identities as
/// `id:similarity`).
pub fn csv_rows(records: &[Record], header: bool) -> Vec<u8> {
    let mut w = csv::Writer::from_writer(Vec::new());
    let cell = |s: &str| csv_cell(s).into_owned();
    if header {
        let _ = w.write_record([
            "id",
            "at",
            "instance",
            "route",
            "side",
            "action",
            "rule",
            "policy_version",
            "licensee",
            "license",
            "identities",
            "items",
            "sha256",
            "watermark",
            "client",
            "explanation",
        ]);
    }
    for r in records {
        let identities = r
            .identities
            .iter()
            .map(|m| format!("{}:{:.3}", m.identity, m.similarity))
            .collect::<Vec<_>>()
            .join(";");
        let items = r
            .items
            .iter()
            .map(|i| format!("{}/{} {}B at {}", i.kind, i.format, i.size, i.location))
            .collect::<Vec<_>>()
            .join(";");
        let hashes = r
            .items
            .iter()
            .map(|i| i.sha256.as_deref().unwrap_or(""))
            .collect::<Vec<_>>()
            .join(";");
        let at = super::rfc3339_ms(r.at);
        let _ = w.write_record([
            cell(&r.id),
            at,
            cell(&r.instance),
            cell(&r.route),
            cell(&r.side),
            r.action.as_str().to_string(),
            cell(&r.rule),
            cell(r.policy_version.as_deref().unwrap_or("")),
            cell(r.licensee.as_deref().unwrap_or("")),
            cell(r.license.as_deref().unwrap_or("")),
            cell(&identities),
            cell(&items),
            hashes,
            cell(r.watermark.as_deref().unwrap_or("")),
            cell(r.client.as_deref().unwrap_or("")),
            cell(&r.explanation),
        ]);
    }
    w.into_inner().unwrap_or_default()
}

/// A CSV cell that a spreadsheet will show, not run: text starting with `=`, `+`, `-`, `@`,
/// tab or CR (a formula to Excel and LibreOffice) gets a leading `'` (OWASP's advice). Licensee,
/// route and rule names can come from clients.
fn csv_cell(s: &str) -> std::borrow::Cow<'_, str> {
    if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{s}").into()
    } else {
        s.into()
    }
}
