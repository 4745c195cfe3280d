//! JSON Web Tokens: cellbridge's own (HS256, signed with a secret from Secrets Manager) and, for
//! deployments with their own identity provider, OIDC ID tokens (RS256, keys from its JWKS).
//!
//! The verifier accepts exactly one algorithm per mode and reads it from configuration, never
//! from the token: `alg: none` and HS256-signed-with-the-public-key tokens fail before any
//! signature check.

use crate::principal::Identity;
use crate::role::Roles;
use cellbridge_core::tenant::TenantId;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::jwk::{JwkSet, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use secrecy::{ExposeSecret, SecretSlice};
use serde_json::{json, Map, Value};
use time::{Duration, OffsetDateTime};

/// Clock difference tolerated between the issuer and us.
pub const LEEWAY: Duration = Duration::seconds(30);
/// Session length of the legacy IoT portal's tokens, which its users are used to.
pub const DEFAULT_LIFETIME: Duration = Duration::hours(72);
/// HS256 keys shorter than the hash output are guessable offline from any one token.
pub const MIN_SECRET_BYTES: usize = 32;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("no bearer token")]
    Missing,
    #[error("the token is not a well-formed JWT")]
    Malformed,
    #[error("the token is signed with {0}, which this API does not accept")]
    Algorithm(String),
    #[error("the token names a signing key this API does not know")]
    UnknownKey,
    #[error("the token's signature does not verify")]
    Signature,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet")]
    NotYetValid,
    #[error("the token is from another issuer")]
    Issuer,
    #[error("the token is for another audience")]
    Audience,
    #[error("the token lacks a valid {0} claim")]
    Claim(String),
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("the signing secret must be at least {MIN_SECRET_BYTES} bytes long")]
    SecretTooShort,
    #[error("the token could not be signed: {0}")]
    Signing(String),
}

/// The HS256 secret: never printed, and wiped from memory when dropped.
#[derive(Debug, Clone)]
pub struct SigningSecret(SecretSlice<u8>);

impl SigningSecret {
    pub fn new(bytes: impl Into<Vec<u8>>) -> Result<Self, KeyError> {
        let bytes = bytes.into();
        if bytes.len() < MIN_SECRET_BYTES {
            return Err(KeyError::SecretTooShort);
        }
        Ok(Self(SecretSlice::from(bytes)))
    }
}

/// Who issues tokens and for whom: the `iss` and `aud` claims, checked on every request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenAudience {
    pub issuer: String,
    pub audience: String,
}

