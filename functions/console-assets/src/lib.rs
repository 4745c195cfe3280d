//! A CloudFormation custom resource, run at deploy time only: it copies the console's bundled
//! script and styles (embedded in this binary when it was built) into the assets bucket under
//! `console/assets/`, where CloudFront serves them with the console's pages.
//!
//! Files are content-hashed, so a deployment only adds: pages rendered before it keep loading
//! the files they name. When the stack is deleted, the prefix is emptied so the bucket can go.

use async_trait::async_trait;
use aws_lambda_events::event::cloudformation::{
    CloudFormationCustomResourceRequest, CloudFormationCustomResourceResponse,
    CloudFormationCustomResourceResponseStatus,
};
use serde::{Deserialize, Serialize};

include!(concat!(env!("OUT_DIR"), "/bundle.rs"));

/// Where the files go in the bucket: the path the pages link them under.
pub const PREFIX: &str = "console/assets/";
/// Content-hashed names never change content: cached everywhere for a year.
pub const CACHE_CONTROL: &str = "public, max-age=31536000, immutable";

/// This function's configuration: none (the bucket comes with each request), only the AWS SDK's.
#[derive(Debug, Clone, Copy)]
pub struct Config;

impl cellbridge_core::config::FromEnvironment for Config {
    fn from_env(
        _env: &dyn cellbridge_core::config::Environment,
    ) -> Result<Self, cellbridge_core::config::ConfigError> {
        Ok(Self)
    }
}

/// The custom resource's properties.
#[derive(Debug, Clone, Deserialize, Serialize, Default, PartialEq)]
#[serde(rename_all = "PascalCase")]
pub struct Properties {
    pub bucket: String,
}

pub type Request = CloudFormationCustomResourceRequest<Properties, Properties>;

#[derive(Debug, thiserror::Error)]
pub enum AssetsError {
    #[error("this build of console-assets carries no console files: run `cargo xtask web` before `sam build`")]
    NoBundle,
    #[error("writing {key} to the bucket failed: {detail}")]
    Write { key: String, detail: String },
    #[error("emptying the assets in the bucket failed: {0}")]
    Empty(String),
    #[error("answering CloudFormation failed: {0}")]
    Respond(String),
    #[error("CloudFormation sent a request type this function does not know")]
    UnknownRequest,
}

/// The bucket the files go to.
#[async_trait]
pub trait AssetBucket: Send + Sync {
    async fn put(
        &self,
        bucket: &str,
        key: &str,
        body: &'static [u8],
        content_type: &str,
    ) -> Result<(), AssetsError>;
    /// Removes every object under `prefix`.
    async fn empty(&self, bucket: &str, prefix: &str) -> Result<(), AssetsError>;
}

/// Where CloudFormation waits for the outcome (the request's pre-signed response URL).
#[async_trait]
pub trait Responder: Send + Sync {
    async fn respond(
        &self,
        url: &str,
        response: &CloudFormationCustomResourceResponse,
    ) -> Result<(), AssetsError>;
}

/// The type a browser must be told for a bundled file.
pub fn content_type(name: &str) -> &'static str {
    match name.rsplit_once('.').map(|(_, ext)| ext) {
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("woff2") => "font/woff2",
        Some("png") => "image/png",
        _ => "application/octet-stream",
    }
}

/// The files of a build, named by their content: the resource's physical id.
pub fn build_id(files: &[(&str, &[u8])]) -> String {
    let mut names: Vec<&str> = files.iter().map(|(name, _)| *name).collect();
    names.sort_unstable();
    format!("console-assets:{}", names.join(","))
}

async fn upload(
    bucket: &dyn AssetBucket,
    properties: &Properties,
    files: &[(&'static str, &'static [u8])],
) -> Result<(), AssetsError> {
    if files.is_empty() {
        return Err(AssetsError::NoBundle);
    }
    for (name, body) in files {
        bucket
            .put(
                &properties.bucket,
                &format!("{PREFIX}{name}"),
                body,
                content_type(name),
            )
            .await?;
    }
    Ok(())
}

