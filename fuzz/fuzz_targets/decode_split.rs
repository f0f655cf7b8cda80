//! Arbitrary bytes fed to the decoder in two chunks (the first two input bytes pick the split
//! point) and byte by byte: the same frames and errors as in one piece.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| mycelium_fuzz::check_decode_split(data));
