//! `[constraint_definition]`: Go Casbin's role constraints, checked against
//! the `g` grants whenever a policy set is loaded. A set that breaks one is
//! refused, naming the grant (`policy.csv:LINE`) and the constraint
//! (`model.conf:LINE`), as Go refuses to load it.
//!
//! ```ini
//! [constraint_definition]
//! c = sod("finance_requester", "finance_approver")    # never both
//! c2 = sodMax(["payroll_view", "payroll_edit"], 1)    # at most 1 of them
//! c3 = roleMax("superadmin", 2)                       # at most 2 members
//! c4 = rolePre("db_admin", "security_trained")        # db_admin needs security_trained
//! ```
//!
//! As in Go, the grants counted are the direct ones (`g, user, role`).

use std::{
    collections::{BTreeMap, HashMap},
    sync::LazyLock,
};

use regex::Regex;

use super::files::{Problem, MODEL_FILE, POLICY_FILE};
use crate::authz::RuleLine;

const SECTION: &str = "[constraint_definition]";

/// One constraint line as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConstraintLine {
    pub line: usize,
    pub key: String,
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Constraint {
    Sod(String, String),
    SodMax(Vec<String>, usize),
    RoleMax(String, usize),
    RolePre(String, String),
}

/// Takes the `[constraint_definition]` section out of a model (lines left
/// blank so line numbers hold; Casbin's parsers do not know it).
pub fn take_constraints(text: &str) -> (String, Vec<ConstraintLine>) {
    let (out, lines) = super::files::take_section(text, SECTION);
    let found = lines
        .into_iter()
        .map(|(line, trimmed)| {
            let (key, value) = trimmed.split_once('=').unwrap_or((trimmed, ""));
            ConstraintLine {
                line,
                key: key.trim().to_owned(),
                value: value.trim().to_owned(),
            }
        })
        .collect();
    (out, found)
}

/// The four forms, as Go reads them (model/constraint.go), compiled once.
struct Forms {
    sod: Regex,
    sod_max: Regex,
    role_max: Regex,
    role_pre: Regex,
}

static FORMS: LazyLock<Forms> = LazyLock::new(|| {
    let quoted = r#"\s*"([^"]+)"\s*"#;
    let compile = |source: &str| Regex::new(source).expect("constant pattern");
    Forms {
        sod: compile(&format!(r"^sod\s*\({quoted},{quoted}\)$")),
        sod_max: compile(r"^sodMax\s*\(\s*\[([^\]]+)\]\s*,\s*(\d+)\s*\)$"),
        role_max: compile(&format!(r"^roleMax\s*\({quoted},\s*(\d+)\s*\)$")),
        role_pre: compile(&format!(r"^rolePre\s*\({quoted},{quoted}\)$")),
    }
});

fn parse(value: &str) -> Option<Constraint> {
    let Forms {
        sod,
        sod_max,
        role_max,
        role_pre,
    } = &*FORMS;
    if let Some(c) = sod.captures(value) {
        return Some(Constraint::Sod(c[1].to_owned(), c[2].to_owned()));
    }
    if let Some(c) = sod_max.captures(value) {
        let roles: Vec<String> = c[1]
            .split(',')
            .map(|r| r.trim().trim_matches('"').to_owned())
            .filter(|r| !r.is_empty())
            .collect();
        return (!roles.is_empty()).then(|| Constraint::SodMax(roles, c[2].parse().unwrap_or(0)));
    }
    if let Some(c) = role_max.captures(value) {
        return Some(Constraint::RoleMax(c[1].to_owned(), c[2].parse().ok()?));
    }
    if let Some(c) = role_pre.captures(value) {
        return Some(Constraint::RolePre(c[1].to_owned(), c[2].to_owned()));
    }
    None
}

/// Checks every constraint against the `g` grants of `rules`.
pub fn check(lines: &[ConstraintLine], rules: &[RuleLine], has_g: bool) -> Vec<Problem> {
    let mut problems = Vec::new();
    if lines.is_empty() {
        return problems;
    }
    let at_model = |line: usize, message: String| Problem {
        file: MODEL_FILE.to_owned(),
        line,
        message,
    };
    if !has_g {
        problems.push(at_model(
            lines[0].line,
            format!("{SECTION} needs a role definition `g` to constrain"),
        ));
        return problems;
    }
    // user → role → the line granting it (the first, in policy order).
    let mut grants: BTreeMap<&str, HashMap<&str, usize>> = BTreeMap::new();
    for rule in rules.iter().filter(|r| r.ptype == "g") {
        if let (Some(user), Some(role)) = (rule.values.first(), rule.values.get(1)) {
            grants
                .entry(user)
                .or_default()
                .entry(role)
                .or_insert(rule.origin.line);
        }
    }
    for entry in lines {
        let Some(constraint) = parse(&entry.value) else {
            problems.push(at_model(
                entry.line,
                format!(
                    "constraint `{} = {}` is not sod(\"a\", \"b\"), sodMax([\"a\", …], N), \
                     roleMax(\"r\", N) or rolePre(\"r\", \"pre\")",
                    entry.key, entry.value
                ),
            ));
            continue;
        };
        let broken = |line: usize, why: String| Problem {
            file: POLICY_FILE.to_owned(),
            line,
            message: format!(
                "breaks constraint `{}` ({MODEL_FILE}:{}): {why}",
                entry.key, entry.line
            ),
        };
        match &constraint {
            Constraint::Sod(a, b) => {
                for (user, roles) in &grants {
                    if let (Some(first), Some(second)) =
                        (roles.get(a.as_str()), roles.get(b.as_str()))
                    {
                        problems.push(broken(
                            *first.max(second),
                            format!("`{user}` may not hold both `{a}` and `{b}`"),
                        ));
                    }
                }
            }
            Constraint::SodMax(set, max) => {
                for (user, roles) in &grants {
                    let mut held: Vec<usize> = set
                        .iter()
                        .filter_map(|r| roles.get(r.as_str()).copied())
                        .collect();
                    if held.len() > *max {
                        held.sort_unstable();
                        problems.push(broken(
                            held[*max],
                            format!(
                                "`{user}` holds {} of [{}], at most {max} allowed",
                                held.len(),
                                set.join(", ")
                            ),
                        ));
                    }
                }
            }
            Constraint::RoleMax(role, max) => {
                let mut members: Vec<usize> = grants
                    .values()
                    .filter_map(|roles| roles.get(role.as_str()).copied())
                    .collect();
                if members.len() > *max {
                    members.sort_unstable();
                    problems.push(broken(
                        members[*max],
                        format!(
                            "`{role}` is granted to {} members, at most {max} allowed",
                            members.len()
                        ),
                    ));
                }
            }
            Constraint::RolePre(role, prerequisite) => {
                for (user, roles) in &grants {
                    if let Some(line) = roles.get(role.as_str()) {
                        if !roles.contains_key(prerequisite.as_str()) {
                            problems.push(broken(
                                *line,
                                format!("`{user}` holds `{role}` without its prerequisite `{prerequisite}`"),
                            ));
                        }
                    }
                }
            }
        }
    }
    problems
}
