//! Time formatting shared by records and responses.

use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

pub fn rfc3339(at: OffsetDateTime) -> String {
    // Formatting a valid OffsetDateTime as RFC 3339 fails only for years beyond 9999.
    at.format(&Rfc3339).unwrap_or_default()
}
