//! Treatments: what happens to a classified value.

use std::{fmt, str::FromStr};

use super::detect::Builtin;
use crate::keys::{Keyring, Seal};

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Generalize {
    /// `1990-03-07…` → `1990`.
    Year,
    /// `1990-03-07…` → `1990-03`.
    Month,
    /// A number → the range of width `n` holding it: 37 → `30-39`.
    Range(u64),
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Treatment {
    Clear,
    /// Partial mask keeping the value's format. `None` keeps what suits the
    /// detected kind (138****5678, 110***********123X, a***@example.com).
    Mask {
        keep_first: Option<usize>,
        keep_last: Option<usize>,
    },
    Redact,
    Null,
    Drop,
    /// Keyed HMAC-SHA256 pseudonym, stable per keyring: a join key.
    Pseudonym,
    /// AES-256-GCM, random nonce.
    Encrypt,
    /// AES-256-GCM-SIV, value-derived nonce: equal values, equal ciphertexts.
    EncryptDeterministic,
    Generalize(Generalize),
}

impl FromStr for Treatment {
    type Err = String;

    fn from_str(s: &str) -> Result<Treatment, String> {
        let mut parts = s.split(':');
        let head = parts.next().unwrap_or_default();
        let rest: Vec<&str> = parts.collect();
        let number = |text: &str| {
            text.parse::<usize>()
                .map_err(|_| format!("{text:?} in {s:?} is not a count"))
        };
        Ok(match (head, rest.as_slice()) {
            ("clear", []) => Treatment::Clear,
            ("mask", []) => Treatment::Mask { keep_first: None, keep_last: None },
            ("mask", [first, last]) => Treatment::Mask { keep_first: Some(number(first)?), keep_last: Some(number(last)?) },
            ("redact", []) => Treatment::Redact,
            ("null", []) => Treatment::Null,
            ("drop", []) => Treatment::Drop,
            ("pseudonym" | "hash", []) => Treatment::Pseudonym,
            ("encrypt", []) => Treatment::Encrypt,
            ("encrypt_deterministic", []) => Treatment::EncryptDeterministic,
            ("generalize", ["year"]) => Treatment::Generalize(Generalize::Year),
            ("generalize", ["month"]) => Treatment::Generalize(Generalize::Month),
            ("generalize", ["range", width]) => {
                let width = number(width)?;
                if width == 0 {
                    return Err(format!("{s:?}: the range width must be at least 1"));
                }
                Treatment::Generalize(Generalize::Range(width as u64))
            }
            _ => {
                return Err(format!(
                    "unknown treatment {s:?}; expected clear, mask, mask:FIRST:LAST, redact, null, drop, pseudonym, \
                     encrypt, encrypt_deterministic, generalize:year, generalize:month or generalize:range:N"
                ))
            }
        })
    }
}

impl fmt::Display for Treatment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Treatment::Clear => f.write_str("clear"),
            Treatment::Mask {
                keep_first: Some(a),
                keep_last: Some(b),
            } => write!(f, "mask:{a}:{b}"),
            Treatment::Mask { .. } => f.write_str("mask"),
            Treatment::Redact => f.write_str("redact"),
            Treatment::Null => f.write_str("null"),
            Treatment::Drop => f.write_str("drop"),
            Treatment::Pseudonym => f.write_str("pseudonym"),
            Treatment::Encrypt => f.write_str("encrypt"),
            Treatment::EncryptDeterministic => f.write_str("encrypt_deterministic"),
            Treatment::Generalize(Generalize::Year) => f.write_str("generalize:year"),
            Treatment::Generalize(Generalize::Month) => f.write_str("generalize:month"),
            Treatment::Generalize(Generalize::Range(n)) => write!(f, "generalize:range:{n}"),
        }
    }
}

pub const REDACTED: &str = "[REDACTED]";

/// Replaces every character except the first `first` and last `last` with
/// `*`; separators (space, dash, dot, colon) are kept so the format shows.
fn mask_chars(value: &str, first: usize, last: usize) -> String {
    let chars: Vec<char> = value.chars().collect();
    let n = chars.len();
    if first + last >= n {
        // Too short to show anything and still hide something.
        return "*".repeat(n.max(1));
    }
    chars
        .iter()
        .enumerate()
        .map(|(i, &c)| {
            if i < first || i >= n - last || matches!(c, ' ' | '-' | '.' | ':') {
                c
            } else {
                '*'
            }
        })
        .collect()
}

