//! An OIDC identity provider played by an RSA key pair, for tests of OIDC mode outside this
//! crate (the console's sign-in): the keys it publishes and the RS256 ID tokens it signs.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeyPair, KeySize};
use aws_lc_rs::signature::{KeyPair as _, RSA_PKCS1_SHA256};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::jwk::JwkSet;
use serde_json::{json, Value};

pub struct TestIdentityProvider {
    key: KeyPair,
    key_id: String,
}

impl TestIdentityProvider {
    /// A provider with a fresh 2048-bit key, published under `key_id`. Generating it takes a
    /// while in a debug build: make one per test binary, not one per test.
    pub fn new(key_id: &str) -> Self {
        Self {
            key: KeyPair::generate(KeySize::Rsa2048).expect("an RSA test key"),
            key_id: key_id.to_owned(),
        }
    }

    /// The provider's JWKS, as `OIDC_JWKS_URL` would serve it.
    pub fn jwks(&self) -> JwkSet {
        let public = self.key.public_key();
        let unsigned = |bytes: &[u8]| URL_SAFE_NO_PAD.encode(bytes);
        serde_json::from_value(json!({"keys": [{
            "kty": "RSA", "use": "sig", "alg": "RS256", "kid": self.key_id,
            "n": unsigned(public.modulus().big_endian_without_leading_zero()),
            "e": unsigned(public.exponent().big_endian_without_leading_zero()),
        }]}))
        .expect("a JWKS")
    }

    /// `claims` as an RS256 ID token signed with this provider's key.
    pub fn id_token(&self, claims: &Value) -> String {
        let header = json!({"alg": "RS256", "typ": "JWT", "kid": self.key_id});
        let encoded = |part: &Value| URL_SAFE_NO_PAD.encode(part.to_string());
        let signed_part = format!("{}.{}", encoded(&header), encoded(claims));
        let mut signature = vec![0; self.key.public_modulus_len()];
        self.key
            .sign(
                &RSA_PKCS1_SHA256,
                &SystemRandom::new(),
                signed_part.as_bytes(),
                &mut signature,
            )
            .expect("an RS256 signature");
        format!("{signed_part}.{}", URL_SAFE_NO_PAD.encode(signature))
    }
}
