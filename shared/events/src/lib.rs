//! Live events: one envelope for everything that changes in a tenant's fleet (`seq`, strictly
//! increasing per tenant; `type`; the `subject` a client filters on; when; what), the
//! subscriptions a connection holds, and the frames of the WebSocket stream, with the rule that
//! decides whether a client resuming after `lastSeq` can be replayed or must reload.

pub mod apigateway;
pub mod counts;
pub mod dynamodb;
pub mod event;
pub mod fanout;
#[cfg(any(test, feature = "test-util"))]
pub mod memory;
pub mod ports;
pub mod protocol;
pub mod subscription;
pub mod wiring;
