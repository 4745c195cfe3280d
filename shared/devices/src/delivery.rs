//! Publishing a queued command to its device.

use crate::command::{Command, CommandStatus};
use crate::ports::{CommandStore, Transition};
use cellbridge_core::store::StoreError;
use time::OffsetDateTime;

/// What publishing a queued command came to.
#[derive(Debug)]
pub enum Delivery {
    /// Published, and now SENT.
    Sent,
    /// Published, but an acknowledgement (or the sweep) had already moved it to this status.
    AlreadyMoved(CommandStatus),
    /// Publishing failed; the command stays QUEUED for the device's next connection.
    NotPublished(crate::ports::PublishError),
}

/// Publishes a queued command on its device's command topic, then marks it SENT. The one place
/// of this order, for the API (device online) and for the device's reconnection: publishing
/// first means a SENT command was really handed to IoT Core, and an acknowledgement that
/// arrives before the SENT write is simply applied first (statuses only move forward).
pub async fn publish_command(
    commands: &dyn CommandStore,
    publisher: &dyn crate::ports::DevicePublisher,
    command: &Command,
    now: OffsetDateTime,
) -> Result<Delivery, StoreError> {
    let topic = crate::topics::commands(command.thing.as_str());
    if let Err(error) = publisher.publish(&topic, command.device_message()).await {
        return Ok(Delivery::NotPublished(error));
    }
    match commands
        .transition(&command.thing, &command.id, CommandStatus::Sent, now, None)
        .await?
    {
        Transition::Applied(_) => Ok(Delivery::Sent),
        Transition::Stale { current } => Ok(Delivery::AlreadyMoved(current)),
        Transition::Missing => Err(StoreError::Corrupt(format!(
            "command {} of {} vanished while it was published",
            command.id, command.thing
        ))),
    }
}
