#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| stagecast::fuzzing::pii_email(data));
