//! Following a device live. A device publishes its telemetry in batches (a minute of samples
//! at a time, the cheap way); while someone watches it, it streams each sample as it is taken,
//! which is what the `live` command asks of it for a number of seconds.
//!
//! A follower asks for a window of [`LIVE_WINDOW`] and renews it by coming back more often than
//! every [`RENEW_WITHIN`]; a window is renewed (and a `live` command sent) only once less than
//! [`RENEW_WITHIN`] of it is left, so many followers of one device cost one command every
//! minute and a half, not one each. No one tells a device to stop: when its last follower
//! leaves (or vanishes), the window runs out and the device falls back to batches by itself.

use crate::command::{Command, CommandId, CommandRequest, DEFAULT_ACK_TIMEOUT};
use crate::delivery::{publish_command, Delivery};
use crate::ports::{CommandCreated, CommandStore, DevicePublisher, DeviceStore, LiveFollowing};
use crate::registration::ThingName;
use cellbridge_core::store::StoreError;
use cellbridge_core::tenant::TenantId;
use time::{Duration, OffsetDateTime};

/// The command a device streams on (`params.seconds`).
pub const LIVE_COMMAND: &str = "live";
/// How long a device streams after each `live` command.
pub const LIVE_WINDOW: Duration = Duration::minutes(3);
/// A window with less than this left is renewed; one with more is left alone. A follower comes
/// back more often than this, so a window is renewed before it runs out.
pub const RENEW_WITHIN: Duration = Duration::seconds(90);
/// A `live` command not delivered by then is of no use: the follower renews anyway.
const LIVE_COMMAND_EXPIRES_IN: Duration = Duration::minutes(1);
/// At most this many devices of one subscription stream: a device page or a small dashboard
/// needs them every second; a list of hundreds does with their batches.
pub const MAX_FOLLOWED: usize = 20;

/// What following a device came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Following {
    /// A `live` command went to the device; it streams for [`LIVE_WINDOW`].
    Started(CommandId),
    /// It streams already, with more than [`RENEW_WITHIN`] left.
    AlreadyLive,
    /// Not connected: nothing was sent. The follower's next renewal tries again.
    Offline,
    /// Not a device of the follower's tenant.
    Unknown,
    /// The command was stored but publishing failed (why): the window is taken back, so the
    /// follower's next renewal sends another (this one runs out in a minute).
    NotPublished(String),
}

/// What following a device needs: its record, its live window, and the command path.
#[derive(Clone, Copy)]
pub struct FollowPorts<'a> {
    pub devices: &'a dyn DeviceStore,
    pub following: &'a dyn LiveFollowing,
    pub commands: &'a dyn CommandStore,
    pub publisher: &'a dyn DevicePublisher,
    /// Judges who is online (`PresenceSettings::timeout`).
    pub presence_timeout: Duration,
}

/// The `live` command of one window.
pub fn live_request() -> CommandRequest {
    let mut params = serde_json::Map::new();
    params.insert("seconds".into(), LIVE_WINDOW.whole_seconds().into());
    CommandRequest {
        name: LIVE_COMMAND.into(),
        params,
        expires_in: LIVE_COMMAND_EXPIRES_IN,
        ack_timeout: DEFAULT_ACK_TIMEOUT,
    }
}

/// Makes `tenant`'s device `thing` stream for another window if it needs one: renews the window
/// (one conditional write, so of followers racing one goes on) and sends the `live` command.
pub async fn follow(
    ports: FollowPorts<'_>,
    tenant: &TenantId,
    thing: &ThingName,
    now: OffsetDateTime,
) -> Result<Following, StoreError> {
    let device = ports
        .devices
        .get_device(thing)
        .await?
        .filter(|device| &device.tenant == tenant);
    let Some(device) = device else {
        return Ok(Following::Unknown);
    };
    if !device.presence.is_online(now, ports.presence_timeout) {
        return Ok(Following::Offline);
    }
    let until = now + LIVE_WINDOW;
    if !ports
        .following
        .extend_live(thing, until, now + RENEW_WITHIN)
        .await?
    {
        return Ok(Following::AlreadyLive);
    }
    let sent = send_live_command(ports, tenant, thing, now).await;
    if !matches!(sent, Ok(Following::Started(_))) {
        // Not sent: the window goes, so the next renewal (a moment later) sends it.
        ports.following.retract_live(thing, until).await?;
    }
    sent
}

