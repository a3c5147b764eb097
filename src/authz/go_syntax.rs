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

/// A block matcher as Go Casbin reads one (`m = { let x = ... if c {
/// return false } return x }`, lines joined), as the one expression Go
/// turns it into: `let` names are replaced by their parenthesized
/// expressions, and each early return wraps what follows it (`if c {
/// return v }` then `rest` is `(c && v) || (!c && rest)`). Go's parser
/// skips what it does not understand; here anything outside the three
/// statements is an error, since a skipped token changes the decision.
pub fn block_matcher_expression(block: &str) -> Result<String, String> {
    let body = block
        .trim()
        .strip_prefix('{')
        .and_then(|rest| rest.trim_end().strip_suffix('}'))
        .ok_or("a block matcher starts with `{` and ends with `}`")?;
    let mut lets: Vec<(String, String)> = Vec::new();
    let mut early: Vec<(String, String)> = Vec::new();
    let mut rest = body.trim_start();
    let last = loop {
        if let Some(after) = keyword(rest, "let") {
            let (name, after) = after.trim_start().split_at(
                after
                    .trim_start()
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(after.trim_start().len()),
            );
            let after = after
                .trim_start()
                .strip_prefix('=')
                .filter(|_| !name.is_empty())
                .ok_or("`let` is written `let NAME = EXPRESSION`")?;
            if lets.iter().any(|(known, _)| known == name) {
                return Err(format!("`let {name}` is defined twice"));
            }
            let end = statement_end(after);
            let expression = substitute(after[..end].trim(), &lets);
            if expression.is_empty() {
                return Err(format!("`let {name}` has no expression"));
            }
            lets.push((name.to_owned(), expression));
            rest = after[end..].trim_start();
        } else if let Some(after) = keyword(rest, "if") {
            let open =
                top_level(after, '{').ok_or("`if` is written `if CONDITION { return VALUE }`")?;
            let inner = &after[open + 1..];
            let close = top_level(inner, '}').ok_or("an `if` block is not closed with `}`")?;
            let value = keyword(inner[..close].trim_start(), "return")
                .ok_or("an `if` block holds exactly one `return VALUE`")?;
            let condition = substitute(after[..open].trim(), &lets);
            let value = substitute(value.trim(), &lets);
            if condition.is_empty() || value.is_empty() {
                return Err("`if` is written `if CONDITION { return VALUE }`".to_owned());
            }
            early.push((condition, value));
            rest = inner[close + 1..].trim_start();
        } else if let Some(after) = keyword(rest, "return") {
            let expression = substitute(after.trim(), &lets);
            if expression.is_empty() {
                return Err("`return` has no expression".to_owned());
            }
            if statement_end(after) < after.len() {
                return Err("statements after the final `return` would never run".to_owned());
            }
            break expression;
        } else if rest.is_empty() {
            return Err("a block matcher ends with `return EXPRESSION`".to_owned());
        } else {
            let word: String = rest.chars().take_while(|c| !c.is_whitespace()).collect();
            return Err(format!(
                "`{word}` is not a statement of a block matcher (`let`, `if`, `return`)"
            ));
        }
    };
    Ok(early
        .into_iter()
        .rev()
        .fold(last, |rest, (condition, value)| {
            match (value.as_str(), rest.as_str()) {
                ("true", "false") => format!("({condition})"),
                ("false", "true") => format!("!({condition})"),
                ("true", _) => format!("({condition}) || ({rest})"),
                ("false", _) => format!("!({condition}) && ({rest})"),
                _ => format!("(({condition}) && ({value})) || (!({condition}) && ({rest}))"),
            }
        }))
}

/// `text` after `word` when it starts with `word` as a whole word.
fn keyword<'a>(text: &'a str, word: &str) -> Option<&'a str> {
    text.strip_prefix(word).filter(|after| {
        after.starts_with(char::is_whitespace) || after.starts_with(['(', '!', '{'])
    })
}

/// Where the statement starting `text` ends: at the next `let`, `if` or
/// `return` outside brackets and quotes, or at the end.
fn statement_end(text: &str) -> usize {
    scan(text, |at, c, previous| {
        c.is_ascii_alphabetic()
            && !previous.is_some_and(|p: char| p.is_ascii_alphanumeric() || p == '_' || p == '.')
            && ["let", "if", "return"]
                .iter()
                .any(|word| keyword(&text[at..], word).is_some())
    })
    .unwrap_or(text.len())
}

/// The first `wanted` outside brackets and quotes.
fn top_level(text: &str, wanted: char) -> Option<usize> {
    scan(text, |_, c, _| c == wanted)
}

