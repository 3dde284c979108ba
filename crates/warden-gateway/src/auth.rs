//! Agent authentication: who is calling, from the request's own credential.
//!
//! Two credentials are accepted, both as `Authorization: Bearer …`: Warden
//! API keys (minted by `warden keys create`, kept only as hashes) and JWT
//! access tokens from an OAuth authorization server, checked against its
//! JWKS. Nothing else in a request says who the caller is: identity headers
//! (`X-User`, `X-Forwarded-User`, …) are never read, and the credential is
//! never passed on to an upstream.
//!
//! This module owns checking credentials and the RFC 9728 metadata that
//! tells clients where to get one; what the caller may do is policy's.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::{header, HeaderMap};
use jsonwebtoken::jwk::{Jwk, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};
use warden_policy::Principal;
use warden_store::{ApiKey, KeyStore, StoreError};

/// The prefix of every Warden API key, so a leaked one is recognisable.
pub const API_KEY_PREFIX: &str = "wdn_";
/// Longest `Authorization` header read, in bytes.
const MAX_CREDENTIAL_BYTES: usize = 16 * 1024;
/// A remote JWKS is fetched again after this long.
const JWKS_TTL: Duration = Duration::from_secs(300);
/// An unknown `kid` triggers a refetch at most this often.
const JWKS_REFETCH_GAP: Duration = Duration::from_secs(30);

/// How agents authenticate.
#[derive(Debug, Clone, Default)]
pub struct AuthConfig {
    /// Whether Warden API keys are accepted.
    pub api_keys: bool,
    /// JWT access tokens, when accepted.
    pub jwt: Option<JwtConfig>,
}

/// How JWT access tokens are checked.
#[derive(Debug, Clone)]
pub struct JwtConfig {
    /// The `iss` every token must carry.
    pub issuer: String,
    /// The `aud` every token must carry (this gateway's resource id).
    pub audience: String,
    /// Where the issuer's signing keys are.
    pub jwks: JwksSource,
    /// Signature algorithms accepted; never `none`, never HMAC.
    pub algorithms: Vec<Algorithm>,
    /// Clock skew tolerated on `exp` and `nbf`.
    pub leeway: Duration,
    /// Authorization servers named in the protected-resource metadata.
    pub authorization_servers: Vec<String>,
}

/// Where a JWKS comes from.
#[derive(Debug, Clone)]
pub enum JwksSource {
    /// A file, read at start-up.
    File(PathBuf),
    /// A URL, fetched at start-up and refreshed.
    Url(url::Url),
}

/// Who a request comes from, as its credential proves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The caller.
    pub principal: Principal,
    /// The human the caller acts for, if any.
    pub acting_for: Option<String>,
    /// How it authenticated: `api_key` or `jwt`.
    pub method: &'static str,
}

/// Why a credential was refused. Every variant is a 401.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization` header.
    #[error("no credential was presented")]
    Missing,
    /// Not `Bearer <token>`, or unreadable.
    #[error("the `Authorization` header is not a bearer token")]
    Malformed,
    /// An API key that is not known, or API keys are off.
    #[error("the API key is not valid")]
    UnknownKey,
    /// An API key that was revoked.
    #[error("the API key was revoked")]
    RevokedKey,
    /// A token that is not a JWT Warden accepts (bad header, `alg: none`,
    /// an algorithm not allowed, or JWTs are off).
    #[error("the token is not an accepted JWT: {0}")]
    BadToken(&'static str),
    /// No signing key matches the token's `kid`.
    #[error("the token was signed by an unknown key")]
    UnknownSigningKey,
    /// The signature does not verify.
    #[error("the token's signature is not valid")]
    BadSignature,
    /// `exp` passed (beyond the leeway).
    #[error("the token has expired")]
    Expired,
    /// `nbf` is still in the future.
    #[error("the token is not valid yet")]
    NotYetValid,
    /// `iss` is not the configured issuer.
    #[error("the token was issued by another issuer")]
    WrongIssuer,
    /// `aud` does not name this gateway.
    #[error("the token is meant for another audience")]
    WrongAudience,
    /// Required claims are missing or of the wrong type.
    #[error("the token lacks a required claim: {0}")]
    MissingClaim(&'static str),
    /// The key store could not be read; refused, never waved through.
    #[error("credentials cannot be checked right now")]
    Unavailable,
}

impl AuthError {
    /// A stable label for logs and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            AuthError::Missing => "missing",
            AuthError::Malformed => "malformed",
            AuthError::UnknownKey => "unknown_key",
            AuthError::RevokedKey => "revoked_key",
            AuthError::BadToken(_) => "bad_token",
            AuthError::UnknownSigningKey => "unknown_signing_key",
            AuthError::BadSignature => "bad_signature",
            AuthError::Expired => "expired",
            AuthError::NotYetValid => "not_yet_valid",
            AuthError::WrongIssuer => "wrong_issuer",
            AuthError::WrongAudience => "wrong_audience",
            AuthError::MissingClaim(_) => "missing_claim",
            AuthError::Unavailable => "unavailable",
        }
    }

    /// The RFC 6750 `error` code, when a credential was presented.
    fn oauth_error(&self) -> Option<&'static str> {
        match self {
            AuthError::Missing => None,
            AuthError::Malformed => Some("invalid_request"),
            _ => Some("invalid_token"),
        }
    }
}

