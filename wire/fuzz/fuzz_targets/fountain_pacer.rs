#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| wire::fuzz_entry::fountain_pacer(data));
