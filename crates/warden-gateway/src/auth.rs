//! Agent authentication: who is calling, from the request's own credential.

/// How agents authenticate.
#[derive(Debug, Clone, Default)]
pub struct AuthConfig {}