/// Why authentication could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum AuthSetupError {
    /// The JWKS file could not be read.
    #[error("cannot read the JWKS file `{path}`")]
    ReadJwks {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The JWKS could not be fetched.
    #[error("cannot fetch the JWKS from `{url}`: {problem}")]
    FetchJwks {
        /// The URL.
        url: String,
        /// What went wrong.
        problem: String,
    },
    /// The JWKS is not a JSON Web Key Set.
    #[error("the JWKS from `{origin}` is not a valid key set: {problem}")]
    BadJwks {
        /// The file or URL.
        origin: String,
        /// What is wrong.
        problem: String,
    },
}

/// Checks the credential of every request.
pub struct Authenticator {
    config: AuthConfig,
    keys: Option<Arc<Mutex<dyn KeyStore>>>,
    jwks: Option<JwksCache>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("api_keys", &self.config.api_keys)
            .field("jwt", &self.config.jwt.is_some())
            .finish_non_exhaustive()
    }
}

impl Authenticator {
    /// An authenticator for `config`, looking API keys up in `keys`. A JWKS
    /// given by file or URL is loaded now, so a broken one stops start-up.
    pub async fn new(
        config: AuthConfig,
        keys: Option<Arc<Mutex<dyn KeyStore>>>,
    ) -> Result<Self, AuthSetupError> {
        let jwks = match &config.jwt {
            Some(jwt) => Some(JwksCache::load(jwt.jwks.clone()).await?),
            None => None,
        };
        Ok(Authenticator { config, keys, jwks })
    }

    /// Who sent a request with these headers.
    pub async fn authenticate(&self, headers: &HeaderMap) -> Result<Identity, AuthError> {
        let token = bearer_token(headers)?;
        if token.starts_with(API_KEY_PREFIX) {
            return self.api_key(token);
        }
        match (&self.config.jwt, &self.jwks) {
            (Some(config), Some(jwks)) => verify_jwt(token, config, jwks).await,
            _ if self.config.api_keys => Err(AuthError::UnknownKey),
            _ => Err(AuthError::BadToken("JWTs are not accepted here")),
        }
    }

    fn api_key(&self, token: &str) -> Result<Identity, AuthError> {
        let (true, Some(keys)) = (self.config.api_keys, &self.keys) else {
            return Err(AuthError::UnknownKey);
        };
        let hash = hash_api_key(token);
        let found = match keys.lock() {
            Ok(store) => store.find_key(&hash),
            Err(_) => Err(StoreError::Poisoned),
        };
        let key = match found {
            Ok(Some(key)) => key,
            Ok(None) => return Err(AuthError::UnknownKey),
            Err(error) => {
                tracing::warn!(error = %error, "cannot read API keys; refusing the request");
                return Err(AuthError::Unavailable);
            }
        };
        if key.revoked.is_some() {
            return Err(AuthError::RevokedKey);
        }
        let principal =
            principal_of(&key.principal_type, key.principal_id).ok_or(AuthError::UnknownKey)?;
        Ok(Identity {
            principal,
            acting_for: key.acting_for,
            method: "api_key",
        })
    }

    /// The `WWW-Authenticate` value of a 401 for `error`.
    pub fn challenge(&self, metadata_url: &str, error: &AuthError) -> String {
        let mut value = format!("Bearer resource_metadata=\"{metadata_url}\"");
        if let Some(code) = error.oauth_error() {
            value.push_str(&format!(", error=\"{code}\""));
        }
        value
    }
}

/// The RFC 9728 protected-resource metadata of the endpoint `resource`.
pub fn protected_resource_metadata(resource: &str, config: &AuthConfig) -> Value {
    let servers = config
        .jwt
        .as_ref()
        .map(|j| j.authorization_servers.clone())
        .unwrap_or_default();
    let mut document = json!({
        "resource": resource,
        "bearer_methods_supported": ["header"],
        "resource_name": "Warden MCP gateway",
    });
    if !servers.is_empty() {
        document["authorization_servers"] = json!(servers);
    }
    document
}

// === API keys ===

