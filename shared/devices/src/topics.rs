//! The MQTT topics between devices and cellbridge. The client id a device connects with is its
//! thing name, and every topic it uses carries that name as the second level, so the topic rules
//! read it with `topic(2)` and the IoT policy can pin each device to its own topics.
//!
//! | topic                                   | direction        | payload                        |
//! |-----------------------------------------|------------------|--------------------------------|
//! | `devices/<thing>/register`              | device → cloud   | announcement                   |
//! | `devices/<thing>/register/accepted`     | cloud → device   | `{thingName, outcome}`         |
//! | `devices/<thing>/register/rejected`     | cloud → device   | `{thingName, reasons: [...]}`  |
//! | `devices/<thing>/telemetry`             | device → cloud   | metrics, optional `ts`         |
//! | `devices/<thing>/heartbeat`             | device → cloud   | anything (ignored)             |
//! | `devices/<thing>/commands`              | cloud → device   | `{commandId, name, params, expiresAt}` |
//! | `devices/<thing>/commands/ack`          | device → cloud   | `{commandId, status, detail?}` |

/// First level of every device topic.
pub const ROOT: &str = "devices";

pub fn register(thing: &str) -> String {
    format!("{ROOT}/{thing}/register")
}

pub fn register_accepted(thing: &str) -> String {
    format!("{ROOT}/{thing}/register/accepted")
}

pub fn register_rejected(thing: &str) -> String {
    format!("{ROOT}/{thing}/register/rejected")
}

pub fn telemetry(thing: &str) -> String {
    format!("{ROOT}/{thing}/telemetry")
}

pub fn heartbeat(thing: &str) -> String {
    format!("{ROOT}/{thing}/heartbeat")
}

pub fn commands(thing: &str) -> String {
    format!("{ROOT}/{thing}/commands")
}

pub fn command_ack(thing: &str) -> String {
    format!("{ROOT}/{thing}/commands/ack")
}

/// The topic filters a device subscribes to: its registration replies and its commands.
pub fn device_subscriptions(thing: &str) -> [String; 2] {
    [format!("{ROOT}/{thing}/register/+"), commands(thing)]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_topic_carries_the_thing_as_second_level() {
        for topic in [
            register("trk-1"),
            register_accepted("trk-1"),
            register_rejected("trk-1"),
            telemetry("trk-1"),
            heartbeat("trk-1"),
            commands("trk-1"),
            command_ack("trk-1"),
        ] {
            let levels: Vec<&str> = topic.split('/').collect();
            assert_eq!(levels[0], ROOT);
            assert_eq!(levels[1], "trk-1", "{topic}");
        }
    }
}
