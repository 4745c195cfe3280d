//! Query parameters: only the route's own are allowed; `limit` and `cursor` page through lists.

use crate::http::problem::Problem;
use cellbridge_core::store::PageRequest;
use lambda_http::{Request, RequestExt};

pub const DEFAULT_LIMIT: u32 = 100;
pub const MAX_LIMIT: u32 = 1000;

pub fn page_request(request: &Request) -> Result<PageRequest, Problem> {
    let query = request.query_string_parameters();
    let limit = match query.first("limit") {
        None => DEFAULT_LIMIT,
        Some(raw) => match raw.parse::<u32>() {
            Ok(limit) if (1..=MAX_LIMIT).contains(&limit) => limit,
            _ => {
                return Err(Problem::bad_parameter(
                    "limit",
                    &format!("must be a whole number from 1 to {MAX_LIMIT}"),
                ))
            }
        },
    };
    let cursor = query.first("cursor").map(str::to_owned);
    if cursor
        .as_ref()
        .is_some_and(|c| c.is_empty() || c.len() > 512)
    {
        return Err(Problem::bad_parameter(
            "cursor",
            "not a cursor this API issued; start from the first page",
        ));
    }
    Ok(PageRequest { limit, cursor })
}

/// 400 naming the first query parameter the route does not take.
pub fn allow_query(request: &Request, allowed: &[&str]) -> Result<(), Problem> {
    let query = request.query_string_parameters();
    for (name, _) in query.iter() {
        if !allowed.contains(&name) {
            let expected = if allowed.is_empty() {
                "none".to_owned()
            } else {
                allowed.join(", ")
            };
            return Err(Problem::bad_parameter(
                name,
                &format!("unknown query parameter; expected: {expected}"),
            ));
        }
    }
    Ok(())
}
