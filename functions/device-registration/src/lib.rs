//! Auto-discovery: a device announces itself on `devices/<thing>/register`; a topic rule hands
//! the announcement (plus `thingName` from the topic and the MQTT `clientId`) to this function.
//! A valid announcement from a known tenant becomes an IoT thing and a registry record, and the
//! device hears `accepted`; anything else is answered on `rejected` with every reason at once,
//! so a field technician can fix the device's configuration in one go.
//!
//! Repeat announcements are idempotent (the record and the thing are brought up to date). The
//! rule invokes asynchronously and Lambda retries failures, so only failures a retry can cure
//! (store, registry, publish) are errors.

use cellbridge_core::store::StoreError;
use cellbridge_core::validation::{FieldError, ValidationErrors};
use cellbridge_devices::ports::{
    DevicePublisher, DeviceStore, PublishError, Registration, ThingAttributes, ThingRegistry,
    ThingRegistryError,
};
use cellbridge_devices::registration::{parse_announcement, Announcement};
use cellbridge_devices::topics;
use cellbridge_identity::ports::AccountStore;
use cellbridge_sims::ports::SimStore;
use serde_json::{json, Value};
use time::OffsetDateTime;

cellbridge_core::composite_config! {
    /// This function's configuration, read once at cold start.
    #[derive(Debug, Clone)]
    pub struct Config {
        pub devices: cellbridge_devices::wiring::DeviceTables,
        pub accounts: cellbridge_identity::wiring::AccountsConfig,
        pub thing_type: cellbridge_devices::wiring::ThingType,
        pub iot_data: cellbridge_devices::wiring::IotDataEndpoint,
        pub sims: cellbridge_sims::wiring::SimTables,
    }
}

pub struct Ports<'a> {
    pub devices: &'a dyn DeviceStore,
    pub accounts: &'a dyn AccountStore,
    pub things: &'a dyn ThingRegistry,
    pub replies: &'a dyn DevicePublisher,
    /// The tenant's SIM inventory: the SIM a device announces is linked to it.
    pub sims: &'a dyn SimStore,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    Accepted(Registration),
    Rejected(Vec<FieldError>),
    /// No usable thing name, so there is no topic to answer on; logged and dropped.
    Unanswerable,
}

#[derive(Debug, thiserror::Error)]
pub enum RegistrationError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Things(#[from] ThingRegistryError),
    #[error(transparent)]
    Reply(#[from] PublishError),
}

pub async fn handle(
    ports: &Ports<'_>,
    message: &Value,
    now: OffsetDateTime,
) -> Result<Outcome, RegistrationError> {
    // The topic level the device published on; the reply goes back below it.
    let Some(topic_thing) = message
        .get("thingName")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty() && !t.contains(['/', '+', '#']))
    else {
        tracing::warn!(%message, "announcement without a thing name from its topic; dropped");
        return Ok(Outcome::Unanswerable);
    };
    let outcome = match check(ports, topic_thing, message).await? {
        Ok(announcement) => match ports.devices.register(&announcement, now).await? {
            Registration::OtherTenant => Outcome::Rejected(vec![FieldError {
                field: "thingName".into(),
                message: "is registered to another tenant".into(),
            }]),
            registration => {
                // Moved to another SIM: the one it had is no longer its. First, so a failure
                // further on (redelivered, the device then already on its new SIM) cannot
                // leave the old link behind.
                if let Registration::Updated { previous_iccid } = &registration {
                    if previous_iccid != announcement.iccid.as_str() {
                        ports
                            .sims
                            .unlink_device(
                                &announcement.tenant,
                                previous_iccid,
                                announcement.thing_name.as_str(),
                            )
                            .await?;
                    }
                }
                let attributes = ThingAttributes {
                    tenant: announcement.tenant.clone(),
                    iccid: announcement.iccid.as_str().to_owned(),
                    imei: announcement.imei.as_ref().map(|i| i.as_str().to_owned()),
                };
                ports
                    .things
                    .upsert_thing(&announcement.thing_name, &attributes)
                    .await?;
                let linked = ports
                    .sims
                    .link_device(
                        &announcement.tenant,
                        announcement.iccid.as_str(),
                        announcement.thing_name.as_str(),
                    )
                    .await?;
                if !linked {
                    tracing::info!(
                        iccid = announcement.iccid.as_str(),
                        "the SIM is not in the tenant's inventory yet"
                    );
                }
                Outcome::Accepted(registration)
            }
        },
        Err(errors) => Outcome::Rejected(errors.errors),
    };
    let (topic, reply) = match &outcome {
        Outcome::Accepted(registration) => (
            topics::register_accepted(topic_thing),
            json!({
                "thingName": topic_thing,
                "outcome": match registration {
                    Registration::Created => "created",
                    _ => "updated",
                },
            }),
        ),
        Outcome::Rejected(reasons) => (
            topics::register_rejected(topic_thing),
            json!({"thingName": topic_thing, "reasons": reasons}),
        ),
        Outcome::Unanswerable => return Ok(outcome),
    };
    ports
        .replies
        .publish(&topic, reply.to_string().into_bytes())
        .await?;
    tracing::info!(thing = topic_thing, ?outcome, "announcement");
    Ok(outcome)
}

