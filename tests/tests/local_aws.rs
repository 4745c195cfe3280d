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
async fn tables_and_queues_are_in_their_ministack_and_buckets_in_moto() -> Result<()> {
    let stack = LocalAwsStack::start().await?;
    let dynamodb = stack.aws.dynamodb().endpoint();
    let sqs = stack.aws.sqs().endpoint();
    let moto = stack.aws.moto().endpoint();

    // What an emulator holds; one that does not serve the service (the other MiniStack)
    // refuses the call, which is as good as empty here.
    let tables_in = |endpoint: String| {
        let client = dynamodb_at(&stack, endpoint);
        async move {
            match client.list_tables().send().await {
                Ok(out) => out.table_names.unwrap_or_default(),
                Err(_) => Vec::new(),
            }
        }
    };
    let in_dynamodb = tables_in(dynamodb.clone()).await;
    assert!(
        in_dynamodb.contains(&stack.name("BulkChangesTable")?),
        "{in_dynamodb:?}"
    );
    assert_eq!(tables_in(sqs.clone()).await, [] as [String; 0]);
    assert_eq!(tables_in(moto.clone()).await, [] as [String; 0]);

    let queues_in = |endpoint: String| {
        let client = sqs_at(&stack, endpoint);
        async move {
            match client.list_queues().send().await {
                Ok(out) => out.queue_urls.unwrap_or_default(),
                Err(_) => Vec::new(),
            }
        }
    };
    let in_sqs = queues_in(sqs).await;
    assert!(
        in_sqs.iter().any(|url| url.ends_with("/PlanQueue")),
        "{in_sqs:?}"
    );
    assert_eq!(queues_in(dynamodb).await, [] as [String; 0]);
    assert_eq!(queues_in(moto).await, [] as [String; 0]);

    // Through the routed configuration: S3 reaches moto (path-style, as emulators need).
    assert_eq!(stack.object_count("PayloadBucket").await?, 0);
    stack.stop().await;
    Ok(())
}
