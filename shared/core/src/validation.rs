//! Collecting every problem with a request, so the caller fixes them all in one round trip.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldError {
    /// Path to the field at fault, e.g. `devices[3].iccid`; empty for the document itself.
    pub field: String,
    pub message: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, thiserror::Error)]
#[error("{} field(s) invalid", .errors.len())]
pub struct ValidationErrors {
    pub errors: Vec<FieldError>,
}

/// Beyond this many errors a client learns nothing new; the cap keeps error bodies small.
pub const MAX_REPORTED_ERRORS: usize = 100;

impl ValidationErrors {
    pub fn push(&mut self, field: impl Into<String>, message: impl Into<String>) {
        if self.errors.len() < MAX_REPORTED_ERRORS {
            self.errors.push(FieldError {
                field: field.into(),
                message: message.into(),
            });
        }
    }

    pub fn is_empty(&self) -> bool {
        self.errors.is_empty()
    }

    pub fn single(field: impl Into<String>, message: impl Into<String>) -> Self {
        let mut errors = Self::default();
        errors.push(field, message);
        errors
    }

    pub fn into_result<T>(self, value: T) -> Result<T, Self> {
        if self.is_empty() {
            Ok(value)
        } else {
            Err(self)
        }
    }
}

/// Bounds on a JSON request body beyond its size: how deeply it nests and how long its arrays
/// are, so a small body cannot cost the parser or the validator disproportionate work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BodyLimits {
    pub max_depth: usize,
    pub max_array_len: usize,
}

impl BodyLimits {
    /// Small bodies: logins, commands, settings.
    pub const fn small() -> Self {
        Self {
            max_depth: 4,
            max_array_len: 100,
        }
    }
}

/// Parses a body that must be one JSON object within `limits`. Errors name the document (`""`)
/// or the array at fault.
pub fn json_object(
    body: &[u8],
    limits: &BodyLimits,
) -> Result<Map<String, Value>, ValidationErrors> {
    let document: Value = serde_json::from_slice(body)
        .map_err(|e| ValidationErrors::single("", format!("body is not valid JSON: {e}")))?;
    check_shape(&document, limits)?;
    match document {
        Value::Object(object) => Ok(object),
        _ => Err(ValidationErrors::single("", "body must be a JSON object")),
    }
}

fn check_shape(document: &Value, limits: &BodyLimits) -> Result<(), ValidationErrors> {
    // Iterative, so the walk itself cannot overflow the stack.
    let mut pending: Vec<(&Value, usize, String)> = vec![(document, 1, String::new())];
    while let Some((value, depth, at)) = pending.pop() {
        let children: Vec<(&Value, String)> = match value {
            Value::Array(items) => {
                if items.len() > limits.max_array_len {
                    return Err(ValidationErrors::single(
                        at,
                        format!("at most {} items are allowed here", limits.max_array_len),
                    ));
                }
                items
                    .iter()
                    .enumerate()
                    .map(|(i, v)| (v, format!("{at}[{i}]")))
                    .collect()
            }
            Value::Object(fields) => fields.iter().map(|(k, v)| (v, path(&at, k))).collect(),
            _ => continue,
        };
        if !children.is_empty() && depth >= limits.max_depth {
            return Err(ValidationErrors::single(
                "",
                format!("body nests deeper than {} levels", limits.max_depth),
            ));
        }
        pending.extend(children.into_iter().map(|(v, p)| (v, depth + 1, p)));
    }
    Ok(())
}

pub fn path(parent: &str, field: &str) -> String {
    if parent.is_empty() {
        field.to_owned()
    } else {
        format!("{parent}.{field}")
    }
}

pub fn reject_unknown(
    object: &Map<String, Value>,
    parent: &str,
    allowed: &[&str],
    errors: &mut ValidationErrors,
) {
    for key in object.keys().filter(|k| !allowed.contains(&k.as_str())) {
        errors.push(
            path(parent, key),
            format!("unknown field; expected one of: {}", allowed.join(", ")),
        );
    }
}

