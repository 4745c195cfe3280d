//! Removing secrets from text before it reaches a log line or an audit entry.

/// Replacement for a removed secret.
pub const REDACTED: &str = "<redacted>";

/// Header and field names (matched case-insensitively) whose values are secrets wherever they appear.
const SECRET_NAMES: [&str; 9] = [
    "authorization",
    "proxy-authorization",
    "vz-m2m-token",
    "app-secret",
    "apikey",
    "api_key",
    "password",
    "access_token",
    "client_secret",
];

/// `text` with every known secret value replaced, and every value of a secret-named field or
/// header (`name: value`, `"name": "value"`, `name=value`) replaced too.
pub fn redact(text: &str, known_secrets: &[&str]) -> String {
    let mut out = text.to_owned();
    // Longest first, so a secret that contains another is removed whole.
    let mut secrets: Vec<&str> = known_secrets
        .iter()
        .copied()
        .filter(|s| s.len() >= 4)
        .collect();
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    for secret in secrets {
        out = out.replace(secret, REDACTED);
    }
    for name in SECRET_NAMES {
        out = redact_named(&out, name);
    }
    out
}

/// Replaces the value after each case-insensitive occurrence of `name` followed by `:` or `=`
/// (optionally quoted), up to the end of the value.
fn redact_named(text: &str, name: &str) -> String {
    let lower = text.to_ascii_lowercase();
    let needle = name.to_ascii_lowercase();
    let mut out = String::with_capacity(text.len());
    let mut copied = 0;
    let mut search = 0;
    while let Some(found) = lower[search..].find(&needle) {
        let after_name = search + found + needle.len();
        search = after_name;
        let rest = &text[after_name..];
        let separator = rest.trim_start_matches('"').trim_start();
        let Some(value_part) = separator
            .strip_prefix(':')
            .or_else(|| separator.strip_prefix('='))
        else {
            continue;
        };
        let value_start =
            text.len() - value_part.len() + (value_part.len() - value_part.trim_start().len());
        let value = &text[value_start..];
        let (quoted, body) = match value.strip_prefix('"') {
            Some(inner) => (true, inner),
            None => (false, value),
        };
        let end_in_body = if quoted {
            body.find('"').unwrap_or(body.len())
        } else {
            body.find(['\n', '\r', ',', '&', '}']).unwrap_or(body.len())
        };
        let body_start = value_start + usize::from(quoted);
        out.push_str(&text[copied..body_start]);
        out.push_str(REDACTED);
        copied = body_start + end_in_body;
        search = copied.max(search);
    }
    out.push_str(&text[copied..]);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn headers_fields_and_known_values_are_removed() {
        let text = "PUT /devices/1\nAuthorization: Basic b3BzOnMzY3IzdA==\nVZ-M2M-Token: abc-123\n\
                    {\"password\": \"hunter22\", \"status\": \"ACTIVATED\"}\ngrant_type=client_credentials&client_secret=xyz789";
        let clean = redact(text, &["s3cr3t-key"]);
        for secret in ["b3BzOnMzY3IzdA==", "abc-123", "hunter22", "xyz789"] {
            assert!(!clean.contains(secret), "{secret} left in {clean}");
        }
        assert!(clean.contains("\"status\": \"ACTIVATED\""), "{clean}");
        assert!(clean.contains("PUT /devices/1"));
        assert_eq!(
            redact("api key s3cr3t-key used", &["s3cr3t-key"]),
            "api key <redacted> used"
        );
    }

    proptest! {
        #[test]
        fn a_known_secret_never_survives(prefix in "\\PC{0,30}", secret in "[A-Za-z0-9]{8,24}", suffix in "\\PC{0,30}") {
            let text = format!("{prefix}{secret}{suffix}");
            prop_assert!(!redact(&text, &[&secret]).contains(&secret));
        }

        #[test]
        fn redaction_never_panics(text in "\\PC{0,200}") {
            let _ = redact(&text, &["password"]);
        }
    }
}
