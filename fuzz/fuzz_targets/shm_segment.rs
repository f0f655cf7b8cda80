//! Arbitrary bytes as the contents of a shared-memory ring segment (or a payload segment) that
//! a subscriber maps and reads, with a hostile peer scribbling between reads: no panic, no read
//! outside the segment, every delivered frame a whole frame of the ring.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| mycelium_fuzz::check_shm_segment(data));