pub fn required<'a>(
    object: &'a Map<String, Value>,
    parent: &str,
    field: &str,
    errors: &mut ValidationErrors,
) -> Option<&'a Value> {
    match object.get(field) {
        None | Some(Value::Null) => {
            errors.push(path(parent, field), "is required");
            None
        }
        Some(value) => Some(value),
    }
}

const MAX_TEXT_LEN: usize = 64;

/// An optional or required text field: not blank, at most 64 characters, no control characters.
pub fn text(
    value: Option<&Value>,
    field: &str,
    required: bool,
    errors: &mut ValidationErrors,
) -> Option<Option<String>> {
    match value {
        None | Some(Value::Null) if required => {
            errors.push(field, "is required");
            None
        }
        None | Some(Value::Null) => Some(None),
        Some(Value::String(s)) if s.trim().is_empty() => {
            errors.push(field, "must not be blank");
            None
        }
        Some(Value::String(s)) if s.chars().count() > MAX_TEXT_LEN => {
            errors.push(field, format!("must be at most {MAX_TEXT_LEN} characters"));
            None
        }
        Some(Value::String(s)) if s.chars().any(char::is_control) => {
            errors.push(field, "must not contain control characters");
            None
        }
        Some(Value::String(s)) => Some(Some(s.clone())),
        Some(_) => {
            errors.push(field, "must be a string");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn json_tree() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            "[a-z ]{0,8}".prop_map(Value::from),
        ];
        leaf.prop_recursive(8, 96, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                proptest::collection::btree_map("[a-z]{1,6}", inner, 0..6)
                    .prop_map(|fields| Value::Object(fields.into_iter().collect())),
            ]
        })
    }

    /// Levels of values, the body itself being the first.
    fn depth(value: &Value) -> usize {
        1 + match value {
            Value::Array(items) => items.iter().map(depth).max().unwrap_or(0),
            Value::Object(fields) => fields.values().map(depth).max().unwrap_or(0),
            _ => 0,
        }
    }

    proptest! {
        #[test]
        fn the_depth_bound_is_exact(tree in json_tree()) {
            let body = serde_json::json!({"x": tree});
            let result = json_object(body.to_string().as_bytes(), &BodyLimits::small());
            prop_assert_eq!(result.is_ok(), depth(&body) <= BodyLimits::small().max_depth);
        }

        #[test]
        fn arbitrary_bytes_are_an_error_or_an_object(body in proptest::collection::vec(any::<u8>(), 0..512)) {
            if let Err(errors) = json_object(&body, &BodyLimits::small()) {
                prop_assert!(!errors.errors.is_empty());
            }
        }
    }

    #[test]
    fn bodies_are_bounded_in_depth_and_array_length() {
        let small = BodyLimits::small();
        assert!(json_object(br#"{"a": {"b": [1, 2]}}"#, &small).is_ok());
        let deep = json_object(br#"{"a": {"b": {"c": {"d": 1}}}}"#, &small).unwrap_err();
        assert_eq!(deep.errors[0].field, "");
        assert!(deep.errors[0].message.contains("deeper than 4"), "{deep:?}");
        let long = format!("{{\"a\": {{\"list\": [{}]}}}}", vec!["1"; 101].join(","));
        let too_long = json_object(long.as_bytes(), &small).unwrap_err();
        assert_eq!(too_long.errors[0].field, "a.list");
        assert_eq!(
            json_object(b"[1]", &small).unwrap_err().errors[0].message,
            "body must be a JSON object"
        );
        assert!(json_object(b"{\"a\":", &small).unwrap_err().errors[0]
            .message
            .starts_with("body is not valid JSON"));
        // Far past serde_json's own recursion limit: an error, never a stack overflow.
        let nested = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(json_object(nested.as_bytes(), &small).is_err());
    }
}
