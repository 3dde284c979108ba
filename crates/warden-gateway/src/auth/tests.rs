//! Credential checks: every way a token can be wrong is a refusal.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, HeaderValue};
use base64::Engine as _;
use jsonwebtoken::{EncodingKey, Header};
use ring::signature::KeyPair as _;
use serde_json::{json, Value};
use warden_policy::Principal;
use warden_store::{KeyStore, SqliteStore};

use super::*;

const ISSUER: &str = "https://issuer.test";
const AUDIENCE: &str = "http://127.0.0.1:8080/mcp/fs";

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// An Ed25519 signing key made for this test, with its JWK.
struct TestKey {
    encoding: EncodingKey,
    jwk: Value,
}

fn test_key(kid: &str) -> TestKey {
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = ring::signature::Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
    let pair = ring::signature::Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
    TestKey {
        encoding: EncodingKey::from_ed_der(pkcs8.as_ref()),
        jwk: json!({
            "kty": "OKP", "crv": "Ed25519", "kid": kid, "alg": "EdDSA", "use": "sig",
            "x": b64(pair.public_key().as_ref()),
        }),
    }
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn claims() -> Value {
    json!({"iss": ISSUER, "aud": AUDIENCE, "sub": "alice", "client_id": "claude",
           "exp": now() + 600, "iat": now()})
}

fn sign(key: &TestKey, kid: &str, claims: &Value) -> String {
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(&header, claims, &key.encoding).unwrap()
}

struct Fixture {
    _dir: tempfile::TempDir,
    auth: Authenticator,
    key: TestKey,
    store: Arc<Mutex<SqliteStore>>,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let key = test_key("k1");
    let jwks = dir.path().join("jwks.json");
    std::fs::write(&jwks, json!({"keys": [key.jwk]}).to_string()).unwrap();
    let config = AuthConfig {
        api_keys: true,
        jwt: Some(JwtConfig {
            issuer: ISSUER.to_owned(),
            audience: AUDIENCE.to_owned(),
            jwks: JwksSource::File(jwks),
            algorithms: vec![Algorithm::EdDSA, Algorithm::ES256, Algorithm::RS256],
            leeway: Duration::from_secs(30),
            authorization_servers: vec![ISSUER.to_owned()],
        }),
    };
    let store = Arc::new(Mutex::new(
        SqliteStore::open(&dir.path().join("store.db")).unwrap(),
    ));
    let keys: Arc<Mutex<dyn KeyStore>> = store.clone();
    let auth = Authenticator::new(config, Some(keys)).await.unwrap();
    Fixture {
        _dir: dir,
        auth,
        key,
        store,
    }
}

fn bearer(token: &str) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(
        header::AUTHORIZATION,
        HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
    );
    headers
}

async fn check(f: &Fixture, token: &str) -> Result<Identity, AuthError> {
    f.auth.authenticate(&bearer(token)).await
}

#[tokio::test]
async fn a_valid_token_names_the_client_as_agent_and_the_subject_as_human() {
    let f = fixture().await;
    let identity = check(&f, &sign(&f.key, "k1", &claims())).await.unwrap();
    assert_eq!(identity.principal, Principal::Agent("claude".to_owned()));
    assert_eq!(identity.acting_for.as_deref(), Some("alice"));
    assert_eq!(identity.method, "jwt");
}

#[tokio::test]
async fn the_act_claim_names_the_agent() {
    let f = fixture().await;
    let mut c = claims();
    c["act"] = json!({"sub": "summariser"});
    let identity = check(&f, &sign(&f.key, "k1", &c)).await.unwrap();
    assert_eq!(
        identity.principal,
        Principal::Agent("summariser".to_owned())
    );
    assert_eq!(identity.acting_for.as_deref(), Some("alice"));
}

#[tokio::test]
async fn a_client_credentials_token_acts_for_nobody() {
    let f = fixture().await;
    let mut c = claims();
    c["sub"] = json!("claude");
    let identity = check(&f, &sign(&f.key, "k1", &c)).await.unwrap();
    assert_eq!(identity.principal, Principal::Agent("claude".to_owned()));
    assert_eq!(identity.acting_for, None);
}

#[tokio::test]
async fn an_expired_token_is_refused() {
    let f = fixture().await;
    let mut c = claims();
    c["exp"] = json!(now() - 120);
    assert_eq!(
        check(&f, &sign(&f.key, "k1", &c)).await,
        Err(AuthError::Expired)
    );
}

#[tokio::test]
async fn expiry_within_the_leeway_is_tolerated() {
    let f = fixture().await;
    let mut c = claims();
    c["exp"] = json!(now() - 5);
    assert!(check(&f, &sign(&f.key, "k1", &c)).await.is_ok());
}

#[tokio::test]
async fn a_token_not_valid_yet_is_refused() {
    let f = fixture().await;
    let mut c = claims();
    c["nbf"] = json!(now() + 600);
    assert_eq!(
        check(&f, &sign(&f.key, "k1", &c)).await,
        Err(AuthError::NotYetValid)
    );
}

#[tokio::test]
async fn a_token_for_another_audience_is_refused() {
    let f = fixture().await;
    let mut c = claims();
    c["aud"] = json!("https://other-resource.test/mcp");
    assert_eq!(
        check(&f, &sign(&f.key, "k1", &c)).await,
        Err(AuthError::WrongAudience)
    );
}

