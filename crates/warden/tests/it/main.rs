//! Integration tests of the `warden` binary: one test binary, driving the
//! real MCP servers, the official Python SDK client and the MCP inspector
//! through `warden proxy`, plus scripted upstreams for fault injection.
//!
//! The peers are installed by `scripts/install-peers` (which `scripts/test`
//! runs) into `.peers/` or `$WARDEN_PEERS`.

mod cli;
mod failure_cases;
mod real_peers;
mod support;
