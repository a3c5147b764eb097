//! Go Casbin's expression syntax (govaluate) as casbin-rs's rhai reads it.

/// A matcher expression as Go Casbin reads it, in the form casbin-rs
/// (rhai) evaluates: single-quoted strings become double-quoted (`'data1'`
/// is a character literal to rhai), and an `in` tuple becomes an array
/// (`r.obj in ('data2', 'data3')` → `r.obj in ["data2", "data3"]`). Used on
/// `[matchers]` lines and on the policy values `eval()` evaluates.
pub fn go_expression_for_rhai(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let chars: Vec<char> = line.chars().collect();
    let mut i = 0;
    // Open `in (` tuples, closed by the matching `)`.
    let mut tuple_depth: Vec<usize> = Vec::new();
    let mut depth = 0usize;
    while i < chars.len() {
        let c = chars[i];
        match c {
            '"' => {
                // Copy a double-quoted string as it is.
                out.push(c);
                i += 1;
                while i < chars.len() {
                    out.push(chars[i]);
                    i += 1;
                    if chars[i - 1] == '"' {
                        break;
                    }
                }
                continue;
            }
            '\'' => {
                out.push('"');
                i += 1;
                while i < chars.len() && chars[i] != '\'' {
                    if chars[i] == '"' {
                        out.push('\\');
                    }
                    out.push(chars[i]);
                    i += 1;
                }
                out.push('"');
                i += 1;
                continue;
            }
            '(' => {
                depth += 1;
                let before: String = out.trim_end().chars().rev().take(3).collect();
                let after_in = before.starts_with("ni")
                    && before
                        .chars()
                        .nth(2)
                        .is_none_or(|c| !c.is_alphanumeric() && c != '_');
                if after_in {
                    tuple_depth.push(depth);
                    out.push('[');
                } else {
                    out.push('(');
                }
            }
            ')' => {
                if tuple_depth.last() == Some(&depth) {
                    tuple_depth.pop();
                    out.push(']');
                } else {
                    out.push(')');
                }
                depth = depth.saturating_sub(1);
            }
            _ => out.push(c),
        }
        i += 1;
    }
    out
}
