//! The bundled script and styles (`web/`), content-hashed so they can be cached for a year:
//! served from S3 behind CloudFront in AWS, and by the local stack from `web/dist`.

include!(concat!(env!("OUT_DIR"), "/assets.rs"));

/// Where pages link the bundled files; the same path in AWS (CloudFront sends it to S3) and
/// locally (the devstack serves `web/dist` there).
pub const ASSETS_PATH: &str = "/console/assets/";

/// The URL of a bundled file.
pub fn url(file: &str) -> String {
    format!("{ASSETS_PATH}{file}")
}