/// A new API key for `principal`: the key itself (shown once) and what the
/// store keeps of it.
pub fn mint_api_key(
    principal: &Principal,
    acting_for: Option<String>,
    label: Option<String>,
    created: String,
) -> (String, ApiKey) {
    use rand::RngCore as _;
    let mut id = [0u8; 6];
    let mut secret = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut id);
    rand::rngs::OsRng.fill_bytes(&mut secret);
    let key_id = hex::encode(id);
    let key = format!("{API_KEY_PREFIX}{key_id}_{}", hex::encode(secret));
    let stored = ApiKey {
        key_id,
        key_hash: hash_api_key(&key),
        principal_type: principal.type_name().to_owned(),
        principal_id: principal.id().to_owned(),
        acting_for,
        label,
        created,
        revoked: None,
    };
    (key, stored)
}

/// What the store keeps of a key: its SHA-256, hex. The key carries 256
/// random bits, so a fast hash is enough; there is nothing to guess.
pub fn hash_api_key(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

fn principal_of(kind: &str, id: String) -> Option<Principal> {
    match kind {
        "Agent" => Some(Principal::Agent(id)),
        "ServiceAccount" => Some(Principal::ServiceAccount(id)),
        "Human" => Some(Principal::Human(id)),
        _ => None,
    }
}

fn bearer_token(headers: &HeaderMap) -> Result<&str, AuthError> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let value = values.next().ok_or(AuthError::Missing)?;
    // INVARIANT: two credentials are never merged or chosen between.
    if values.next().is_some() || value.len() > MAX_CREDENTIAL_BYTES {
        return Err(AuthError::Malformed);
    }
    let text = value.to_str().map_err(|_| AuthError::Malformed)?;
    let (scheme, token) = text.split_once(' ').ok_or(AuthError::Malformed)?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() || token.contains(' ') {
        return Err(AuthError::Malformed);
    }
    Ok(token)
}

// === JWT ===

/// The claims Warden reads; the rest are ignored.
#[derive(Debug, serde::Deserialize)]
struct Claims {
    sub: Option<String>,
    client_id: Option<String>,
    azp: Option<String>,
    act: Option<Actor>,
}

#[derive(Debug, serde::Deserialize)]
struct Actor {
    sub: Option<String>,
}

async fn verify_jwt(
    token: &str,
    config: &JwtConfig,
    jwks: &JwksCache,
) -> Result<Identity, AuthError> {
    let header = jsonwebtoken::decode_header(token).map_err(|e| match e.kind() {
        // `none` and unknown algorithms do not even parse as a header.
        jsonwebtoken::errors::ErrorKind::Json(_) => {
            AuthError::BadToken("the algorithm is not one Warden accepts")
        }
        _ => AuthError::BadToken("the token is not a JWT"),
    })?;
    if !config.algorithms.contains(&header.alg) {
        return Err(AuthError::BadToken("the algorithm is not allowed"));
    }
    let jwk = jwks.key_for(header.kid.as_deref()).await?;
    // Algorithms are pinned per key: a key that names its algorithm signs
    // only with that one.
    let pinned = jwk.common.key_algorithm.map(|a| format!("{a:?}"));
    if pinned.is_some_and(|a| a != format!("{:?}", header.alg)) {
        return Err(AuthError::BadToken("the algorithm does not match the key"));
    }
    let key = DecodingKey::from_jwk(&jwk).map_err(|_| AuthError::UnknownSigningKey)?;
    let mut validation = Validation::new(header.alg);
    validation.set_issuer(&[&config.issuer]);
    validation.set_audience(&[&config.audience]);
    validation.set_required_spec_claims(&["exp", "iss", "aud"]);
    validation.validate_nbf = true;
    validation.leeway = config.leeway.as_secs();
    let data = jsonwebtoken::decode::<Claims>(token, &key, &validation).map_err(jwt_error)?;
    identity_from_claims(data.claims)
}

fn jwt_error(error: jsonwebtoken::errors::Error) -> AuthError {
    use jsonwebtoken::errors::ErrorKind;
    match error.kind() {
        ErrorKind::InvalidSignature => AuthError::BadSignature,
        ErrorKind::ExpiredSignature => AuthError::Expired,
        ErrorKind::ImmatureSignature => AuthError::NotYetValid,
        ErrorKind::InvalidIssuer => AuthError::WrongIssuer,
        ErrorKind::InvalidAudience => AuthError::WrongAudience,
        ErrorKind::MissingRequiredClaim(claim) => AuthError::MissingClaim(match claim.as_str() {
            "exp" => "exp",
            "iss" => "iss",
            "aud" => "aud",
            _ => "a registered claim",
        }),
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
            AuthError::BadToken("the algorithm does not match the key")
        }
        _ => AuthError::BadToken("the token could not be read"),
    }
}

