//! Content detectors: find sensitive values inside strings, with
//! validation (checksums, ranges) so that an order number is not taken for
//! a bank card.

use std::sync::LazyLock;

use regex::{Regex, RegexSet};

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
    /// How strongly its validation speaks for it (see `strength`).
    strength: u8,
}

static EMAIL: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}")
        .expect("valid regex")
});
/// [`EMAIL`], anchored: the whole value is one address.
static EMAIL_EXACT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}$")
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

/// A run of ASCII digits in the text (a resident id's final `X` included),
/// by byte range.
struct Group {
    start: usize,
    end: usize,
}

/// How strongly a span's validation speaks for it; where spans overlap the
/// strongest wins, then the longer, whatever order detectors are listed in.
/// Numeric spans whose ends fall on the text's own digit-run boundaries rank
/// above windows cut out of a longer run.
mod strength {
    pub const RESIDENT_ID: u8 = 9;
    pub const MOBILE: u8 = 8;
    pub const STRUCTURED: u8 = 7; // email, IP addresses
    pub const BANK_CARD: u8 = 6;
    pub const RESIDENT_ID_IN_RUN: u8 = 5;
    pub const MOBILE_IN_RUN: u8 = 4;
    pub const CUSTOM: u8 = 1;
}

/// A numeric value found in text, before it is handed to its detector.
#[derive(Debug, Clone, Copy)]
struct Candidate {
    start: usize,
    end: usize,
    kind: Builtin,
    strength: u8,
}

/// Digit runs of `text`. A run may end in `X`/`x` right after 17 digits (a
/// resident id's check character).
fn digit_groups(bytes: &[u8]) -> Vec<Group> {
    let mut groups = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if !bytes[i].is_ascii_digit() {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
        if i - start >= 17 && i < bytes.len() && matches!(bytes[i], b'X' | b'x') {
            i += 1;
        }
        groups.push(Group { start, end: i });
    }
    groups
}

/// Runs joined by one space or dash may be one value written in parts
/// (`139 1234 5678`, `6222-0212-3456-7890`).
fn joinable(bytes: &[u8], before: &Group, after: &Group) -> bool {
    after.start == before.end + 1 && matches!(bytes[before.end], b' ' | b'-')
}

fn is_mobile(digits: &[u8]) -> bool {
    digits.len() == 11 && digits[0] == b'1' && (b'3'..=b'9').contains(&digits[1])
}

/// Every validated numeric value in `text`, overlapping ones included.
///
/// Candidates are taken so that a valid value is found whatever stands next
/// to it: every chain of digit runs joined by single spaces or dashes, from
/// every run it can start at (so `bed 12 13912345678` still yields the
/// mobile number), and windows inside runs too long to be one value (so a
/// number glued to another is still seen). Each candidate is checked by its
/// validator (length, prefix, checksum, Luhn); overlaps are resolved later
/// by strength. Linear in the text: a chain stops at 19 digits.
fn numeric_candidates(text: &str) -> Vec<Candidate> {
    let bytes = text.as_bytes();
    let groups = digit_groups(bytes);
    let mut found = Vec::new();
    let mut digits = Vec::with_capacity(20);
    for (i, first) in groups.iter().enumerate() {
        digits.clear();
        for (j, group) in groups[i..].iter().enumerate() {
            if j > 0 && !joinable(bytes, &groups[i + j - 1], group) {
                break;
            }
            digits.extend_from_slice(&bytes[group.start..group.end]);
            if digits.len() > 19 {
                break;
            }
            let ends_in_x = digits.last().is_some_and(|b| !b.is_ascii_digit());
            let mut push = |kind, strength| {
                found.push(Candidate {
                    start: first.start,
                    end: group.end,
                    kind,
                    strength,
                })
            };
            if resident_id_valid(&digits) {
                push(Builtin::CnResidentId, strength::RESIDENT_ID);
            }
            let national = match digits.len() {
                13 if digits.starts_with(b"86") => &digits[2..],
                15 if digits.starts_with(b"0086") => &digits[4..],
                _ => &digits[..],
            };
            if is_mobile(national) {
                push(Builtin::CnMobile, strength::MOBILE);
            }
            if !ends_in_x && (13..=19).contains(&digits.len()) && luhn_valid(&digits) {
                push(Builtin::BankCard, strength::BANK_CARD);
            }
            if ends_in_x {
                break;
            }
        }
        // Windows inside a run too long to be any one value (more than a
        // card's 19 digits): numbers written with no separator between
        // them. Shorter runs are taken whole, so an order number that is
        // no valid value is not cut into one.
        let run = &bytes[first.start..first.end];
        if run.len() > 19 {
            for k in 0..=run.len() - 11 {
                if is_mobile(&run[k..k + 11]) {
                    found.push(Candidate {
                        start: first.start + k,
                        end: first.start + k + 11,
                        kind: Builtin::CnMobile,
                        strength: strength::MOBILE_IN_RUN,
                    });
                }
            }
        }
        if run.len() > 19 {
            for k in 0..=run.len() - 18 {
                if resident_id_valid(&run[k..k + 18]) {
                    found.push(Candidate {
                        start: first.start + k,
                        end: first.start + k + 18,
                        kind: Builtin::CnResidentId,
                        strength: strength::RESIDENT_ID_IN_RUN,
                    });
                }
            }
        }
    }
    found
}

