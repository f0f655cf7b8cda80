//! Arbitrary UTF-8 text as `broker.toml` (a NUL splits it into a running and a wanted config):
//! no panic, errors with located diagnostics, loaded configs valid, and a reload's diff and
//! effective config consistent.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| mycelium_fuzz::check_config(data));
