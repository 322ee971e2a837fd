//! Face inference with the real models (fetched by `likeguard models fetch`, as `.ci/run`
//! does) on real photos from the shared testdata.

mod support;

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use likeguard::config::{InferenceConfig, MediaConfig};
use likeguard::inference::{Embedding, FaceEngine, Image, InferenceError};
use likeguard::inspect::faces::{FoundFace, faces_in_media, faces_in_media_until, main_face};
use likeguard::media::Decoder;
use likeguard::media::sniff;

fn models_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models")
}

/// One engine for the whole test binary, as in the server.
fn engine() -> &'static FaceEngine {
    static ENGINE: OnceLock<FaceEngine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        let config = InferenceConfig {
            models_dir: models_dir(),
            ..Default::default()
        };
        FaceEngine::load(&config).expect("models missing: run `likeguard models fetch`")
    })
}

fn decoder() -> &'static Decoder {
    static DECODER: OnceLock<Decoder> = OnceLock::new();
    DECODER.get_or_init(|| Decoder::new(&MediaConfig::default()).unwrap())
}

fn faces(rel: &str, embed: bool) -> (u32, u32, Vec<FoundFace>) {
    let data = Bytes::from(support::media(rel));
    let kind = sniff(&data).map(|m| m.kind);
    let (summary, found) = faces_in_media(decoder(), engine(), data, kind, embed).unwrap();
    (summary.width.unwrap(), summary.height.unwrap(), found)
}

fn embedding(rel: &str) -> Embedding {
    let (w, h, found) = faces(rel, true);
    main_face(&found, w, h)
        .unwrap_or_else(|| panic!("no face found in {rel}"))
        .embedding
        .clone()
        .unwrap()
}

#[test]
fn same_people_score_above_the_threshold_and_different_people_below() {
    let t = engine().threshold();
    let same = [
        (
            "images/faces/deepface/img1.jpg",
            "images/faces/deepface/img2.jpg",
        ),
        (
            "images/faces/face_recognition/Alex_Lacamoire/alex-lacamoire.png",
            "images/faces/face_recognition/Alex_Lacamoire/alex_lacamoire1.jpg",
        ),
        (
            "images/faces/lfw_deepfunneled/Tom_Cruise/Tom_Cruise_0005.jpg",
            "images/faces/misc/dlib_Tom_Cruise_avp_2014_4.jpg",
        ),
        (
            "images/faces/face_recognition/Barack_Obama/obama2.jpg",
            "images/faces/face_recognition/Barack_Obama/obama_partial_face2.jpg",
        ),
    ];
    let different = [
        (
            "images/faces/deepface/img20.jpg",
            "images/faces/deepface/img16.jpg",
        ),
        (
            "images/faces/lfw_deepfunneled/Angelina_Jolie/Angelina_Jolie_0013.jpg",
            "images/faces/misc/skimage_astronaut.png",
        ),
        (
            "images/faces/lfw_deepfunneled/Tom_Cruise/Tom_Cruise_0005.jpg",
            "images/faces/face_recognition/Barack_Obama/obama2.jpg",
        ),
    ];
    for (a, b) in same {
        let s = embedding(a).cosine(&embedding(b));
        assert!(s >= t, "{a} vs {b}: {s} below the threshold {t}");
    }
    for (a, b) in different {
        let s = embedding(a).cosine(&embedding(b));
        assert!(s < t, "{a} vs {b}: {s} at or above the threshold {t}");
    }
}

#[test]
fn the_same_photo_resized_is_the_same_person() {
    let original = embedding("images/faces/deepface/img1.jpg");
    let data = support::resized_copy(&support::media("images/faces/deepface/img1.jpg"));
    let kind = sniff(&data).map(|m| m.kind);
    let (summary, found) =
        faces_in_media(decoder(), engine(), Bytes::from(data), kind, true).unwrap();
    let face = main_face(&found, summary.width.unwrap(), summary.height.unwrap()).unwrap();
    let s = original.cosine(face.embedding.as_ref().unwrap());
    assert!(s > 0.8, "resized copy scored {s}");
}

