//! Warden's central gateway (`warden serve`): each configured upstream MCP
//! server, a stdio child or a remote Streamable HTTP server, exposed at its
//! own Streamable HTTP endpoint for many authenticated agents, and
//! optionally one aggregated endpoint over several of them.
//!
//! This crate owns HTTP, sessions, agent authentication and upstream
//! transports. Every decision about a message is the relay's
//! (`warden_mcp::Relay`), the same one the stdio proxy runs: one relay per
//! downstream session, over one upstream session of its own, so what a server
//! sends reaches only the client it belongs to.

pub mod aggregate;
pub mod app;
pub mod auth;
pub mod config;
pub mod error;
pub mod log;
pub mod metrics;
pub mod restarts;
pub mod session;
pub mod stateless;
pub mod upstream;

pub use app::{app, serve, Gateway};
