//! Service providers through the local API: each demo tenant's seeded accounts at the carrier
//! simulators test green, credentials go to Secrets Manager and nowhere else, wrong credentials
//! test red and stop being tried, bulk changes naming a provider go out with its credentials, and
//! tenants never see or use each other's providers.

use super::signed_in;
use anyhow::{Context, Result};
use cellbridge::carriers::provider_probe::PROBE_ICCID;
use devstack::Devstack;
use serde_json::json;

/// The Jasper key of the provider this scenario registers wrongly (checked absent from the logs
/// by the secrets scenario).
pub const WRONG_JASPER_KEY: &str = "not-the-jasper-key-0f3a";

pub async fn service_providers_keep_their_credentials_to_themselves(
    stack: &Devstack,
) -> Result<()> {
    let admin = signed_in(stack, "admin@demo.example").await?;
    let seeded = admin.service_providers().await?;
    let mut carriers: Vec<&str> = seeded.iter().map(|p| p.carrier.as_str()).collect();
    carriers.sort_unstable();
    assert_eq!(
        carriers,
        ["jasper", "telegence", "thingSpace"],
        "{seeded:?}"
    );
    for provider in &seeded {
        let result = admin.test_service_provider(&provider.id).await?;
        assert!(result.ok, "{}: {}", provider.name, result.detail);
    }
    // Each test read the SIM no carrier issues, with the provider's credentials.
    let sims = &stack.carriers().context("carriers")?.server.sims;
    let probes = sims
        .log
        .entries()
        .iter()
        .filter(|e| e.path.contains(PROBE_ICCID))
        .count();
    assert!(
        probes >= 2,
        "Jasper and Telegence were asked for the probe SIM: {probes}"
    );

    // The seeded Jasper account has its provider: a second one on it would take its SIMs.
    let jasper = seeded
        .iter()
        .find(|p| p.carrier.as_str() == "jasper")
        .context("the seeded Jasper provider")?;
    let twice = admin
        .create_service_provider(&json!({
            "name": "Jasper again",
            "carrier": "jasper",
            "endpoint": format!("{}/", jasper.endpoint),
            "credentials": {"username": "cellbridge", "apiKey": WRONG_JASPER_KEY},
        }))
        .await
        .expect_err("one provider per carrier account");
    assert_eq!(twice.status().map(|s| s.as_u16()), Some(409), "{twice}");
    assert!(format!("{twice:?}").contains(&jasper.id), "{twice:?}");

    // A login the carrier does not know: refused, then refused again, then not tried until the
    // credentials change.
    let wrong = admin
        .create_service_provider(&json!({
            "name": "Jasper with a wrong key",
            "carrier": "jasper",
            "endpoint": jasper.endpoint,
            "credentials": {"username": "cellbridge-unknown", "apiKey": WRONG_JASPER_KEY},
        }))
        .await?;
    for _ in 0..2 {
        let result = admin.test_service_provider(&wrong.id).await?;
        assert!(!result.ok);
        assert!(result.detail.contains("refused"), "{}", result.detail);
    }
    // The probe SIM's reads only: the carrier sync lists Jasper on its own schedule meanwhile.
    let jasper_calls = || {
        sims.log
            .entries()
            .iter()
            .filter(|e| e.carrier == "jasper" && e.path.contains(PROBE_ICCID))
            .count()
    };
    let before = jasper_calls();
    let stopped = admin
        .test_service_provider(&wrong.id)
        .await
        .expect_err("a third test waits for new credentials");
    assert_eq!(stopped.status().map(|s| s.as_u16()), Some(409), "{stopped}");
    assert_eq!(jasper_calls(), before, "no call was made");

    // The credentials are in Secrets Manager under the stack's prefix, and only there.
    let secrets = cellbridge::common::aws::secrets_manager(stack.sdk_config());
    let stored = secrets
        .list_secrets()
        .send()
        .await?
        .secret_list
        .unwrap_or_default();
    let names: Vec<String> = stored.iter().filter_map(|s| s.name.clone()).collect();
    assert!(
        names
            .iter()
            .any(|n| n.ends_with(&format!("/providers/demo/{}", wrong.id))),
        "{names:?}"
    );
    let dynamodb = cellbridge::common::aws::dynamodb(stack.sdk_config());
    let table = stack
        .resources()
        .table_name("ServiceProvidersTable")
        .context("providers table")?;
    let items = format!(
        "{:?}",
        dynamodb.scan().table_name(table).send().await?.items()
    );
    assert!(
        items.contains("Jasper with a wrong key"),
        "the scan sees the providers"
    );
    assert!(
        !items.contains(WRONG_JASPER_KEY),
        "no credential in the table"
    );
    let listed = serde_json::to_string(&admin.service_providers().await?)?;
    assert!(
        !listed.contains(WRONG_JASPER_KEY),
        "no credential in the API"
    );

    // A bulk change naming a provider goes out with that provider's credentials: the seeded one
    // works, the wrong key fails every device on it, and another tenant's provider is a 404.
    let operator = signed_in(stack, "ops@demo.example").await?;
    let iccids: Vec<String> = (900..903).map(cellbridge::testing::iccid).collect();
    stack
        .carriers()
        .context("carriers")?
        .seed_active(iccids.iter().map(String::as_str));
    let suspend = |provider: &str, devices: &[String]| {
        json!({
            "serviceProviderId": provider,
            "change": {"type": "statusUpdate", "action": "suspend"},
            "devices": devices.iter().map(|iccid| json!({"iccid": iccid})).collect::<Vec<_>>(),
        })
    };
    let through_seeded = operator
        .create_bulk_change(&suspend(&jasper.id, &iccids[..2]), None)
        .await?;
    assert_eq!(
        through_seeded.carrier.as_str(),
        "jasper",
        "the provider's carrier"
    );
    assert_eq!(
        through_seeded.service_provider_id.as_deref(),
        Some(jasper.id.as_str())
    );
    let through_wrong = operator
        .create_bulk_change(&suspend(&wrong.id, &iccids[2..]), None)
        .await?;
    let timeout = std::time::Duration::from_secs(120);
    let done = operator
        .wait_bulk_change_final(&through_seeded.id, timeout)
        .await?;
    assert_eq!(
        (done.counts.succeeded, done.counts.failed),
        (2, 0),
        "{done:?}"
    );
    let refused = operator
        .wait_bulk_change_final(&through_wrong.id, timeout)
        .await?;
    assert_eq!((refused.counts.succeeded, refused.counts.failed), (0, 1));
    let outcomes = operator.bulk_change_devices(&through_wrong.id).await?;
    let reason = outcomes[0].status_reason.as_deref().unwrap_or_default();
    assert!(reason.contains("credentials"), "{reason}");

    // Another tenant sees none of it.
    let globex = signed_in(stack, "admin@globex.example").await?;
    let theirs = globex.service_providers().await?;
    assert_eq!(theirs.len(), 3, "globex has its own three");
    assert!(theirs.iter().all(|p| seeded.iter().all(|s| s.id != p.id)));
    let hidden = globex
        .test_service_provider(&wrong.id)
        .await
        .expect_err("demo's provider is not globex's");
    assert_eq!(hidden.status().map(|s| s.as_u16()), Some(404));
    let foreign = operator
        .create_bulk_change(&suspend(&theirs[0].id, &iccids[..1]), None)
        .await
        .expect_err("globex's provider is not demo's");
    assert_eq!(foreign.status().map(|s| s.as_u16()), Some(404));

    // Deleting the provider deletes its secret.
    let delete = reqwest::Client::new()
        .delete(format!(
            "{}/service-providers/{}",
            stack.api_url(),
            wrong.id
        ))
        .bearer_auth(admin.token().context("token")?)
        .send()
        .await?;
    assert_eq!(delete.status().as_u16(), 204);
    let names: Vec<String> = secrets
        .list_secrets()
        .send()
        .await?
        .secret_list
        .unwrap_or_default()
        .iter()
        .filter_map(|s| s.name.clone())
        .collect();
    assert!(!names.iter().any(|n| n.ends_with(&wrong.id)), "{names:?}");
    Ok(())
}
