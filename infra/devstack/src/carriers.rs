//! The carrier simulators as the local stack runs them: one server for the three carriers, the
//! `CARRIER_ACCOUNTS` document that points the functions at it, and the ThingSpace callback
//! listener registered on the local API.

use anyhow::{Context, Result};
use carrier_sim::telegence::{Subscriber, SubscriberStatus};
use carrier_sim::thingspace::DeviceState;
use carrier_sim::{SimConfig, SimServer};
use cellbridge::carriers::http::http_client;
use cellbridge::carriers::port::CallJournal;
use cellbridge::carriers::thingspace::{ThingSpaceClient, ThingSpaceCredentials};
use secrecy::ExposeSecret;
use serde_json::{json, Value};

/// What the local ThingSpace echoes in its callbacks; the callback function checks it.
pub const CALLBACK_USERNAME: &str = "cellbridge-callbacks";
pub const CALLBACK_PASSWORD: &str = "local-callback-password";
/// Route of the callback function in template.yaml.
pub const CALLBACK_PATH: &str = "/carriers/thingspace/callbacks";
pub const USAGE_CALLBACK_PATH: &str = "/carriers/thingspace/usage-callbacks";

pub struct LocalCarriers {
    pub server: SimServer,
    config: SimConfig,
}

fn first<K: Clone, V: Clone>(map: &std::collections::BTreeMap<K, V>, what: &str) -> Result<(K, V)> {
    map.iter()
        .next()
        .map(|(k, v)| (k.clone(), v.clone()))
        .with_context(|| format!("the simulator configuration has no {what}"))
}

/// The adapter's credentials for the first ThingSpace app and user of a simulator configuration.
pub fn thingspace_credentials(config: &SimConfig) -> Result<ThingSpaceCredentials> {
    let (app_key, app_secret) = first(&config.thingspace.apps, "ThingSpace app")?;
    let (username, user) = first(&config.thingspace.users, "ThingSpace user")?;
    Ok(ThingSpaceCredentials {
        app_key,
        app_secret: app_secret.into(),
        username,
        password: user.password.into(),
        account_name: user.account_name,
    })
}

/// The `CARRIER_ACCOUNTS` document for simulators serving `config` at `sim_url`, with their own
/// limits whole: the account gate holds them across every instance (Jasper's one call in flight,
/// Telegence's rate).
pub fn accounts_document(sim_url: &str, config: &SimConfig) -> Result<Value> {
    let (jasper_user, jasper_key) = first(&config.jasper.accounts, "Jasper account")?;
    let (telegence_id, telegence_secret) = first(&config.telegence.accounts, "Telegence account")?;
    let ts = thingspace_credentials(config)?;
    let default_plan = config
        .thingspace
        .service_plans
        .first()
        .cloned()
        .unwrap_or_else(|| carrier_sim::thingspace::DEFAULT_SERVICE_PLAN.to_owned());
    Ok(json!({
        "jasper": {
            "baseUrl": format!("{sim_url}/jasper/rws/api/v1"),
            "username": jasper_user,
            "apiKey": jasper_key,
            "limits": {
                // Not shared out: the worker's account gate holds it across instances.
                "callsPerSecond": config.jasper.calls_per_second,
                "maxInFlight": 1
            }
        },
        "thingSpace": {
            "baseUrl": format!("{sim_url}/thingspace/api"),
            "appKey": ts.app_key,
            "appSecret": ts.app_secret.expose_secret(),
            "username": ts.username,
            "password": ts.password.expose_secret(),
            "accountName": ts.account_name,
            "defaultServicePlan": default_plan,
            "defaultZipCode": "94105",
            "callback": {"username": CALLBACK_USERNAME, "password": CALLBACK_PASSWORD}
        },
        "telegence": {
            "baseUrl": format!("{sim_url}/telegence/api/v1"),
            "appId": telegence_id,
            "appSecret": telegence_secret,
            "limits": {
                // The account gate paces every instance together at this rate.
                "callsPerSecond": (config.telegence.requests_per_second.floor() as u32).max(1)
            }
        }
    }))
}

