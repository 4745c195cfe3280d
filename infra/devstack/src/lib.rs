//! The local stack: moto for AWS, `cargo lambda watch` for the functions, and what neither
//! provides (API Gateway routes, SQS event sources), all derived from `template.yaml`.

pub mod moto;
pub mod tools;
