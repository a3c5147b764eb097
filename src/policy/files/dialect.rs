//! vigil's model.conf dialect beside Casbin's: the `[role_matching]`
//! section and link-condition parameters taken out of the text casbin-rs
//! parses, comments anywhere, block matchers joined into Go's one
//! expression, quotes and `in` tuples in rhai's form.

use super::*;

/// One line of vigil's `[role_matching]` section: `g2 = keyMatch2` (names
/// of `g2` are patterns) or `g.domain = keyMatch` (its domains are).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleMatchingLine {
    pub line: usize,
    pub definition: String,
    pub domain: bool,
    /// `g.condition = timeMatch`: how a grant's parameters are checked.
    pub condition: bool,
    pub function: String,
}

/// The name of vigil's model section for pattern roles.
pub const ROLE_MATCHING_SECTION: &str = "[role_matching]";

/// Takes a section Casbin's parsers do not know out of a model, its lines
/// left blank so line numbers hold: the model without it, and the
/// section's non-blank lines (line number, trimmed text).
pub fn take_section<'a>(text: &'a str, header: &str) -> (String, Vec<(usize, &'a str)>) {
    let mut inside = false;
    let mut found = Vec::new();
    let mut out = Vec::new();
    for (index, line) in text.split('\n').enumerate() {
        let trimmed = line.trim();
        if trimmed.starts_with('[') {
            inside = trimmed == header;
        }
        if !inside {
            out.push(line);
            continue;
        }
        out.push("");
        if !trimmed.is_empty() && !trimmed.starts_with('[') {
            found.push((index + 1, trimmed));
        }
    }
    (out.join("\n"), found)
}

/// Takes vigil's `[role_matching]` section out of a model and returns its
/// lines.
pub(super) fn take_role_matching(text: &str) -> (String, Vec<RoleMatchingLine>) {
    let (out, lines) = take_section(text, ROLE_MATCHING_SECTION);
    let mut found = Vec::new();
    for (line, trimmed) in lines {
        if let Some((key, value)) = trimmed.split_once('=') {
            let key = key.trim();
            let (definition, domain, condition) = if let Some(d) = key.strip_suffix(".domain") {
                (d.trim(), true, false)
            } else if let Some(d) = key.strip_suffix(".condition") {
                (d.trim(), false, true)
            } else {
                (key, false, false)
            };
            found.push(RoleMatchingLine {
                line,
                definition: definition.to_owned(),
                domain,
                condition,
                function: value.trim().to_owned(),
            });
        } else {
            found.push(RoleMatchingLine {
                line,
                definition: trimmed.to_owned(),
                domain: false,
                condition: false,
                function: String::new(),
            });
        }
    }
    (out, found)
}

/// A role definition with link conditions, `g = _, _, (_, _)`: the role
/// part (`_, _`) and the parameters each grant carries after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConditionalRole {
    pub line: usize,
    pub definition: String,
    pub role_arity: usize,
    pub parameters: usize,
}

/// Takes the condition parameters out of role definitions
/// (`g = _, _, (_, _)` becomes `g = _, _` for Casbin's parser, which does
/// not read them) and says which definitions had them.
pub fn take_role_conditions(text: &str) -> (String, Vec<ConditionalRole>) {
    let mut in_roles = false;
    let mut found = Vec::new();
    let mut out = Vec::new();
    for (index, line) in text.split('\n').enumerate() {
        let trimmed = line.trim();
        if trimmed.starts_with('[') {
            in_roles = trimmed == "[role_definition]";
        }
        let parsed = in_roles
            .then(|| trimmed.split_once('='))
            .flatten()
            .and_then(|(key, value)| {
                let open = value.find('(')?;
                let close = value.rfind(')')?;
                let roles = value[..open].trim().trim_end_matches(',').trim();
                Some((
                    key.trim(),
                    roles.to_owned(),
                    value[open + 1..close].matches('_').count(),
                ))
            });
        match parsed {
            Some((key, roles, parameters)) => {
                found.push(ConditionalRole {
                    line: index + 1,
                    definition: key.to_owned(),
                    role_arity: roles.matches('_').count(),
                    parameters,
                });
                out.push(format!("{key} = {roles}"));
            }
            None => out.push(line.to_owned()),
        }
    }
    (out.join("\n"), found)
}