/// Settings of a carrier account that are not credentials (the rest of an account but its
/// endpoint, limits and callback are).
const PROVIDER_SETTINGS: [&str; 3] = ["accountName", "defaultServicePlan", "defaultZipCode"];

/// A `POST /service-providers` body for each account of an accounts `document`: the providers
/// the local stack gives each demo tenant.
pub fn provider_requests(document: &Value) -> Vec<Value> {
    let Some(accounts) = document.as_object() else {
        return Vec::new();
    };
    accounts
        .iter()
        .filter_map(|(carrier, account)| {
            let mut credentials = account.as_object()?.clone();
            let endpoint = credentials.remove("baseUrl")?;
            let limits = credentials.remove("limits").unwrap_or(Value::Null);
            credentials.remove("callback");
            let mut settings = serde_json::Map::new();
            for name in PROVIDER_SETTINGS {
                if let Some(value) = credentials.remove(name) {
                    settings.insert(name.to_owned(), value);
                }
            }
            Some(json!({
                "name": provider_name(carrier),
                "carrier": carrier,
                "portalType": "m2m",
                "endpoint": endpoint,
                "limits": limits,
                "settings": settings,
                "credentials": credentials,
            }))
        })
        .collect()
}

/// The name the local stack gives its provider at `carrier`.
pub fn provider_name(carrier: &str) -> String {
    let name = match carrier {
        "jasper" => "Jasper",
        "thingSpace" => "ThingSpace",
        "telegence" => "Telegence",
        other => other,
    };
    format!("{name} (local simulator)")
}

impl LocalCarriers {
    /// Serves the simulators on `port` (0 picks a free one) on loopback.
    pub async fn start(port: u16, config: SimConfig) -> Result<Self> {
        let server = SimServer::start(([127, 0, 0, 1], port).into(), config.clone())
            .await
            .with_context(|| format!("starting the carrier simulators on port {port}"))?;
        Ok(Self { server, config })
    }

    pub fn url(&self) -> String {
        self.server.url()
    }

    pub fn thingspace_url(&self) -> String {
        format!("{}/thingspace/api", self.url())
    }

    pub fn telegence_url(&self) -> String {
        format!("{}/telegence/api/v1", self.url())
    }

    fn thingspace_credentials(&self) -> Result<ThingSpaceCredentials> {
        thingspace_credentials(&self.config)
    }

    /// The `CARRIER_ACCOUNTS` document for the functions (see [`accounts_document`]).
    pub fn accounts_document(&self) -> Result<Value> {
        accounts_document(&self.url(), &self.config)
    }

    /// Gives each demo tenant one service provider per carrier, at the simulators, through the
    /// API as the tenant's admin, with the simulators' limits (see [`accounts_document`]);
    /// providers already there by name are left alone.
    pub async fn seed_providers(&self, api_url: &str) -> Result<()> {
        use crate::demo_accounts::{DEMO_PASSWORD, DEMO_TENANTS};
        use cellbridge::identity::role::Role;
        let requests = provider_requests(&self.accounts_document()?);
        for (tenant, _, users) in DEMO_TENANTS {
            let Some((admin, _)) = users.iter().find(|(_, role)| *role == Role::Admin) else {
                continue;
            };
            let client = crate::api_client::ApiClient::sign_in(api_url, admin, DEMO_PASSWORD)
                .await
                .with_context(|| format!("signing in as {admin} to seed {tenant}'s providers"))?;
            let existing: Vec<String> = client
                .service_providers()
                .await?
                .into_iter()
                .map(|p| p.name)
                .collect();
            for request in &requests {
                if existing
                    .iter()
                    .any(|name| Some(name.as_str()) == request["name"].as_str())
                {
                    continue;
                }
                client
                    .create_service_provider(request)
                    .await
                    .with_context(|| format!("seeding {tenant}'s provider {}", request["name"]))?;
            }
        }
        Ok(())
    }

