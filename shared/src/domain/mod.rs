//! Pure domain: identifiers, change types, bulk changes and their validation. No SDK, no I/O.

pub mod bulk_change;
pub mod carrier_error;
pub mod change;
pub mod ids;
pub mod rate_limit;
pub mod redact;
pub mod request;
pub mod retry;
pub mod validation;

pub use bulk_change::*;
pub use change::*;
pub use ids::{Iccid, IdError, Imei, Msisdn};
pub use request::{parse_bulk_change_request, BulkChangeRequest, MAX_DEVICES};
pub use validation::{FieldError, ValidationErrors};
