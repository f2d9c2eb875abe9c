#![no_main]
// The body (and what it checks) is ferry_fuzz::targets::xmtp_records; see docs/fuzzing.md.
libfuzzer_sys::fuzz_target!(|data: &[u8]| ferry_fuzz::targets::xmtp_records(data));
