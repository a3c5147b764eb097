//! casbin's pattern functions as the compiled evaluator calls them:
//! casbin-rs's own functions, with the regex-based ones (regexMatch,
//! keyMatch2, keyMatch3, keyMatch5) compiled once per pattern and cached.

use std::sync::{Arc, LazyLock, RwLock};

use casbin::function_map;
use foldhash::HashMap;
use regex::Regex;

use super::Func;

/// Most compiled patterns kept per function: every distinct pattern of a
/// large policy, and a bounded number of request values used as patterns.
const MAX_CACHED_PATTERNS: usize = 65_536;

/// Compiled patterns of the regex-based functions, one map per function,
/// filled on first use, at most [`MAX_CACHED_PATTERNS`] each.
#[derive(Default)]
pub(super) struct PatternFunctions {
    regexes: [RwLock<HashMap<String, Option<Arc<Regex>>>>; 4],
}

impl PatternFunctions {
    /// casbin-rs's pattern functions; the regex-based ones with their
    /// pattern compiled once (the translation is casbin-rs's).
    pub(super) fn call(&self, func: Func, key: &str, pattern: &str) -> Result<bool, String> {
        match func {
            Func::KeyMatch => return Ok(key_match(key, pattern)),
            Func::GlobMatch => return glob_match(key, pattern),
            Func::IpMatch => return ip_match(key, pattern),
            Func::KeyMatch4 => {
                return std::panic::catch_unwind(|| function_map::key_match4(key, pattern))
                    .map_err(|_| "keyMatch4 failed".to_owned())
            }
            _ => {}
        }
        let slot = match func {
            Func::RegexMatch => 0,
            Func::KeyMatch2 => 1,
            Func::KeyMatch3 => 2,
            _ => 3,
        };
        let cached = self.regexes[slot]
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(pattern)
            .cloned();
        let regex = match cached {
            Some(regex) => regex,
            None => {
                let compiled = regex_source(func, pattern)
                    .and_then(|source| go_regex_in_rust(&source))
                    .and_then(|rust| Regex::new(&rust).ok())
                    .map(Arc::new);
                let mut cache = self.regexes[slot]
                    .write()
                    .unwrap_or_else(|p| p.into_inner());
                // Patterns are the policy's, but a matcher may put a
                // request value in pattern position: past the bound the
                // cache starts over rather than grow with every request.
                if cache.len() >= MAX_CACHED_PATTERNS {
                    cache.clear();
                }
                cache.insert(pattern.to_owned(), compiled.clone());
                compiled
            }
        };
        let key = if func == Func::KeyMatch5 {
            key.split('?').next().unwrap_or(key)
        } else {
            key
        };
        match regex {
            Some(regex) => Ok(regex.is_match(key)),
            None => Err(format!(
                "pattern {pattern:?} is not a valid regular expression"
            )),
        }
    }
}

/// Go Casbin's `keyMatch`: `key` equals `pattern` up to its first `*`.
/// Compared as bytes, as Go compares them: casbin-rs slices the strings
/// and panics when the `*` falls inside a character of `key` (`/a*`
/// against `/é…`).
pub fn key_match(key: &str, pattern: &str) -> bool {
    let (key, pattern) = (key.as_bytes(), pattern.as_bytes());
    match pattern.iter().position(|&b| b == b'*') {
        None => key == pattern,
        Some(star) if key.len() > star => key[..star] == pattern[..star],
        Some(star) => key == &pattern[..star],
    }
}

/// Go Casbin's `keyGet`: what `key` holds past `pattern`'s `*` when the
/// two agree before it, else empty; by bytes, as `key_match`.
pub fn key_get(key: &str, pattern: &str) -> String {
    let (bytes, prefix) = (key.as_bytes(), pattern.as_bytes());
    match prefix.iter().position(|&b| b == b'*') {
        Some(star) if bytes.len() > star && bytes[..star] == prefix[..star] => {
            String::from_utf8_lossy(&bytes[star..]).into_owned()
        }
        _ => String::new(),
    }
}

/// A glob as casbin-rs builds it for `globMatch` (`*` stops at `/`), or why
/// it is none: casbin-rs unwraps the error and panics on every request.
fn glob(pattern: &str) -> Result<globset::GlobMatcher, String> {
    globset::GlobBuilder::new(pattern)
        .literal_separator(true)
        .build()
        .map(|glob| glob.compile_matcher())
        .map_err(|e| e.kind().to_string())
}

