//! Upstream transports: how Warden talks to one upstream MCP server.

use std::path::PathBuf;

/// How to reach one upstream server, with the credentials Warden holds for
/// it (never the agent's).
#[derive(Debug, Clone)]
pub enum UpstreamSpec {
    /// A child process speaking MCP over stdio.
    Stdio {
        /// The program.
        command: String,
        /// Its arguments.
        args: Vec<String>,
        /// Extra environment (brokered credentials), resolved already.
        env: Vec<(String, String)>,
        /// Working directory, if not Warden's own.
        cwd: Option<PathBuf>,
    },
    /// A remote server speaking Streamable HTTP.
    Http {
        /// Its MCP endpoint.
        url: url::Url,
        /// Headers added to every request (brokered credentials), resolved.
        headers: Vec<(String, String)>,
    },
    /// A remote server speaking the legacy HTTP+SSE transport (2024-11-05).
    Sse {
        /// Its SSE endpoint (`…/sse`).
        url: url::Url,
        /// Headers added to every request (brokered credentials), resolved.
        headers: Vec<(String, String)>,
    },
}
