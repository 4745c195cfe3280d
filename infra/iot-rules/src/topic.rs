//! MQTT topic filters as AWS IoT matches them: case-sensitive, `+` is exactly one level, `#`
//! (last) is one or more remaining levels, so `sensor/#` does not match `sensor`.

/// True when `topic` matches `filter`.
pub fn matches(filter: &str, topic: &str) -> bool {
    let mut topic_levels = topic.split('/');
    for level in filter.split('/') {
        match level {
            "#" => return topic_levels.next().is_some(),
            "+" => {
                if topic_levels.next().is_none() {
                    return false;
                }
            }
            exact => {
                if topic_levels.next() != Some(exact) {
                    return false;
                }
            }
        }
    }
    topic_levels.next().is_none()
}

/// A filter is valid when `#` only ends it and wildcards fill whole levels.
pub fn is_valid_filter(filter: &str) -> bool {
    let levels: Vec<&str> = filter.split('/').collect();
    !filter.is_empty()
        && levels.iter().enumerate().all(|(i, level)| match *level {
            "#" => i + 1 == levels.len(),
            "+" => true,
            other => !other.contains(['#', '+']),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_aws_examples() {
        // topics.html and iot-sql-from.html
        assert!(matches("topic/+", "topic/subtopic"));
        assert!(!matches("topic/+", "topic/subtopic-3/details"));
        for topic in [
            "topic/subtopic",
            "topic/subtopic-2",
            "topic/subtopic-3/details",
        ] {
            assert!(matches("topic/#", topic), "{topic}");
        }
        assert!(!matches("topic/#", "topic-2/subtopic-x"));
        assert!(matches("sensor/#", "sensor/"));
        assert!(matches("sensor/#", "sensor/temperature/room1"));
        assert!(
            !matches("sensor/#", "sensor"),
            "AWS: sensor/# does not match sensor"
        );
        assert!(!matches("Topic/+", "topic/a"), "case-sensitive");
        assert!(matches("devices/+/telemetry", "devices/d1/telemetry"));
        assert!(!matches(
            "devices/+/telemetry",
            "devices/d1/telemetry/extra"
        ));
        assert!(matches(
            "$aws/events/presence/connected/+",
            "$aws/events/presence/connected/d1"
        ));
        assert!(matches("#", "a/b"));
    }

    #[test]
    fn filters_are_validated() {
        for good in ["a/+/c", "a/#", "#", "+", "$aws/events/presence/+/+"] {
            assert!(is_valid_filter(good), "{good}");
        }
        for bad in ["a/#/c", "a/b#", "a+/b", ""] {
            assert!(!is_valid_filter(bad), "{bad}");
        }
    }
}
