//! What every pipeline run shares with GStreamer's streaming threads: the first failure they
//! hit, the stop flag it raises, and the teardown that stops the pipeline however a run ends.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use gstreamer as gst;
use gstreamer::prelude::*;

use super::DecodeError;

#[derive(Default)]
pub(super) struct FirstFailure {
    slot: Mutex<Option<DecodeError>>,
    stop: AtomicBool,
}

impl FirstFailure {
    /// Records `e` unless an earlier failure is there, and asks the streaming threads to stop.
    pub(super) fn fail(&self, e: DecodeError) {
        self.slot
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_or_insert(e);
        self.stop();
    }

    pub(super) fn take(&self) -> Option<DecodeError> {
        self.slot.lock().unwrap_or_else(|p| p.into_inner()).take()
    }

    pub(super) fn stop(&self) {
        self.stop.store(true, Ordering::Release);
    }

    pub(super) fn stopped(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }
}

/// Stops and frees the pipeline however the run ends (no leaked threads or fds).
pub(super) struct Teardown {
    pub(super) pipeline: gst::Pipeline,
    pub(super) failure: Arc<FirstFailure>,
}

impl Drop for Teardown {
    fn drop(&mut self) {
        self.failure.stop();
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}
