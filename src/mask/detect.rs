//! Content detectors: find sensitive values inside strings, with
//! validation (checksums, ranges) so that an order number is not taken for
//! a bank card.

use std::sync::LazyLock;

use regex::Regex;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Builtin {
    /// Mainland China mobile number: 11 digits, 1[3-9]…, optional 86 prefix.
    CnMobile,
    /// 18-character resident identity number, ISO 7064 MOD 11-2 checksum.
    CnResidentId,
    /// 13-19 digits passing the Luhn check, spaces or dashes allowed.
    BankCard,
    Email,
    Ipv4,
    Ipv6,
}

impl Builtin {
    pub const ALL: [Builtin; 6] = [
        Builtin::CnResidentId,
        Builtin::CnMobile,
        Builtin::BankCard,
        Builtin::Email,
        Builtin::Ipv4,
        Builtin::Ipv6,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Builtin::CnMobile => "cn_mobile",
            Builtin::CnResidentId => "cn_resident_id",
            Builtin::BankCard => "bank_card",
            Builtin::Email => "email",
            Builtin::Ipv4 => "ipv4",
            Builtin::Ipv6 => "ipv6",
        }
    }

    pub fn from_name(name: &str) -> Option<Builtin> {
        Builtin::ALL.into_iter().find(|b| b.name() == name)
    }
}

#[derive(Debug, Clone)]
pub enum Pattern {
    Builtin(Builtin),
    Custom(Regex),
}

/// A detector as configured: what it finds and the label it gives.
#[derive(Debug, Clone)]
pub struct Detector {
    pub name: String,
    pub pattern: Pattern,
    pub label: String,
}

/// A detected value: byte range in the text and the detector (index).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub start: usize,
    pub end: usize,
    pub detector: usize,
}

static EMAIL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
        .expect("valid regex")
});
static IPV4: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\d{1,3}(?:\.\d{1,3}){3}").expect("valid regex"));
static IPV6: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}").expect("valid regex")
});

/// Weights and check characters of GB 11643 (ISO 7064 MOD 11-2).
pub fn resident_id_valid(id: &[u8]) -> bool {
    const WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
    const CHECK: &[u8; 11] = b"10X98765432";
    if id.len() != 18 || !id[..17].iter().all(u8::is_ascii_digit) {
        return false;
    }
    let digit = |i: usize| u32::from(id[i] - b'0');
    let sum: u32 = (0..17).map(|i| digit(i) * WEIGHTS[i]).sum();
    let month = digit(10) * 10 + digit(11);
    let day = digit(12) * 10 + digit(13);
    let year = (6..10).fold(0, |acc, i| acc * 10 + digit(i));
    (1900..=2100).contains(&year)
        && (1..=12).contains(&month)
        && (1..=31).contains(&day)
        && CHECK[(sum % 11) as usize] == id[17].to_ascii_uppercase()
}

pub fn luhn_valid(digits: &[u8]) -> bool {
    let mut sum = 0;
    for (i, d) in digits.iter().rev().enumerate() {
        let mut v = u32::from(d - b'0');
        if i % 2 == 1 {
            v *= 2;
            if v > 9 {
                v -= 9;
            }
        }
        sum += v;
    }
    sum % 10 == 0
}

/// Numeric tokens: runs of digits, possibly joined by single spaces or
/// dashes, possibly ending in X (resident ids). Yields (start, end, digits).
fn numeric_tokens(text: &str) -> Vec<(usize, usize, Vec<u8>)> {
    let bytes = text.as_bytes();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if !bytes[i].is_ascii_digit() || (i > 0 && bytes[i - 1].is_ascii_digit()) {
            i += 1;
            continue;
        }
        let start = i;
        let mut digits = Vec::with_capacity(20);
        let mut end = i;
        while end < bytes.len() {
            let b = bytes[end];
            if b.is_ascii_digit() {
                digits.push(b);
                end += 1;
            } else if (b == b' ' || b == b'-')
                && end + 1 < bytes.len()
                && bytes[end + 1].is_ascii_digit()
                && digits.len() < 19
            {
                end += 1;
            } else {
                break;
            }
        }
        if digits.len() == 17 && end < bytes.len() && (bytes[end] == b'X' || bytes[end] == b'x') {
            digits.push(b'X');
            end += 1;
        }
        tokens.push((start, end, digits));
        i = end.max(start + 1);
    }
    tokens
}

type NumericTokens = Vec<(usize, usize, Vec<u8>)>;

