//! The glue to casbin-rs, the reference evaluator: compiling a model when
//! its matcher is in the compiled subset, and casbin-rs's and rhai's
//! errors told in words.

use super::*;

/// Compiles the enforcer's model when its matcher is in the supported subset.
pub(super) fn compile(
    enforcer: &Enforcer,
    model_text: &str,
    rule_lines: &[RuleLine],
    matching: &HashMap<String, Matching>,
) -> Option<Compiled> {
    let sections = enforcer.get_model().get_model();
    let get = |sec: &str, key: &str| sections.get(sec).and_then(|s| s.get(key));
    let (request, policy, matcher, effect) = (
        get("r", "r")?,
        get("p", "p")?,
        get("m", "m")?,
        get("e", "e")?,
    );
    // The matcher as written, where casbin-rs's escaped copy has rewritten
    // `p.`/`r.` inside string literals too.
    let matcher = raw_matcher(model_text).unwrap_or_else(|| matcher.value.clone());
    let mut groupings = HashMap::new();
    let mut groups: Vec<(String, Vec<Vec<String>>)> = Vec::new();
    if let Some(section) = sections.get("g") {
        for (name, assertion) in section.iter() {
            groupings.insert(name.clone(), assertion.value.matches('_').count());
            // The grants as written (condition parameters included), in
            // policy order.
            let grants = rule_lines
                .iter()
                .filter(|rule| rule.ptype == *name)
                .map(|rule| rule.values.clone())
                .collect();
            groups.push((name.clone(), grants));
        }
    }
    groups.sort_by(|a, b| a.0.cmp(&b.0));
    Compiled::build(
        &matcher,
        &effect.value,
        &request.tokens,
        &policy.tokens,
        &groupings,
        policy.policy.iter().cloned().collect(),
        &groups,
        matching,
    )
}

/// The `m` line of a model's `[matchers]` section, continuation lines
/// (ending in `\`) joined as Casbin joins them.
pub(super) fn raw_matcher(model_text: &str) -> Option<String> {
    let mut in_matchers = false;
    let mut joined: Option<String> = None;
    for line in model_text.lines() {
        let trimmed = line.trim();
        if let Some(mut acc) = joined.take() {
            acc.push_str(trimmed.trim_end_matches('\\'));
            if trimmed.ends_with('\\') {
                joined = Some(acc);
                continue;
            }
            return Some(acc);
        }
        if trimmed.starts_with('[') {
            in_matchers = trimmed == "[matchers]";
            continue;
        }
        if !in_matchers {
            continue;
        }
        let Some((key, value)) = trimmed.split_once('=') else {
            continue;
        };
        if key.trim() != "m" {
            continue;
        }
        let value = value.trim();
        match value.strip_suffix('\\') {
            Some(start) => joined = Some(start.trim().to_owned() + " "),
            None => return Some(value.to_owned()),
        }
    }
    joined
}

/// casbin-rs error messages embed Debug output (`Model Error: `M("...")``);
/// keep the sentence inside.
pub(super) fn casbin_message(error: &casbin::Error) -> String {
    let text = error.to_string();
    if let Some(said) = rhai_message(&text) {
        return said;
    }
    match (text.find("(\""), text.rfind("\")")) {
        (Some(start), Some(end)) if start + 2 < end => text[start + 2..end]
            .replace("\\\"", "\"")
            .replace("\\'", "'"),
        _ => text,
    }
}

/// A matcher that fails at evaluation arrives as rhai's error in Debug
/// form (`ErrorInFunctionCall("eval", "", ErrorDotExpr("Unknown property
/// 'Age' - a getter is not registered for type 'string'", 1:7), 1:6)`):
/// the innermost variant that carries a message says what went wrong,
/// and only that is told.
pub(super) fn rhai_message(text: &str) -> Option<String> {
    let mut innermost = None;
    for (at, _) in text.match_indices("Error") {
        let rest = &text[at + "Error".len()..];
        let name_len = rest
            .find(|c: char| !c.is_ascii_alphanumeric())
            .unwrap_or(rest.len());
        let (variant, arguments) = rest.split_at(name_len);
        let Some(message) = arguments.strip_prefix("(\"").and_then(quoted_prefix) else {
            continue;
        };
        if !variant.is_empty() && !message.is_empty() {
            innermost = Some((variant, message));
        }
    }
    let (variant, message) = innermost?;
    // A function is named with its signature (`keyMatc (&str | …)`).
    let name = message.split(" (").next().unwrap_or(&message);
    Some(match variant {
        "FunctionNotFound" => format!("function not found: {name}"),
        "VariableNotFound" => format!("variable not found: {name}"),
        "PropertyNotFound" => format!("property not found: {name}"),
        "IndexNotFound" => format!("index not found: {name}"),
        _ => message,
    })
}