fn builtin_spans(
    builtin: Builtin,
    text: &str,
    detector: usize,
    numeric: &mut Option<Vec<Candidate>>,
    out: &mut Vec<Span>,
) {
    let bytes = text.as_bytes();
    match builtin {
        Builtin::CnMobile | Builtin::CnResidentId | Builtin::BankCard => {
            // One scan for digits serves all three numeric detectors.
            let numeric = numeric.get_or_insert_with(|| numeric_candidates(text));
            out.extend(numeric.iter().filter(|c| c.kind == builtin).map(|c| Span {
                start: c.start,
                end: c.end,
                detector,
                strength: c.strength,
            }));
        }
        Builtin::Email => {
            if text.contains('@') {
                out.extend(EMAIL.find_iter(text).map(|m| Span {
                    start: m.start(),
                    end: m.end(),
                    detector,
                    strength: strength::STRUCTURED,
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
                        strength: strength::STRUCTURED,
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
                            strength: strength::STRUCTURED,
                        });
                    }
                }
            }
        }
    }
}

/// Whether any detector could fire on `text`: a cheap look before the
/// scan. Builtins need a digit, `@` or `:`; custom detectors are asked
/// all at once through their set.
pub fn worth_scanning(text: &str, custom: Option<&RegexSet>) -> bool {
    text.bytes()
        .any(|b| b.is_ascii_digit() || b == b'@' || b == b':')
        || custom.is_some_and(|set| set.is_match(text))
}

/// Non-overlapping spans in `text`, earliest first; where spans overlap the
/// strongest validated match wins (a resident id's checksum over a card's
/// Luhn digit, a whole digit run over a window cut from a longer one), then
/// the longer span, then the detector listed first.
pub fn find_spans(detectors: &[Detector], custom: Option<&RegexSet>, text: &str) -> Vec<Span> {
    if detectors.is_empty() || !worth_scanning(text, custom) {
        return Vec::new();
    }
    let mut all = Vec::new();
    let mut numeric = None;
    for (index, detector) in detectors.iter().enumerate() {
        match &detector.pattern {
            Pattern::Builtin(builtin) => {
                builtin_spans(*builtin, text, index, &mut numeric, &mut all)
            }
            Pattern::Custom(regex) => all.extend(
                regex
                    .find_iter(text)
                    .filter(|m| !m.is_empty())
                    .map(|m| Span {
                        start: m.start(),
                        end: m.end(),
                        detector: index,
                        strength: strength::CUSTOM,
                    }),
            ),
        }
    }
    resolve(all)
}

/// Whether `value` is exactly one valid value of `kind`. A bare run of
/// digits (how most labelled fields hold them) is checked directly; any
/// other text goes through detection.
pub fn is_exactly(kind: Builtin, value: &str) -> bool {
    match kind {
        Builtin::CnMobile | Builtin::BankCard | Builtin::CnResidentId => {
            match grouped_digits(value.as_bytes()) {
                Some(digits) => exact_number(kind, &digits),
                None => values_of(kind, value).as_slice() == [(0, value.len())],
            }
        }
        Builtin::Email => EMAIL_EXACT.is_match(value),
        Builtin::Ipv4 => value.parse::<std::net::Ipv4Addr>().is_ok(),
        Builtin::Ipv6 => {
            value.matches(':').count() >= 2 && value.parse::<std::net::Ipv6Addr>().is_ok()
        }
    }
}