/// The format-keeping mask of a labelled field, which may hold more than
/// one bare value: each valid value of the label's format inside it is
/// masked as that format shows it (a mobile's first 3 and last 4 digits);
/// for numeric formats any other digit is hidden too, so no second number
/// slips through by position; a field with no valid value in it is
/// redacted rather than shown by position.
pub fn mask_by_format(value: &str, kind: Builtin) -> String {
    if super::detect::is_exactly(kind, value) {
        return partial_mask(value, Some(kind), (None, None));
    }
    let values = super::detect::values_of(kind, value);
    if values.is_empty() {
        return REDACTED.to_owned();
    }
    let numeric = matches!(
        kind,
        Builtin::CnMobile | Builtin::CnResidentId | Builtin::BankCard
    );
    let hide_rest = |text: &str| -> String {
        if numeric {
            text.chars()
                .map(|c| if c.is_ascii_digit() { '*' } else { c })
                .collect()
        } else {
            text.to_owned()
        }
    };
    let mut out = String::with_capacity(value.len());
    let mut cursor = 0;
    for (start, end) in values {
        out.push_str(&hide_rest(&value[cursor..start]));
        out.push_str(&partial_mask(&value[start..end], Some(kind), (None, None)));
        cursor = end;
    }
    out.push_str(&hide_rest(&value[cursor..]));
    out
}

/// Format-keeping partial mask.
pub fn partial_mask(
    value: &str,
    kind: Option<Builtin>,
    keep: (Option<usize>, Option<usize>),
) -> String {
    if let (Some(first), Some(last)) = keep {
        return mask_chars(value, first, last);
    }
    match kind {
        Some(Builtin::CnMobile) => {
            // The last 11 digits are the number, whatever separators stand
            // between them; a country prefix before them is kept. Of the
            // number, the first 3 and last 4 digits show. Counted in digits
            // and characters, never bytes.
            let digits = value.bytes().filter(u8::is_ascii_digit).count();
            let national = digits.saturating_sub(11);
            let mut seen = 0;
            value
                .chars()
                .map(|c| {
                    if !c.is_ascii_digit() {
                        return c;
                    }
                    let position = seen;
                    seen += 1;
                    if (national + 3..national + 7).contains(&position) {
                        '*'
                    } else {
                        c
                    }
                })
                .collect()
        }
        Some(Builtin::CnResidentId) => mask_chars(value, 3, 4),
        Some(Builtin::BankCard) => mask_chars(value, 4, 4),
        Some(Builtin::Email) => match value.split_once('@') {
            Some((local, domain)) => {
                let first: String = local.chars().take(1).collect();
                format!("{first}***@{domain}")
            }
            None => mask_chars(value, 1, 0),
        },
        Some(Builtin::Ipv4) => {
            let octets: Vec<&str> = value.split('.').collect();
            format!(
                "{}.{}.*.*",
                octets[0],
                octets.get(1).copied().unwrap_or("*")
            )
        }
        Some(Builtin::Ipv6) => {
            let first = value.split(':').next().unwrap_or_default();
            format!("{first}:*:*:*")
        }
        None => {
            let n = value.chars().count();
            match n {
                0..=2 => "*".repeat(n.max(1)),
                3..=5 => mask_chars(value, 1, 0),
                _ => mask_chars(value, 1, 1),
            }
        }
    }
}

/// Generalizes a value; `None` when it has no shape to generalize (the
/// caller then redacts: fail closed).
pub fn generalize(value: &str, how: Generalize) -> Option<String> {
    match how {
        Generalize::Year | Generalize::Month => {
            let bytes = value.as_bytes();
            let year_ok = bytes.len() >= 4 && bytes[..4].iter().all(u8::is_ascii_digit);
            if !year_ok {
                return None;
            }
            if how == Generalize::Year {
                return Some(value[..4].to_owned());
            }
            let month_ok = bytes.len() >= 7
                && matches!(bytes[4], b'-' | b'/' | b'.')
                && bytes[5..7].iter().all(u8::is_ascii_digit);
            month_ok.then(|| format!("{}-{}", &value[..4], &value[5..7]))
        }
        Generalize::Range(width) => {
            let number: f64 = value.trim().parse().ok()?;
            if !number.is_finite() {
                return None;
            }
            // Past 2^53 a double no longer holds every integer: a range
            // there would be made of rounded (or saturated) bounds, so the
            // value is not generalized and the caller redacts it.
            const EXACT: f64 = 9_007_199_254_740_992.0;
            let width_f = width as f64;
            let low = (number / width_f).floor() * width_f;
            if !(low.abs() <= EXACT && (low + width_f).abs() <= EXACT) {
                return None;
            }
            let low = low as i64;
            let high = low.checked_add(i64::try_from(width).ok()?.checked_sub(1)?)?;
            Some(format!("{low}-{high}"))
        }
    }
}

