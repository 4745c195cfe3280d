//! The carriers cellbridge talks to. Every area names them: bulk changes, the SIM inventory, the
//! carrier adapters and their simulators.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Carrier {
    Jasper,
    ThingSpace,
    Telegence,
}

impl Carrier {
    pub const ALL: [Carrier; 3] = [Carrier::Jasper, Carrier::ThingSpace, Carrier::Telegence];

    pub fn as_str(self) -> &'static str {
        match self {
            Carrier::Jasper => "jasper",
            Carrier::ThingSpace => "thingSpace",
            Carrier::Telegence => "telegence",
        }
    }

    /// The carrier named `name` as [`Carrier::as_str`] spells it.
    pub fn parse(name: &str) -> Option<Carrier> {
        Carrier::ALL.into_iter().find(|c| c.as_str() == name)
    }
}