/// The agent is the OAuth client (`act.sub` when the token says who acts,
/// else `client_id` or `azp`); the human is the subject it acts for. A
/// token whose subject is the client itself acts for nobody.
fn identity_from_claims(claims: Claims) -> Result<Identity, AuthError> {
    let subject = claims.sub.filter(|s| !s.is_empty());
    let actor = claims.act.and_then(|a| a.sub).filter(|s| !s.is_empty());
    let client = claims.client_id.or(claims.azp).filter(|s| !s.is_empty());
    let (agent, human) = match (actor, client, subject) {
        (Some(actor), _, subject) => (actor, subject),
        (None, Some(client), Some(subject)) if subject != client => (client, Some(subject)),
        (None, Some(client), _) => (client, None),
        (None, None, Some(subject)) => (subject, None),
        (None, None, None) => return Err(AuthError::MissingClaim("sub")),
    };
    Ok(Identity {
        principal: Principal::Agent(agent),
        acting_for: human,
        method: "jwt",
    })
}

/// The issuer's signing keys, by `kid`.
struct JwksCache {
    source: JwksSource,
    state: Mutex<JwksState>,
    client: reqwest::Client,
}

struct JwksState {
    keys: HashMap<String, Jwk>,
    /// The only key, when the set has one and a token names no `kid`.
    only: Option<Jwk>,
    fetched: Instant,
    last_attempt: Instant,
}

impl JwksCache {
    async fn load(source: JwksSource) -> Result<Self, AuthSetupError> {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| AuthSetupError::FetchJwks {
                url: String::new(),
                problem: e.to_string(),
            })?;
        let set = read_jwks(&source, &client).await?;
        let now = Instant::now();
        let state = JwksState::from_set(set, now);
        Ok(JwksCache {
            source,
            state: Mutex::new(state),
            client,
        })
    }

    async fn key_for(&self, kid: Option<&str>) -> Result<Jwk, AuthError> {
        if let Some(key) = self.cached(kid, false) {
            return Ok(key);
        }
        if self.should_refetch() {
            match read_jwks(&self.source, &self.client).await {
                Ok(set) => {
                    if let Ok(mut state) = self.state.lock() {
                        *state = JwksState::from_set(set, Instant::now());
                    }
                }
                Err(error) => {
                    tracing::warn!(error = %error, "cannot refresh the JWKS; keeping the keys held");
                }
            }
        }
        self.cached(kid, true).ok_or(AuthError::UnknownSigningKey)
    }

    fn cached(&self, kid: Option<&str>, stale_ok: bool) -> Option<Jwk> {
        let state = self.state.lock().ok()?;
        let fresh =
            matches!(self.source, JwksSource::File(_)) || state.fetched.elapsed() < JWKS_TTL;
        if !fresh && !stale_ok {
            return None;
        }
        match kid {
            Some(kid) => state.keys.get(kid).cloned(),
            None => state.only.clone(),
        }
    }

    /// A remote set is fetched again when stale or when a token names an
    /// unknown key, but not more often than every 30 s.
    fn should_refetch(&self) -> bool {
        if matches!(self.source, JwksSource::File(_)) {
            return false;
        }
        let Ok(mut state) = self.state.lock() else {
            return false;
        };
        if state.last_attempt.elapsed() < JWKS_REFETCH_GAP {
            return false;
        }
        state.last_attempt = Instant::now();
        true
    }
}

impl JwksState {
    fn from_set(set: JwkSet, now: Instant) -> Self {
        let only = match set.keys.as_slice() {
            [one] => Some(one.clone()),
            _ => None,
        };
        let keys = set
            .keys
            .into_iter()
            .filter_map(|k| Some((k.common.key_id.clone()?, k)))
            .collect();
        JwksState {
            keys,
            only,
            fetched: now,
            last_attempt: now,
        }
    }
}

async fn read_jwks(
    source: &JwksSource,
    client: &reqwest::Client,
) -> Result<JwkSet, AuthSetupError> {
    let (origin, text) = match source {
        JwksSource::File(path) => {
            let text =
                std::fs::read_to_string(path).map_err(|source| AuthSetupError::ReadJwks {
                    path: path.display().to_string(),
                    source,
                })?;
            (path.display().to_string(), text)
        }
        JwksSource::Url(url) => {
            let fetch_error = |e: reqwest::Error| AuthSetupError::FetchJwks {
                url: url.to_string(),
                problem: e.without_url().to_string(),
            };
            let response = client
                .get(url.clone())
                .send()
                .await
                .and_then(reqwest::Response::error_for_status)
                .map_err(fetch_error)?;
            (url.to_string(), response.text().await.map_err(fetch_error)?)
        }
    };
    serde_json::from_str(&text).map_err(|e| AuthSetupError::BadJwks {
        origin,
        problem: e.to_string(),
    })
}

#[cfg(test)]
mod tests;