/// `globMatch`, failing (and so denying) on a pattern that is no glob.
pub fn glob_match(key: &str, pattern: &str) -> Result<bool, String> {
    glob(pattern)
        .map(|glob| glob.is_match(key))
        .map_err(|why| format!("globMatch: {pattern:?} is not a glob ({why})"))
}

/// Why a rule's `pattern` for the matcher function `function` would fail
/// every request that reaches it, if it would: the regex the function
/// builds from it is one Go Casbin's regexp refuses (or no regex at all).
/// Checked at load for every rule, so the regex is parsed, not compiled.
pub fn pattern_problem(function: &str, pattern: &str) -> Option<String> {
    let func = Func::from_name(function)?;
    if func == Func::GlobMatch {
        return glob(pattern).err().map(|why| {
            format!(
                "`{pattern}` is no glob globMatch can match with ({why}), so every request \
                 reaching this rule would fail"
            )
        });
    }
    let source = regex_source(func, pattern)?;
    let refused = go_regex_in_rust(&source)
        .is_none_or(|rust| regex_syntax::Parser::new().parse(&rust).is_err());
    refused.then(|| {
        format!(
            "`{pattern}` is no pattern {function} can match with: it becomes the regex `{source}`, \
             which Go Casbin's regexp refuses, so every request reaching this rule would fail"
        )
    })
}

/// A Go regex (Go Casbin's) as Rust's regex reads it the same way, or
/// `None` where Go's regexp refuses it though Rust's would not:
/// - a nested repetition (`.**`, `a+*`, what `keyMatch2(key, "/files/**")`
///   builds, `/*` becoming `/.*`) fails Go Casbin's evaluation, and the
///   request is denied; Rust would read it as one repetition and match. A
///   `?` after a repetition makes it lazy, which Go accepts once;
/// - a brace that starts no counted repetition is a literal to Go
///   (`/foo/{id}` in a keyMatch2 pattern) and an error to Rust: escaped.
fn go_regex_in_rust(source: &str) -> Option<String> {
    let chars: Vec<char> = source.chars().collect();
    let mut out = String::with_capacity(source.len() + 4);
    let mut at = 0;
    let mut after_repetition = false;
    let mut lazy = false;
    while at < chars.len() {
        let c = chars[at];
        at += 1;
        let repetition = match c {
            '?' if after_repetition && !lazy => {
                lazy = true;
                out.push(c);
                continue;
            }
            '*' | '+' | '?' => {
                out.push(c);
                true
            }
            '{' => match counted_repetition(&chars[at..]) {
                Some(length) => {
                    out.push(c);
                    out.extend(&chars[at..at + length]);
                    at += length;
                    true
                }
                None => {
                    out.push_str("\\{");
                    false
                }
            },
            '}' => {
                out.push_str("\\}");
                false
            }
            '\\' => {
                out.push(c);
                out.extend(chars.get(at));
                at += 1;
                false
            }
            '[' => {
                // A class is one item, copied up to its closing bracket (a
                // `]` first in the class is literal).
                out.push(c);
                let mut first = true;
                while at < chars.len() {
                    let inner = chars[at];
                    at += 1;
                    out.push(inner);
                    match inner {
                        '\\' => {
                            out.extend(chars.get(at));
                            at += 1;
                        }
                        ']' if !first => break,
                        _ => {}
                    }
                    first = inner == '^' && first;
                }
                false
            }
            _ => {
                out.push(c);
                false
            }
        };
        if repetition && after_repetition {
            return None;
        }
        after_repetition = repetition;
        lazy = false;
    }
    Some(out)
}

/// The length of `n}`, `n,}` or `n,m}` after a `{`, if that is what follows.
fn counted_repetition(rest: &[char]) -> Option<usize> {
    let digits = rest.iter().take_while(|c| c.is_ascii_digit()).count();
    if digits == 0 {
        return None;
    }
    let mut at = digits;
    if rest.get(at) == Some(&',') {
        at += 1;
        at += rest[at..].iter().take_while(|c| c.is_ascii_digit()).count();
    }
    (rest.get(at) == Some(&'}')).then_some(at + 1)
}

