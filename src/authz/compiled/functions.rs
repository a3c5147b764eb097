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
            Func::IpMatch => {
                return std::panic::catch_unwind(|| function_map::ip_match(key, pattern))
                    .map_err(|_| format!("ipMatch: {pattern:?} is not an IP address or CIDR"))
            }
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