/// The digits of a value written as digit groups joined by single spaces
/// or dashes (`139 1234 5678`, `4111-1111-1111-1111`, a resident id's final
/// X included); `None` for anything else.
fn grouped_digits(bytes: &[u8]) -> Option<Vec<u8>> {
    let mut digits = Vec::with_capacity(bytes.len());
    let mut after_separator = true;
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'0'..=b'9' => {
                digits.push(b);
                after_separator = false;
            }
            b'X' | b'x' if i + 1 == bytes.len() && !after_separator => digits.push(b'X'),
            b' ' | b'-' if !after_separator => after_separator = true,
            _ => return None,
        }
    }
    (!after_separator).then_some(digits)
}

/// The numeric validators on a value's digits, as candidate detection
/// applies them.
fn exact_number(kind: Builtin, digits: &[u8]) -> bool {
    let ends_in_x = digits.last() == Some(&b'X');
    match kind {
        Builtin::CnResidentId => resident_id_valid(digits),
        Builtin::CnMobile => is_mobile(match digits.len() {
            13 if digits.starts_with(b"86") => &digits[2..],
            15 if digits.starts_with(b"0086") => &digits[4..],
            _ => digits,
        }),
        Builtin::BankCard => !ends_in_x && (13..=19).contains(&digits.len()) && luhn_valid(digits),
        _ => false,
    }
}

/// Where valid values of `kind` are in `text`, in order, not overlapping.
pub fn values_of(kind: Builtin, text: &str) -> Vec<(usize, usize)> {
    let mut spans = Vec::new();
    builtin_spans(kind, text, 0, &mut None, &mut spans);
    resolve(spans)
        .into_iter()
        .map(|s| (s.start, s.end))
        .collect()
}

/// Overlapping spans resolved: the strongest, then the longest, then the
/// first listed; in text order.
fn resolve(mut all: Vec<Span>) -> Vec<Span> {
    if all.len() <= 1 {
        return all;
    }
    all.sort_by_key(|s| {
        (
            std::cmp::Reverse(s.strength),
            std::cmp::Reverse(s.end - s.start),
            s.start,
            s.detector,
        )
    });
    // Chosen spans never overlap, so a candidate overlaps one of them only
    // if it overlaps the last chosen span starting before its end: one
    // ordered lookup per candidate keeps a text full of matches linear-ish
    // (n log n), where comparing with every chosen span was quadratic.
    let mut chosen: std::collections::BTreeMap<usize, Span> = std::collections::BTreeMap::new();
    for span in all {
        let overlaps = chosen
            .range(..span.end)
            .next_back()
            .is_some_and(|(_, c)| c.end > span.start);
        if !overlaps {
            chosen.insert(span.start, span);
        }
    }
    chosen.into_values().collect()
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
        let found: Vec<(&str, &str)> = find_spans(&detectors, None, text)
            .iter()
            .map(|s| (detectors[s.detector].name.as_str(), &text[s.start..s.end]))
            .collect();
        assert_eq!(found, expect, "in {text:?}");
    }

    /// A text that is nothing but matches: every one is found, and
    /// resolving them is not quadratic (200,000 spans would take minutes
    /// compared pairwise).
    #[test]
    fn a_text_full_of_matches_resolves_every_span() {
        let detectors = builtins();
        let text = "13912345678 ".repeat(200_000);
        let spans = find_spans(&detectors, None, &text);
        assert_eq!(spans.len(), 200_000);
        assert!(spans.windows(2).all(|w| w[0].end <= w[1].start));
    }

    #[test]
    fn validated_detection() {
        check("13812345678", &[("cn_mobile", "13812345678")]);
        // Next to other numbers, in parts, with prefixes, several at once.
        check("bed 12 13912345678", &[("cn_mobile", "13912345678")]);
        check(
            "13912345678 13812345678",
            &[("cn_mobile", "13912345678"), ("cn_mobile", "13812345678")],
        );
        check("13912345678 2x daily", &[("cn_mobile", "13912345678")]);
        check("0086 13912345678", &[("cn_mobile", "0086 13912345678")]);
        check("+86 139 1234 5678", &[("cn_mobile", "86 139 1234 5678")]);
        check(
            "bed 12 11010519491231002X",
            &[("cn_resident_id", "11010519491231002X")],
        );
        check(
            "room 3 4111 1111 1111 1111 ask",
            &[("bank_card", "4111 1111 1111 1111")],
        );
        check(
            "1391234567813812345678",
            &[("cn_mobile", "13912345678"), ("cn_mobile", "13812345678")],
        );
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
