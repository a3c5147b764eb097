//! Parsing of the policy files with line numbers, so every problem can be
//! reported as `file:line: message` before Casbin ever sees the text.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
};

use crate::authz::{LinkCondition, Matching, MatchingFunction, Origin, RuleLine};

pub const MODEL_FILE: &str = "model.conf";
pub const POLICY_FILE: &str = "policy.csv";

pub use crate::diagnostics::Problem;

mod csv;
mod dialect;
mod ordering;
pub use csv::*;
pub use dialect::*;
pub use ordering::*;

fn problem(file: &str, line: usize, message: impl Into<String>) -> Problem {
    Problem {
        file: file.to_owned(),
        line,
        message: message.into(),
    }
}

const SECTIONS: [(&str, char); 5] = [
    ("request_definition", 'r'),
    ("policy_definition", 'p'),
    ("role_definition", 'g'),
    ("policy_effect", 'e'),
    ("matchers", 'm'),
];

/// The effects casbin-rs evaluates (it panics on any other).
const SUPPORTED_EFFECTS: [&str; 7] = [
    ALLOW_ONLY_EFFECT,
    DENY_OVERRIDE_EFFECT,
    "!some(where (p_eft == deny))",
    "priority(p_eft) || deny",
    SUBJECT_PRIORITY_EFFECT,
    PRIORITY_DENY_OVERRIDE_EFFECT,
    SUBJECT_PRIORITY_DENY_OVERRIDE_EFFECT,
];

const ALLOW_ONLY_EFFECT: &str = "some(where (p_eft == allow))";

const DENY_OVERRIDE_EFFECT: &str = "some(where (p_eft == allow)) && !some(where (p_eft == deny))";

/// Go Casbin's explicit-override effects: the first matching rule in
/// (subject) priority order decides, and any matching deny wins. Whenever a
/// deny matches, the answer is deny; otherwise the first match is an allow
/// exactly when some allow matches: the decision is deny-override's, with
/// rules in priority order so the reported allow is the highest-priority
/// one.
const PRIORITY_DENY_OVERRIDE_EFFECT: &str = "priority(p_eft) && !some(where (p_eft == deny))";
const SUBJECT_PRIORITY_DENY_OVERRIDE_EFFECT: &str =
    "subjectPriority(p_eft) && !some(where (p_eft == deny))";

/// Go Casbin's subject-priority effect: rules ordered by how deep their
/// subject sits in the role tree (a user's own rule before its role's,
/// a role's before its parent's), then the first match decides.
pub const SUBJECT_PRIORITY_EFFECT: &str = "subjectPriority(p_eft) || deny";

/// A `p` rule whose value the matcher uses as a pattern Go Casbin cannot
/// compile: every request reaching it would fail in Go, and Rust's regex
/// would read it differently (`/files/**` as one repetition).
/// Rules repeat their patterns (`(read|write)` on every line): `passed`
/// holds, per pattern argument, the values already found fine, each
/// checked once per load.
fn pattern_refusal(
    outline: &ModelOutline,
    ptype: &str,
    fields: &[String],
    passed: &mut Vec<HashSet<String>>,
) -> Option<String> {
    if ptype != "p" {
        return None;
    }
    let tokens = outline.tokens.get(ptype)?;
    passed.resize_with(outline.pattern_arguments.len(), HashSet::new);
    outline
        .pattern_arguments
        .iter()
        .zip(passed.iter_mut())
        .find_map(|((token, function), passed)| {
            let value = fields.get(tokens.iter().position(|t| t == token)?)?;
            if passed.contains(value) {
                return None;
            }
            let problem = crate::authz::pattern_problem(function, value);
            if problem.is_none() {
                passed.insert(value.clone());
            }
            problem
        })
}

/// What a rule's effect column does under the model's effect.
enum EffectCheck {
    Counts,
    /// A `deny` under an effect that only looks for allows: Go Casbin's
    /// own examples write such rows (multiple_policy_definitions), so it
    /// loads, with a warning, since a reader expects it to deny.
    Ignored(String),
    /// An effect Casbin does not know (`dney`) is neither allow nor deny:
    /// the rule would silently stop counting, so the set is refused.
    Unknown(String),
}

