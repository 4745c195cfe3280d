//! Creates the template's tables, queues, buckets, secrets and IoT thing types in the local
//! emulators (each client goes where [`crate::local_aws`] sends its service). Safe to re-run
//! against the same emulators: what exists is kept (queue attributes are brought up to date, a
//! table's stream is turned on if the template has since asked for one).

pub use crate::template::Resources;
use crate::template::{QueueSpec, TableSpec, Template, ThingTypeSpec};
use anyhow::{Context, Result};
use aws_config::SdkConfig;
use aws_sdk_dynamodb::types as ddb;
use aws_sdk_sqs::types::QueueAttributeName;
use std::collections::HashMap;

/// Provisions everything the template declares that the local stack emulates, and returns the
/// local name, ARN and URL of each resource by logical id.
pub async fn provision(template: &Template, sdk: &SdkConfig) -> Result<Resources> {
    let mut resources = Resources::planned(template);

    let dynamodb = aws_sdk_dynamodb::Client::new(sdk);
    for table in template.tables(&resources)? {
        let stream_arn = create_table(&dynamodb, &table)
            .await
            .with_context(|| format!("creating table {}", table.logical_id))?;
        // The stream's label is the emulator's choice: `!GetAtt Table.StreamArn` takes it from here.
        if let Some(arn) = stream_arn {
            resources.set_stream_arn(&table.logical_id, arn);
        }
    }

    let sqs = aws_sdk_sqs::Client::new(sdk);
    // Dead-letter queues first, so a RedrivePolicy names the ARN the emulator gave the created queue.
    for id in template.queue_order()? {
        let spec = template.queue(&id, &resources)?;
        let (url, arn) = create_queue(&sqs, &spec)
            .await
            .with_context(|| format!("creating queue {id}"))?;
        resources.set_queue(&id, url, arn);
    }

    let secrets = cellbridge::common::aws::secrets_manager(sdk);
    for secret in template.secrets(&resources)? {
        let arn = create_secret(&secrets, &secret)
            .await
            .with_context(|| format!("creating secret {}", secret.logical_id))?;
        resources.set_arn(&secret.logical_id, arn);
    }

    let s3 = cellbridge::common::aws::s3(sdk);
    for bucket in template.buckets(&resources) {
        match s3.create_bucket().bucket(&bucket.name).send().await {
            Ok(_) => {}
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_bucket_already_owned_by_you()) => {}
            Err(e) => {
                return Err(aws_sdk_s3::Error::from(e)).with_context(|| {
                    format!("creating bucket {} ({})", bucket.name, bucket.logical_id)
                })
            }
        }
    }

    // Things are created with their type, which must exist first (moto checks, as IoT does).
    let iot = cellbridge::common::aws::iot(sdk);
    for thing_type in template.thing_types(&resources)? {
        let arn = create_thing_type(&iot, &thing_type)
            .await
            .with_context(|| format!("creating thing type {}", thing_type.logical_id))?;
        resources.set_arn(&thing_type.logical_id, arn);
    }
    Ok(resources)
}

/// Creates the thing type unless it exists, and returns its ARN.
async fn create_thing_type(client: &aws_sdk_iot::Client, spec: &ThingTypeSpec) -> Result<String> {
    // CreateThingType replaces an existing type in moto; keep the one an earlier run made.
    if let Ok(existing) = client
        .describe_thing_type()
        .thing_type_name(&spec.name)
        .send()
        .await
    {
        if let Some(arn) = existing.thing_type_arn {
            return Ok(arn);
        }
    }
    let properties = aws_sdk_iot::types::ThingTypeProperties::builder()
        .set_thing_type_description(spec.description.clone())
        .set_searchable_attributes(
            (!spec.searchable_attributes.is_empty()).then(|| spec.searchable_attributes.clone()),
        )
        .build();
    let created = client
        .create_thing_type()
        .thing_type_name(&spec.name)
        .thing_type_properties(properties)
        .send()
        .await
        .map_err(aws_sdk_iot::Error::from)?;
    if spec.deprecated {
        client
            .deprecate_thing_type()
            .thing_type_name(&spec.name)
            .send()
            .await
            .map_err(aws_sdk_iot::Error::from)?;
    }
    created
        .thing_type_arn
        .context("moto returned no ARN for the thing type")
}

/// Creates the secret unless it exists, and returns its ARN. A generated value is random and
/// alphanumeric, like CloudFormation's with `ExcludePunctuation`; it lives only in moto.
async fn create_secret(
    client: &aws_sdk_secretsmanager::Client,
    spec: &crate::template::SecretSpec,
) -> Result<String> {
    if let Ok(existing) = client.describe_secret().secret_id(&spec.name).send().await {
        if let Some(arn) = existing.arn {
            return Ok(arn);
        }
    }
    let value = match &spec.secret_string {
        Some(value) => value.clone(),
        None => random_alphanumeric(spec.generated_length)?,
    };
    let created = client
        .create_secret()
        .name(&spec.name)
        .secret_string(value)
        .send()
        .await
        .map_err(aws_sdk_secretsmanager::Error::from)?;
    created.arn.context("moto returned no ARN for the secret")
}