/// The announcement, or every reason it is refused.
async fn check(
    ports: &Ports<'_>,
    thing: &str,
    message: &Value,
) -> Result<Result<Announcement, ValidationErrors>, StoreError> {
    let mut errors = ValidationErrors::default();
    // The IoT policy pins a connection to its own topics; this catches a policy mistake.
    if let Some(client) = message.get("clientId").and_then(Value::as_str) {
        if client != thing {
            errors.push(
                "clientId",
                "must be the thing name the device publishes under",
            );
        }
    }
    let payload = message.to_string();
    let announcement = match parse_announcement(thing, payload.as_bytes()) {
        Ok(announcement) => Some(announcement),
        Err(invalid) => {
            errors.errors.extend(invalid.errors);
            None
        }
    };
    if let Some(announcement) = &announcement {
        if ports
            .accounts
            .get_tenant(&announcement.tenant)
            .await?
            .is_none()
        {
            errors.push("tenant", "is not a tenant of this platform");
        }
    }
    Ok(match announcement {
        Some(announcement) if errors.is_empty() => Ok(announcement),
        _ => Err(errors),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use cellbridge_devices::iot_memory::{MemoryThings, RecordingPublisher};
    use cellbridge_devices::memory::MemoryDevices;
    use cellbridge_devices::ports::DeviceRecord;
    use cellbridge_devices::registration::ThingName;
    use cellbridge_identity::memory::MemoryAccounts;

    const ANNOUNCEMENT: &str =
        include_str!("../../../events/device-registration/announcement.json");
    const BAD_IDENTIFIERS: &str =
        include_str!("../../../events/device-registration/bad-identifiers.json");

    struct World {
        devices: MemoryDevices,
        accounts: MemoryAccounts,
        things: MemoryThings,
        replies: RecordingPublisher,
        sims: cellbridge_sims::memory::MemorySims,
    }

    impl World {
        async fn new() -> Self {
            let accounts = MemoryAccounts::default();
            for tenant in ["demo", "globex"] {
                cellbridge_identity::admin::add_tenant(
                    &accounts,
                    tenant,
                    tenant,
                    OffsetDateTime::now_utc(),
                )
                .await
                .expect("tenant");
            }
            Self {
                devices: MemoryDevices::default(),
                accounts,
                things: MemoryThings::default(),
                replies: RecordingPublisher::default(),
                sims: inventory().await,
            }
        }

        fn ports(&self) -> Ports<'_> {
            Ports {
                devices: &self.devices,
                accounts: &self.accounts,
                things: &self.things,
                replies: &self.replies,
                sims: &self.sims,
            }
        }

        async fn announce(&self, message: &Value) -> Outcome {
            handle(&self.ports(), message, OffsetDateTime::now_utc())
                .await
                .expect("no infrastructure failure")
        }

        async fn registered(&self, thing: &str) -> DeviceRecord {
            self.devices
                .get_device(&ThingName::parse(thing).expect("name"))
                .await
                .expect("store")
                .expect("registered")
        }

        fn accepted_replies(&self, thing: &str) -> Vec<Value> {
            self.replies.published_to(&topics::register_accepted(thing))
        }
    }

    /// The sample announcement's SIM, in demo's inventory and in globex's.
    async fn inventory() -> cellbridge_sims::memory::MemorySims {
        let sims = cellbridge_sims::memory::MemorySims::default();
        for tenant in ["demo", "globex"] {
            let sim = cellbridge_sims::testing::sample_sim(1);
            cellbridge_sims::testing::put_imported(&sims, tenant, &sim).await;
        }
        sims
    }

    fn sample(text: &str) -> Value {
        serde_json::from_str(text).expect("sample event")
    }

    fn fields(outcome: &Outcome) -> Vec<String> {
        match outcome {
            Outcome::Rejected(reasons) => reasons.iter().map(|r| r.field.clone()).collect(),
            other => panic!("expected a rejection, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn the_sample_registers_a_thing_and_the_device_hears_accepted() {
        let world = World::new().await;
        let outcome = world.announce(&sample(ANNOUNCEMENT)).await;
        assert_eq!(outcome, Outcome::Accepted(Registration::Created));
        let thing = world.things.get("trk-1").expect("thing created");
        assert_eq!(thing.tenant.as_str(), "demo");
        assert_eq!(thing.imei.as_deref(), Some("356938035643809"));
        let device = world.registered("trk-1").await;
        assert_eq!(device.model, "TRK-200");
        let replies = world.accepted_replies("trk-1");
        assert_eq!(replies.len(), 1);
        assert_eq!(replies[0]["outcome"], "created");
        // Its SIM in the tenant's inventory now names the device; another tenant's does not.
        let linked = |tenant: &str| {
            let tenant = cellbridge_core::tenant::TenantId::parse(tenant).expect("tenant");
            world.sims.all(&tenant)[0].device_id.clone()
        };
        assert_eq!(linked("demo").as_deref(), Some("trk-1"));
        assert_eq!(linked("globex"), None);
    }

    #[tokio::test]
    async fn a_device_that_moves_to_another_sim_leaves_the_old_one_unlinked() {
        let world = World::new().await;
        let demo = cellbridge_core::tenant::TenantId::parse("demo").expect("tenant");
        let other = cellbridge_sims::testing::sample_sim(2);
        cellbridge_sims::testing::put_imported(&world.sims, "demo", &other).await;
        let first = sample(ANNOUNCEMENT);
        world.announce(&first).await;
        let mut moved = sample(ANNOUNCEMENT);
        moved["iccid"] = json!(other.iccid);
        world.announce(&moved).await;
        let device_of = |iccid: &str| {
            let all = world.sims.all(&demo);
            let sim = all.iter().find(|sim| sim.iccid == iccid).cloned();
            sim.expect("in the inventory").device_id
        };
        assert_eq!(device_of(&other.iccid).as_deref(), Some("trk-1"));
        let old = first["iccid"].as_str().expect("an ICCID");
        assert_eq!(device_of(old), None, "the old SIM is no longer its");
        // Another device took trk-1's SIM meanwhile: trk-1 moving on leaves that link be.
        world
            .sims
            .link_device(&demo, &other.iccid, "trk-9")
            .await
            .expect("linked");
        let mut back = sample(ANNOUNCEMENT);
        back["iccid"] = json!(cellbridge_core::testing::iccid(40));
        world.announce(&back).await;
        assert_eq!(device_of(&other.iccid).as_deref(), Some("trk-9"));
    }

    #[tokio::test]
    async fn a_repeat_announcement_updates_and_is_accepted_again() {
        let world = World::new().await;
        world.announce(&sample(ANNOUNCEMENT)).await;
        let mut newer = sample(ANNOUNCEMENT);
        newer["firmware"] = json!("2.5.0");
        assert_eq!(
            world.announce(&newer).await,
            Outcome::Accepted(Registration::Updated {
                previous_iccid: newer["iccid"].as_str().expect("an ICCID").to_owned()
            })
        );
        assert_eq!(world.things.len(), 1);
        let device = world.registered("trk-1").await;
        assert_eq!(device.firmware, "2.5.0");
        let replies = world.accepted_replies("trk-1");
        assert_eq!(replies[1]["outcome"], "updated");
    }

    #[tokio::test]
    async fn bad_identifiers_are_all_reported_on_the_rejected_topic() {
        let world = World::new().await;
        let outcome = world.announce(&sample(BAD_IDENTIFIERS)).await;
        let mut reported = fields(&outcome);
        reported.sort();
        assert_eq!(reported, ["iccid", "imei"]);
        assert!(world.things.is_empty(), "no thing for a rejected device");
        let replies = world
            .replies
            .published_to(&topics::register_rejected("trk-2"));
        assert_eq!(replies.len(), 1);
        assert_eq!(replies[0]["reasons"].as_array().map(Vec::len), Some(2));
    }

    #[tokio::test]
    async fn unknown_tenants_and_foreign_client_ids_are_rejected() {
        let world = World::new().await;
        let mut unknown = sample(ANNOUNCEMENT);
        unknown["tenant"] = json!("initech");
        assert_eq!(fields(&world.announce(&unknown).await), ["tenant"]);
        let mut impostor = sample(ANNOUNCEMENT);
        impostor["clientId"] = json!("trk-9");
        assert_eq!(fields(&world.announce(&impostor).await), ["clientId"]);
        assert!(world.things.is_empty());
        assert_eq!(
            world
                .replies
                .published_to(&topics::register_rejected("trk-1"))
                .len(),
            2
        );
    }

    #[tokio::test]
    async fn a_thing_name_stays_with_its_first_tenant() {
        let world = World::new().await;
        world.announce(&sample(ANNOUNCEMENT)).await;
        let mut other = sample(ANNOUNCEMENT);
        other["tenant"] = json!("globex");
        assert_eq!(fields(&world.announce(&other).await), ["thingName"]);
        assert_eq!(
            world.things.get("trk-1").expect("thing").tenant.as_str(),
            "demo"
        );
    }

    #[tokio::test]
    async fn without_a_thing_name_nothing_is_answered() {
        let world = World::new().await;
        for message in [json!({}), json!({"thingName": ""}), json!({"thingName": 7})] {
            assert_eq!(world.announce(&message).await, Outcome::Unanswerable);
        }
        assert!(world.replies.published().is_empty());
    }

    #[tokio::test]
    async fn a_failed_reply_is_an_error_so_lambda_retries() {
        let world = World::new().await;
        world
            .replies
            .fail_topic(&topics::register_accepted("trk-1"));
        let failed = handle(
            &world.ports(),
            &sample(ANNOUNCEMENT),
            OffsetDateTime::now_utc(),
        )
        .await;
        assert!(matches!(failed, Err(RegistrationError::Reply(_))));
    }
}