/// The text of a Debug-quoted string up to its closing quote, unescaped.
pub(super) fn quoted_prefix(text: &str) -> Option<String> {
    let mut out = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '"' => return Some(out),
            '\\' => out.push(chars.next()?),
            c => out.push(c),
        }
    }
    None
}

/// Which request tokens a matcher compares with `<`, `>`, `<=` or `>=`.
pub(super) fn ordered_tokens(tokens: &[String], texts: &[String]) -> Vec<bool> {
    tokens
        .iter()
        .map(|token| {
            texts.iter().any(|text| {
                text.match_indices(token.as_str()).any(|(at, _)| {
                    let before = text[..at].trim_end();
                    let after_end = at + token.len();
                    // A whole token, not the start of a longer one.
                    let whole =
                        !text[after_end..].starts_with(|c: char| c.is_alphanumeric() || c == '_');
                    let after = text[after_end..].trim_start();
                    let operator_before = before.strip_suffix('=').unwrap_or(before);
                    whole
                        && (operator_before.ends_with(['<', '>'])
                            || after.starts_with('<')
                            || after.starts_with('>'))
                })
            })
        })
        .collect()
}

/// A request value as casbin-rs's matcher receives it.
#[derive(Debug, Clone, Hash)]
pub(super) enum Arg {
    Text(String),
    /// The script engine's integer (32 bits in casbin-rs's build).
    Integer(casbin::rhai::INT),
}

impl Arg {
    pub(super) fn of(value: &str, ordered: bool) -> Arg {
        if ordered {
            if let Ok(integer) = value.parse::<casbin::rhai::INT>() {
                return Arg::Integer(integer);
            }
        }
        Arg::Text(value.to_owned())
    }
}

impl From<Arg> for casbin::rhai::Dynamic {
    fn from(arg: Arg) -> Self {
        match arg {
            Arg::Text(text) => casbin::rhai::Dynamic::from(text),
            Arg::Integer(integer) => casbin::rhai::Dynamic::from(integer),
        }
    }
}

/// Policy columns the matcher evaluates with `eval()`, by policy type
/// (`eval(p.sub_rule)` in `m`, `eval(p2.sub_rule)` in `m2`): their values
/// are expressions.
pub(super) fn eval_columns(
    model: &DefaultModel,
    matchers: &[String],
) -> HashMap<String, Vec<usize>> {
    let sections = casbin::Model::get_model(model);
    let mut columns = HashMap::new();
    for (ptype, assertion) in sections.get("p").into_iter().flatten() {
        let evaluated: Vec<usize> = assertion
            .tokens
            .iter()
            .enumerate()
            .filter(|(_, token)| {
                let call = format!("eval({token})");
                matchers.iter().any(|m| m.replace(' ', "").contains(&call))
            })
            .map(|(i, _)| i)
            .collect();
        if !evaluated.is_empty() {
            columns.insert(ptype.clone(), evaluated);
        }
    }
    columns
}

/// Replaces casbin-rs's functions that panic on some inputs with vigil's,
/// which the compiled evaluator calls too, so both decide alike: keyMatch
/// and keyGet compare bytes (casbin-rs slices inside a character),
/// globMatch fails on a pattern that is no glob (casbin-rs unwraps). A
/// failure returns `()`, which rhai cannot combine with `&&` or `||`: the
/// evaluation fails and the request is denied with the reason.
pub(super) fn register_safe_functions(enforcer: &mut Enforcer) {
    use casbin::{
        function_map::{dynamic_to_str, OperatorFunction},
        rhai::Dynamic,
    };
    casbin::CoreApi::add_function(
        enforcer,
        "keyMatch",
        OperatorFunction::Arg2(|key: Dynamic, pattern: Dynamic| {
            compiled::key_match(&dynamic_to_str(&key), &dynamic_to_str(&pattern)).into()
        }),
    );
    casbin::CoreApi::add_function(
        enforcer,
        "keyGet",
        OperatorFunction::Arg2(|key: Dynamic, pattern: Dynamic| {
            compiled::key_get(&dynamic_to_str(&key), &dynamic_to_str(&pattern)).into()
        }),
    );
    casbin::CoreApi::add_function(
        enforcer,
        "globMatch",
        OperatorFunction::Arg2(|key: Dynamic, pattern: Dynamic| {
            match compiled::glob_match(&dynamic_to_str(&key), &dynamic_to_str(&pattern)) {
                Ok(matched) => matched.into(),
                Err(_) => Dynamic::UNIT,
            }
        }),
    );
}
