//! Warden's MCP side: JSON-RPC framing, the relay that authorizes and
//! records every message between a client and an upstream server, and the
//! stdio proxy that runs it.
//!
//! See `README.md` beside this crate for the protocol choices (ids, batches,
//! list filtering, the tool catalog, error codes).

pub mod jsonrpc;
pub mod pins;
pub mod proxy;
pub mod record;
pub mod relay;

pub use pins::Pins;
pub use proxy::{run_stdio_proxy, ProxyError, ProxyExit, ProxyOptions};
pub use relay::{Out, Relay, RelayConfig, RelayStats, DECISION_META};