/// Does what the request asks with `files`, then tells CloudFormation, which otherwise waits an
/// hour; only a failure to tell it is an error of this function.
pub async fn handle(
    bucket: &dyn AssetBucket,
    responder: &dyn Responder,
    request: &Request,
    files: &[(&'static str, &'static [u8])],
) -> Result<(), AssetsError> {
    let ours = build_id(files);
    // Where the answer goes and what it answers: the same fields in each kind of request.
    macro_rules! addressed {
        ($r:expr) => {
            (
                &$r.response_url,
                &$r.stack_id,
                &$r.request_id,
                &$r.logical_resource_id,
            )
        };
    }
    let (outcome, physical, (url, stack, request_id, logical)) = match request {
        CloudFormationCustomResourceRequest::Create(r) => (
            upload(bucket, &r.resource_properties, files).await,
            ours,
            addressed!(r),
        ),
        CloudFormationCustomResourceRequest::Update(r) => (
            upload(bucket, &r.resource_properties, files).await,
            ours,
            addressed!(r),
        ),
        CloudFormationCustomResourceRequest::Delete(r) => {
            // An update that changed the files deletes the old resource afterwards: the old
            // files stay for pages that still name them. Only the stack going (its resource is
            // this build's) empties the prefix.
            let outcome = if r.physical_resource_id == ours {
                bucket.empty(&r.resource_properties.bucket, PREFIX).await
            } else {
                Ok(())
            };
            (outcome, r.physical_resource_id.clone(), addressed!(r))
        }
        // Create, Update and Delete are all there is; the enum is open for the library's sake.
        _ => return Err(AssetsError::UnknownRequest),
    };
    let mut response = CloudFormationCustomResourceResponse::default();
    response.physical_resource_id = physical;
    response.stack_id = stack.clone();
    response.request_id = request_id.clone();
    response.logical_resource_id = logical.clone();
    match &outcome {
        Ok(()) => response.status = CloudFormationCustomResourceResponseStatus::Success,
        Err(error) => {
            tracing::error!("console assets: {error}");
            response.status = CloudFormationCustomResourceResponseStatus::Failed;
            response.reason = Some(error.to_string());
        }
    }
    responder.respond(url, &response).await
}

/// The assets bucket on S3.
pub struct S3Bucket {
    client: aws_sdk_s3::Client,
}

impl S3Bucket {
    pub fn new(client: aws_sdk_s3::Client) -> Self {
        Self { client }
    }
}

#[async_trait]
impl AssetBucket for S3Bucket {
    async fn put(
        &self,
        bucket: &str,
        key: &str,
        body: &'static [u8],
        content_type: &str,
    ) -> Result<(), AssetsError> {
        self.client
            .put_object()
            .bucket(bucket)
            .key(key)
            .body(aws_sdk_s3::primitives::ByteStream::from_static(body))
            .content_type(content_type)
            .cache_control(CACHE_CONTROL)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| AssetsError::Write {
                key: key.to_owned(),
                detail: aws_sdk_s3::error::DisplayErrorContext(e).to_string(),
            })
    }

    async fn empty(&self, bucket: &str, prefix: &str) -> Result<(), AssetsError> {
        let mut pages = self
            .client
            .list_objects_v2()
            .bucket(bucket)
            .prefix(prefix)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| {
                AssetsError::Empty(aws_sdk_s3::error::DisplayErrorContext(e).to_string())
            })?;
            for object in page.contents() {
                let Some(key) = object.key() else { continue };
                self.client
                    .delete_object()
                    .bucket(bucket)
                    .key(key)
                    .send()
                    .await
                    .map_err(|e| {
                        AssetsError::Empty(aws_sdk_s3::error::DisplayErrorContext(e).to_string())
                    })?;
            }
        }
        Ok(())
    }
}

/// Answers CloudFormation with a `PUT` of the response to its pre-signed URL.
pub struct HttpResponder {
    http: reqwest::Client,
}

impl HttpResponder {
    pub fn new() -> Result<Self, reqwest::Error> {
        Ok(Self {
            http: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(30))
                .build()?,
        })
    }
}

