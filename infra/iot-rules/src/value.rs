//! IoT SQL values: JSON plus Undefined, which is what a missing key or an ill-typed operation
//! gives, and which disappears when the result is serialized.

use serde_json::Value as Json;

#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Undefined,
    Null,
    Bool(bool),
    Int(i64),
    Decimal(f64),
    Str(String),
    Array(Vec<Value>),
    /// In insertion order; a repeated key keeps its last value.
    Object(Vec<(String, Value)>),
}

impl Value {
    /// SQL 2016-03-23 reads a whole-number decimal (`10.0`) as the Int `10`.
    pub fn from_json(json: &Json) -> Self {
        match json {
            Json::Null => Value::Null,
            Json::Bool(b) => Value::Bool(*b),
            Json::Number(n) => match (n.as_i64(), n.as_f64()) {
                (Some(i), _) => Value::Int(i),
                (None, Some(f)) => Value::number(f),
                (None, None) => Value::Undefined,
            },
            Json::String(s) => Value::Str(s.clone()),
            Json::Array(items) => Value::Array(items.iter().map(Value::from_json).collect()),
            Json::Object(fields) => Value::Object(
                fields
                    .iter()
                    .map(|(k, v)| (k.clone(), Value::from_json(v)))
                    .collect(),
            ),
        }
    }

    /// A computed number: Int when it is whole and fits, Decimal otherwise.
    pub fn number(f: f64) -> Self {
        if f.is_finite() && f.fract() == 0.0 && f.abs() < 9.0e15 {
            Value::Int(f as i64)
        } else if f.is_finite() {
            Value::Decimal(f)
        } else {
            Value::Undefined
        }
    }

    /// JSON, with Undefined members and elements left out; `None` for Undefined itself.
    pub fn to_json(&self) -> Option<Json> {
        Some(match self {
            Value::Undefined => return None,
            Value::Null => Json::Null,
            Value::Bool(b) => Json::Bool(*b),
            Value::Int(i) => Json::from(*i),
            Value::Decimal(f) => serde_json::Number::from_f64(*f).map_or(Json::Null, Json::Number),
            Value::Str(s) => Json::String(s.clone()),
            Value::Array(items) => Json::Array(items.iter().filter_map(Value::to_json).collect()),
            Value::Object(fields) => {
                let mut map = serde_json::Map::new();
                for (k, v) in fields {
                    match v.to_json() {
                        Some(json) => {
                            map.insert(k.clone(), json);
                        }
                        None => {
                            map.remove(k);
                        }
                    }
                }
                Json::Object(map)
            }
        })
    }

    pub fn is_undefined(&self) -> bool {
        matches!(self, Value::Undefined)
    }

    /// The member `key` of an object; Undefined for anything else.
    pub fn member(&self, key: &str) -> Value {
        match self {
            Value::Object(fields) => fields
                .iter()
                .rev()
                .find(|(k, _)| k == key)
                .map_or(Value::Undefined, |(_, v)| v.clone()),
            _ => Value::Undefined,
        }
    }

    /// Sets `key`, replacing an existing member in place.
    pub fn set_member(fields: &mut Vec<(String, Value)>, key: &str, value: Value) {
        match fields.iter_mut().find(|(k, _)| k == key) {
            Some(slot) => slot.1 = value,
            None => fields.push((key.to_owned(), value)),
        }
    }

    /// As a number for arithmetic and ordering: numbers, and strings that look like one.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Int(i) => Some(*i as f64),
            Value::Decimal(f) => Some(*f),
            Value::Str(s) if looks_numeric(s) => s.parse().ok(),
            _ => None,
        }
    }

    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            Value::Decimal(f) => Some(f.round() as i64),
            Value::Str(s) if looks_numeric(s) => s.parse::<f64>().ok().map(|f| f.trunc() as i64),
            _ => None,
        }
    }

    /// Booleans, and the strings "true"/"false" in any case.
    pub fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            Value::Str(s) if s.eq_ignore_ascii_case("true") => Some(true),
            Value::Str(s) if s.eq_ignore_ascii_case("false") => Some(false),
            _ => None,
        }
    }

    /// Text for concatenation; Undefined and Null have none.
    pub fn as_text(&self) -> Option<String> {
        match self {
            Value::Undefined | Value::Null => None,
            Value::Str(s) => Some(s.clone()),
            other => other.to_json().map(|j| j.to_string()),
        }
    }
}

/// `^-?\d+(\.\d+)?([eE]-?\d+)?$`: the strings AWS converts to numbers.
fn looks_numeric(s: &str) -> bool {
    let s = s.strip_prefix('-').unwrap_or(s);
    let (mantissa, exponent) = match s.find(['e', 'E']) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
    let mantissa_ok = match mantissa.split_once('.') {
        Some((whole, fraction)) => digits(whole) && digits(fraction),
        None => digits(mantissa),
    };
    let exponent_ok = exponent.is_none_or(|e| digits(e.strip_prefix('-').unwrap_or(e)));
    mantissa_ok && exponent_ok
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn undefined_members_are_left_out_and_whole_decimals_are_ints() {
        let v = Value::Object(vec![
            ("foo".into(), Value::Null),
            ("bar".into(), Value::Undefined),
        ]);
        assert_eq!(v.to_json(), Some(json!({"foo": null})));
        assert_eq!(Value::Undefined.to_json(), None);
        assert_eq!(Value::from_json(&json!(10.0)), Value::Int(10));
        assert_eq!(Value::from_json(&json!(10.5)), Value::Decimal(10.5));
    }

    #[test]
    fn only_number_shaped_strings_convert() {
        for good in ["1", "-2", "3.5", "1e3", "-1.5E-2"] {
            assert!(Value::Str(good.into()).as_f64().is_some(), "{good}");
        }
        for bad in ["", "1.", ".5", "0x10", "1e", "12a", " 1"] {
            assert!(Value::Str(bad.into()).as_f64().is_none(), "{bad}");
        }
        assert_eq!(Value::Str("TRUE".into()).as_bool(), Some(true));
        assert_eq!(Value::Int(1).as_bool(), None);
    }
}