impl Default for TokenAudience {
    fn default() -> Self {
        Self {
            issuer: "cellbridge".to_owned(),
            audience: "cellbridge-api".to_owned(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedToken {
    pub token: String,
    pub expires_at: OffsetDateTime,
}

pub struct TokenSigner {
    key: EncodingKey,
    audience: TokenAudience,
    lifetime: Duration,
}

impl TokenSigner {
    pub fn new(secret: &SigningSecret, audience: TokenAudience, lifetime: Duration) -> Self {
        Self {
            key: EncodingKey::from_secret(secret.0.expose_secret()),
            audience,
            lifetime,
        }
    }

    pub fn issue(&self, identity: &Identity, now: OffsetDateTime) -> Result<IssuedToken, KeyError> {
        let expires_at = now + self.lifetime;
        let claims = json!({
            "iss": self.audience.issuer,
            "aud": self.audience.audience,
            "sub": identity.subject,
            "tenant": identity.tenant.as_str(),
            "roles": identity.roles.iter().map(|r| r.as_str()).collect::<Vec<_>>(),
            "iat": now.unix_timestamp(),
            "exp": expires_at.unix_timestamp(),
            "jti": uuid::Uuid::new_v4().to_string(),
        });
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.key)
            .map_err(|e| KeyError::Signing(e.to_string()))?;
        Ok(IssuedToken { token, expires_at })
    }
}

/// Where the tenant and the roles are in an identity provider's tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimNames {
    pub tenant: String,
    pub roles: String,
}

impl ClaimNames {
    /// Cognito: a custom user attribute for the tenant, user pool groups for roles.
    pub fn cognito() -> Self {
        Self {
            tenant: "custom:tenant".to_owned(),
            roles: "cognito:groups".to_owned(),
        }
    }

    fn cellbridge() -> Self {
        Self {
            tenant: "tenant".to_owned(),
            roles: "roles".to_owned(),
        }
    }
}

enum Keys {
    Shared(DecodingKey),
    Published(JwkSet),
}

pub struct TokenVerifier {
    algorithm: Algorithm,
    keys: Keys,
    audience: TokenAudience,
    claims: ClaimNames,
}

impl TokenVerifier {
    /// Tokens cellbridge issued itself.
    pub fn shared_secret(secret: &SigningSecret, audience: TokenAudience) -> Self {
        Self {
            algorithm: Algorithm::HS256,
            keys: Keys::Shared(DecodingKey::from_secret(secret.0.expose_secret())),
            audience,
            claims: ClaimNames::cellbridge(),
        }
    }

    /// Tokens of an OIDC provider, verified with the RSA keys it publishes.
    pub fn oidc(jwks: JwkSet, audience: TokenAudience, claims: ClaimNames) -> Self {
        Self {
            algorithm: Algorithm::RS256,
            keys: Keys::Published(jwks),
            audience,
            claims,
        }
    }

    /// True when `token` names a key id the published set lacks: the provider may have rotated
    /// its keys, and the set is worth fetching again.
    pub fn lacks_key_for(&self, token: &str) -> bool {
        let Keys::Published(set) = &self.keys else {
            return false;
        };
        match jsonwebtoken::decode_header(token) {
            Ok(header) => header.kid.is_some_and(|kid| set.find(&kid).is_none()),
            Err(_) => false,
        }
    }

    pub fn replace_keys(&mut self, jwks: JwkSet) {
        if let Keys::Published(set) = &mut self.keys {
            *set = jwks;
        }
    }

    pub fn verify(&self, token: &str, now: OffsetDateTime) -> Result<Identity, TokenError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Malformed)?;
        if header.alg != self.algorithm {
            return Err(TokenError::Algorithm(format!("{:?}", header.alg)));
        }
        let key = self.key_for(header.kid.as_deref())?;

        let mut validation = Validation::new(self.algorithm);
        validation.set_issuer(&[&self.audience.issuer]);
        validation.set_audience(&[&self.audience.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        // Time is checked below against the caller's clock, which tests can set.
        validation.validate_exp = false;
        validation.validate_nbf = false;
        let data =
            jsonwebtoken::decode::<Map<String, Value>>(token, &key, &validation).map_err(|e| {
                match e.kind() {
                    ErrorKind::InvalidSignature => TokenError::Signature,
                    ErrorKind::InvalidIssuer => TokenError::Issuer,
                    ErrorKind::InvalidAudience => TokenError::Audience,
                    ErrorKind::InvalidAlgorithm => {
                        TokenError::Algorithm(format!("{:?}", header.alg))
                    }
                    ErrorKind::MissingRequiredClaim(claim) => TokenError::Claim(claim.clone()),
                    _ => TokenError::Malformed,
                }
            })?;
        let claims = data.claims;
        self.check_time(&claims, now)?;
        self.identity(&claims)
    }

    fn key_for(&self, kid: Option<&str>) -> Result<DecodingKey, TokenError> {
        match &self.keys {
            Keys::Shared(key) => Ok(key.clone()),
            Keys::Published(set) => {
                let jwk = kid
                    .and_then(|kid| set.find(kid))
                    .ok_or(TokenError::UnknownKey)?;
                let usable = jwk
                    .common
                    .key_algorithm
                    .is_none_or(|a| a == KeyAlgorithm::RS256)
                    && jwk
                        .common
                        .public_key_use
                        .as_ref()
                        .is_none_or(|u| *u == PublicKeyUse::Signature);
                if !usable {
                    return Err(TokenError::UnknownKey);
                }
                DecodingKey::from_jwk(jwk).map_err(|_| TokenError::UnknownKey)
            }
        }
    }

    fn check_time(
        &self,
        claims: &Map<String, Value>,
        now: OffsetDateTime,
    ) -> Result<(), TokenError> {
        let seconds = |name: &str| claims.get(name).and_then(Value::as_i64);
        let now = now.unix_timestamp();
        let leeway = LEEWAY.whole_seconds();
        let exp = seconds("exp").ok_or_else(|| TokenError::Claim("exp".to_owned()))?;
        if now > exp + leeway {
            return Err(TokenError::Expired);
        }
        if seconds("nbf").is_some_and(|nbf| now + leeway < nbf) {
            return Err(TokenError::NotYetValid);
        }
        if seconds("iat").is_some_and(|iat| now + leeway < iat) {
            return Err(TokenError::NotYetValid);
        }
        Ok(())
    }

    fn identity(&self, claims: &Map<String, Value>) -> Result<Identity, TokenError> {
        let subject = claims
            .get("sub")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty() && s.len() <= 256)
            .ok_or_else(|| TokenError::Claim("sub".to_owned()))?;
        let tenant = claims
            .get(&self.claims.tenant)
            .and_then(Value::as_str)
            .and_then(TenantId::parse)
            .ok_or_else(|| TokenError::Claim(self.claims.tenant.clone()))?;
        let roles = match claims.get(&self.claims.roles) {
            Some(Value::Array(names)) => Roles::from_names(names.iter().filter_map(Value::as_str)),
            Some(Value::String(names)) => Roles::from_names([names.as_str()]),
            _ => Roles::default(),
        };
        Ok(Identity {
            subject: subject.to_owned(),
            tenant,
            roles,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::role::Role;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use base64::Engine as _;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-11-22 08:00 UTC);

    fn secret(fill: u8) -> SigningSecret {
        SigningSecret::new(vec![fill; 32]).expect("32 bytes")
    }

    fn identity() -> Identity {
        Identity {
            subject: "ops@acme.example".into(),
            tenant: TenantId::parse("acme").expect("tenant"),
            roles: Roles::new([Role::Operator]),
        }
    }

    fn issued(secret: &SigningSecret, audience: TokenAudience) -> String {
        TokenSigner::new(secret, audience, DEFAULT_LIFETIME)
            .issue(&identity(), NOW)
            .expect("signed")
            .token
    }

    fn verifier() -> TokenVerifier {
        TokenVerifier::shared_secret(&secret(7), TokenAudience::default())
    }

    /// A token with any header and claims, signed HS256 with `key`.
    fn forged(header: &Value, claims: &Value, key: &[u8]) -> String {
        use aws_lc_rs::hmac;
        let part = |v: &Value| URL_SAFE_NO_PAD.encode(v.to_string());
        let signing_input = format!("{}.{}", part(header), part(claims));
        let tag = hmac::sign(
            &hmac::Key::new(hmac::HMAC_SHA256, key),
            signing_input.as_bytes(),
        );
        format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
    }

    fn claims() -> Value {
        json!({
            "iss": "cellbridge", "aud": "cellbridge-api", "sub": "ops@acme.example",
            "tenant": "acme", "roles": ["operator"],
            "iat": NOW.unix_timestamp(), "exp": (NOW + Duration::hours(1)).unix_timestamp(),
        })
    }

    #[test]
    fn an_issued_token_verifies_to_its_identity_for_72_hours() {
        let token = issued(&secret(7), TokenAudience::default());
        assert_eq!(verifier().verify(&token, NOW), Ok(identity()));
        let last_valid = NOW + DEFAULT_LIFETIME + LEEWAY;
        assert_eq!(verifier().verify(&token, last_valid), Ok(identity()));
        assert_eq!(
            verifier().verify(&token, last_valid + Duration::seconds(1)),
            Err(TokenError::Expired)
        );
    }

    #[test]
    fn tokens_from_elsewhere_are_refused() {
        let v = verifier();
        let other_key = issued(&secret(8), TokenAudience::default());
        assert_eq!(v.verify(&other_key, NOW), Err(TokenError::Signature));
        let other_issuer = TokenAudience {
            issuer: "someone-else".into(),
            ..TokenAudience::default()
        };
        assert_eq!(
            v.verify(&issued(&secret(7), other_issuer), NOW),
            Err(TokenError::Issuer)
        );
        let other_audience = TokenAudience {
            audience: "another-api".into(),
            ..TokenAudience::default()
        };
        assert_eq!(
            v.verify(&issued(&secret(7), other_audience), NOW),
            Err(TokenError::Audience)
        );
        assert_eq!(v.verify("not.a.jwt", NOW), Err(TokenError::Malformed));
        assert_eq!(v.verify("", NOW), Err(TokenError::Malformed));
    }

    #[test]
    fn a_tampered_payload_fails_the_signature() {
        let token = issued(&secret(7), TokenAudience::default());
        let parts: Vec<&str> = token.split('.').collect();
        let mut payload: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).expect("b64")).expect("json");
        payload["tenant"] = "globex".into();
        payload["roles"] = json!(["admin"]);
        let tampered = format!(
            "{}.{}.{}",
            parts[0],
            URL_SAFE_NO_PAD.encode(payload.to_string()),
            parts[2]
        );
        assert_eq!(
            verifier().verify(&tampered, NOW),
            Err(TokenError::Signature)
        );
    }

    #[test]
    fn alg_none_and_other_algorithms_are_refused_before_the_signature() {
        let part = |v: &Value| URL_SAFE_NO_PAD.encode(v.to_string());
        let unsigned = format!(
            "{}.{}.",
            part(&json!({"alg": "none", "typ": "JWT"})),
            part(&claims())
        );
        assert_eq!(
            verifier().verify(&unsigned, NOW),
            Err(TokenError::Malformed)
        );
        let hs512 = forged(&json!({"alg": "HS512"}), &claims(), &[7; 32]);
        assert!(matches!(
            verifier().verify(&hs512, NOW),
            Err(TokenError::Algorithm(_))
        ));
    }

    #[test]
    fn missing_or_invalid_claims_are_refused() {
        let key = [7u8; 32];
        let header = json!({"alg": "HS256", "typ": "JWT"});
        let without = |name: &str| {
            let mut c = claims();
            c.as_object_mut().expect("object").remove(name);
            forged(&header, &c, &key)
        };
        assert_eq!(
            verifier().verify(&forged(&header, &claims(), &key), NOW),
            Ok(identity())
        );
        assert_eq!(
            verifier().verify(&without("tenant"), NOW),
            Err(TokenError::Claim("tenant".into()))
        );
        assert_eq!(
            verifier().verify(&without("exp"), NOW),
            Err(TokenError::Claim("exp".into()))
        );
        assert_eq!(
            verifier().verify(&without("sub"), NOW),
            Err(TokenError::Claim("sub".into()))
        );
        let mut bad_tenant = claims();
        bad_tenant["tenant"] = "acme#globex".into();
        assert_eq!(
            verifier().verify(&forged(&header, &bad_tenant, &key), NOW),
            Err(TokenError::Claim("tenant".into()))
        );
        let mut future = claims();
        future["nbf"] = (NOW + Duration::minutes(5)).unix_timestamp().into();
        assert_eq!(
            verifier().verify(&forged(&header, &future, &key), NOW),
            Err(TokenError::NotYetValid)
        );
        let no_roles = without("roles");
        let who = verifier()
            .verify(&no_roles, NOW)
            .expect("valid, but powerless");
        assert!(who.roles.is_empty());
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_text_never_verifies(token in "[A-Za-z0-9._-]{0,300}") {
            proptest::prop_assert!(verifier().verify(&token, NOW).is_err());
        }

        #[test]
        fn any_change_to_a_valid_token_is_refused(position in 0usize..400, replacement in "[A-Za-z0-9_-]") {
            let token = issued(&secret(7), TokenAudience::default());
            let position = position % token.len();
            let mut bytes = token.clone().into_bytes();
            let original = bytes[position];
            bytes[position] = replacement.as_bytes()[0];
            let changed = String::from_utf8(bytes).unwrap_or_default();
            // Base64's last character can carry unused bits: the same bytes, the same token.
            if changed != token && original != b'.' {
                let decoded_same = changed.split('.').zip(token.split('.')).all(|(a, b)| {
                    URL_SAFE_NO_PAD.decode(a).ok() == URL_SAFE_NO_PAD.decode(b).ok()
                });
                if !decoded_same {
                    proptest::prop_assert!(verifier().verify(&changed, NOW).is_err());
                }
            }
        }
    }

    #[test]
    fn short_secrets_are_refused() {
        assert!(SigningSecret::new(vec![1; 31]).is_err());
        let printed = format!("{:?}", secret(1));
        assert!(printed.contains("REDACTED"), "{printed}");
        assert!(!printed.contains("1, 1"), "{printed}");
    }

    /// An RSA key pair playing an OIDC provider: its JWKS and RS256 tokens.
    struct Provider {
        key: aws_lc_rs::rsa::KeyPair,
        kid: String,
    }

    impl Provider {
        fn new(kid: &str) -> Self {
            let key = aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
                .expect("RSA key");
            Self {
                key,
                kid: kid.to_owned(),
            }
        }

        fn jwks(&self) -> JwkSet {
            use aws_lc_rs::signature::KeyPair as _;
            let public = self.key.public_key();
            serde_json::from_value(json!({"keys": [{
                "kty": "RSA", "use": "sig", "alg": "RS256", "kid": self.kid,
                "n": URL_SAFE_NO_PAD.encode(public.modulus().big_endian_without_leading_zero()),
                "e": URL_SAFE_NO_PAD.encode(public.exponent().big_endian_without_leading_zero()),
            }]}))
            .expect("JWKS")
        }

        fn sign(&self, header: &Value, claims: &Value) -> String {
            let part = |v: &Value| URL_SAFE_NO_PAD.encode(v.to_string());
            let input = format!("{}.{}", part(header), part(claims));
            let mut signature = vec![0; self.key.public_modulus_len()];
            self.key
                .sign(
                    &aws_lc_rs::signature::RSA_PKCS1_SHA256,
                    &aws_lc_rs::rand::SystemRandom::new(),
                    input.as_bytes(),
                    &mut signature,
                )
                .expect("signed");
            format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature))
        }

