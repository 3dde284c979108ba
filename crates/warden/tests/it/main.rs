//! Integration tests of the `warden` binary: one test binary, driving the
//! real MCP servers, the official Python SDK client and the MCP inspector
//! through `warden proxy`, plus scripted upstreams for fault injection.
//!
//! The peers are installed by `scripts/install-peers` (which `scripts/test`
//! runs) into `.peers/` or `$WARDEN_PEERS`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    reason = "test support: a failed step should fail the test loudly"
)]

mod cli;
mod cli_gateway;
mod conformance;
mod failure_cases;
mod gateway;
mod gateway_support;
mod real_peers;
mod support;
