//! Magic-byte sniffing. `infer` knows the signatures; we keep only media types and name them.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MediaKind {
    Image,
    Video,
    Audio,
}

impl MediaKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Image => "image",
            Self::Video => "video",
            Self::Audio => "audio",
        }
    }
}

/// The real type of a media item, from its bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct MediaType {
    pub kind: MediaKind,
    /// MIME type, e.g. `image/jpeg`.
    pub mime: &'static str,
    /// Short format name, e.g. `jpg`, `mp4`.
    pub format: &'static str,
}

/// The media type of `data`, or None when it is not image, video or audio.
pub fn sniff(data: &[u8]) -> Option<MediaType> {
    let t = infer::get(data)?;
    let kind = match t.matcher_type() {
        infer::MatcherType::Image => MediaKind::Image,
        infer::MatcherType::Video => MediaKind::Video,
        infer::MatcherType::Audio => MediaKind::Audio,
        _ => return None,
    };
    Some(MediaType {
        kind,
        mime: t.mime_type(),
        format: t.extension(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_signatures() {
        let png = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR";
        assert_eq!(sniff(png).unwrap().format, "png");
        let jpg = b"\xFF\xD8\xFF\xE0\0\x10JFIF\0";
        assert_eq!(sniff(jpg).unwrap().kind, MediaKind::Image);
        let mp4 = b"\0\0\0\x18ftypmp42\0\0\0\0mp42isom";
        assert_eq!(sniff(mp4).unwrap().kind, MediaKind::Video);
        assert!(sniff(b"{\"hello\": 1}").is_none());
        assert!(sniff(b"%PDF-1.7").is_none());
        assert!(sniff(b"").is_none());
    }
}
