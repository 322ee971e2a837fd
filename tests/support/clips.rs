//! Test clips made with GStreamer, frame by frame (no `concat` element: in GStreamer 1.22 a
//! `concat` of a live-less test source and a decoded file stalls at random).

use std::path::Path;

use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app::{AppSink, AppSrc};

const W: usize = 640;
const H: usize = 360;
const FPS: u64 = 25;
const FRAME_NS: u64 = 1_000_000_000 / FPS;

/// `pad_secs` of plain grey frames, then `clip` (any format GStreamer reads), at 640×360,
/// 25 fps, H.264 in an MP4 written with its index (`moov`) at the end, as cameras do.
pub fn padded(clip: &Path, pad_secs: u64, out: &Path) {
    gst::init().unwrap();
    let caps = format!("video/x-raw,format=I420,width={W},height={H},framerate={FPS}/1");
    let enc = gst::parse::launch(&format!(
        "appsrc name=src format=time caps={caps} ! x264enc speed-preset=ultrafast key-int-max=50 \
         ! mp4mux ! filesink location={}",
        out.display()
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let src = enc.by_name("src").unwrap().downcast::<AppSrc>().unwrap();
    src.set_block(true);
    src.set_max_bytes((W * H * 3 / 2 * 8) as u64);
    enc.set_state(gst::State::Playing).unwrap();

    let push = |data: Vec<u8>, n: u64| {
        let mut b = gst::Buffer::from_mut_slice(data);
        let b_ref = b.get_mut().unwrap();
        b_ref.set_pts(gst::ClockTime::from_nseconds(n * FRAME_NS));
        b_ref.set_duration(gst::ClockTime::from_nseconds(FRAME_NS));
        src.push_buffer(b).expect("encoder takes the frame");
    };
    let pad_frames = pad_secs * FPS;
    for n in 0..pad_frames {
        push(vec![128u8; W * H * 3 / 2], n);
    }

    let dec = gst::parse::launch(&format!(
        "filesrc location={} ! decodebin ! videoconvert ! videoscale ! videorate ! {caps} \
         ! appsink name=sink sync=false",
        clip.display()
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let sink = dec.by_name("sink").unwrap().downcast::<AppSink>().unwrap();
    dec.set_state(gst::State::Playing).unwrap();
    let mut n = pad_frames;
    while let Some(sample) = sink.try_pull_sample(gst::ClockTime::from_seconds(30)) {
        let map = sample.buffer().unwrap().map_readable().unwrap();
        push(map.as_slice().to_vec(), n);
        n += 1;
    }
    assert!(
        sink.is_eos(),
        "{} did not decode to the end",
        clip.display()
    );
    dec.set_state(gst::State::Null).unwrap();

    src.end_of_stream().unwrap();
    let msg = enc
        .bus()
        .unwrap()
        .timed_pop_filtered(
            gst::ClockTime::from_seconds(60),
            &[gst::MessageType::Eos, gst::MessageType::Error],
        )
        .expect("encoder finished");
    if let gst::MessageView::Error(e) = msg.view() {
        panic!("encoding {}: {}", out.display(), e.error());
    }
    enc.set_state(gst::State::Null).unwrap();
}

/// `clip` (H.264 in MP4) remuxed into Matroska, whose header comes first: a stream a decode can
/// start on from its first bytes, as an upload streams in.
pub fn streamable(clip: &Path, out: &Path) {
    gst::init().unwrap();
    let p = gst::parse::launch(&format!(
        "filesrc location={} ! qtdemux ! h264parse ! matroskamux ! filesink location={}",
        clip.display(),
        out.display()
    ))
    .unwrap();
    p.set_state(gst::State::Playing).unwrap();
    let bus = p.bus().unwrap();
    let done = bus.timed_pop_filtered(
        gst::ClockTime::from_seconds(60),
        &[gst::MessageType::Eos, gst::MessageType::Error],
    );
    p.set_state(gst::State::Null).unwrap();
    let ended = done
        .as_ref()
        .is_some_and(|m| matches!(m.view(), gst::MessageView::Eos(_)));
    assert!(ended, "remuxing {} failed: {done:?}", clip.display());
}
