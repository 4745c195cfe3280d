use console_assets::{handle, HttpResponder, Request, S3Bucket, FILES};
use lambda_runtime::{service_fn, Error, LambdaEvent};

#[tokio::main]
async fn main() -> Result<(), Error> {
    let (_config, sdk) = cellbridge_edge::lambda::cold_start::<console_assets::Config>().await?;
    let bucket = S3Bucket::new(cellbridge_core::aws::s3(&sdk));
    let responder = HttpResponder::new()?;
    lambda_runtime::run(service_fn(|event: LambdaEvent<Request>| {
        let (bucket, responder) = (&bucket, &responder);
        async move {
            handle(bucket, responder, &event.payload, FILES)
                .await
                .map_err(Error::from)
        }
    }))
    .await
}
