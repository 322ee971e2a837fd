//! The body after a tag or watermark ruling: marked media, signed manifests, spliced back.

use bytes::Bytes;

use super::{Decider, Side};
use crate::extract::{BodyClass, MediaItem};
use crate::policy::{Action, Decision};

impl Decider {
    /// The new body for a tag or watermark decision, `None` when it stays as it is: a
    /// `watermark` marks every media item (images in place, videos re-encoded); on the response
    /// side with provenance on, each JPEG, PNG or MP4 item also gets a signed C2PA manifest
    /// stating the decision. Items inside multipart or JSON bodies are put back where they came
    /// from. Tags of bodies that cannot carry a manifest keep their headers only; a watermark
    /// that cannot be applied (or put back: media in archives, form fields, behind URLs) is
    /// an error, and the route's failure mode decides.
    pub(super) async fn rewrite(
        &self,
        side: Side,
        class: &BodyClass,
        body: &Bytes,
        items: &[MediaItem],
        d: &Decision,
    ) -> Result<Option<Bytes>, String> {
        let mark = d.action == Action::Watermark;
        let provenance = self.provenance.clone().filter(|_| side == Side::Response);
        let signable =
            |i: &MediaItem| matches!(i.media.mime, "image/jpeg" | "image/png" | "video/mp4");
        // A manifest goes only where the signed item can be put back (top-level items); a mark
        // goes on every item, and one that cannot be put back fails the rewrite.
        let todo: Vec<bool> = items
            .iter()
            .map(|i| mark || (provenance.is_some() && signable(i) && i.location.top().is_some()))
            .collect();
        if !todo.contains(&true) {
            return Ok(None);
        }
        let watermarker = match mark {
            true => Some(
                self.watermarker
                    .clone()
                    .ok_or_else(|| "no watermarker is configured".to_string())?,
            ),
            false => None,
        };
        let (d, items, body, class) = (d.clone(), items.to_vec(), body.clone(), class.clone());
        // Decode, mark, encode, sign: tens of milliseconds per image (seconds per video) of
        // CPU, off the async workers.
        tokio::task::spawn_blocking(move || {
            let mut new = Vec::with_capacity(items.len());
            for (item, todo) in items.iter().zip(todo) {
                if !todo {
                    new.push(None);
                    continue;
                }
                let mut data = item.data.clone();
                if let Some(w) = &watermarker {
                    data = w
                        .mark(item, &d)
                        .map_err(|e| format!("item {}: {e}", item.index))?;
                }
                if let Some(p) = provenance.as_ref().filter(|_| signable(item)) {
                    let record = crate::actions::provenance::DecisionRecord {
                        action: d.action.as_str().into(),
                        rule: d.rule.clone(),
                        decision_id: d.id.clone(),
                        license_id: d.license.clone(),
                        policy_version: d.policy_version.clone(),
                        time: humantime::format_rfc3339_seconds(std::time::SystemTime::now())
                            .to_string(),
                        watermark: mark.then(|| {
                            format!("{:08x}", crate::actions::watermark::payload_for(&d.id))
                        }),
                    };
                    data = p
                        .sign(&data, item.media.mime, &record)
                        .map_err(|e| format!("item {}: {e}", item.index))?
                        .into();
                }
                new.push(Some(data));
            }
            crate::extract::splice(&body, &class, &items, &new)
                .map(Some)
                .map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| format!("rewrite task: {e}"))?
    }
}
