//! Evaluating a statement against one message.

use crate::parser::{BinaryOp, Expr, Projection, SelectItem, Statement};
use crate::value::Value;
use serde_json::Value as Json;

/// One MQTT message as the rules engine sees it.
#[derive(Debug, Clone)]
pub struct Message<'a> {
    pub topic: &'a str,
    pub payload: &'a [u8],
    /// The publisher's MQTT client id; `None` when it did not come over MQTT.
    pub client_id: Option<&'a str>,
    /// The engine's clock, in milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
}

struct Context<'a> {
    message: &'a Message<'a>,
}

/// The statement's output, or `None` when WHERE is not true.
pub fn apply(statement: &Statement, message: &Message<'_>) -> Option<Json> {
    let document = match serde_json::from_slice::<Json>(message.payload) {
        Ok(json) => Value::from_json(&json),
        // A non-JSON payload is its bytes (as text where it is text).
        Err(_) => Value::Str(String::from_utf8_lossy(message.payload).into_owned()),
    };
    let context = Context { message };
    let output = run(statement, &document, &context)?;
    Some(output.to_json().unwrap_or(Json::String(String::new())))
}

fn run(statement: &Statement, document: &Value, context: &Context<'_>) -> Option<Value> {
    if let Some(filter) = &statement.filter {
        // WHERE first, and only a true Boolean lets the message through.
        if eval(filter, document, context) != Value::Bool(true) {
            return None;
        }
    }
    Some(project(&statement.projection, document, context))
}

fn project(projection: &Projection, document: &Value, context: &Context<'_>) -> Value {
    match projection {
        Projection::Value(expr) => eval(expr, document, context),
        Projection::Items(items) => {
            let mut fields: Vec<(String, Value)> = Vec::new();
            for item in items {
                match item {
                    SelectItem::All => match document {
                        Value::Object(members) => {
                            for (k, v) in members {
                                Value::set_member(&mut fields, k, v.clone());
                            }
                        }
                        // `SELECT *` of a non-object payload is the payload itself.
                        other => return other.clone(),
                    },
                    SelectItem::Named { expr, name } => {
                        let value = eval(expr, document, context);
                        set_path(&mut fields, name, value);
                    }
                }
            }
            Value::Object(fields)
        }
    }
}

/// Sets `a.b.c`, making the intermediate objects.
fn set_path(fields: &mut Vec<(String, Value)>, path: &[String], value: Value) {
    match path {
        [] => {}
        [last] => Value::set_member(fields, last, value),
        [first, rest @ ..] => {
            let mut inner = match fields.iter().find(|(k, _)| k == first) {
                Some((_, Value::Object(existing))) => existing.clone(),
                _ => Vec::new(),
            };
            set_path(&mut inner, rest, value);
            Value::set_member(fields, first, Value::Object(inner));
        }
    }
}

fn eval(expr: &Expr, document: &Value, context: &Context<'_>) -> Value {
    match expr {
        Expr::Literal(v) => v.clone(),
        Expr::Payload => document.clone(),
        Expr::Name(name) => document.member(name),
        Expr::Member(target, name) => eval(target, document, context).member(name),
        Expr::Index(target, index) => get(
            &eval(target, document, context),
            &eval(index, document, context),
        ),
        Expr::Not(inner) => match eval(inner, document, context).as_bool() {
            Some(b) => Value::Bool(!b),
            None => Value::Undefined,
        },
        Expr::Negate(inner) => match eval(inner, document, context) {
            Value::Int(i) => i.checked_neg().map_or(Value::Undefined, Value::Int),
            other => other
                .as_f64()
                .map_or(Value::Undefined, |f| Value::number(-f)),
        },
        Expr::Binary(op, left, right) => binary(
            *op,
            &eval(left, document, context),
            &eval(right, document, context),
        ),
        Expr::Call(function, args) => {
            let args: Vec<Value> = args.iter().map(|a| eval(a, document, context)).collect();
            call(function, &args, context)
        }
        Expr::Object(fields) => Value::Object(
            fields
                .iter()
                .map(|(k, e)| (k.clone(), eval(e, document, context)))
                .collect(),
        ),
        Expr::Array(items) => {
            Value::Array(items.iter().map(|e| eval(e, document, context)).collect())
        }
        Expr::Case {
            operand,
            arms,
            otherwise,
        } => {
            let value = eval(operand, document, context);
            if value.is_undefined() {
                return Value::Undefined;
            }
            for (when, then) in arms {
                if binary(BinaryOp::Eq, &value, &eval(when, document, context)) == Value::Bool(true)
                {
                    return eval(then, document, context);
                }
            }
            otherwise
                .as_ref()
                .map_or(Value::Undefined, |e| eval(e, document, context))
        }
        Expr::Query(statement) => {
            let Some(source) = &statement.from_expr else {
                return Value::Undefined;
            };
            match eval(source, document, context) {
                Value::Array(elements) => Value::Array(
                    elements
                        .iter()
                        .filter_map(|element| run(statement, element, context))
                        .collect(),
                ),
                _ => Value::Undefined,
            }
        }
    }
}

