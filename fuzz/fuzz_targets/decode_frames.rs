//! Arbitrary bytes as one stream of frames, through the `FrameCodec` decoder and through
//! `peek_frame` + `FrameView::to_frame`: no panic, both agree, every frame round-trips.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| mycelium_fuzz::check_decode_frames(data));
