//! Device identifiers: ICCID (ITU-T E.118), IMEI (3GPP TS 23.003) and MSISDN (ITU-T E.164).
//!
//! Parsing is the only way to obtain one of these types, so a value that exists is valid.

use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("must contain only digits")]
    NotDigits,
    #[error("must be {expected} digits long, got {actual}")]
    Length {
        expected: &'static str,
        actual: usize,
    },
    #[error("must start with 89 (the telecom industry identifier)")]
    IccidPrefix,
    #[error("check digit is wrong (Luhn)")]
    CheckDigit,
    #[error(
        "must be in E.164 form: '+' then up to 15 digits, the first not 0 (e.g. +14155550123)"
    )]
    NotE164,
}

/// The Luhn sum of `digits`: every second digit from the right doubled (digits past 9 reduced).
fn luhn_sum(digits: &str) -> u32 {
    digits
        .bytes()
        .rev()
        .enumerate()
        .map(|(position, byte)| {
            let digit = u32::from(byte - b'0');
            match position % 2 {
                0 => digit,
                _ if digit * 2 > 9 => digit * 2 - 9,
                _ => digit * 2,
            }
        })
        .sum()
}

/// True when the last digit of `digits` is the Luhn check digit of the rest.
pub fn luhn_valid(digits: &str) -> bool {
    luhn_sum(digits).is_multiple_of(10)
}

/// The Luhn check digit that completes `payload`.
pub fn luhn_check_digit(payload: &str) -> char {
    let sum = luhn_sum(&format!("{payload}0"));
    char::from(b'0' + ((10 - sum % 10) % 10) as u8)
}

fn all_digits(value: &str) -> bool {
    !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit())
}

macro_rules! identifier {
    ($name:ident) => {
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> String {
                value.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(value: String) -> Result<Self, IdError> {
                $name::parse(&value)
            }
        }
    };
}

identifier!(Iccid);
identifier!(Imei);
identifier!(Msisdn);

impl Iccid {
    /// 19 or 20 digits, industry prefix 89, Luhn check digit last.
    pub fn parse(value: &str) -> Result<Self, IdError> {
        if !all_digits(value) {
            return Err(IdError::NotDigits);
        }
        if !(19..=20).contains(&value.len()) {
            return Err(IdError::Length {
                expected: "19 or 20",
                actual: value.len(),
            });
        }
        if !value.starts_with("89") {
            return Err(IdError::IccidPrefix);
        }
        if !luhn_valid(value) {
            return Err(IdError::CheckDigit);
        }
        Ok(Self(value.to_owned()))
    }
}

impl Imei {
    /// 15 digits, Luhn check digit last.
    pub fn parse(value: &str) -> Result<Self, IdError> {
        if !all_digits(value) {
            return Err(IdError::NotDigits);
        }
        if value.len() != 15 {
            return Err(IdError::Length {
                expected: "15",
                actual: value.len(),
            });
        }
        if !luhn_valid(value) {
            return Err(IdError::CheckDigit);
        }
        Ok(Self(value.to_owned()))
    }
}

impl Msisdn {
    /// E.164: a plus sign and at most 15 digits, the country code never starting with 0.
    pub fn parse(value: &str) -> Result<Self, IdError> {
        let digits = value.strip_prefix('+').ok_or(IdError::NotE164)?;
        if !all_digits(digits) || digits.len() > 15 || digits.len() < 2 || digits.starts_with('0') {
            return Err(IdError::NotE164);
        }
        Ok(Self(value.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_good_identifiers_parse() {
        // ICCID and IMEI examples with correct Luhn digits (IMEI from 3GPP's published example).
        assert!(Iccid::parse("8901260882296135418").is_ok());
        assert!(Iccid::parse("89014103211118510720").is_ok());
        assert_eq!(
            Imei::parse("490154203237518").map(|i| i.0),
            Ok("490154203237518".into())
        );
        assert!(Msisdn::parse("+14155550123").is_ok());
    }

    #[test]
    fn errors_name_the_rule_broken() {
        assert_eq!(Iccid::parse("89012608822961354a"), Err(IdError::NotDigits));
        assert_eq!(
            Iccid::parse("890126088229"),
            Err(IdError::Length {
                expected: "19 or 20",
                actual: 12
            })
        );
        assert_eq!(
            Iccid::parse("1101260882296135418"),
            Err(IdError::IccidPrefix)
        );
        assert_eq!(Imei::parse("490154203237519"), Err(IdError::CheckDigit));
        assert_eq!(Msisdn::parse("14155550123"), Err(IdError::NotE164));
        assert_eq!(Msisdn::parse("+04155550123"), Err(IdError::NotE164));
        assert_eq!(Msisdn::parse("+1234567890123456"), Err(IdError::NotE164));
    }

    #[test]
    fn serde_round_trip_rejects_invalid() {
        let imei: Imei = serde_json::from_str("\"490154203237518\"").unwrap();
        assert_eq!(serde_json::to_string(&imei).unwrap(), "\"490154203237518\"");
        assert!(serde_json::from_str::<Imei>("\"490154203237519\"").is_err());
    }

    proptest! {
        #[test]
        fn any_payload_with_its_check_digit_is_a_valid_iccid(payload in "89[0-9]{16,17}") {
            let iccid = format!("{payload}{}", luhn_check_digit(&payload));
            prop_assert!(Iccid::parse(&iccid).is_ok());
        }

        #[test]
        fn changing_one_digit_of_an_iccid_breaks_it(payload in "89[0-9]{17}", position in 2usize..19, bump in 1u8..10) {
            let iccid = format!("{payload}{}", luhn_check_digit(&payload));
            let mut bytes = iccid.into_bytes();
            bytes[position] = b'0' + (bytes[position] - b'0' + bump) % 10;
            let mutated = String::from_utf8(bytes).unwrap();
            prop_assert_eq!(Iccid::parse(&mutated), Err(IdError::CheckDigit));
        }

        #[test]
        fn imei_accepts_exactly_the_luhn_completed_payloads(payload in "[0-9]{14}", last in 0u8..10) {
            let candidate = format!("{payload}{}", char::from(b'0' + last));
            let expected = luhn_check_digit(&payload) == char::from(b'0' + last);
            prop_assert_eq!(Imei::parse(&candidate).is_ok(), expected);
        }

        #[test]
        fn msisdn_accepts_e164_and_nothing_without_plus(digits in "[1-9][0-9]{1,14}") {
            let with_plus = format!("+{}", digits);
            prop_assert!(Msisdn::parse(&with_plus).is_ok());
            prop_assert!(Msisdn::parse(&digits).is_err());
        }

        #[test]
        fn parsers_never_panic(input in "\\PC{0,40}") {
            let _ = Iccid::parse(&input);
            let _ = Imei::parse(&input);
            let _ = Msisdn::parse(&input);
        }
    }
}