fn binary(op: BinaryOp, left: &Value, right: &Value) -> Value {
    use BinaryOp::*;
    match op {
        And | Or => match (left.as_bool(), right.as_bool()) {
            (Some(a), Some(b)) => Value::Bool(if op == And { a && b } else { a || b }),
            _ => Value::Undefined,
        },
        Eq | NotEq => {
            if left.is_undefined() || right.is_undefined() {
                return Value::Undefined;
            }
            match equal(left, right) {
                Some(same) => Value::Bool(if op == Eq { same } else { !same }),
                // Values of different types are unequal.
                None => Value::Bool(op == NotEq),
            }
        }
        Lt | Le | Gt | Ge => match (left.as_f64(), right.as_f64()) {
            (Some(a), Some(b)) => Value::Bool(match op {
                Lt => a < b,
                Le => a <= b,
                Gt => a > b,
                _ => a >= b,
            }),
            _ => Value::Undefined,
        },
        Add if matches!(left, Value::Str(_)) || matches!(right, Value::Str(_)) => {
            match (left.as_text(), right.as_text()) {
                (Some(a), Some(b)) => Value::Str(a + &b),
                _ => Value::Undefined,
            }
        }
        Add | Sub | Mul | Div | Rem => arithmetic(op, left, right),
    }
}

fn arithmetic(op: BinaryOp, left: &Value, right: &Value) -> Value {
    if let (Value::Int(a), Value::Int(b)) = (left, right) {
        let result = match op {
            BinaryOp::Add => a.checked_add(*b),
            BinaryOp::Sub => a.checked_sub(*b),
            BinaryOp::Mul => a.checked_mul(*b),
            BinaryOp::Div => a.checked_div(*b),
            _ => a.checked_rem(*b),
        };
        return result.map_or(Value::Undefined, Value::Int);
    }
    match (left.as_f64(), right.as_f64()) {
        (Some(a), Some(b)) => {
            let result = match op {
                BinaryOp::Add => a + b,
                BinaryOp::Sub => a - b,
                BinaryOp::Mul => a * b,
                BinaryOp::Div if b == 0.0 => return Value::Undefined,
                BinaryOp::Div => a / b,
                _ if b == 0.0 => return Value::Undefined,
                _ => a % b,
            };
            decimal(result)
        }
        _ => Value::Undefined,
    }
}

/// A Decimal result; whole ones read as Int, as 2016-03-23 reads them.
fn decimal(f: f64) -> Value {
    Value::number(f)
}

/// `Some(equal)` for comparable values, `None` when their types differ.
fn equal(left: &Value, right: &Value) -> Option<bool> {
    match (left, right) {
        (Value::Null, Value::Null) => Some(true),
        (Value::Bool(a), Value::Bool(b)) => Some(a == b),
        (Value::Str(a), Value::Str(b)) => Some(a == b),
        (Value::Int(a), Value::Int(b)) => Some(a == b),
        (Value::Int(_) | Value::Decimal(_), Value::Int(_) | Value::Decimal(_)) => {
            Some(left.as_f64() == right.as_f64())
        }
        (Value::Array(a), Value::Array(b)) => {
            Some(a.len() == b.len() && a.iter().zip(b).all(|(x, y)| equal(x, y) == Some(true)))
        }
        (Value::Object(a), Value::Object(b)) => {
            let defined = |fields: &Vec<(String, Value)>| {
                fields.iter().filter(|(_, v)| !v.is_undefined()).count()
            };
            Some(
                defined(a) == defined(b)
                    && a.iter()
                        .filter(|(_, v)| !v.is_undefined())
                        .all(|(k, v)| equal(v, &right.member(k)) == Some(true)),
            )
        }
        _ => None,
    }
}

fn get(target: &Value, key: &Value) -> Value {
    match target {
        Value::Array(items) => key
            .as_i64()
            .and_then(|i| usize::try_from(i).ok())
            .and_then(|i| items.get(i).cloned())
            .unwrap_or(Value::Undefined),
        Value::Str(s) => key
            .as_i64()
            .and_then(|i| usize::try_from(i).ok())
            .and_then(|i| s.chars().nth(i))
            .map_or(Value::Undefined, |c| Value::Str(c.to_string())),
        Value::Object(_) => match key {
            Value::Str(k) => target.member(k),
            _ => Value::Undefined,
        },
        _ => Value::Undefined,
    }
}

fn call(function: &str, args: &[Value], context: &Context<'_>) -> Value {
    let message = context.message;
    match (function, args) {
        ("topic", []) => Value::Str(message.topic.to_owned()),
        ("topic", [n]) => n
            .as_i64()
            .filter(|n| *n >= 1)
            .and_then(|n| message.topic.split('/').nth(usize::try_from(n - 1).ok()?))
            .map_or(Value::Undefined, |level| Value::Str(level.to_owned())),
        ("timestamp", []) => Value::Int(message.timestamp_ms),
        ("clientid", []) => Value::Str(message.client_id.unwrap_or("n/a").to_owned()),
        ("newuuid", []) => Value::Str(uuid::Uuid::new_v4().to_string()),
        ("get", [target, key]) => get(target, key),
        ("upper", [Value::Str(s)]) => Value::Str(s.to_uppercase()),
        ("lower", [Value::Str(s)]) => Value::Str(s.to_lowercase()),
        ("abs", [Value::Int(i)]) => i.checked_abs().map_or(Value::Undefined, Value::Int),
        ("abs", [v]) => v.as_f64().map_or(Value::Undefined, |f| decimal(f.abs())),
        ("isundefined", [v]) => Value::Bool(v.is_undefined()),
        ("isnull", [v]) => Value::Bool(matches!(v, Value::Null)),
        ("concat", []) => Value::Undefined,
        ("concat", args) if args.iter().any(|a| matches!(a, Value::Array(_))) => Value::Array(
            args.iter()
                .flat_map(|a| match a {
                    Value::Array(items) => items.clone(),
                    other => vec![other.clone()],
                })
                .collect(),
        ),
        ("concat", args) => args
            .iter()
            .map(Value::as_text)
            .collect::<Option<String>>()
            .map_or(Value::Undefined, Value::Str),
        // Unknown functions, wrong argument types or counts: Undefined, as AWS answers them.
        _ => Value::Undefined,
    }
}
