//! Arbitrary bytes as an enveloped message (`mycelium_transport::envelope`): no panic, and
//! what parses writes back to the same bytes and makes a `Message` that reads the same.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| mycelium_fuzz::check_envelope(data));