/// `indeterminate` is Go Casbin's deliberate third value: the rule
/// matches without deciding.
fn effect_check(outline: &ModelOutline, ptype: &str, fields: &[String]) -> EffectCheck {
    let effect = outline
        .tokens
        .get(ptype)
        .and_then(|tokens| tokens.iter().position(|t| t == "eft"))
        .and_then(|slot| fields.get(slot));
    match effect.map(String::as_str) {
        None | Some("allow" | "indeterminate") => EffectCheck::Counts,
        Some("deny") if outline.effect.as_deref() == Some(ALLOW_ONLY_EFFECT) => {
            EffectCheck::Ignored(format!(
                "this `deny` rule never counts: the effect `{}` only looks for allows \
                 (`some(where (p.eft == allow)) && !some(where (p.eft == deny))` is deny-override)",
                ALLOW_ONLY_EFFECT.replace("p_eft", "p.eft")
            ))
        }
        Some("deny") => EffectCheck::Counts,
        Some(other) => EffectCheck::Unknown(format!(
            "effect `{other}` is neither `allow` nor `deny`; the rule would never count"
        )),
    }
}

/// What vigil needs to know about model.conf besides handing it to Casbin.
#[derive(Debug, Default, Clone)]
pub struct ModelOutline {
    /// Definition key (`r`, `p`, `g2`, ...) → (arity, line).
    pub definitions: HashMap<String, (usize, usize)>,
    /// Line of each key, for pointing Casbin's own errors at a line.
    pub lines: HashMap<String, usize>,
    /// Token names of `r` and `p` definitions (`sub`, `obj`, ...).
    pub tokens: HashMap<String, Vec<String>>,
    /// The policy effect, `p.eft` written `p_eft`.
    pub effect: Option<String>,
    /// `p` tokens the matcher hands a regex-building function as its
    /// pattern (`keyMatch2(r.obj, p.obj)` → (`obj`, `keyMatch2`)).
    pub pattern_arguments: Vec<(String, String)>,
}

impl ModelOutline {
    pub fn arity(&self, key: &str) -> Option<usize> {
        self.definitions.get(key).map(|(arity, _)| *arity)
    }

    pub fn rule_types(&self) -> Vec<&str> {
        let mut keys: Vec<&str> = self
            .definitions
            .keys()
            .map(String::as_str)
            .filter(|k| k.starts_with('p') || k.starts_with('g'))
            .collect();
        keys.sort_unstable();
        keys
    }
}