async fn send_live_command(
    ports: FollowPorts<'_>,
    tenant: &TenantId,
    thing: &ThingName,
    now: OffsetDateTime,
) -> Result<Following, StoreError> {
    let command = Command::queued(
        thing.clone(),
        tenant.clone(),
        CommandId::new_v7(),
        &live_request(),
        now,
    );
    match ports.commands.create_command(&command, None).await? {
        CommandCreated::Created => {}
        CommandCreated::Replayed { .. } => {
            // Without a key nothing can be replayed; were it ever, the window is renewed anyway.
            return Ok(Following::AlreadyLive);
        }
    }
    match publish_command(ports.commands, ports.publisher, &command, now).await? {
        Delivery::Sent | Delivery::AlreadyMoved(_) => Ok(Following::Started(command.id)),
        Delivery::NotPublished(error) => Ok(Following::NotPublished(error.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands_memory::MemoryCommands;
    use crate::iot_memory::RecordingPublisher;
    use crate::memory::MemoryDevices;
    use crate::testing::{online_device, thing};
    use time::macros::datetime;

    const T0: OffsetDateTime = datetime!(2026-12-06 09:00 UTC);

    struct World {
        devices: MemoryDevices,
        commands: MemoryCommands,
        publisher: RecordingPublisher,
    }

    impl World {
        async fn new() -> Self {
            let world = Self {
                devices: MemoryDevices::default(),
                commands: MemoryCommands::default(),
                publisher: RecordingPublisher::default(),
            };
            online_device(&world.devices, "trk-1", "acme", T0).await;
            world
        }

        fn ports(&self) -> FollowPorts<'_> {
            FollowPorts {
                devices: &self.devices,
                following: &self.devices,
                commands: &self.commands,
                publisher: &self.publisher,
                presence_timeout: Duration::minutes(15),
            }
        }

        async fn follow(&self, tenant: &str, name: &str, at: OffsetDateTime) -> Following {
            let tenant = TenantId::parse(tenant).expect("tenant");
            follow(self.ports(), &tenant, &thing(name), at)
                .await
                .expect("followed")
        }

        fn live_commands(&self) -> Vec<serde_json::Value> {
            self.publisher
                .published_to(&crate::topics::commands("trk-1"))
        }
    }

    #[tokio::test]
    async fn followers_share_one_window_renewed_only_when_it_runs_low() {
        let world = World::new().await;
        assert!(matches!(
            world.follow("acme", "trk-1", T0).await,
            Following::Started(_)
        ));
        // A second follower, and the first coming back a minute later: the window has more
        // than 90 s left, so nothing is sent.
        assert_eq!(
            world.follow("acme", "trk-1", T0).await,
            Following::AlreadyLive
        );
        assert_eq!(
            world
                .follow("acme", "trk-1", T0 + Duration::minutes(1))
                .await,
            Following::AlreadyLive
        );
        // Two minutes in, a minute is left: renewed for three more.
        assert!(matches!(
            world
                .follow("acme", "trk-1", T0 + Duration::minutes(2))
                .await,
            Following::Started(_)
        ));
        let sent = world.live_commands();
        assert_eq!(sent.len(), 2, "{sent:?}");
        assert!(sent
            .iter()
            .all(|c| c["name"] == "live" && c["params"]["seconds"] == 180));
        let followed = world
            .devices
            .followed(&[thing("trk-1"), thing("trk-9")])
            .await
            .expect("read");
        let window = &followed[&thing("trk-1")];
        assert_eq!(window.live_until, Some(T0 + Duration::minutes(5)));
        assert!(window.is_followed(T0 + Duration::minutes(5)));
        assert!(
            !window.is_followed(T0 + Duration::minutes(5) + Duration::seconds(1)),
            "with no one renewing, the window ends"
        );
        assert!(!followed.contains_key(&thing("trk-9")), "not registered");
    }

    #[tokio::test]
    async fn a_live_command_that_could_not_be_published_is_sent_again_at_the_next_renewal() {
        let world = World::new().await;
        world
            .publisher
            .fail_topic(&crate::topics::commands("trk-1"));
        assert!(matches!(
            world.follow("acme", "trk-1", T0).await,
            Following::NotPublished(_)
        ));
        let followed = world
            .devices
            .followed(&[thing("trk-1")])
            .await
            .expect("read");
        assert_eq!(followed[&thing("trk-1")].live_until, None, "taken back");
        // Publishing works again: the next follower's renewal sends it, well within the window
        // the failed attempt would have held.
        let world_again = World {
            publisher: RecordingPublisher::default(),
            ..world
        };
        assert!(matches!(
            world_again
                .follow("acme", "trk-1", T0 + Duration::seconds(10))
                .await,
            Following::Started(_)
        ));
    }

    #[tokio::test]
    async fn another_tenants_device_or_an_offline_one_is_not_asked_to_stream() {
        let world = World::new().await;
        assert_eq!(
            world.follow("globex", "trk-1", T0).await,
            Following::Unknown
        );
        assert_eq!(world.follow("acme", "trk-9", T0).await, Following::Unknown);
        assert_eq!(
            world
                .follow("acme", "trk-1", T0 + Duration::minutes(30))
                .await,
            Following::Offline,
            "silent longer than the presence timeout"
        );
        assert!(world.live_commands().is_empty());
        let followed = world
            .devices
            .followed(&[thing("trk-1")])
            .await
            .expect("read");
        assert_eq!(followed[&thing("trk-1")].live_until, None);
    }
}
