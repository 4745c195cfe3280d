//! The AWS IoT rules engine's SQL, locally: a rule's `SELECT ... FROM '<topic filter>' WHERE ...`
//! parsed once and evaluated per message with AWS's semantics (SQL version 2016-03-23): WHERE
//! first, Undefined for what is missing or ill-typed and omitted from the output, 1-based
//! `topic(n)`, `timestamp()` from the engine's clock, `clientid()` of the publisher.
//!
//! Decisions where the AWS documentation is silent, each pinned by a test:
//! - `sensor/#` does not match `sensor` (AWS's topic page, unlike MQTT 3.1.1);
//! - `topic(0)` and `topic(n)` past the last level are Undefined;
//! - Int / Int truncates toward zero; division by zero is Undefined;
//! - keywords are case-insensitive; strings may be quoted with `'` or `"`;
//! - a dotted alias nests (`AS a.b` gives `{"a": {"b": ...}}`);
//! - numbers are i64 or f64, not 34-digit decimals.

mod eval;
mod lexer;
mod parser;
pub mod topic;
mod value;

pub use eval::Message;
pub use parser::Statement;
pub use value::Value;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("rule SQL, at character {position}: {message}")]
pub struct SqlError {
    pub position: usize,
    pub message: String,
}

/// A parsed rule statement.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    statement: Statement,
}

impl Rule {
    pub fn parse(sql: &str) -> Result<Self, SqlError> {
        Ok(Self {
            statement: parser::parse(sql)?,
        })
    }

    /// The topic filter of `FROM`.
    pub fn topic_filter(&self) -> &str {
        &self.statement.from_topic
    }

    /// True when the rule listens on `topic`.
    pub fn matches(&self, topic: &str) -> bool {
        topic::matches(&self.statement.from_topic, topic)
    }

    /// The rule's output for `message`, or `None` when its topic does not match or WHERE is
    /// not true (then no action runs).
    pub fn apply(&self, message: &Message<'_>) -> Option<serde_json::Value> {
        if !self.matches(message.topic) {
            return None;
        }
        eval::apply(&self.statement, message)
    }
}