/// Checks model.conf's structure: known sections, `key = value` lines, the
/// required definitions.
pub fn parse_model(text: &str) -> Result<ModelOutline, Vec<Problem>> {
    let mut problems = Vec::new();
    let mut outline = ModelOutline::default();
    let mut section: Option<char> = None;
    let mut seen_sections = Vec::new();
    let mut pending: Option<(usize, String)> = None;
    let mut matchers = Vec::new();

    for (index, raw) in text.lines().enumerate() {
        let number = index + 1;
        // Casbin joins lines that end with a backslash.
        let (start, joined) = match pending.take() {
            Some((start, mut acc)) => {
                acc.push_str(raw.trim());
                (start, acc)
            }
            None => (number, raw.trim().to_owned()),
        };
        if let Some(stripped) = joined.strip_suffix('\\') {
            pending = Some((start, stripped.to_owned()));
            continue;
        }
        let line = joined.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(name) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            match SECTIONS.iter().find(|(known, _)| *known == name.trim()) {
                Some((_, key)) => {
                    section = Some(*key);
                    seen_sections.push(*key);
                }
                None => {
                    section = None;
                    let known: Vec<&str> = SECTIONS.iter().map(|(s, _)| *s).collect();
                    problems.push(problem(
                        MODEL_FILE,
                        start,
                        format!(
                            "unknown section [{}]; expected one of [{}]",
                            name.trim(),
                            known.join("], [")
                        ),
                    ));
                }
            }
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            problems.push(problem(
                MODEL_FILE,
                start,
                format!("expected `key = value`, found {line:?}"),
            ));
            continue;
        };
        // Like Casbin, everything after `#` in a value is a comment.
        let value = value.split('#').next().unwrap_or_default();
        let (key, value) = (key.trim(), value.trim());
        let Some(current) = section else {
            if seen_sections.is_empty() {
                problems.push(problem(
                    MODEL_FILE,
                    start,
                    format!("`{key}` appears before any [section]"),
                ));
            }
            continue;
        };
        if !key.starts_with(current)
            || key.len() > 1 && !key[1..].chars().all(|c| c.is_ascii_digit())
        {
            problems.push(problem(
                MODEL_FILE,
                start,
                format!("key `{key}` does not belong in this section; its keys are `{current}`, `{current}2`, ..."),
            ));
            continue;
        }
        if value.is_empty() {
            problems.push(problem(
                MODEL_FILE,
                start,
                format!("`{key}` has an empty definition"),
            ));
            continue;
        }
        if outline.lines.insert(key.to_owned(), start).is_some() {
            problems.push(problem(
                MODEL_FILE,
                start,
                format!("`{key}` is defined twice"),
            ));
        }
        let arity = match current {
            // Link condition parameters, `(_, _)`, are fields of a grant too.
            'g' => value
                .split(',')
                .filter(|t| t.trim().trim_matches(|c| c == '(' || c == ')').trim() == "_")
                .count(),
            'r' | 'p' => value.split(',').count(),
            _ => 0,
        };
        if current == 'm' {
            matchers.push((value.to_owned(), start));
        }
        if current == 'e' {
            // casbin-rs compares the effect text exactly, spaces included.
            let normalized = value.replace("p.eft", "p_eft");
            outline.effect = Some(normalized.clone());
            if !SUPPORTED_EFFECTS.contains(&normalized.as_str()) {
                problems.push(problem(
                    MODEL_FILE,
                    start,
                    format!(
                        "unsupported policy effect `{value}`; supported: {}",
                        SUPPORTED_EFFECTS
                            .map(|e| e.replace("p_eft", "p.eft"))
                            .join(" | ")
                    ),
                ));
            }
        }
        if matches!(current, 'r' | 'p' | 'g') {
            if arity == 0 || (current == 'g' && arity < 2) {
                problems.push(problem(
                    MODEL_FILE,
                    start,
                    format!("`{key} = {value}` defines no usable tokens"),
                ));
            }
            // The role part, before any link condition parameters.
            let role_part = value.split('(').next().unwrap_or_default();
            if current == 'g' && role_part.matches('_').count() > 3 {
                problems.push(problem(
                    MODEL_FILE,
                    start,
                    format!(
                        "`{key} = {value}`: a grant across two domains is not supported; a role \
                         definition takes a member, a role and at most one domain (`_, _, _`)"
                    ),
                ));
            }
            outline.definitions.insert(key.to_owned(), (arity, start));
            if current != 'g' {
                outline.tokens.insert(
                    key.to_owned(),
                    value.split(',').map(|t| t.trim().to_owned()).collect(),
                );
            }
        }
    }
    if let Some((start, _)) = pending {
        problems.push(problem(
            MODEL_FILE,
            start,
            "line continuation `\\` at the end of the file",
        ));
    }
    let complete = ["r", "p", "e", "m"]
        .iter()
        .all(|key| outline.lines.contains_key(*key));
    // Names are checked against a model that holds together; a broken one
    // would only echo its first problem.
    if problems.is_empty() && complete {
        for (matcher, line) in &matchers {
            for message in unknown_names(&outline, matcher) {
                problems.push(problem(MODEL_FILE, *line, message));
            }
            outline.pattern_arguments.extend(pattern_arguments(matcher));
        }
    }
    for (name, key) in [
        ("request_definition", "r"),
        ("policy_definition", "p"),
        ("policy_effect", "e"),
        ("matchers", "m"),
    ] {
        if !outline.lines.contains_key(key) {
            problems.push(problem(
                MODEL_FILE,
                0,
                format!("missing `{key} = ...` in [{name}]"),
            ));
        }
    }
    if problems.is_empty() {
        Ok(outline)
    } else {
        Err(problems)
    }
}

/// Functions a matcher may call: casbin's own, besides the role
/// definitions (`g`, `g2`, ...).
const MATCHER_FUNCTIONS: [&str; 13] = [
    "keyMatch",
    "keyMatch2",
    "keyMatch3",
    "keyMatch4",
    "keyMatch5",
    "keyGet",
    "keyGet2",
    "keyGet3",
    "regexMatch",
    "ipMatch",
    "globMatch",
    "timeMatch",
    "eval",
];

