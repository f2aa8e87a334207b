//! Cross-module tests: round trips for every request and response,
//! byte-exact WIRE.md examples, and robustness against malformed input.

mod examples;
mod robustness;
mod round_trip;
mod samples;
