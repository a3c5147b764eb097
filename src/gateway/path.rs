//! The path a gateway's upstream will serve, from the path as the client
//! sent it: vigil decides on the object the upstream resolves, not on one
//! spelling of it.
//!
//! The normalization is RFC 3986's with what common proxies and servers
//! add (nginx's `$uri`, Envoy's `normalize_path` + `merge_slashes`, Go's
//! `path.Clean`): the query and fragment dropped, every percent-escape
//! decoded, `.` and `..` segments resolved, empty segments (`//`)
//! collapsed. A path whose meaning differs between upstreams is refused
//! instead of guessed: an escape that decodes to `/`, `\` or a control
//! character (`%00`), a path parameter (`;v=1`, which Java servers strip
//! and nginx keeps), bytes that are not UTF-8, a compatibility character
//! that NFKC folds into another (a full-width letter), or `..` above the
//! root.

use unicode_normalization::UnicodeNormalization;

/// Why a path cannot be mapped unambiguously. The text names the part of
/// the path at fault (cut short: a client chose it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the request path {shown} cannot be mapped unambiguously: {why}")]
pub struct PathError {
    shown: String,
    why: &'static str,
}

fn refuse(raw: &str, why: &'static str) -> PathError {
    let mut shown: String = raw.chars().take(80).collect();
    if shown.len() < raw.len() {
        shown.push('…');
    }
    PathError {
        shown: format!("{shown:?}"),
        why,
    }
}

/// The normalized path of `uri` (a path with an optional query), always
/// starting with `/` and never ending with one unless it is the root.
pub fn normalize(uri: &str) -> Result<String, PathError> {
    let path = uri.split(['?', '#']).next().unwrap_or(uri);
    if !path.starts_with('/') {
        return Err(refuse(uri, "it does not start with `/`"));
    }
    let mut segments: Vec<String> = Vec::new();
    for raw in path.split('/') {
        if raw.contains(';') {
            return Err(refuse(
                uri,
                "a path parameter (`;`) is stripped by some servers and kept by others",
            ));
        }
        let segment = decode(raw).map_err(|why| refuse(uri, why))?;
        match segment.as_str() {
            "" | "." => {}
            ".." => {
                if segments.pop().is_none() {
                    return Err(refuse(uri, "`..` climbs above the root"));
                }
            }
            _ => segments.push(segment),
        }
    }
    let mut normalized = String::with_capacity(path.len());
    for segment in &segments {
        normalized.push('/');
        normalized.push_str(segment);
    }
    if normalized.is_empty() {
        normalized.push('/');
    }
    Ok(normalized)
}

/// One segment with its percent-escapes decoded, refused where upstreams
/// would read it differently.
fn decode(raw: &str) -> Result<String, &'static str> {
    let bytes = raw.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or("a `%` is not followed by two hex digits")?;
            if hex == b'/' || hex == b'\\' {
                return Err("an escaped `/` or `\\` would split a segment for some upstreams");
            }
            decoded.push(hex);
            i += 3;
        } else {
            decoded.push(bytes[i]);
            i += 1;
        }
    }
    let text = String::from_utf8(decoded).map_err(|_| "it decodes to bytes that are not UTF-8")?;
    if text.chars().any(|c| c.is_control()) {
        return Err("it holds a control character (`%00`, a newline…)");
    }
    if text.contains('\\') {
        return Err("a `\\` is a separator for some upstreams");
    }
    if !text.is_ascii() && text.nfkc().ne(text.chars()) {
        return Err("it holds a compatibility character (a full-width letter…) that NFKC folds into another");
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `(sent, served)`: `None` when refused.
    fn check(cases: &[(&str, Option<&str>)]) {
        for &(sent, served) in cases {
            assert_eq!(normalize(sent).ok().as_deref(), served, "{sent}");
        }
    }

    #[test]
    fn spellings_of_one_path_are_one_path() {
        check(&[
            (
                "/v1/datasets/crm.salaries/rows",
                Some("/v1/datasets/crm.salaries/rows"),
            ),
            (
                "/v1/datasets/crm.salarie%73/rows",
                Some("/v1/datasets/crm.salaries/rows"),
            ),
            (
                "/v1/datasets/crm%2Esalaries/rows?x=1",
                Some("/v1/datasets/crm.salaries/rows"),
            ),
            (
                "/v1//datasets/./crm.salaries/rows/",
                Some("/v1/datasets/crm.salaries/rows"),
            ),
            (
                "/reports/../v1/datasets/crm.salaries/rows",
                Some("/v1/datasets/crm.salaries/rows"),
            ),
            (
                "/reports/%2e%2e/v1/datasets/x/rows",
                Some("/v1/datasets/x/rows"),
            ),
            ("/", Some("/")),
            ("/a/..", Some("/")),
            ("/数据/客户", Some("/数据/客户")),
            ("/%E6%95%B0%E6%8D%AE", Some("/数据")),
        ]);
    }

    #[test]
    fn ambiguous_paths_are_refused() {
        check(&[
            (
                "/reports/%2e%2e%2fv1%2fdatasets%2fcrm.salaries%2frows",
                None,
            ),
            ("/v1/datasets/crm.salaries;v=1/rows", None),
            ("/v1/datasets/crm.salaries%00/rows", None),
            ("/v1/datasets/crm.salarie%5cs/rows", None),
            ("/v1/datasets/crm.ｓalaries/rows", None),
            ("/v1/datasets/%ff/rows", None),
            ("/v1/datasets/%zz/rows", None),
            ("/..", None),
            ("/a/../../b", None),
            ("relative/path", None),
            ("/a%0ab", None),
        ]);
    }
}
