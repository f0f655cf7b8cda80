//! Arbitrary bytes as the first bytes of a fresh connection, read as the broker reads a `Hello`
//! and as a client reads a `Welcome`: no panic, nothing buffered beyond the handshake limit, the
//! first frame classified as the broker and the client classify it.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| mycelium_fuzz::check_handshake(data));
