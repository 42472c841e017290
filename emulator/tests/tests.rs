//! Integration tests for the emulator: every test starts a real emulator on port 0 and talks to
//! it over TLS verified against the CA it generated.
// Deadlines in tests may use `Instant + Duration`: a panic here is a failed test, and the
// workspace's no-panicking-time-arithmetic lints are for the shipping code.
#![allow(clippy::arithmetic_side_effects, clippy::unchecked_time_subtraction)]

mod arch;
mod certpair;
mod common;
mod dataplane;
mod entra;
mod example;
mod faults;
mod fixtures;
mod imds;
mod objects;
mod pfx;
mod process;
mod state;
mod throttle;
