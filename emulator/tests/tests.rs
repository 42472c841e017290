//! Integration tests for the emulator: every test starts a real emulator on port 0 and talks to
//! it over TLS verified against the CA it generated.

mod certpair;
mod common;
mod dataplane;
mod entra;
mod example;
mod faults;
mod fixtures;
mod imds;
mod objects;
mod process;
mod state;
mod throttle;