#[tokio::test]
async fn a_token_without_audience_is_refused() {
    let f = fixture().await;
    let mut c = claims();
    c.as_object_mut().unwrap().remove("aud");
    assert_eq!(
        check(&f, &sign(&f.key, "k1", &c)).await,
        Err(AuthError::MissingClaim("aud"))
    );
}

#[tokio::test]
async fn a_token_from_another_issuer_is_refused() {
    let f = fixture().await;
    let mut c = claims();
    c["iss"] = json!("https://evil.test");
    assert_eq!(
        check(&f, &sign(&f.key, "k1", &c)).await,
        Err(AuthError::WrongIssuer)
    );
}

#[tokio::test]
async fn an_unsigned_alg_none_token_is_refused() {
    let f = fixture().await;
    let header = b64(br#"{"alg":"none","typ":"JWT"}"#);
    let body = b64(claims().to_string().as_bytes());
    let error = check(&f, &format!("{header}.{body}.")).await.unwrap_err();
    assert!(matches!(error, AuthError::BadToken(_)), "{error:?}");
}

#[tokio::test]
async fn an_hmac_token_is_refused() {
    let f = fixture().await;
    // HS256 with the public key as the secret: the classic key confusion.
    let secret = f.key.jwk["x"].as_str().unwrap().as_bytes().to_vec();
    let token = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims(),
        &EncodingKey::from_secret(&secret),
    )
    .unwrap();
    let error = check(&f, &token).await.unwrap_err();
    assert!(matches!(error, AuthError::BadToken(_)), "{error:?}");
}

#[tokio::test]
async fn a_token_signed_by_an_unknown_key_is_refused() {
    let f = fixture().await;
    let stranger = test_key("k2");
    let token = sign(&stranger, "k2", &claims());
    assert_eq!(check(&f, &token).await, Err(AuthError::UnknownSigningKey));
    // The same stranger claiming the known kid fails on the signature.
    let token = sign(&stranger, "k1", &claims());
    assert_eq!(check(&f, &token).await, Err(AuthError::BadSignature));
}

#[tokio::test]
async fn a_tampered_token_is_refused() {
    let f = fixture().await;
    let token = sign(&f.key, "k1", &claims());
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    let mut forged = claims();
    forged["sub"] = json!("root");
    parts[1] = b64(forged.to_string().as_bytes());
    assert_eq!(
        check(&f, &parts.join(".")).await,
        Err(AuthError::BadSignature)
    );
}

#[tokio::test]
async fn malformed_credentials_are_refused() {
    let f = fixture().await;
    assert_eq!(
        f.auth.authenticate(&HeaderMap::new()).await,
        Err(AuthError::Missing)
    );
    for value in [
        "Basic YWxpY2U6cHc=",
        "Bearer",
        "Bearer ",
        "Bearer a b",
        "bearer",
    ] {
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, HeaderValue::from_static(value));
        assert_eq!(
            f.auth.authenticate(&headers).await,
            Err(AuthError::Malformed),
            "{value}"
        );
    }
    let huge = "x".repeat(MAX_CREDENTIAL_BYTES + 1);
    assert_eq!(check(&f, &huge).await, Err(AuthError::Malformed));
    assert!(matches!(
        check(&f, "not.a.jwt").await,
        Err(AuthError::BadToken(_))
    ));
    let mut two = bearer("a");
    two.append(header::AUTHORIZATION, HeaderValue::from_static("Bearer b"));
    assert_eq!(f.auth.authenticate(&two).await, Err(AuthError::Malformed));
}

#[tokio::test]
async fn identity_headers_are_ignored() {
    let f = fixture().await;
    let mut headers = bearer(&sign(&f.key, "k1", &claims()));
    headers.insert("x-user", HeaderValue::from_static("root"));
    headers.insert("x-forwarded-user", HeaderValue::from_static("root"));
    let identity = f.auth.authenticate(&headers).await.unwrap();
    assert_eq!(identity.acting_for.as_deref(), Some("alice"));
}

#[tokio::test]
async fn api_keys_authenticate_until_revoked() {
    let f = fixture().await;
    let agent = Principal::Agent("ci-bot".to_owned());
    let (key, stored) = mint_api_key(&agent, Some("bob".to_owned()), None, "now".to_owned());
    assert!(key.starts_with(API_KEY_PREFIX));
    assert_ne!(stored.key_hash, key, "the store keeps a hash, not the key");
    f.store.lock().unwrap().add_key(&stored).unwrap();

    let identity = check(&f, &key).await.unwrap();
    assert_eq!(identity.principal, agent);
    assert_eq!(identity.acting_for.as_deref(), Some("bob"));

    assert_eq!(
        check(&f, &format!("{key}x")).await,
        Err(AuthError::UnknownKey)
    );
    f.store
        .lock()
        .unwrap()
        .revoke_key(&stored.key_id, "later")
        .unwrap();
    assert_eq!(check(&f, &key).await, Err(AuthError::RevokedKey));
}

#[tokio::test]
async fn challenges_point_at_the_metadata() {
    let f = fixture().await;
    let url = "http://127.0.0.1:8080/.well-known/oauth-protected-resource/mcp/fs";
    assert_eq!(
        f.auth.challenge(url, &AuthError::Missing),
        format!("Bearer resource_metadata=\"{url}\"")
    );
    assert_eq!(
        f.auth.challenge(url, &AuthError::Expired),
        format!("Bearer resource_metadata=\"{url}\", error=\"invalid_token\"")
    );
}
