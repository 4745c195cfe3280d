//! Live tickets: a minute-long pass onto the live event stream for a browser whose real token is
//! in an `HttpOnly` cookie, out of its script's reach. The console issues one to a signed-in page,
//! whose script offers it as the WebSocket subprotocol; the stream's `$connect` takes it as it
//! takes an API token.
//!
//! A ticket is a cellbridge-signed JWT with its own audience: the HTTP API's authorizer refuses
//! it, so a leaked ticket opens one stream for a minute and calls no route. Tickets are signed
//! with the deployment's signing secret in either auth mode; with an identity provider the
//! provider still signs every API token.

use crate::principal::Identity;
use crate::token::{
    IssuedToken, KeyError, SigningSecret, TokenAudience, TokenError, TokenSigner, TokenVerifier,
};
use time::{Duration, OffsetDateTime};

/// Long enough to open a connection, short enough that a ticket seen in a page is soon useless.
pub const LIVE_TICKET_LIFETIME: Duration = Duration::seconds(60);

/// `aud` of live tickets, which no API token carries.
pub const LIVE_TICKET_AUDIENCE: &str = "cellbridge-live-ticket";

fn audience() -> TokenAudience {
    TokenAudience {
        audience: LIVE_TICKET_AUDIENCE.to_owned(),
        ..TokenAudience::default()
    }
}

pub struct LiveTickets {
    signer: TokenSigner,
    verifier: TokenVerifier,
}

impl LiveTickets {
    pub fn new(secret: &SigningSecret) -> Self {
        Self {
            signer: TokenSigner::new(secret, audience(), LIVE_TICKET_LIFETIME),
            verifier: TokenVerifier::shared_secret(secret, audience()),
        }
    }

    /// A ticket for `identity`, valid for [`LIVE_TICKET_LIFETIME`] from `now`.
    pub fn issue(&self, identity: &Identity, now: OffsetDateTime) -> Result<IssuedToken, KeyError> {
        self.signer.issue(identity, now)
    }

    /// Whose ticket this is, at `now`.
    pub fn verify(&self, ticket: &str, now: OffsetDateTime) -> Result<Identity, TokenError> {
        self.verifier.verify(ticket, now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::role::{Role, Roles};
    use cellbridge_core::tenant::TenantId;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-12-06 09:00 UTC);

    fn identity() -> Identity {
        Identity {
            subject: "ops@demo.example".into(),
            tenant: TenantId::parse("demo").expect("tenant"),
            roles: Roles::new([Role::Operator]),
        }
    }

    #[test]
    fn a_ticket_opens_the_stream_for_a_minute_and_is_no_api_token() {
        let secret = SigningSecret::new([9u8; 32]).expect("secret");
        let tickets = LiveTickets::new(&secret);
        let ticket = tickets.issue(&identity(), NOW).expect("ticket");
        assert_eq!(ticket.expires_at, NOW + LIVE_TICKET_LIFETIME);
        assert_eq!(tickets.verify(&ticket.token, NOW), Ok(identity()));
        assert_eq!(
            tickets.verify(&ticket.token, NOW + Duration::minutes(2)),
            Err(TokenError::Expired)
        );
        let api = TokenVerifier::shared_secret(&secret, TokenAudience::default());
        assert_eq!(api.verify(&ticket.token, NOW), Err(TokenError::Audience));
        let api_token = TokenSigner::new(&secret, TokenAudience::default(), Duration::hours(1))
            .issue(&identity(), NOW)
            .expect("token");
        assert_eq!(
            tickets.verify(&api_token.token, NOW),
            Err(TokenError::Audience)
        );
    }
}