/// Names a matcher uses that do not exist: a function that is neither
/// casbin's nor a role definition (`keyMatc(...)`), a request or policy
/// token the model does not define (`r.sbu`). Casbin finds them only while
/// evaluating, so every request would be denied, or (behind a `&&` that
/// is false first) some requests would be decided without them.
fn unknown_names(outline: &ModelOutline, matcher: &str) -> Vec<String> {
    let mut problems = Vec::new();
    let bytes = matcher.as_bytes();
    let mut in_string: Option<u8> = None;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if let Some(quote) = in_string {
            if b == quote {
                in_string = None;
            }
            i += 1;
            continue;
        }
        if b == b'"' || b == b'\'' {
            in_string = Some(b);
            i += 1;
            continue;
        }
        if !(b.is_ascii_alphabetic() || b == b'_') || (i > 0 && is_name_byte(bytes[i - 1])) {
            i += 1;
            continue;
        }
        let start = i;
        while i < bytes.len() && is_name_byte(bytes[i]) {
            i += 1;
        }
        let name = &matcher[start..i];
        let after_dot = start > 0 && bytes[start - 1] == b'.';
        let rest = matcher[i..].trim_start();
        if (name == "r" || name == "p") && rest.starts_with('.') && !after_dot {
            let field: String = rest[1..]
                .trim_start()
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            let known = outline
                .tokens
                .get(name)
                .is_some_and(|tokens| tokens.contains(&field));
            if !known && !field.is_empty() {
                problems.push(format!(
                    "the matcher uses `{name}.{field}`, which `{name} = ...` does not define ({})",
                    outline
                        .tokens
                        .get(name)
                        .map(|t| t.join(", "))
                        .unwrap_or_default()
                ));
            }
            continue;
        }
        let is_call = rest.starts_with('(');
        let is_role = outline.definitions.contains_key(name) && name.starts_with('g');
        if is_call && !after_dot && !is_role && !MATCHER_FUNCTIONS.contains(&name) {
            problems.push(format!(
                "the matcher calls `{name}`, which is no casbin function nor role definition (known: {})",
                MATCHER_FUNCTIONS.join(", ")
            ));
        }
    }
    problems
}

fn is_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

#[cfg(test)]
mod tests {
    use super::*;

    const MODEL: &str = "[request_definition]\nr = sub, obj, act\n\n[policy_definition]\np = sub, obj, act\n\
        [role_definition]\ng = _, _\n[policy_effect]\ne = some(where (p.eft == allow))\n[matchers]\n\
        m = g(r.sub, p.sub) && \\\n  r.obj == p.obj && r.act == p.act\n";

    fn messages(problems: Vec<Problem>) -> Vec<String> {
        problems.into_iter().map(|p| p.to_string()).collect()
    }

    #[test]
    fn block_matchers_become_one_line_in_place() {
        let model = "[matchers]\nm = { \\\n  let own = r.sub == p.sub \\\n  return own \\\n}\n[x]";
        let (text, _) = model_as_evaluated(model).unwrap();
        assert_eq!(text, "[matchers]\nm = (r.sub == p.sub)\n\n\n\n[x]");
        // Without backslashes, the block runs until its braces close.
        let (text, _) = model_as_evaluated("[matchers]\nm = {\n return r.sub == p.sub\n}").unwrap();
        assert_eq!(text, "[matchers]\nm = r.sub == p.sub\n\n");
        let broken =
            "[request_definition]\n\n[matchers]\nm = { \\\n lett own = 1 \\\n return own }";
        assert_eq!(
            messages(model_as_evaluated(broken).unwrap_err()),
            ["model.conf:4: block matcher: `lett` is not a statement of a block matcher (`let`, `if`, `return`)"]
        );
    }

    #[test]
    fn matchers_are_read_as_go_casbin_writes_them() {
        let check = |go: &str, rhai: &str| {
            assert_eq!(
                normalize_matchers(&format!("[matchers]\nm = {go}")),
                format!("[matchers]\nm = {rhai}")
            )
        };
        check("r.obj == 'data1'", "r.obj == \"data1\"");
        check(
            "r.obj in ('data2', 'data3')",
            "r.obj in [\"data2\", \"data3\"]",
        );
        check(
            "(r.sub == p.sub) && r.act in ('read','write')",
            "(r.sub == p.sub) && r.act in [\"read\",\"write\"]",
        );
        check("keyMatch(r.obj, \"it's\")", "keyMatch(r.obj, \"it's\")");
        check("r.sub == 'say \"hi\"'", "r.sub == \"say \\\"hi\\\"\"");
        // Other sections are left as they are.
        assert_eq!(
            normalize_matchers("[policy_effect]\ne = 'x'"),
            "[policy_effect]\ne = 'x'"
        );
    }

