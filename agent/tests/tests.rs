//! keyvault-agent integration tests: one binary, one module per concern, shared helpers in
//! `util`. Every test runs the shipping code against the in-process emulator over TLS.
// Deadlines in tests may use `Instant + Duration`: a panic here is a failed test, and the
// workspace's no-panicking-time-arithmetic lints are for the shipping code.
#![allow(clippy::arithmetic_side_effects, clippy::unchecked_time_subtraction)]

#[macro_use] // eventually!
mod util; // shared harness: emulator + temp dirs + CLI runner + in-process sidecar
mod config_cli; // `check`, flags/env, exit codes, every config problem reported at once
mod conformance; // reference vectors end to end over TLS
mod docs; // citations point into docs/, README flags and quoted errors match the binary
mod edge; // the binary's edge: health flood, signals, exit codes, hook URL policy
mod exec; // issue 11 item 4: `exec` replaces the agent with the command (same PID), env vars
mod features; // issue 11: optional objects, JSON pointers, TLS layout (once and sidecar)
mod hostile; // hostile servers: absurd waits, huge/endless/slow bodies, resets, nxdomain
mod migrate; // `migrate`: CSI-driver manifests converted, on the reference repositories' examples
mod oneshot; // `--once` end to end: identities, conversions over the wire, no partial sets
mod scale; // request budget: list-based change detection, sweep, 403 fallback, pinned across reloads
mod sidecar; // refresh, rotation, notifiers, reload, signals, health/metrics/status
mod stress; // concurrent readers never see a torn or mixed set
mod templates; // issue 11 item 3: MiniJinja templates in the same set (once, sidecar, check)
mod validation; // issue 11 items 6 and 8: certificate validation, SSL_CERT_DIR, tenant challenge, --notify-on-start
