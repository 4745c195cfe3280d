//! Where requests and events come in: the HTTP edge (problems, the caller, paging, bodies,
//! idempotency keys) and the Lambda edge (SQS batches, tracing, metrics).

pub mod http;
pub mod lambda;