#[test]
fn a_group_photo_yields_each_face_with_sane_landmarks() {
    // Annotated: 6 faces, 37–53 px wide, in a 500×375 photo.
    let (_, _, found) = faces("images/group/dlib_voc/2008_002079.jpg", false);
    assert!(found.len() >= 5, "found {} of 6 faces", found.len());
    for f in &found {
        let [x, y, w, h] = f.face.bbox;
        let [le, re, nose, ml, mr] = f.face.landmarks;
        assert!(w > 10.0 && h > 10.0, "{f:?}");
        assert!(le[0] < re[0], "eyes out of order: {f:?}");
        assert!(
            nose[1] > le[1].min(re[1]) && ml[1] > nose[1] && mr[1] > nose[1],
            "{f:?}"
        );
        // Landmarks lie within (a margin around) the box.
        for p in f.face.landmarks {
            assert!(p[0] > x - w / 2.0 && p[0] < x + 1.5 * w, "{f:?}");
            assert!(p[1] > y - h / 2.0 && p[1] < y + 1.5 * h, "{f:?}");
        }
    }
    let (_, _, two) = faces("images/group/face_recognition/two_people.jpg", false);
    assert_eq!(two.len(), 2, "{two:?}");
}

#[test]
fn no_face_images_give_no_faces() {
    for rel in [
        "images/noface/face_api_js/test_white.png",
        "images/noface/skimage/coffee.png",
    ] {
        let (_, _, found) = faces(rel, false);
        assert!(found.is_empty(), "{rel}: {found:?}");
    }
}

#[test]
fn a_clip_yields_faces_per_sampled_frame() {
    let (_, _, found) = faces(
        "video/faces/face_recognition/short_hamilton_clip.mp4",
        false,
    );
    let frames: std::collections::BTreeSet<u64> = found.iter().map(|f| f.frame).collect();
    assert!(
        frames.len() >= 5,
        "faces in only {} sampled frames",
        frames.len()
    );
}