/// What a treatment turns a string into. `None` means "no value" (null, or
/// the field dropped, as the caller decides).
pub fn apply(
    treatment: Treatment,
    value: &str,
    seal: &Seal<'_>,
    kind: Option<Builtin>,
    keys: &Keyring,
) -> Option<String> {
    Some(match treatment {
        Treatment::Clear => value.to_owned(),
        Treatment::Mask {
            keep_first: None,
            keep_last: None,
        } if kind.is_some() => mask_by_format(value, kind.expect("checked by the guard")),
        Treatment::Mask {
            keep_first,
            keep_last,
        } => partial_mask(value, kind, (keep_first, keep_last)),
        Treatment::Redact => REDACTED.to_owned(),
        Treatment::Null | Treatment::Drop => return None,
        Treatment::Pseudonym => keys.pseudonym(value),
        Treatment::Encrypt => keys.encrypt(seal, value),
        Treatment::EncryptDeterministic => keys.encrypt_deterministic(seal, value),
        Treatment::Generalize(how) => generalize(value, how).unwrap_or_else(|| REDACTED.to_owned()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_keep_the_format() {
        let check = |value: &str, kind, expect: &str| {
            assert_eq!(partial_mask(value, kind, (None, None)), expect)
        };
        check("13812345678", Some(Builtin::CnMobile), "138****5678");
        check("8613812345678", Some(Builtin::CnMobile), "86138****5678");
        check(
            "11010519491231002X",
            Some(Builtin::CnResidentId),
            "110***********002X",
        );
        check(
            "alice@example.com",
            Some(Builtin::Email),
            "a***@example.com",
        );
        check(
            "4111 1111 1111 1111",
            Some(Builtin::BankCard),
            "4111 **** **** 1111",
        );
        check("192.168.1.20", Some(Builtin::Ipv4), "192.168.*.*");
        // Characters, not bytes: no cut inside a multi-byte character.
        check("电1234567890", Some(Builtin::CnMobile), "电123****890");
        check("139-1234-5678", Some(Builtin::CnMobile), "139-****-5678");
        check(
            "+86 139 1234 5678",
            Some(Builtin::CnMobile),
            "+86 139 **** 5678",
        );
        check(
            "+86电13812345678",
            Some(Builtin::CnMobile),
            "+86电138****5678",
        );
        check("张三丰", None, "张**");
        assert_eq!(
            partial_mask("ABCDEFGH", None, (Some(2), Some(3))),
            "AB***FGH"
        );
    }

    /// A labelled field holding more than one bare value: every value is
    /// masked by its format, other digits hidden, and a field with no
    /// valid value redacted, never shown by position.
    #[test]
    fn labelled_fields_are_masked_as_a_whole() {
        let check = |value: &str, kind, expect: &str| {
            assert_eq!(mask_by_format(value, kind), expect, "{value}")
        };
        let mobile = Builtin::CnMobile;
        check("13912345678", mobile, "139****5678");
        check("13912345678 13812345678", mobile, "139****5678 138****5678");
        check("电话：13912345678。", mobile, "电话：139****5678。");
        check("13912345678 (home)", mobile, "139****5678 (home)");
        check("13912345678 ext 1234", mobile, "139****5678 ext ****");
        check("1391234567", mobile, REDACTED);
        check(
            "zhang.wei@example.cn; li.fang@example.cn",
            Builtin::Email,
            "z***@example.cn; l***@example.cn",
        );
    }

    #[test]
    fn generalization_and_parsing() {
        assert_eq!(
            generalize("1990-03-07", Generalize::Year).as_deref(),
            Some("1990")
        );
        assert_eq!(
            generalize("1990-03-07T10:00:00Z", Generalize::Month).as_deref(),
            Some("1990-03")
        );
        assert_eq!(
            generalize("37", Generalize::Range(10)).as_deref(),
            Some("30-39")
        );
        assert_eq!(generalize("n/a", Generalize::Range(10)), None);
        for text in [
            "clear",
            "mask",
            "mask:3:4",
            "redact",
            "null",
            "drop",
            "pseudonym",
            "encrypt",
            "encrypt_deterministic",
            "generalize:year",
            "generalize:range:5",
        ] {
            assert_eq!(text.parse::<Treatment>().unwrap().to_string(), text);
        }
        assert!("blur"
            .parse::<Treatment>()
            .unwrap_err()
            .contains("unknown treatment"));
    }

    /// Over the whole f64 range a range is either exact bounds around the
    /// value or nothing (redacted): never saturated or wrapped.
    #[test]
    fn ranges_hold_their_value_or_are_refused() {
        use proptest::prelude::*;
        let mut runner = proptest::test_runner::TestRunner::default();
        runner
            .run(
                &(
                    any::<f64>(),
                    prop::sample::select(vec![1u64, 10, 1000, 1 << 40, u64::MAX]),
                ),
                |(number, width)| {
                    if let Some(range) = generalize(&number.to_string(), Generalize::Range(width)) {
                        let split = range[1..].find('-').map(|i| i + 1).unwrap();
                        let low: i64 = range[..split].parse().unwrap();
                        let high: i64 = range[split + 1..].parse().unwrap();
                        prop_assert!(
                            low as f64 <= number && number <= high as f64 + 1.0,
                            "{number} in {range}"
                        );
                        prop_assert!(low.abs() < 1 << 54 && high.abs() < 1 << 54, "{range}");
                    }
                    Ok(())
                },
            )
            .unwrap();
        for huge in ["1e300", "9.3e18", "-9.3e18", "9223372036854775807"] {
            assert_eq!(generalize(huge, Generalize::Range(10)), None, "{huge}");
        }
    }
}