fn random_alphanumeric(len: usize) -> Result<String> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut out = String::with_capacity(len);
    let mut byte = [0u8; 1];
    while out.len() < len {
        aws_lc_rs::rand::fill(&mut byte).map_err(|_| anyhow::anyhow!("no system randomness"))?;
        // 248 = 4 × 62: rejecting the rest keeps every symbol equally likely.
        if byte[0] < 248 {
            out.push(char::from(ALPHABET[usize::from(byte[0]) % ALPHABET.len()]));
        }
    }
    Ok(out)
}

fn key_schema(
    elements: &[crate::template::KeySchemaElement],
) -> Result<Vec<ddb::KeySchemaElement>> {
    elements
        .iter()
        .map(|k| {
            Ok(ddb::KeySchemaElement::builder()
                .attribute_name(&k.attribute_name)
                .key_type(ddb::KeyType::from(k.key_type.as_str()))
                .build()?)
        })
        .collect()
}

fn throughput(
    t: &Option<crate::template::Throughput>,
) -> Result<Option<ddb::ProvisionedThroughput>> {
    let Some(t) = t else { return Ok(None) };
    Ok(Some(
        ddb::ProvisionedThroughput::builder()
            .read_capacity_units(i64::try_from(t.read_capacity_units)?)
            .write_capacity_units(i64::try_from(t.write_capacity_units)?)
            .build()?,
    ))
}

fn projection(p: &crate::template::Projection) -> ddb::Projection {
    ddb::Projection::builder()
        .set_projection_type(p.projection_type.as_deref().map(ddb::ProjectionType::from))
        .set_non_key_attributes(
            (!p.non_key_attributes.is_empty()).then(|| p.non_key_attributes.clone()),
        )
        .build()
}

/// Creates the table unless it exists, and returns the ARN of its stream when the template gives
/// it one.
async fn create_table(
    client: &aws_sdk_dynamodb::Client,
    table: &TableSpec,
) -> Result<Option<String>> {
    let attributes = table
        .attribute_definitions
        .iter()
        .map(|a| {
            Ok(ddb::AttributeDefinition::builder()
                .attribute_name(&a.attribute_name)
                .attribute_type(ddb::ScalarAttributeType::from(a.attribute_type.as_str()))
                .build()?)
        })
        .collect::<Result<Vec<_>>>()?;
    let gsis = table
        .global_secondary_indexes
        .iter()
        .map(|i| {
            Ok(ddb::GlobalSecondaryIndex::builder()
                .index_name(&i.index_name)
                .set_key_schema(Some(key_schema(&i.key_schema)?))
                .projection(projection(&i.projection))
                .set_provisioned_throughput(throughput(&i.provisioned_throughput)?)
                .build()?)
        })
        .collect::<Result<Vec<_>>>()?;
    let lsis = table
        .local_secondary_indexes
        .iter()
        .map(|i| {
            Ok(ddb::LocalSecondaryIndex::builder()
                .index_name(&i.index_name)
                .set_key_schema(Some(key_schema(&i.key_schema)?))
                .projection(projection(&i.projection))
                .build()?)
        })
        .collect::<Result<Vec<_>>>()?;
    let stream = match &table.stream_specification {
        Some(s) => Some(
            ddb::StreamSpecification::builder()
                .stream_enabled(true)
                .stream_view_type(ddb::StreamViewType::from(s.stream_view_type.as_str()))
                .build()?,
        ),
        None => None,
    };
    let wants_stream = stream.clone();
    let created = client
        .create_table()
        .table_name(&table.name)
        .set_attribute_definitions(Some(attributes))
        .set_key_schema(Some(key_schema(&table.key_schema)?))
        .set_billing_mode(table.billing_mode.as_deref().map(ddb::BillingMode::from))
        .set_provisioned_throughput(throughput(&table.provisioned_throughput)?)
        .set_global_secondary_indexes((!gsis.is_empty()).then_some(gsis))
        .set_local_secondary_indexes((!lsis.is_empty()).then_some(lsis))
        .set_stream_specification(stream)
        .send()
        .await;
    let mut stream_arn = match created {
        Ok(out) => out.table_description.and_then(|d| d.latest_stream_arn),
        // Already there from an earlier run against this emulator: keep it and its data.
        Err(e)
            if e.as_service_error()
                .is_some_and(|e| e.is_resource_in_use_exception()) =>
        {
            existing_stream(client, table, wants_stream).await?
        }
        Err(e) => return Err(aws_sdk_dynamodb::Error::from(e).into()),
    };
    if table.stream_specification.is_none() {
        stream_arn = None;
    } else if stream_arn.is_none() {
        anyhow::bail!("the emulator gave the table no LatestStreamArn, though its stream is on");
    }

    if let Some(ttl) = &table.time_to_live_specification {
        let current = client
            .describe_time_to_live()
            .table_name(&table.name)
            .send()
            .await?;
        let desc = current.time_to_live_description();
        let enabled = matches!(
            desc.and_then(|d| d.time_to_live_status()),
            Some(ddb::TimeToLiveStatus::Enabled | ddb::TimeToLiveStatus::Enabling)
        );
        let same_attribute =
            desc.and_then(|d| d.attribute_name()) == Some(ttl.attribute_name.as_str());
        if enabled != ttl.enabled || (ttl.enabled && !same_attribute) {
            client
                .update_time_to_live()
                .table_name(&table.name)
                .time_to_live_specification(
                    ddb::TimeToLiveSpecification::builder()
                        .attribute_name(&ttl.attribute_name)
                        .enabled(ttl.enabled)
                        .build()?,
                )
                .send()
                .await
                .map_err(aws_sdk_dynamodb::Error::from)?;
        }
    }
    Ok(stream_arn)
}