    /// Registers the local API's callback routes as ThingSpace's CarrierService and DeviceUsage
    /// listeners.
    pub async fn register_callbacks(&self, api_url: &str) -> Result<()> {
        use cellbridge::carriers::thingspace::{CARRIER_SERVICE, DEVICE_USAGE};
        let client = ThingSpaceClient::new(
            http_client()?,
            self.thingspace_url(),
            self.thingspace_credentials()?,
        );
        let api = api_url.trim_end_matches('/');
        for (service, path) in [
            (CARRIER_SERVICE, CALLBACK_PATH),
            (DEVICE_USAGE, USAGE_CALLBACK_PATH),
        ] {
            client
                .register_callback(
                    service,
                    &format!("{api}{path}"),
                    Some(CALLBACK_USERNAME),
                    Some(CALLBACK_PASSWORD),
                    &CallJournal::default(),
                )
                .await
                .map_err(|e| {
                    anyhow::anyhow!("registering the ThingSpace {service} listener: {e}")
                })?;
        }
        Ok(())
    }

    /// Puts SIMs `iccids` at the carriers, one in three each, as an inventory looks: most in
    /// service, one in 20 suspended and one in 20 not yet activated, and a third of Jasper's
    /// moved to another rate plan in Control Center. Returns the ICCIDs by carrier.
    pub fn seed_inventory(&self, iccids: &[String]) -> [(&'static str, Vec<String>); 3] {
        let sims = &self.server.sims;
        let mut by_carrier: [(&'static str, Vec<String>); 3] = [
            ("jasper", Vec::new()),
            ("thingSpace", Vec::new()),
            ("telegence", Vec::new()),
        ];
        for (n, iccid) in iccids.iter().enumerate() {
            by_carrier[n % 3].1.push(iccid.clone());
        }
        // Each carrier's n-th SIM: n % 20 == 0 not activated, 1 suspended, else active.
        let jasper = &by_carrier[0].1;
        for (iccid, stage) in jasper.iter().enumerate().map(|(n, i)| (i, n % 20)) {
            let status = match stage {
                0 => "ACTIVATION_READY",
                1 => "DEACTIVATED",
                _ => "ACTIVATED",
            };
            sims.jasper.seed_devices([iccid.as_str()], status);
        }
        sims.jasper.change_outside(jasper.len() / 3, "RP-5GB");
        for (iccid, stage) in by_carrier[1].1.iter().enumerate().map(|(n, i)| (i, n % 20)) {
            let state = match stage {
                0 => DeviceState::PreActive,
                1 => DeviceState::Suspend,
                _ => DeviceState::Active,
            };
            sims.thingspace.seed_devices([iccid.as_str()], state);
        }
        sims.telegence
            .seed_subscribers(by_carrier[2].1.iter().enumerate().map(|(n, iccid)| {
                let status = match n % 20 {
                    0 => SubscriberStatus::Reserved,
                    1 => SubscriberStatus::Suspended,
                    _ => SubscriberStatus::Active,
                };
                let number = format!(
                    "469{}",
                    &iccid[iccid.len().saturating_sub(8)..iccid.len() - 1]
                );
                Subscriber::new(&number, iccid, status)
            }));
        by_carrier
    }

    /// Puts the same devices, active, at every carrier (Telegence keys them by a subscriber
    /// number derived from the ICCID).
    pub fn seed_active<'a>(&self, iccids: impl IntoIterator<Item = &'a str> + Clone) {
        let sims = &self.server.sims;
        sims.jasper.seed_devices(iccids.clone(), "ACTIVATED");
        sims.thingspace
            .seed_devices(iccids.clone(), DeviceState::Active);
        sims.telegence
            .seed_subscribers(iccids.into_iter().map(|iccid| {
                let number = format!("555{}", &iccid[iccid.len().saturating_sub(7)..]);
                Subscriber::new(&number, iccid, SubscriberStatus::Active)
            }));
    }
}