/// The regex a regex-building function makes of `pattern` (none for the
/// functions that match without one).
fn regex_source(func: Func, pattern: &str) -> Option<String> {
    Some(match func {
        Func::RegexMatch => pattern.to_owned(),
        Func::KeyMatch2 => key_pattern_source(pattern, &KEY_MATCH2_PLACEHOLDER),
        Func::KeyMatch3 => key_pattern_source(pattern, &KEY_MATCH3_PLACEHOLDER),
        Func::KeyMatch5 => key_pattern_source(pattern, &KEY_MATCH5_PLACEHOLDER),
        _ => return None,
    })
}

/// The placeholders of keyMatch2 (`:id`), keyMatch3 and keyMatch5
/// (`{id}`), compiled once: every rule's pattern is translated at load.
static KEY_MATCH2_PLACEHOLDER: LazyLock<Regex> = LazyLock::new(|| placeholder(r":[^/]*"));
static KEY_MATCH3_PLACEHOLDER: LazyLock<Regex> = LazyLock::new(|| placeholder(r"\{[^/]*\}"));
static KEY_MATCH5_PLACEHOLDER: LazyLock<Regex> = LazyLock::new(|| placeholder(r"(\{[^/]+?\})"));

fn placeholder(source: &str) -> Regex {
    Regex::new(source).expect("valid regex")
}

/// The regex source casbin builds for keyMatch2/3/5: `/*` matches any tail
/// and each placeholder (`:id`, `{id}`) matches one path segment.
fn key_pattern_source(pattern: &str, placeholder: &Regex) -> String {
    let wildcarded = pattern.replace("/*", "/.*");
    let segments = placeholder.replace_all(&wildcarded, "[^/]+");
    format!("^{segments}$")
}

/// Go Casbin's `ipMatch`: the request's address within the rule's CIDR,
/// or equal to its address (an IPv4-mapped IPv6 address is its IPv4
/// address, as Go compares them). Either side not being an address is an
/// error, as in Go; casbin-rs panics instead. The request's value is not
/// quoted: the reason is audited.
fn ip_match(key: &str, pattern: &str) -> Result<bool, String> {
    use std::net::IpAddr;
    let address = key
        .parse::<IpAddr>()
        .map_err(|_| "ipMatch: the request's value is not an IP address".to_owned())?
        .to_canonical();
    let not_a_pattern = || format!("ipMatch: {pattern:?} is not an IP address or CIDR");
    let Some((network, bits)) = pattern.split_once('/') else {
        let other = pattern.parse::<IpAddr>().map_err(|_| not_a_pattern())?;
        return Ok(address == other.to_canonical());
    };
    let network = network.parse::<IpAddr>().map_err(|_| not_a_pattern())?;
    let bits = bits.parse::<u32>().map_err(|_| not_a_pattern())?;
    match (network, address) {
        (IpAddr::V4(network), IpAddr::V4(address)) if bits <= 32 => {
            let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
            Ok(u32::from(network) & mask == u32::from(address) & mask)
        }
        (IpAddr::V6(network), IpAddr::V6(address)) if bits <= 128 => {
            let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
            Ok(u128::from(network) & mask == u128::from(address) & mask)
        }
        (IpAddr::V4(_), _) if bits <= 32 => Ok(false),
        (IpAddr::V6(_), _) if bits <= 128 => Ok(false),
        _ => Err(not_a_pattern()),
    }
}

#[cfg(test)]
mod tests {
    use super::ip_match;

    #[test]
    fn patterns_go_refuses_are_refused() {
        use super::{go_regex_in_rust, regex_source, Func};
        let go_rejects = |source: &str| go_regex_in_rust(source).is_none();
        let key_match2 = |pattern| regex_source(Func::KeyMatch2, pattern).unwrap();
        // What Go's regexp said of each (checked with Go 1.19).
        assert!(go_rejects(&key_match2("/files/**/*.txt")));
        assert!(go_rejects("^a**$"));
        assert!(go_rejects("a+*"));
        assert!(go_rejects("a*?*"));
        assert!(go_rejects("a{2}*"));
        assert!(!go_rejects(&key_match2("*")));
        assert!(!go_rejects(&key_match2("/data/*")));
        assert!(!go_rejects("^a*?$"));
        assert!(!go_rejects(r"^\**$"));
        assert!(!go_rejects("^[*]*$"));
        assert!(!go_rejects("^[]*]*$"));
        assert!(!go_rejects("a{x}*"));
        let as_rust_regex = |source: &str| go_regex_in_rust(source).unwrap();
        assert_eq!(as_rust_regex("^/foo/{id}$"), r"^/foo/\{id\}$");
        assert_eq!(as_rust_regex("^a{2,3}[{}]$"), "^a{2,3}[{}]$");
        assert_eq!(as_rust_regex(r"^\{x}$"), r"^\{x\}$");
        let functions = super::PatternFunctions::default();
        // Go reads the braces of a keyMatch2 pattern literally.
        assert_eq!(
            functions.call(super::Func::KeyMatch2, "/foo/{id}", "/foo/{id}"),
            Ok(true)
        );
        assert_eq!(
            functions.call(super::Func::KeyMatch2, "/foo/7", "/foo/{id}"),
            Ok(false)
        );
        assert!(functions
            .call(super::Func::KeyMatch2, "/files/a/b.txt", "/files/**/*.txt")
            .is_err());
        assert_eq!(
            functions.call(super::Func::KeyMatch2, "/data/x", "/data/*"),
            Ok(true)
        );
    }