    #[test]
    fn model_structure() {
        let outline = parse_model(MODEL).unwrap();
        assert_eq!(outline.arity("p"), Some(3));
        assert_eq!(outline.arity("g"), Some(2));
        assert_eq!(outline.lines["m"], 11);

        // Unknown names in the matcher: by file line, before any request.
        let typo = MODEL
            .replace("g(r.sub", "gg(r.sub")
            .replace("r.obj ==", "r.ob ==");
        assert_eq!(
            messages(parse_model(&typo).unwrap_err()),
            [
                "model.conf:11: the matcher calls `gg`, which is no casbin function nor role definition (known: keyMatch, keyMatch2, keyMatch3, keyMatch4, keyMatch5, keyGet, keyGet2, keyGet3, regexMatch, ipMatch, globMatch, timeMatch, eval)",
                "model.conf:11: the matcher uses `r.ob`, which `r = ...` does not define (sub, obj, act)",
            ]
        );

        let broken = MODEL
            .replace("[role_definition]", "[roles]")
            .replace("p = sub", "p sub");
        assert_eq!(
            messages(parse_model(&broken).unwrap_err()),
            [
                "model.conf:5: expected `key = value`, found \"p sub, obj, act\"",
                "model.conf:6: unknown section [roles]; expected one of [request_definition], [policy_definition], [role_definition], [policy_effect], [matchers]",
                "model.conf: missing `p = ...` in [policy_definition]",
            ]
        );
    }

    #[test]
    fn csv_fields_follow_casbin() {
        assert_eq!(
            split_csv_fields(" p, alice , \"a,b\", read "),
            ["p", "alice", "a,b", "read"]
        );
        let rules = parse_policy_csv("# c\n\np, a, b, c\n  g, a, r\n");
        assert_eq!(rules.iter().map(|r| r.line).collect::<Vec<_>>(), [3, 4]);
    }

    #[test]
    fn rules_are_checked_against_the_model() {
        let outline = parse_model(MODEL).unwrap();
        let raw = parse_policy_csv("p, a, b, c\np, a, b\ng2, a, b\np, a, b, c\np, a, , c\n");
        assert_eq!(
            messages(check_rules(&outline, raw).unwrap_err()),
            [
                "policy.csv:2: `p` rule has 2 field(s) but model.conf line 5 defines 3",
                "policy.csv:3: rule type `g2` is not defined in model.conf (defined: g, p)",
                "policy.csv:5: `p` rule has an empty field 2",
            ]
        );
        let (rules, warnings) =
            check_rules(&outline, parse_policy_csv("p, a, b, c\np, a, b, c\n")).unwrap();
        assert_eq!(rules.len(), 1);
        assert_eq!(
            messages(warnings),
            ["policy.csv:2: duplicate of line 1; ignored"]
        );
    }

    #[test]
    fn patterns_go_cannot_compile_are_refused_at_their_line() {
        let outline = parse_model(
            "[request_definition]\nr = sub, obj, act\n[policy_definition]\np = sub, obj, act\n\
             [policy_effect]\ne = some(where (p.eft == allow))\n[matchers]\n\
             m = r.sub == p.sub && keyMatch2(r.obj, p.obj) && regexMatch(r.act, p.act)\n",
        )
        .unwrap();
        let rules =
            "p, a, /data/*, read\np, a, /files/**, read\np, a, /x, *\np, a, /foo/{id}, (get|put)\n";
        let problems = messages(check_rules(&outline, parse_policy_csv(rules)).unwrap_err());
        assert_eq!(problems.len(), 2, "{problems:?}");
        assert!(problems[0].starts_with("policy.csv:2: `/files/**` is no pattern keyMatch2"));
        assert!(problems[1].starts_with("policy.csv:3: `*` is no pattern regexMatch"));
    }

    #[test]
    fn effects_that_would_not_count_are_named() {
        let with_effect = |effect: &str| {
            parse_model(&format!(
                "[request_definition]\nr = sub, obj, act\n[policy_definition]\np = sub, obj, act, eft\n\
                 [policy_effect]\ne = {effect}\n[matchers]\nm = r.sub == p.sub\n"
            ))
            .unwrap()
        };
        let allow_only = with_effect("some(where (p.eft == allow))");
        let rules = "p, a, b, read, allow\np, a, b, write, deny\np, a, b, list, indeterminate\n";
        let (kept, warnings) = check_rules(&allow_only, parse_policy_csv(rules)).unwrap();
        assert_eq!(kept.len(), 3);
        let warnings = messages(warnings);
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].starts_with("policy.csv:2: this `deny` rule never counts"));
        let deny_override =
            with_effect("some(where (p.eft == allow)) && !some(where (p.eft == deny))");
        let (_, warnings) = check_rules(&deny_override, parse_policy_csv(rules)).unwrap();
        assert!(warnings.is_empty());
        assert_eq!(
            messages(check_rules(&deny_override, parse_policy_csv("p, a, b, c, dney\n")).unwrap_err()),
            ["policy.csv:1: effect `dney` is neither `allow` nor `deny`; the rule would never count"]
        );
    }
}
