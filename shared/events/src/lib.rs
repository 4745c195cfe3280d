//! Live events: one envelope for everything that changes in a tenant's fleet (`seq`, strictly
//! increasing per tenant; `type`; the `subject` a client filters on; when; what), the
//! subscriptions a connection holds, and the frames of the WebSocket stream, with the rule that
//! decides whether a client resuming after `lastSeq` can be replayed or must reload.

pub mod event;
pub mod protocol;
pub mod subscription;
