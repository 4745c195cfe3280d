//! The broker's subscriptions, as a tree of topic levels: routing a message walks its topic's
//! levels instead of testing every filter, which matters once thousands of devices each hold a
//! wildcard subscription (`devices/<thing>/register/+`).
//!
//! Matching follows AWS IoT: `+` is exactly one level, `#` (last) is one or more remaining levels,
//! so `sensor/#` does not match `sensor` (as `iot_rules::topic::matches`); and, as MQTT 3.1.1
//! §4.7.2 requires, a filter starting with a wildcard does not match a topic starting with `$`,
//! so `#` does not receive the `$aws/...` lifecycle events.

use rumqttc::mqttbytes::QoS;
use std::collections::HashMap;

/// A connection, as the broker numbers them.
pub type ConnId = u64;

#[derive(Default)]
pub struct SubscriptionTree {
    root: Node,
}

#[derive(Default)]
struct Node {
    children: HashMap<String, Node>,
    /// Connections whose filter ends at this node, with the QoS they were granted.
    here: HashMap<ConnId, QoS>,
}

impl Node {
    fn is_empty(&self) -> bool {
        self.children.is_empty() && self.here.is_empty()
    }
}

impl SubscriptionTree {
    /// Subscribes `conn` to `filter` (a valid filter); subscribing again replaces the QoS.
    pub fn insert(&mut self, filter: &str, conn: ConnId, qos: QoS) {
        let mut node = &mut self.root;
        for level in filter.split('/') {
            node = node.children.entry(level.to_owned()).or_default();
        }
        node.here.insert(conn, qos);
    }

    /// Removes `conn`'s subscription to `filter`; true when it had one.
    pub fn remove(&mut self, filter: &str, conn: ConnId) -> bool {
        let levels: Vec<&str> = filter.split('/').collect();
        remove_at(&mut self.root, &levels, conn)
    }

    /// Every connection subscribed to a filter matching `topic`, with the highest QoS among its
    /// matching subscriptions (one copy per connection, MQTT 3.1.1 §3.3.5).
    pub fn matches(&self, topic: &str, out: &mut HashMap<ConnId, QoS>) {
        let levels: Vec<&str> = topic.split('/').collect();
        let system = topic.starts_with('$');
        collect(&self.root, &levels, 0, system, out);
    }
}

fn remove_at(node: &mut Node, levels: &[&str], conn: ConnId) -> bool {
    let Some((first, rest)) = levels.split_first() else {
        return node.here.remove(&conn).is_some();
    };
    let Some(child) = node.children.get_mut(*first) else {
        return false;
    };
    let removed = remove_at(child, rest, conn);
    // Prune, so a tree of departed devices does not grow forever.
    if child.is_empty() {
        node.children.remove(*first);
    }
    removed
}

fn merge(out: &mut HashMap<ConnId, QoS>, subscribers: &HashMap<ConnId, QoS>) {
    for (conn, qos) in subscribers {
        out.entry(*conn)
            .and_modify(|q| {
                if *qos > *q {
                    *q = *qos;
                }
            })
            .or_insert(*qos);
    }
}

fn collect(
    node: &Node,
    levels: &[&str],
    depth: usize,
    system: bool,
    out: &mut HashMap<ConnId, QoS>,
) {
    let Some(level) = levels.get(depth) else {
        merge(out, &node.here);
        return;
    };
    if let Some(child) = node.children.get(*level) {
        collect(child, levels, depth + 1, system, out);
    }
    // Wildcards never match the first level of a `$` topic.
    if depth == 0 && system {
        return;
    }
    if let Some(child) = node.children.get("+") {
        collect(child, levels, depth + 1, system, out);
    }
    // `#` here has at least this level left to match, so `a/#` never matches `a`.
    if let Some(child) = node.children.get("#") {
        merge(out, &child.here);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matching(tree: &SubscriptionTree, topic: &str) -> Vec<(ConnId, QoS)> {
        let mut out = HashMap::new();
        tree.matches(topic, &mut out);
        let mut found: Vec<_> = out.into_iter().collect();
        found.sort_by_key(|(c, _)| *c);
        found
    }

    /// The tree agrees with the rules engine's filter matching on every pair, except that
    /// wildcards at the first level skip `$` topics.
    #[test]
    fn agrees_with_iot_rules_matching() {
        let filters = [
            "#",
            "+",
            "a",
            "a/#",
            "a/+",
            "a/b",
            "a/+/c",
            "a/b/#",
            "+/b",
            "+/+/+",
            "a//c",
            "a/+/#",
            "$aws/events/presence/+/+",
            "$aws/#",
            "+/events/#",
            "sensor/#",
        ];
        let topics = [
            "a",
            "a/b",
            "a/b/c",
            "a//c",
            "b",
            "a/",
            "/a",
            "sensor",
            "sensor/",
            "sensor/t/room",
            "$aws/events/presence/connected/d1",
            "$aws/events",
            "x/events/y",
        ];
        let mut tree = SubscriptionTree::default();
        for (i, filter) in filters.iter().enumerate() {
            assert!(iot_rules::topic::is_valid_filter(filter), "{filter}");
            tree.insert(filter, i as ConnId, QoS::AtMostOnce);
        }
        for topic in topics {
            let found: Vec<ConnId> = matching(&tree, topic).into_iter().map(|(c, _)| c).collect();
            let expected: Vec<ConnId> = filters
                .iter()
                .enumerate()
                .filter(|(_, f)| {
                    let wildcard_first = f.starts_with('+') || f.starts_with('#');
                    iot_rules::topic::matches(f, topic)
                        && !(topic.starts_with('$') && wildcard_first)
                })
                .map(|(i, _)| i as ConnId)
                .collect();
            assert_eq!(found, expected, "topic {topic}");
        }
        assert!(matching(&tree, "sensor")
            .iter()
            .all(|(c, _)| filters[*c as usize] != "sensor/#"));
    }

    #[test]
    fn overlapping_filters_give_one_copy_at_the_highest_qos() {
        let mut tree = SubscriptionTree::default();
        tree.insert("a/+", 1, QoS::AtMostOnce);
        tree.insert("a/#", 1, QoS::AtLeastOnce);
        tree.insert("a/b", 2, QoS::AtMostOnce);
        assert_eq!(
            matching(&tree, "a/b"),
            vec![(1, QoS::AtLeastOnce), (2, QoS::AtMostOnce)]
        );
        // Subscribing again replaces the QoS.
        tree.insert("a/b", 2, QoS::AtLeastOnce);
        assert_eq!(matching(&tree, "a/b")[1], (2, QoS::AtLeastOnce));
    }

    #[test]
    fn removal_prunes_and_leaves_the_others() {
        let mut tree = SubscriptionTree::default();
        tree.insert("devices/d1/register/+", 1, QoS::AtLeastOnce);
        tree.insert("devices/d2/register/+", 2, QoS::AtLeastOnce);
        assert!(tree.remove("devices/d1/register/+", 1));
        assert!(!tree.remove("devices/d1/register/+", 1), "already gone");
        assert!(
            !tree.remove("devices/d2/register/+", 1),
            "not its subscription"
        );
        assert_eq!(matching(&tree, "devices/d1/register/accepted"), vec![]);
        assert_eq!(
            matching(&tree, "devices/d2/register/accepted"),
            vec![(2, QoS::AtLeastOnce)]
        );
        assert!(tree.remove("devices/d2/register/+", 2));
        assert!(tree.root.is_empty(), "every node was pruned");
    }
}
