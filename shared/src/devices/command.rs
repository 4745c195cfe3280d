//! A command's life: stored (QUEUED), published to the device (SENT), acknowledged
//! (DELIVERED, then SUCCESSFUL or FAILED), or given up (TIMEOUT: sent but not answered in time;
//! EXPIRED: never sent before its deadline, e.g. the device stayed offline).
//!
//! A status only moves forward, so a re-delivered acknowledgement (MQTT QoS 1) or one that
//! overtakes the SENT write changes nothing it should not.

use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CommandStatus {
    Queued,
    Sent,
    Delivered,
    Successful,
    Failed,
    Timeout,
    Expired,
}

impl CommandStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "QUEUED",
            Self::Sent => "SENT",
            Self::Delivered => "DELIVERED",
            Self::Successful => "SUCCESSFUL",
            Self::Failed => "FAILED",
            Self::Timeout => "TIMEOUT",
            Self::Expired => "EXPIRED",
        }
    }

    pub fn is_final(self) -> bool {
        self.rank() == 3
    }

    fn rank(self) -> u8 {
        match self {
            Self::Queued => 0,
            Self::Sent => 1,
            Self::Delivered => 2,
            Self::Successful | Self::Failed | Self::Timeout | Self::Expired => 3,
        }
    }

    /// Whether `self` may become `next`: forward only, nothing after a final status.
    pub fn may_become(self, next: CommandStatus) -> bool {
        next.rank() > self.rank()
    }
}

/// What a device answers on its acknowledgement topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckStatus {
    Delivered,
    Successful,
    Failed,
}

impl AckStatus {
    pub fn parse(text: &str) -> Option<Self> {
        match text.to_ascii_lowercase().as_str() {
            "delivered" | "received" => Some(Self::Delivered),
            "successful" | "success" | "succeeded" => Some(Self::Successful),
            "failed" | "failure" | "rejected" => Some(Self::Failed),
            _ => None,
        }
    }

    pub fn status(self) -> CommandStatus {
        match self {
            Self::Delivered => CommandStatus::Delivered,
            Self::Successful => CommandStatus::Successful,
            Self::Failed => CommandStatus::Failed,
        }
    }
}

/// Deadlines of a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadlines {
    /// Not sent by then (device offline): EXPIRED.
    pub expires_at: OffsetDateTime,
    /// Sent but not acknowledged within this: TIMEOUT.
    pub ack_timeout: Duration,
}

/// What the sweep makes of a command still open at `now`, if anything.
pub fn swept(
    status: CommandStatus,
    sent_at: Option<OffsetDateTime>,
    deadlines: &Deadlines,
    now: OffsetDateTime,
) -> Option<CommandStatus> {
    match status {
        CommandStatus::Queued if now >= deadlines.expires_at => Some(CommandStatus::Expired),
        CommandStatus::Sent | CommandStatus::Delivered
            if sent_at.is_some_and(|sent| now >= sent + deadlines.ack_timeout) =>
        {
            Some(CommandStatus::Timeout)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;
    use CommandStatus::*;

    #[test]
    fn statuses_only_move_forward() {
        assert!(Queued.may_become(Sent));
        assert!(Sent.may_become(Delivered));
        assert!(Delivered.may_become(Successful));
        assert!(
            Queued.may_become(Successful),
            "an ack that overtakes the SENT write"
        );
        assert!(!Delivered.may_become(Sent), "a late SENT write");
        assert!(!Delivered.may_become(Delivered), "a duplicate ack");
        for done in [Successful, Failed, Timeout, Expired] {
            assert!(done.is_final());
            for next in [
                Queued, Sent, Delivered, Successful, Failed, Timeout, Expired,
            ] {
                assert!(!done.may_become(next), "{done:?} -> {next:?}");
            }
        }
    }

    #[test]
    fn the_sweep_times_out_sent_commands_and_expires_queued_ones() {
        let sent = datetime!(2026-11-22 09:00 UTC);
        let deadlines = Deadlines {
            expires_at: sent + Duration::hours(1),
            ack_timeout: Duration::seconds(30),
        };
        assert_eq!(
            swept(Sent, Some(sent), &deadlines, sent + Duration::seconds(29)),
            None
        );
        assert_eq!(
            swept(Sent, Some(sent), &deadlines, sent + Duration::seconds(30)),
            Some(Timeout)
        );
        assert_eq!(
            swept(
                Delivered,
                Some(sent),
                &deadlines,
                sent + Duration::minutes(5)
            ),
            Some(Timeout)
        );
        assert_eq!(
            swept(Queued, None, &deadlines, sent + Duration::minutes(59)),
            None,
            "waits for the device"
        );
        assert_eq!(
            swept(Queued, None, &deadlines, sent + Duration::hours(1)),
            Some(Expired)
        );
        assert_eq!(
            swept(
                Successful,
                Some(sent),
                &deadlines,
                sent + Duration::hours(2)
            ),
            None
        );
    }

    #[test]
    fn acknowledgements_are_read_leniently() {
        assert_eq!(AckStatus::parse("SUCCESSFUL"), Some(AckStatus::Successful));
        assert_eq!(
            AckStatus::parse("received").map(AckStatus::status),
            Some(Delivered)
        );
        assert_eq!(
            AckStatus::parse("rejected").map(AckStatus::status),
            Some(Failed)
        );
        assert_eq!(AckStatus::parse("maybe"), None);
    }
}