#[async_trait]
impl Responder for HttpResponder {
    async fn respond(
        &self,
        url: &str,
        response: &CloudFormationCustomResourceResponse,
    ) -> Result<(), AssetsError> {
        let body = serde_json::to_vec(response).map_err(|e| AssetsError::Respond(e.to_string()))?;
        // The pre-signed URL was signed without a content type: sending one would break it.
        let answer = self
            .http
            .put(url)
            .header("content-type", "")
            .body(body)
            .send()
            .await
            .map_err(|e| AssetsError::Respond(e.to_string()))?;
        if !answer.status().is_success() {
            return Err(AssetsError::Respond(format!(
                "the response URL answered {}",
                answer.status()
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    const CREATE: &str = include_str!("../../../events/console-assets/create.json");
    const DELETE: &str = include_str!("../../../events/console-assets/delete.json");
    const SAMPLE: &[(&str, &[u8])] = &[
        ("console.ABC123.js", b"console.log(1)"),
        ("styles.DEF456.css", b"body{}"),
    ];

    #[derive(Default)]
    struct Recorded {
        puts: Mutex<Vec<(String, String, String)>>,
        emptied: Mutex<Vec<String>>,
        answers: Mutex<Vec<(String, CloudFormationCustomResourceResponse)>>,
    }

    #[async_trait]
    impl AssetBucket for Recorded {
        async fn put(
            &self,
            bucket: &str,
            key: &str,
            _body: &'static [u8],
            content_type: &str,
        ) -> Result<(), AssetsError> {
            self.puts.lock().expect("puts").push((
                bucket.to_owned(),
                key.to_owned(),
                content_type.to_owned(),
            ));
            Ok(())
        }

        async fn empty(&self, bucket: &str, prefix: &str) -> Result<(), AssetsError> {
            self.emptied
                .lock()
                .expect("emptied")
                .push(format!("{bucket}/{prefix}"));
            Ok(())
        }
    }

    #[async_trait]
    impl Responder for Recorded {
        async fn respond(
            &self,
            url: &str,
            response: &CloudFormationCustomResourceResponse,
        ) -> Result<(), AssetsError> {
            self.answers
                .lock()
                .expect("answers")
                .push((url.to_owned(), response.clone()));
            Ok(())
        }
    }

    fn request(sample: &str, physical: Option<&str>) -> Request {
        let mut value: serde_json::Value = serde_json::from_str(sample).expect("sample");
        if let Some(id) = physical {
            value["PhysicalResourceId"] = id.into();
        }
        serde_json::from_value(value).expect("a custom resource request")
    }

    #[tokio::test]
    async fn creating_the_stack_puts_each_file_under_the_pages_path() {
        let world = Recorded::default();
        handle(&world, &world, &request(CREATE, None), SAMPLE)
            .await
            .expect("answered");
        let puts = world.puts.lock().expect("puts").clone();
        assert_eq!(
            puts,
            vec![
                (
                    "cellbridge-console-assets".to_owned(),
                    "console/assets/console.ABC123.js".to_owned(),
                    "text/javascript; charset=utf-8".to_owned()
                ),
                (
                    "cellbridge-console-assets".to_owned(),
                    "console/assets/styles.DEF456.css".to_owned(),
                    "text/css; charset=utf-8".to_owned()
                ),
            ]
        );
        let answers = world.answers.lock().expect("answers");
        let (url, answer) = &answers[0];
        assert!(url.starts_with("https://cloudformation-custom-resource-response"));
        assert_eq!(
            answer.status,
            CloudFormationCustomResourceResponseStatus::Success
        );
        assert_eq!(answer.physical_resource_id, build_id(SAMPLE));
    }

    #[tokio::test]
    async fn a_build_without_a_bundle_fails_the_deployment_saying_how_to_fix_it() {
        let world = Recorded::default();
        handle(&world, &world, &request(CREATE, None), &[])
            .await
            .expect("answered");
        let answers = world.answers.lock().expect("answers");
        assert_eq!(
            answers[0].1.status,
            CloudFormationCustomResourceResponseStatus::Failed
        );
        assert!(answers[0]
            .1
            .reason
            .as_deref()
            .is_some_and(|r| r.contains("cargo xtask web")));
    }

    #[tokio::test]
    async fn only_the_stack_going_empties_the_assets() {
        let world = Recorded::default();
        // After an update, CloudFormation deletes the old build's resource: its files stay.
        handle(
            &world,
            &world,
            &request(DELETE, Some("console-assets:old.js")),
            SAMPLE,
        )
        .await
        .expect("answered");
        assert!(world.emptied.lock().expect("emptied").is_empty());
        handle(
            &world,
            &world,
            &request(DELETE, Some(&build_id(SAMPLE))),
            SAMPLE,
        )
        .await
        .expect("answered");
        assert_eq!(
            *world.emptied.lock().expect("emptied"),
            vec!["cellbridge-console-assets/console/assets/".to_owned()]
        );
        let answers = world.answers.lock().expect("answers");
        assert!(answers
            .iter()
            .all(|(_, a)| a.status == CloudFormationCustomResourceResponseStatus::Success));
    }
}
