#![no_main]
// The body (and what it checks) is ferry_fuzz::targets::mls_messages; see docs/fuzzing.md.
// Needs the `mls` feature: `FUZZ_FEATURES=mls scripts/fuzz 600 mls_messages`.
libfuzzer_sys::fuzz_target!(|data: &[u8]| ferry_fuzz::targets::mls_messages(data));
