#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| stagecast::fuzzing::whatsapp_referral(data));
