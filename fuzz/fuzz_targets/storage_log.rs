//! Arbitrary bytes as the segment files of a log directory, opened with recovery and read from
//! every kind of start, then appended to and reopened: no panic, offsets in order, positioned
//! reads agree with a full read, recovery leaves the log appendable.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| mycelium_fuzz::check_storage_log(data));