#[test]
fn concurrent_requests_get_the_vectors_they_would_get_alone() {
    let photos = [
        "images/faces/deepface/img1.jpg",
        "images/faces/deepface/img20.jpg",
        "images/faces/lfw_deepfunneled/Tom_Cruise/Tom_Cruise_0005.jpg",
        "images/group/dlib_voc/2008_002079.jpg",
    ];
    // Decoded frames and faces, then the embeddings one request at a time.
    let frames: Vec<_> = photos
        .iter()
        .map(|rel| {
            let img = image::load_from_memory(&support::media(rel))
                .unwrap()
                .to_rgb8();
            let (w, h) = img.dimensions();
            (img.into_raw(), w, h)
        })
        .collect();
    let frames = Arc::new(frames);
    let alone: Vec<Vec<Embedding>> = frames
        .iter()
        .map(|(rgb, w, h)| {
            let image = Image::new(rgb, *w, *h).unwrap();
            let faces = engine().detect(&image).unwrap();
            assert!(!faces.is_empty());
            engine().embed(&image, &faces).unwrap()
        })
        .collect();
    // 16 threads at once, each photo several times over: batches mix requests.
    let together: Vec<(usize, Vec<Embedding>)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..16)
            .map(|i| {
                let frames = frames.clone();
                s.spawn(move || {
                    let k = i % frames.len();
                    let (rgb, w, h) = &frames[k];
                    let image = Image::new(rgb, *w, *h).unwrap();
                    let faces = engine().detect(&image).unwrap();
                    (k, engine().embed(&image, &faces).unwrap())
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (k, got) in together {
        assert_eq!(got.len(), alone[k].len(), "{}", photos[k]);
        for (a, b) in got.iter().zip(&alone[k]) {
            let diff = a
                .as_slice()
                .iter()
                .zip(b.as_slice())
                .map(|(x, y)| (x - y).abs())
                .fold(0.0f32, f32::max);
            assert!(
                diff < 1e-4,
                "{}: batched vector differs by {diff}",
                photos[k]
            );
        }
    }
}

fn copy_models(to: &Path) {
    let from = models_dir();
    std::fs::copy(from.join("manifest.json"), to.join("manifest.json")).unwrap();
    std::fs::create_dir_all(to.join("runtime")).unwrap();
    std::os::unix::fs::symlink(
        from.join("runtime/libonnxruntime.so"),
        to.join("runtime/libonnxruntime.so"),
    )
    .unwrap();
    for name in [
        "blazeface-short.onnx",
        "blazeface-full.onnx",
        "mobilefacenet.onnx",
    ] {
        std::os::unix::fs::symlink(from.join(name), to.join(name)).unwrap();
    }
}

#[test]
fn a_corrupt_or_missing_model_is_refused_at_start_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    copy_models(dir.path());
    let target = dir.path().join("mobilefacenet.onnx");
    std::fs::remove_file(&target).unwrap();
    let config = InferenceConfig {
        models_dir: dir.path().to_path_buf(),
        ..Default::default()
    };

    let err = FaceEngine::load(&config)
        .err()
        .expect("missing model accepted");
    assert!(matches!(err, InferenceError::ModelMissing { .. }), "{err}");
    assert!(
        err.to_string().contains(&target.display().to_string()),
        "{err}"
    );
    assert!(err.to_string().contains("likeguard models fetch"), "{err}");

    let mut bytes = std::fs::read(models_dir().join("mobilefacenet.onnx")).unwrap();
    bytes.truncate(bytes.len() / 2);
    std::fs::write(&target, bytes).unwrap();
    let err = FaceEngine::load(&config)
        .err()
        .expect("corrupt model accepted");
    assert!(matches!(err, InferenceError::ModelCorrupt { .. }), "{err}");
    assert!(
        err.to_string().contains(&target.display().to_string()),
        "{err}"
    );
}

#[test]
fn asking_for_a_gpu_provider_this_build_lacks_is_a_clear_error() {
    if cfg!(feature = "cuda") {
        return;
    }
    let config = InferenceConfig {
        models_dir: models_dir(),
        execution_provider: likeguard::config::ExecutionProvider::Cuda { device: 0 },
        ..Default::default()
    };
    let err = FaceEngine::load(&config).err().expect("cuda accepted");
    assert!(err.to_string().contains("cuda"), "{err}");
}

/// A video whose faces are handed on frame by frame can be stopped at the first one (what the
/// proxy does at the first block): the decode ends there, the boxes are already in the source's
/// pixels, and stopping early is not an incomplete inspection.
#[test]
fn a_video_can_be_stopped_at_its_first_face() {
    let data = Bytes::from(support::media(
        "video/faces/face_recognition/short_hamilton_clip.mp4",
    ));
    let (whole, all) = faces_in_media(decoder(), engine(), data.clone(), None, false).unwrap();
    assert!(whole.frames_sampled > 2 && !all.is_empty());
    let mut seen = Vec::new();
    let (summary, found) =
        faces_in_media_until(decoder(), engine(), data, None, false, &mut |f, faces| {
            seen.push((f.index, f.source));
            if faces.is_empty() {
                std::ops::ControlFlow::Continue(())
            } else {
                std::ops::ControlFlow::Break(())
            }
        })
        .unwrap();
    assert!(summary.stopped_early);
    assert!(summary.incomplete.is_none());
    assert!(summary.frames_sampled < whole.frames_sampled, "{summary:?}");
    assert_eq!(seen.len() as u64, summary.frames_sampled);
    // The same first faces, at the same source-pixel boxes, as the whole decode found.
    assert_eq!(
        found.len(),
        all.iter().filter(|f| f.frame == found[0].frame).count()
    );
    assert_eq!(found[0].face.bbox, all[0].face.bbox);
    assert_eq!(seen[0].1, (whole.width.unwrap(), whole.height.unwrap()));
}
