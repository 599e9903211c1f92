#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| ocisync::fuzz::notation_jws(data));