/// Checks `[role_matching]` lines against the model: each names a role
/// definition it has (`.domain` only for one with domains) and a function
/// vigil knows, once.
pub fn check_role_matching(
    outline: &ModelOutline,
    lines: &[RoleMatchingLine],
    conditions: &[ConditionalRole],
) -> Result<HashMap<String, Matching>, Vec<Problem>> {
    let mut problems = Vec::new();
    let mut matching: HashMap<String, Matching> = HashMap::new();
    for conditional in conditions {
        let stated = lines
            .iter()
            .any(|l| l.condition && l.definition == conditional.definition);
        let slot = matching.entry(conditional.definition.clone()).or_default();
        slot.role_arity = Some(conditional.role_arity);
        if !stated && conditional.parameters == 2 {
            // Go's examples and tests check a (start, end) pair with its
            // built-in time window (util.TimeMatchFunc); so does vigil
            // unless `[role_matching]` says otherwise.
            slot.condition = Some(LinkCondition::TimeMatch);
        } else if !stated {
            problems.push(problem(
                MODEL_FILE,
                conditional.line,
                format!(
                    "`{}` has link condition parameters but nothing says how they are checked; \
                     add `{ROLE_MATCHING_SECTION}` with `{}.condition = timeMatch`",
                    conditional.definition, conditional.definition
                ),
            ));
        }
    }
    for entry in lines {
        let at = |message: String| problem(MODEL_FILE, entry.line, message);
        if entry.function.is_empty() {
            problems.push(at(format!(
                "{ROLE_MATCHING_SECTION}: `{}` is not `g = FUNCTION`, `g.domain = FUNCTION` \
                 or `g.condition = timeMatch`",
                entry.definition
            )));
            continue;
        }
        if entry.condition {
            let Some(conditional) = conditions.iter().find(|c| c.definition == entry.definition)
            else {
                problems.push(at(format!(
                    "{ROLE_MATCHING_SECTION}: `{}` has no condition parameters; write them in \
                     [role_definition], e.g. `{} = _, _, (_, _)`",
                    entry.definition, entry.definition
                )));
                continue;
            };
            match entry.function.as_str() {
                "timeMatch" if conditional.parameters == 2 => {
                    matching.entry(entry.definition.clone()).or_default().condition =
                        Some(LinkCondition::TimeMatch);
                }
                "timeMatch" => problems.push(at(format!(
                    "{ROLE_MATCHING_SECTION}: timeMatch takes 2 parameters (start, end); `{}` has {}",
                    entry.definition, conditional.parameters
                ))),
                other => problems.push(at(format!(
                    "{ROLE_MATCHING_SECTION}: unknown link condition `{other}`; known: timeMatch"
                ))),
            }
            continue;
        }
        let arity = conditions
            .iter()
            .find(|c| c.definition == entry.definition)
            .map(|c| c.role_arity)
            .or_else(|| outline.arity(&entry.definition));
        let Some(arity) = arity.filter(|_| entry.definition.starts_with('g')) else {
            problems.push(at(format!(
                "{ROLE_MATCHING_SECTION}: `{}` is not a role definition of [role_definition]",
                entry.definition
            )));
            continue;
        };
        if entry.domain && arity < 3 {
            problems.push(at(format!(
                "{ROLE_MATCHING_SECTION}: `{}` has no domain (`{} = _, _`), so `{}.domain` cannot apply",
                entry.definition, entry.definition, entry.definition
            )));
            continue;
        }
        let Some(function) = MatchingFunction::from_name(&entry.function) else {
            problems.push(at(format!(
                "{ROLE_MATCHING_SECTION}: unknown function `{}`; known: {}",
                entry.function,
                MatchingFunction::NAMES.join(", ")
            )));
            continue;
        };
        let slot = matching.entry(entry.definition.clone()).or_default();
        let target = if entry.domain {
            &mut slot.domains
        } else {
            &mut slot.names
        };
        if target.replace(function).is_some() {
            problems.push(at(format!(
                "{ROLE_MATCHING_SECTION}: `{}{}` is set twice",
                entry.definition,
                if entry.domain { ".domain" } else { "" }
            )));
        }
    }
    if problems.is_empty() {
        Ok(matching)
    } else {
        Err(problems)
    }
}

/// `model.conf` without comments: from a `#` or `;` outside quotes to the
/// end of its line. Line breaks stay, so line numbers do not move.
pub(super) fn strip_model_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for (index, line) in text.split('\n').enumerate() {
        if index > 0 {
            out.push('\n');
        }
        let mut quote: Option<char> = None;
        let mut end = line.len();
        for (at, c) in line.char_indices() {
            match (quote, c) {
                (Some(open), c) if c == open => quote = None,
                (Some(_), _) => {}
                (None, '"' | '\'') => quote = Some(c),
                (None, '#' | ';') => {
                    end = at;
                    break;
                }
                (None, _) => {}
            }
        }
        out.push_str(line[..end].trim_end());
    }
    out
}

