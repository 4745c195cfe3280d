//! The cold-start baseline: a `lambda_runtime` function that does nothing but answer.
use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::run(service_fn(|_: LambdaEvent<Value>| async {
        Ok::<_, Error>(serde_json::json!({}))
    }))
    .await
}
