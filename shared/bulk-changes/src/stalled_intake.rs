//! Bulk changes whose intake stopped after they were stored. bulk-intake stores the change, then
//! writes its device list and queues one planning message; a failure between those steps, or a
//! planning message that never succeeds, would leave the change `new` forever. The scheduler looks
//! at every change still `new` past its intake deadline and decides here what to do with it.

use super::bulk_change::BulkChange;
use time::{Duration, OffsetDateTime};

/// How long after it was stored (and after each re-plan) a change may stay `new` before the sweep
/// looks at it. Intake itself finishes within its function timeout (seconds); planning within
/// minutes even for 10,000 devices.
pub const INTAKE_TIMEOUT: Duration = Duration::minutes(15);
/// How long the sweep keeps re-queueing the planning message before it gives up.
pub const INTAKE_GIVE_UP: Duration = Duration::hours(2);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recovery {
    /// Queue the planning message again (planning is idempotent) and look again at `next_check`.
    Replan { next_check: OffsetDateTime },
    /// Mark the change failed, with this reason for the caller.
    Fail { reason: String },
}

/// What to do with a change still `new` past its deadline, given whether its device list is in
/// the payload store.
pub fn recover(change: &BulkChange, device_list_stored: bool, now: OffsetDateTime) -> Recovery {
    if !device_list_stored {
        return Recovery::Fail {
            reason: "the device list was never stored: the request failed after the bulk change \
                     was recorded; submit it again"
                .into(),
        };
    }
    if now - change.created_at >= INTAKE_GIVE_UP {
        return Recovery::Fail {
            reason: format!(
                "planning did not finish within {} hours of submission; submit it again",
                INTAKE_GIVE_UP.whole_hours()
            ),
        };
    }
    Recovery::Replan {
        next_check: now + INTAKE_TIMEOUT,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::sample_bulk_change;

    #[test]
    fn a_missing_device_list_fails_at_once_and_a_stored_one_is_replanned_until_the_give_up_age() {
        let (change, _) = sample_bulk_change("demo", "b-1", 3, true);
        let created = change.created_at;
        assert!(matches!(
            recover(&change, false, created + INTAKE_TIMEOUT),
            Recovery::Fail { reason } if reason.contains("device list was never stored")
        ));
        assert_eq!(
            recover(&change, true, created + INTAKE_TIMEOUT),
            Recovery::Replan {
                next_check: created + INTAKE_TIMEOUT * 2
            }
        );
        assert_eq!(
            recover(
                &change,
                true,
                created + INTAKE_GIVE_UP - Duration::seconds(1)
            ),
            Recovery::Replan {
                next_check: created + INTAKE_GIVE_UP - Duration::seconds(1) + INTAKE_TIMEOUT
            }
        );
        assert!(matches!(
            recover(&change, true, created + INTAKE_GIVE_UP),
            Recovery::Fail { reason } if reason.contains("planning did not finish within 2 hours")
        ));
    }
}
