//! Clean teardown: in its own test binary, because it counts the whole process's threads and
//! file descriptors and other tests running beside it would change them.

mod support;

use std::time::Duration;

use bytes::Bytes;
use likeguard::config::MediaConfig;
use likeguard::media::Decoder;
use support::testdata;

fn read(rel: &str) -> Bytes {
    std::fs::read(testdata().join(rel)).unwrap().into()
}

fn count(dir: &str) -> usize {
    std::fs::read_dir(dir).unwrap().count()
}

#[test]
fn a_thousand_decodes_leave_no_threads_or_file_descriptors_behind() {
    let d = Decoder::new(&MediaConfig::default()).unwrap();
    let photo = read("images/faces/lfw_deepfunneled/Abdullah_Gul/Abdullah_Gul_0001.jpg");
    let clip = read("video/faces/face_api_js/video.mp4");
    // Warm up GStreamer's global pools, then take the baseline.
    for _ in 0..5 {
        d.decode_all(photo.clone()).unwrap();
        d.decode_all(clip.clone()).unwrap();
    }
    std::thread::sleep(Duration::from_millis(200));
    let (fds, threads) = (count("/proc/self/fd"), count("/proc/self/task"));
    for i in 0..1000 {
        let input = if i % 10 == 0 {
            clip.clone()
        } else {
            photo.clone()
        };
        d.decode_all(input).unwrap();
        if i % 7 == 0 {
            let _ = d.decode_all(Bytes::from_static(b"\xFF\xD8\xFF\xE0 broken"));
        }
    }
    std::thread::sleep(Duration::from_millis(500));
    let (fds_after, threads_after) = (count("/proc/self/fd"), count("/proc/self/task"));
    assert!(fds_after <= fds + 2, "file descriptors {fds} → {fds_after}");
    assert!(
        threads_after <= threads + 2,
        "threads {threads} → {threads_after}"
    );
}