/// (`p` token, function) for each `FUNCTION(r.x, p.y)` call of a pattern
/// function in a matcher (`authz::pattern_problem` knows which of them
/// build a regex).
pub(super) fn pattern_arguments(matcher: &str) -> Vec<(String, String)> {
    let mut found = Vec::new();
    for function in MatchingFunction::NAMES {
        for (at, _) in matcher.match_indices(function) {
            let whole = !matcher[..at].ends_with(|c: char| c.is_ascii_alphanumeric() || c == '_');
            let Some(arguments) = matcher[at + function.len()..]
                .trim_start()
                .strip_prefix('(')
            else {
                continue;
            };
            let Some((_, second)) = arguments.split_once(',') else {
                continue;
            };
            let second = second.trim_start();
            let token: String = second
                .strip_prefix("p.")
                .or_else(|| second.strip_prefix("p_"))
                .map(|rest| {
                    rest.chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect()
                })
                .unwrap_or_default();
            if whole && !token.is_empty() {
                found.push((token, function.to_owned()));
            }
        }
    }
    found
}

/// `model.conf` as both evaluators read it: comments stripped, block
/// matchers as one expression, Go's expression syntax in rhai's form, and
/// vigil's `[role_matching]` section taken out. Lines keep their places,
/// so `file:line` stays true.
pub fn model_as_evaluated(text: &str) -> Result<(String, Vec<RoleMatchingLine>), Vec<Problem>> {
    let text = join_block_matchers(&strip_model_comments(text)).map_err(|p| vec![p])?;
    Ok(take_role_matching(&normalize_matchers(&text)))
}

/// Block matchers (`m = { let ... if ... return ... }`, Go Casbin's
/// multi-line matchers, written over lines ending in `\` or simply until
/// the braces close) as the one expression Go evaluates, on the block's
/// first line; the lines it took are left empty.
pub(super) fn join_block_matchers(text: &str) -> Result<String, Problem> {
    let lines: Vec<&str> = text.split('\n').collect();
    let mut out: Vec<String> = Vec::with_capacity(lines.len());
    let mut in_matchers = false;
    let mut index = 0;
    while index < lines.len() {
        let line = lines[index];
        let trimmed = line.trim();
        index += 1;
        if trimmed.starts_with('[') {
            in_matchers = trimmed == "[matchers]";
        }
        let block = trimmed
            .split_once('=')
            .filter(|(_, value)| in_matchers && value.trim_start().starts_with('{'));
        let Some((key, first)) = block else {
            out.push(line.to_owned());
            continue;
        };
        let start = index;
        let mut joined = String::new();
        let mut piece = first;
        loop {
            joined.push_str(piece.trim().trim_end_matches('\\').trim_end());
            joined.push(' ');
            if brace_depth(&joined) == 0 || index == lines.len() {
                break;
            }
            piece = lines[index];
            index += 1;
        }
        let expression = crate::authz::block_matcher_expression(&joined)
            .map_err(|message| problem(MODEL_FILE, start, format!("block matcher: {message}")))?;
        out.push(format!("{} = {expression}", key.trim()));
        out.extend((start..index).map(|_| String::new()));
    }
    Ok(out.join("\n"))
}

/// Open `{` minus closed `}` outside quotes.
pub(super) fn brace_depth(text: &str) -> i64 {
    let mut quote = None;
    let mut depth = 0;
    for c in text.chars() {
        match (quote, c) {
            (Some(open), c) if c == open => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(c),
            (None, '{') => depth += 1,
            (None, '}') => depth -= 1,
            (None, _) => {}
        }
    }
    depth
}

/// Matchers written as Go Casbin reads them, in the form casbin-rs (rhai)
/// evaluates: single-quoted strings become double-quoted (`'data1'` is a
/// character literal to rhai), and an `in` tuple becomes an array
/// (`r.obj in ('data2', 'data3')` → `r.obj in ["data2", "data3"]`). Only
/// `[matchers]` lines change; lines keep their places.
pub(super) fn normalize_matchers(text: &str) -> String {
    let mut in_matchers = false;
    let mut out = Vec::new();
    for line in text.split('\n') {
        let trimmed = line.trim();
        if trimmed.starts_with('[') {
            in_matchers = trimmed == "[matchers]";
            out.push(line.to_owned());
            continue;
        }
        out.push(if in_matchers {
            crate::authz::go_expression_for_rhai(line)
        } else {
            line.to_owned()
        });
    }
    out.join("\n")
}