/// The stream of a table an earlier run created: turned on if the template asks for one the
/// table lacks, so the stream event sources have something to read.
async fn existing_stream(
    client: &aws_sdk_dynamodb::Client,
    table: &TableSpec,
    wanted: Option<ddb::StreamSpecification>,
) -> Result<Option<String>> {
    let Some(wanted) = wanted else {
        return Ok(None);
    };
    let described = client
        .describe_table()
        .table_name(&table.name)
        .send()
        .await
        .map_err(aws_sdk_dynamodb::Error::from)?;
    let current = described.table();
    let enabled = current
        .and_then(|t| t.stream_specification())
        .is_some_and(|s| s.stream_enabled());
    if enabled {
        let view = current
            .and_then(|t| t.stream_specification())
            .and_then(|s| s.stream_view_type());
        if view != wanted.stream_view_type() {
            // Changing it means a new stream; the table's data is kept all the same.
            tracing::warn!(
                "table {}: its stream shows {view:?}, the template asks for {:?}; restart the emulators for the new view",
                table.name,
                wanted.stream_view_type()
            );
        }
        return Ok(current
            .and_then(|t| t.latest_stream_arn())
            .map(str::to_owned));
    }
    let updated = client
        .update_table()
        .table_name(&table.name)
        .stream_specification(wanted)
        .send()
        .await
        .map_err(aws_sdk_dynamodb::Error::from)?;
    Ok(updated.table_description.and_then(|d| d.latest_stream_arn))
}

/// Creates the queue (or updates an existing one) and returns its URL and ARN.
async fn create_queue(client: &aws_sdk_sqs::Client, spec: &QueueSpec) -> Result<(String, String)> {
    let attributes: HashMap<QueueAttributeName, String> = spec
        .attributes
        .iter()
        .map(|(k, v)| (QueueAttributeName::from(k.as_str()), v.clone()))
        .collect();
    let url = match client
        .create_queue()
        .queue_name(&spec.name)
        .set_attributes(Some(attributes.clone()))
        .send()
        .await
    {
        Ok(out) => out.queue_url().map(str::to_owned),
        // Exists with other attributes (the template changed since): update what SQS lets change.
        Err(e)
            if e.as_service_error()
                .is_some_and(|e| e.is_queue_name_exists()) =>
        {
            let url = client
                .get_queue_url()
                .queue_name(&spec.name)
                .send()
                .await
                .map_err(aws_sdk_sqs::Error::from)?
                .queue_url()
                .map(str::to_owned)
                .context("GetQueueUrl answered without a URL")?;
            let mutable: HashMap<_, _> = attributes
                .into_iter()
                .filter(|(k, _)| *k != QueueAttributeName::FifoQueue)
                .collect();
            client
                .set_queue_attributes()
                .queue_url(&url)
                .set_attributes(Some(mutable))
                .send()
                .await
                .map_err(aws_sdk_sqs::Error::from)?;
            Some(url)
        }
        Err(e) => return Err(aws_sdk_sqs::Error::from(e).into()),
    };
    let url = url.context("CreateQueue answered without a queue URL")?;
    let arn = client
        .get_queue_attributes()
        .queue_url(&url)
        .attribute_names(QueueAttributeName::QueueArn)
        .send()
        .await
        .map_err(aws_sdk_sqs::Error::from)?
        .attributes()
        .and_then(|a| a.get(&QueueAttributeName::QueueArn))
        .cloned()
        .context("GetQueueAttributes answered without QueueArn")?;
    Ok((url, arn))
}
