#![no_main]
// The body (and what it checks) is ferry_fuzz::targets::identity_log; see docs/fuzzing.md.
libfuzzer_sys::fuzz_target!(|data: &[u8]| ferry_fuzz::targets::identity_log(data));
