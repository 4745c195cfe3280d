//! Test harness: the local AWS emulators per test (MiniStack for DynamoDB and SQS, moto for the
//! rest), provisioned from template.yaml by the devstack, and helpers to look at what the
//! functions left in DynamoDB, SQS and S3.

use anyhow::{Context, Result};
use aws_config::SdkConfig;
use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use cellbridge::bulk_changes::ports::BulkChangePorts;
use devstack::local_aws::{LocalAws, LocalAwsPorts};
use devstack::tools::{workspace_root, Tools};

pub struct LocalAwsStack {
    pub aws: LocalAws,
    pub config: SdkConfig,
    pub template: devstack::template::Template,
    pub resources: devstack::template::Resources,
}

impl LocalAwsStack {
    /// Fresh emulators with every table, queue and bucket of template.yaml.
    pub async fn start() -> Result<Self> {
        let root = workspace_root();
        let aws = LocalAws::start(&Tools::at(&root), LocalAwsPorts::default()).await?;
        let config = aws.sdk_config().await;
        let template = devstack::template::Template::load(&root.join("template.yaml"))?;
        let resources = devstack::provision::provision(&template, &config).await?;
        Ok(Self {
            aws,
            config,
            template,
            resources,
        })
    }

    pub async fn stop(self) {
        self.aws.stop().await;
    }

    pub fn dynamodb(&self) -> aws_sdk_dynamodb::Client {
        cellbridge::common::aws::dynamodb(&self.config)
    }

    pub fn sqs(&self) -> aws_sdk_sqs::Client {
        cellbridge::common::aws::sqs(&self.config)
    }

    pub fn s3(&self) -> aws_sdk_s3::Client {
        cellbridge::common::aws::s3(&self.config)
    }

    pub fn queue_url(&self, logical_id: &str) -> Result<String> {
        self.resources
            .queue_url(logical_id)
            .map(str::to_owned)
            .with_context(|| format!("no queue {logical_id}"))
    }

    pub fn name(&self, logical_id: &str) -> Result<String> {
        let resources = &self.resources;
        resources
            .table_name(logical_id)
            .or_else(|| resources.bucket_name(logical_id))
            .or_else(|| resources.queue_name(logical_id))
            .map(str::to_owned)
            .with_context(|| format!("no resource {logical_id}"))
    }

    /// The real adapters, wired to this stack's resources.
    pub fn ports(&self) -> Result<BulkChangePorts> {
        devstack::ports::bulk_change_ports(&self.config, &self.template, &self.resources)
    }

    /// Number of items in a table (scans every page).
    pub async fn item_count(&self, table_logical_id: &str) -> Result<usize> {
        let table = self.name(table_logical_id)?;
        let mut pages = self
            .dynamodb()
            .scan()
            .table_name(table)
            .select(aws_sdk_dynamodb::types::Select::Count)
            .into_paginator()
            .send();
        let mut count = 0;
        while let Some(page) = pages.next().await {
            count += page?.count as usize;
        }
        Ok(count)
    }

    /// Messages visible plus in flight on a queue.
    pub async fn queue_depth(&self, queue_logical_id: &str) -> Result<usize> {
        use aws_sdk_sqs::types::QueueAttributeName::{
            ApproximateNumberOfMessages, ApproximateNumberOfMessagesNotVisible,
        };
        let attributes = self
            .sqs()
            .get_queue_attributes()
            .queue_url(self.queue_url(queue_logical_id)?)
            .attribute_names(ApproximateNumberOfMessages)
            .attribute_names(ApproximateNumberOfMessagesNotVisible)
            .send()
            .await?;
        let read = |name| {
            attributes
                .attributes()
                .and_then(|a| a.get(&name))
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(0)
        };
        Ok(read(ApproximateNumberOfMessages) + read(ApproximateNumberOfMessagesNotVisible))
    }

    pub async fn object_count(&self, bucket_logical_id: &str) -> Result<usize> {
        let listed = self
            .s3()
            .list_objects_v2()
            .bucket(self.name(bucket_logical_id)?)
            .send()
            .await?;
        Ok(listed.key_count.unwrap_or(0) as usize)
    }

    /// Receives up to ten messages as the SQS event Lambda would deliver, hiding them for
    /// `visibility_seconds`.
    pub async fn receive_event(
        &self,
        queue_logical_id: &str,
        visibility_seconds: i32,
    ) -> Result<(SqsEvent, Vec<String>)> {
        let output = self
            .sqs()
            .receive_message()
            .queue_url(self.queue_url(queue_logical_id)?)
            .max_number_of_messages(10)
            .visibility_timeout(visibility_seconds)
            .wait_time_seconds(1)
            .send()
            .await?;
        let mut event = SqsEvent::default();
        let mut receipts = Vec::new();
        for message in output.messages.unwrap_or_default() {
            let mut record = SqsMessage::default();
            record.message_id = message.message_id.clone();
            record.receipt_handle = message.receipt_handle.clone();
            record.body = message.body.clone();
            record.event_source = Some("aws:sqs".into());
            receipts.push(message.receipt_handle.unwrap_or_default());
            event.records.push(record);
        }
        Ok((event, receipts))
    }

    pub async fn delete(&self, queue_logical_id: &str, receipt: &str) -> Result<()> {
        self.sqs()
            .delete_message()
            .queue_url(self.queue_url(queue_logical_id)?)
            .receipt_handle(receipt)
            .send()
            .await?;
        Ok(())
    }
}
