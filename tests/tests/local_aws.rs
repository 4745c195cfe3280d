//! The local AWS as the harness and the devstack build it: each service's resources live in the
//! emulator meant for them, so a client that silently fell back to moto for DynamoDB or SQS would
//! fail here rather than quietly slow every other test down.

use anyhow::Result;
use cellbridge_tests::LocalAwsStack;

/// A DynamoDB client built straight at one emulator, bypassing the routing under test.
fn dynamodb_at(stack: &LocalAwsStack, endpoint: String) -> aws_sdk_dynamodb::Client {
    aws_sdk_dynamodb::Client::from_conf(
        aws_sdk_dynamodb::config::Builder::from(&stack.config)
            .endpoint_url(endpoint)
            .build(),
    )
}

/// The same for SQS.
fn sqs_at(stack: &LocalAwsStack, endpoint: String) -> aws_sdk_sqs::Client {
    aws_sdk_sqs::Client::from_conf(
        aws_sdk_sqs::config::Builder::from(&stack.config)
            .endpoint_url(endpoint)
            .build(),
    )
}

#[tokio::test]
async fn tables_and_queues_are_in_ministack_and_buckets_in_moto() -> Result<()> {
    let stack = LocalAwsStack::start().await?;
    let ministack = stack.aws.ministack().endpoint();
    let moto = stack.aws.moto().endpoint();

    let in_ministack = dynamodb_at(&stack, ministack.clone())
        .list_tables()
        .send()
        .await?;
    let in_moto = dynamodb_at(&stack, moto.clone())
        .list_tables()
        .send()
        .await?;
    assert!(
        in_ministack
            .table_names()
            .contains(&stack.name("BulkChangesTable")?),
        "{:?}",
        in_ministack.table_names()
    );
    assert_eq!(in_moto.table_names(), [] as [String; 0]);

    let queues_in_ministack = sqs_at(&stack, ministack).list_queues().send().await?;
    let queues_in_moto = sqs_at(&stack, moto).list_queues().send().await?;
    assert!(queues_in_ministack
        .queue_urls()
        .iter()
        .any(|url| url.ends_with("/PlanQueue")));
    assert_eq!(queues_in_moto.queue_urls(), [] as [String; 0]);

    // Through the routed configuration: S3 reaches moto (path-style, as emulators need).
    assert_eq!(stack.object_count("PayloadBucket").await?, 0);
    stack.stop().await;
    Ok(())
}
