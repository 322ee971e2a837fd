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

/// Whether a PNG or WebP holds an animation (APNG `acTL` before the image data; WebP `VP8X`
/// with its animation flag). Only the first frame of those is decoded, so the caller must not
/// treat what it saw as the whole image.
pub fn is_animated_still(data: &[u8]) -> bool {
    if data.starts_with(b"\x89PNG\r\n\x1a\n") {
        // Walk the chunks (length, type, data, CRC) up to the first IDAT.
        let mut at = 8usize;
        while let Some(head) = data.get(at..at + 8) {
            let len = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
            match &head[4..8] {
                b"acTL" => return true,
                b"IDAT" | b"IEND" => return false,
                _ => {}
            }
            at = match at.checked_add(12).and_then(|a| a.checked_add(len)) {
                Some(next) => next,
                None => return false,
            };
        }
        return false;
    }
    // RIFF <size> WEBP VP8X <size> <flags: bit 1 = animation>
    data.len() > 20
        && &data[..4] == b"RIFF"
        && &data[8..12] == b"WEBP"
        && &data[12..16] == b"VP8X"
        && data[20] & 0x02 != 0
}

#[cfg(test)]
mod tests {
    #[test]
    fn animated_png_and_webp_are_told_apart_from_stills() {
        let chunk = |kind: &[u8], body: &[u8]| {
            let mut c = (body.len() as u32).to_be_bytes().to_vec();
            c.extend_from_slice(kind);
            c.extend_from_slice(body);
            c.extend_from_slice(&[0; 4]);
            c
        };
        let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
        png.extend(chunk(b"IHDR", &[0; 13]));
        png.extend(chunk(b"tEXt", &[b'x'; 6000]));
        let mut apng = png.clone();
        apng.extend(chunk(b"acTL", &[0; 8]));
        apng.extend(chunk(b"IDAT", &[0; 4]));
        png.extend(chunk(b"IDAT", &[0; 4]));
        assert!(super::is_animated_still(&apng));
        assert!(!super::is_animated_still(&png));
        let mut webp = b"RIFF\0\0\0\0WEBPVP8X\x0a\0\0\0".to_vec();
        webp.extend_from_slice(&[0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        assert!(super::is_animated_still(&webp));
        webp[20] = 0x10;
        assert!(!super::is_animated_still(&webp));
    }

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