fn builtin_spans(
    builtin: Builtin,
    text: &str,
    detector: usize,
    tokens: &mut Option<NumericTokens>,
    out: &mut Vec<Span>,
) {
    let bytes = text.as_bytes();
    match builtin {
        Builtin::CnMobile | Builtin::CnResidentId | Builtin::BankCard => {
            // One scan for digits serves all three numeric detectors.
            let tokens = tokens.get_or_insert_with(|| numeric_tokens(text));
            for (start, end, digits) in tokens.iter() {
                let (start, end) = (*start, *end);
                let contiguous = end - start == digits.len();
                let found = match builtin {
                    Builtin::CnResidentId => contiguous && resident_id_valid(digits),
                    Builtin::CnMobile => {
                        let number = digits
                            .strip_prefix(b"86")
                            .filter(|_| digits.len() == 13)
                            .unwrap_or(digits);
                        number.len() == 11
                            && number[0] == b'1'
                            && (b'3'..=b'9').contains(&number[1])
                    }
                    Builtin::BankCard => {
                        (13..=19).contains(&digits.len())
                            && digits.iter().all(u8::is_ascii_digit)
                            && luhn_valid(digits)
                    }
                    _ => false,
                };
                if found {
                    out.push(Span {
                        start,
                        end,
                        detector,
                    });
                }
            }
        }
        Builtin::Email => {
            if text.contains('@') {
                out.extend(EMAIL.find_iter(text).map(|m| Span {
                    start: m.start(),
                    end: m.end(),
                    detector,
                }));
            }
        }
        Builtin::Ipv4 => {
            // The regex scan costs more than counting: a dotted quad needs
            // three dots.
            if bytes.iter().filter(|&&b| b == b'.').count() < 3 {
                return;
            }
            for m in IPV4.find_iter(text) {
                let before = m.start().checked_sub(1).map(|i| bytes[i]);
                let after = bytes.get(m.end()).copied();
                let isolated = !before.is_some_and(|b| b.is_ascii_digit() || b == b'.')
                    && !after.is_some_and(|b| {
                        b.is_ascii_digit()
                            || (b == b'.' && bytes.get(m.end() + 1).is_some_and(u8::is_ascii_digit))
                    });
                if isolated && m.as_str().parse::<std::net::Ipv4Addr>().is_ok() {
                    out.push(Span {
                        start: m.start(),
                        end: m.end(),
                        detector,
                    });
                }
            }
        }
        Builtin::Ipv6 => {
            if text.matches(':').count() >= 2 {
                for m in IPV6.find_iter(text) {
                    if m.as_str().matches(':').count() >= 2
                        && m.as_str().parse::<std::net::Ipv6Addr>().is_ok()
                    {
                        out.push(Span {
                            start: m.start(),
                            end: m.end(),
                            detector,
                        });
                    }
                }
            }
        }
    }
}

/// Whether any detector could fire on `text`: a cheap look before the scan.
fn worth_scanning(text: &str, has_custom: bool) -> bool {
    has_custom
        || text
            .bytes()
            .any(|b| b.is_ascii_digit() || b == b'@' || b == b':')
}

/// Non-overlapping spans in `text`, earliest first; where spans overlap the
/// detector listed first wins, then the longer span.
pub fn find_spans(detectors: &[Detector], has_custom: bool, text: &str) -> Vec<Span> {
    if detectors.is_empty() || !worth_scanning(text, has_custom) {
        return Vec::new();
    }
    let mut all = Vec::new();
    let mut tokens = None;
    for (index, detector) in detectors.iter().enumerate() {
        match &detector.pattern {
            Pattern::Builtin(builtin) => {
                builtin_spans(*builtin, text, index, &mut tokens, &mut all)
            }
            Pattern::Custom(regex) => all.extend(
                regex
                    .find_iter(text)
                    .filter(|m| !m.is_empty())
                    .map(|m| Span {
                        start: m.start(),
                        end: m.end(),
                        detector: index,
                    }),
            ),
        }
    }
    if all.len() <= 1 {
        return all;
    }
    all.sort_by_key(|s| (s.detector, s.start, std::cmp::Reverse(s.end)));
    let mut chosen: Vec<Span> = Vec::with_capacity(all.len());
    for span in all {
        if chosen
            .iter()
            .all(|c| span.end <= c.start || span.start >= c.end)
        {
            chosen.push(span);
        }
    }
    chosen.sort_by_key(|s| s.start);
    chosen
}

#[cfg(test)]
mod tests {
    use super::*;

    fn builtins() -> Vec<Detector> {
        Builtin::ALL
            .iter()
            .map(|b| Detector {
                name: b.name().into(),
                pattern: Pattern::Builtin(*b),
                label: b.name().into(),
            })
            .collect()
    }

    fn check(text: &str, expect: &[(&str, &str)]) {
        let detectors = builtins();
        let found: Vec<(&str, &str)> = find_spans(&detectors, false, text)
            .iter()
            .map(|s| (detectors[s.detector].name.as_str(), &text[s.start..s.end]))
            .collect();
        assert_eq!(found, expect, "in {text:?}");
    }

    #[test]
    fn validated_detection() {
        check("13812345678", &[("cn_mobile", "13812345678")]);
        check("12812345678", &[]);
        check("call 8613812345678 now", &[("cn_mobile", "8613812345678")]);
        check(
            "11010519491231002X",
            &[("cn_resident_id", "11010519491231002X")],
        );
        check("110105194912310021", &[]);
        check("card 6222 0212 3456 7890 1", &[]);
        check(
            "card 4111 1111 1111 1111.",
            &[("bank_card", "4111 1111 1111 1111")],
        );
        check("4111111111111112", &[]);
        check(
            "mail a.b+c@example.co.uk!",
            &[("email", "a.b+c@example.co.uk")],
        );
        check(
            "from 192.168.1.20, not 999.1.1.1",
            &[("ipv4", "192.168.1.20")],
        );
        check(
            "v6 2001:db8::8a2e:370:7334 at 12:30:45",
            &[("ipv6", "2001:db8::8a2e:370:7334")],
        );
        check(
            "客户电话13812345678，身份证11010519491231002X",
            &[
                ("cn_mobile", "13812345678"),
                ("cn_resident_id", "11010519491231002X"),
            ],
        );
    }
}
