#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| ocisync::fuzz::notation_verify(data));