/// The byte offset of the first character outside brackets and quotes
/// that `stop` accepts; a closing brace at depth 0 is offered to `stop`.
fn scan(text: &str, stop: impl Fn(usize, char, Option<char>) -> bool) -> Option<usize> {
    let mut depth = 0usize;
    let mut quote: Option<char> = None;
    let mut previous = None;
    for (at, c) in text.char_indices() {
        match (quote, c) {
            (Some(open), c) if c == open => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(c),
            (None, _) if depth == 0 && stop(at, c, previous) => return Some(at),
            (None, '(' | '[' | '{') => depth += 1,
            (None, ')' | ']' | '}') => depth = depth.saturating_sub(1),
            (None, _) => {}
        }
        previous = Some(c);
    }
    None
}

/// `expression` with each `let` name (a whole identifier, not a field
/// after `.`, not in quotes) replaced by its parenthesized expression.
fn substitute(expression: &str, lets: &[(String, String)]) -> String {
    let mut out = String::with_capacity(expression.len());
    let mut quote: Option<char> = None;
    let mut chars = expression.char_indices().peekable();
    let mut previous: Option<char> = None;
    while let Some((at, c)) = chars.next() {
        let starts_name = quote.is_none()
            && (c.is_ascii_alphabetic() || c == '_')
            && !previous.is_some_and(|p| p.is_ascii_alphanumeric() || p == '_' || p == '.');
        if starts_name {
            let mut end = at + c.len_utf8();
            while let Some(&(next_at, next)) = chars.peek() {
                if !(next.is_ascii_alphanumeric() || next == '_') {
                    break;
                }
                end = next_at + next.len_utf8();
                chars.next();
            }
            let name = &expression[at..end];
            match lets.iter().find(|(known, _)| known == name) {
                Some((_, value)) => {
                    out.push('(');
                    out.push_str(value);
                    out.push(')');
                }
                None => out.push_str(name),
            }
            previous = name.chars().last();
            continue;
        }
        match (quote, c) {
            (Some(open), c) if c == open => quote = None,
            (None, '"' | '\'') => quote = Some(c),
            _ => {}
        }
        out.push(c);
        previous = Some(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::block_matcher_expression;

    #[test]
    fn let_statements_are_substituted_in_order() {
        let block = "{ let role = g(r.sub, p.sub) let obj = r.obj == p.obj || g2(r.obj, p.obj) \
                     let both = role && obj return both && r.act == p.act }";
        assert_eq!(
            block_matcher_expression(block).unwrap(),
            "((g(r.sub, p.sub)) && (r.obj == p.obj || g2(r.obj, p.obj))) && r.act == p.act"
        );
    }

    #[test]
    fn early_returns_wrap_what_follows() {
        let block = "{ let role_match = g(r.sub, p.sub) if !role_match { return false } \
                     if r.act != p.act { return false } if r.obj == p.obj { return true } \
                     if g2(r.obj, p.obj) { return true } return false }";
        assert_eq!(
            block_matcher_expression(block).unwrap(),
            "!(!(g(r.sub, p.sub))) && (!(r.act != p.act) && ((r.obj == p.obj) || ((g2(r.obj, p.obj)))))"
        );
        assert_eq!(
            block_matcher_expression(
                "{ if r.sub == 'root' { return r.act } return p.act == r.act }"
            )
            .unwrap(),
            "((r.sub == 'root') && (r.act)) || (!(r.sub == 'root') && (p.act == r.act))"
        );
    }

    #[test]
    fn names_inside_fields_and_strings_stay() {
        let block = "{ let sub = r.sub == 'sub' return sub && p.sub == \"sub\" }";
        assert_eq!(
            block_matcher_expression(block).unwrap(),
            "(r.sub == 'sub') && p.sub == \"sub\""
        );
    }

    #[test]
    fn what_go_would_skip_is_an_error() {
        for (block, expected) in [
            ("{ let a = r.sub == p.sub }", "ends with `return"),
            ("{ lett a = 1 return a }", "`lett` is not a statement"),
            (
                "{ return r.sub == p.sub let a = 1 }",
                "after the final `return`",
            ),
            (
                "{ if r.sub == p.sub return true return false }",
                "`if` is written",
            ),
            ("{ let a = 1 let a = 2 return a }", "defined twice"),
            (
                "{ if r.sub == p.sub { r.obj } return false }",
                "exactly one `return",
            ),
            ("r.sub == p.sub }", "starts with `{`"),
        ] {
            let error = block_matcher_expression(block).unwrap_err();
            assert!(error.contains(expected), "{block}: {error}");
        }
    }
}