        fn token(&self, claims: &Value) -> String {
            self.sign(
                &json!({"alg": "RS256", "kid": self.kid, "typ": "JWT"}),
                claims,
            )
        }
    }

    fn cognito_claims() -> Value {
        json!({
            "iss": "https://idp.example/pool", "aud": "client-1", "sub": "5f1c-user",
            "custom:tenant": "acme", "cognito:groups": ["operator", "everyone"],
            "token_use": "id",
            "iat": NOW.unix_timestamp(), "exp": (NOW + Duration::hours(1)).unix_timestamp(),
        })
    }

    fn oidc_verifier(provider: &Provider) -> TokenVerifier {
        TokenVerifier::oidc(
            provider.jwks(),
            TokenAudience {
                issuer: "https://idp.example/pool".into(),
                audience: "client-1".into(),
            },
            ClaimNames::cognito(),
        )
    }

    #[test]
    fn oidc_tokens_verify_with_the_published_keys() {
        let provider = Provider::new("k1");
        let v = oidc_verifier(&provider);
        let who = v
            .verify(&provider.token(&cognito_claims()), NOW)
            .expect("valid");
        assert_eq!(who.subject, "5f1c-user");
        assert_eq!(who.tenant.as_str(), "acme");
        assert_eq!(who.roles, Roles::new([Role::Operator]));

        // Another provider's key, or a key id the set lacks.
        let impostor = Provider::new("k1");
        assert_eq!(
            v.verify(&impostor.token(&cognito_claims()), NOW),
            Err(TokenError::Signature)
        );
        let rotated = Provider::new("k2");
        let token = rotated.token(&cognito_claims());
        assert!(v.lacks_key_for(&token));
        assert_eq!(v.verify(&token, NOW), Err(TokenError::UnknownKey));
        let mut refreshed = oidc_verifier(&provider);
        refreshed.replace_keys(rotated.jwks());
        assert!(refreshed.verify(&token, NOW).is_ok());
    }

    #[test]
    fn oidc_mode_refuses_hs256_signed_with_the_public_key() {
        use aws_lc_rs::encoding::AsDer;
        use aws_lc_rs::signature::KeyPair as _;
        let provider = Provider::new("k1");
        let public_der = provider.key.public_key().as_der().expect("DER");
        let confused = forged(
            &json!({"alg": "HS256", "kid": "k1"}),
            &cognito_claims(),
            public_der.as_ref(),
        );
        assert_eq!(
            oidc_verifier(&provider).verify(&confused, NOW),
            Err(TokenError::Algorithm("HS256".into()))
        );
        // And cellbridge's own verifier takes no RS256 token.
        assert_eq!(
            verifier().verify(&provider.token(&claims()), NOW),
            Err(TokenError::Algorithm("RS256".into()))
        );
    }
}
