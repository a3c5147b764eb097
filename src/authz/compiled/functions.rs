//! casbin's pattern functions as the compiled evaluator calls them:
//! casbin-rs's own functions, with the regex-based ones (regexMatch,
//! keyMatch2, keyMatch3, keyMatch5) compiled once per pattern and cached.

use std::sync::{Arc, RwLock};

use casbin::function_map;
use foldhash::HashMap;
use regex::Regex;

use super::Func;

/// Compiled patterns of the regex-based functions, one map per function,
/// filled on first use.
#[derive(Default)]
pub(super) struct PatternFunctions {
    regexes: [RwLock<HashMap<String, Option<Arc<Regex>>>>; 4],
}

impl PatternFunctions {
    /// casbin-rs's pattern functions; the regex-based ones with their
    /// pattern compiled once (the translation is casbin-rs's).
    pub(super) fn call(&self, func: Func, key: &str, pattern: &str) -> Result<bool, String> {
        match func {
            Func::KeyMatch => return Ok(function_map::key_match(key, pattern)),
            Func::GlobMatch => return Ok(function_map::glob_match(key, pattern)),
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
                let source = match func {
                    Func::RegexMatch => pattern.to_owned(),
                    Func::KeyMatch2 => key_pattern_source(pattern, r":[^/]*"),
                    Func::KeyMatch3 => key_pattern_source(pattern, r"\{[^/]*\}"),
                    Func::KeyMatch5 => key_pattern_source(pattern, r"(\{[^/]+?\})"),
                    _ => unreachable!("handled above"),
                };
                let compiled = Regex::new(&source).ok().map(Arc::new);
                self.regexes[slot]
                    .write()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(pattern.to_owned(), compiled.clone());
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

/// The regex source casbin builds for keyMatch2/3/5: `/*` matches any tail
/// and each placeholder (`:id`, `{id}`) matches one path segment.
fn key_pattern_source(pattern: &str, placeholder: &str) -> String {
    let wildcarded = pattern.replace("/*", "/.*");
    let segments = Regex::new(placeholder)
        .expect("valid regex")
        .replace_all(&wildcarded, "[^/]+");
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
}