    #[test]
    fn ip_match_as_go_decides() {
        assert_eq!(ip_match("192.168.2.123", "192.168.2.0/24"), Ok(true));
        assert_eq!(ip_match("192.168.3.1", "192.168.2.0/24"), Ok(false));
        assert_eq!(ip_match("10.0.0.5", "10.0.0.5"), Ok(true));
        assert_eq!(ip_match("::ffff:10.0.0.5", "10.0.0.0/8"), Ok(true));
        assert_eq!(ip_match("2001:db8::1", "2001:db8::/32"), Ok(true));
        assert_eq!(ip_match("2001:db9::1", "2001:db8::/32"), Ok(false));
        assert_eq!(ip_match("10.1.2.3", "0.0.0.0/0"), Ok(true));
        assert_eq!(ip_match("2001:db8::1", "10.0.0.0/8"), Ok(false));
        assert!(ip_match("alice", "10.0.0.0/8")
            .unwrap_err()
            .contains("request's value"));
        assert!(ip_match("10.0.0.1", "10.0.0.0/33")
            .unwrap_err()
            .contains("\"10.0.0.0/33\""));
        assert!(ip_match("10.0.0.1", "data1").is_err());
    }

    #[test]
    fn key_functions_compare_bytes_as_go_does() {
        use super::{key_get, key_match};
        // `*` at byte 2 falls inside `é` (bytes 1-2): casbin-rs panics.
        assert!(!key_match("/é/data", "/a*"));
        assert!(key_match("/a/é", "/a*"));
        assert!(key_match("/é/x", "/é*"));
        assert!(!key_match("/", "/a*"));
        assert!(key_match("/a", "/a*"));
        assert_eq!(key_get("/é/x", "/é/*"), "x");
        assert_eq!(key_get("/éa", "/a*"), "");
    }

    #[test]
    fn a_glob_that_is_none_fails_and_is_refused_at_load() {
        use super::{glob_match, pattern_problem};
        assert_eq!(glob_match("/a/b", "/a/*"), Ok(true));
        assert_eq!(glob_match("/a/b/c", "/a/*"), Ok(false));
        assert!(glob_match("/a", "/a[").is_err());
        assert!(pattern_problem("globMatch", "/a[").is_some());
        assert!(pattern_problem("globMatch", "/a/*").is_none());
    }

    /// No pattern function panics, whatever the request holds: every
    /// function, Unicode keys and patterns from the request side too.
    #[test]
    fn no_pattern_function_panics_on_any_value() {
        use proptest::prelude::*;
        let functions = super::PatternFunctions::default();
        let patterns = [
            "/a*",
            "/é*",
            "*",
            "/a/:id",
            "/a/{id}",
            "/a/*/b",
            "^/a.*$",
            "/a[",
            "[",
            "{",
            "/files/**",
            "10.0.0.0/8",
            "::1",
            "/数据/*",
            "/a/{id}/b/{x}",
            "(",
        ];
        let mut runner = proptest::test_runner::TestRunner::new(proptest::test_runner::Config {
            cases: 32,
            ..Default::default()
        });
        runner
            .run(&("\\PC{0,12}", "\\PC{0,8}"), |(key, free)| {
                for func in super::Func::NAMES
                    .iter()
                    .filter_map(|n| super::Func::from_name(n))
                {
                    for pattern in patterns.iter().copied().chain([free.as_str()]) {
                        let _ = functions.call(func, &key, pattern);
                        let _ = functions.call(func, pattern, &key);
                    }
                }
                prop_assert!(true);
                Ok(())
            })
            .unwrap();
    }
}
