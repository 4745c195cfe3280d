//! One module per page; [`layout`] is the frame around them.

pub mod admin;
pub mod audit;
pub mod bulk_change;
pub mod bulk_changes;
pub mod change;
pub mod chart;
pub mod device;
pub mod devices;
pub mod layout;
pub mod live;
pub mod overview;
pub mod sign_in;
pub mod sims;
