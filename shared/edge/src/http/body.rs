//! Checks every JSON body passes before it is parsed: its media type and its size.

use crate::http::problem::Problem;
use lambda_http::http::header;
use lambda_http::Request;

/// The body of `request`, when it is JSON (or carries no content type) and at most `max_bytes`;
/// `advice` says how to stay under that.
pub fn json_body<'r>(
    request: &'r Request,
    max_bytes: usize,
    advice: &str,
) -> Result<&'r [u8], Problem> {
    if let Some(value) = request.headers().get(header::CONTENT_TYPE) {
        let essence = value
            .to_str()
            .unwrap_or("")
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if essence != "application/json" && !essence.ends_with("+json") {
            return Err(Problem::unsupported_media_type());
        }
    }
    let body: &[u8] = request.body().as_ref();
    if body.len() > max_bytes {
        return Err(Problem::payload_too_large(max_bytes, advice));
    }
    Ok(body)
}
