#![no_main]
// The body (and what it checks) is ferry_fuzz::targets::archive_frames; see docs/fuzzing.md.
libfuzzer_sys::fuzz_target!(|data: &[u8]| ferry_fuzz::targets::archive_frames(data));
