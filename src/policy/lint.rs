//! `vigil policy check`: everything that can be wrong with a policy
//! directory, as `file:line: message`, errors apart from warnings.

use std::{
    collections::{HashMap, HashSet},
    path::Path,
};

use super::{
    files::{self, Problem, MODEL_FILE, POLICY_FILE},
    PolicyError, PolicySet,
};

#[derive(Debug, Default)]
pub struct LintReport {
    pub errors: Vec<Problem>,
    pub warnings: Vec<Problem>,
}

/// Lints a policy directory. Loading problems are errors; findings that
/// Casbin tolerates but that are probably mistakes are warnings.
pub async fn lint(dir: &Path) -> LintReport {
    let mut report = LintReport::default();
    let loaded = match PolicySet::load(dir).await {
        Ok(set) => {
            report.warnings.extend(set.warnings.iter().cloned());
            if let Some(why) = &set.unclassified {
                report.errors.push(Problem {
                    file: crate::mask::rules::CLASSIFICATION_FILE.to_owned(),
                    line: 0,
                    message: why.clone(),
                });
            }
            Some(set)
        }
        Err(PolicyError::Invalid(problems)) => {
            report.errors.extend(problems);
            None
        }
        Err(e @ PolicyError::Read { .. }) => {
            report.errors.push(Problem {
                file: String::new(),
                line: 0,
                message: e.to_string(),
            });
            return report;
        }
    };
    // Role analysis works on the text even when loading failed elsewhere.
    let (Ok(model), Ok(policy)) = (
        std::fs::read_to_string(dir.join(MODEL_FILE)),
        std::fs::read_to_string(dir.join(POLICY_FILE)),
    ) else {
        return report;
    };
    let Ok((model, _)) = files::model_as_evaluated(&model) else {
        return report;
    };
    let (model, _) = super::constraints::take_constraints(&model);
    let Ok(outline) = files::parse_model(&model) else {
        return report;
    };
    let rules = files::parse_policy_csv(&policy);
    if let Some(set) = &loaded {
        report
            .errors
            .extend(grant_findings(&outline, &rules, &set.classification));
    }
    report.warnings.extend(role_findings(&outline, &rules));
    report
        .warnings
        .sort_by(|a, b| (&a.file, a.line).cmp(&(&b.file, b.line)));
    report
}

/// The visibility actions a grant may use.
const SEE_ACTIONS: [&str; 3] = ["see:clear", "see:pseudonym", "see:masked"];

/// Visibility grants that can never apply: on a label or level the
/// classification does not define (`label:diagnoses`), or with an action
/// that is no visibility (`see:plain`). They look like grants and change
/// nothing, so a subject meant to see a field keeps getting the default.
fn grant_findings(
    outline: &files::ModelOutline,
    rules: &[files::RawRule],
    classification: &crate::mask::Classification,
) -> Vec<Problem> {
    let Some(tokens) = outline.tokens.get("p") else {
        return Vec::new();
    };
    // With masking stated off, no grant is consulted at all.
    if classification.masking_off {
        return Vec::new();
    }
    let (Some(obj), Some(act)) = (
        tokens.iter().position(|t| t == "obj"),
        tokens.iter().position(|t| t == "act"),
    ) else {
        return Vec::new();
    };
    let literal = |s: &str| !s.contains(['*', '(', '[', '{', ':', '?', '|'].as_slice());
    let mut problems = Vec::new();
    for rule in rules
        .iter()
        .filter(|r| r.fields.first().is_some_and(|t| t == "p"))
    {
        let (Some(object), Some(action)) = (rule.fields.get(obj + 1), rule.fields.get(act + 1))
        else {
            continue;
        };
        let mut complain = |message: String| {
            problems.push(Problem {
                file: POLICY_FILE.to_owned(),
                line: rule.line,
                message,
            })
        };
        if let Some(label) = object.strip_prefix("label:").filter(|l| literal(l)) {
            if !classification.labels.contains_key(label) {
                complain(format!(
                    "grant on label `{label}`, which classification.toml does not define; it can never apply"
                ));
            }
        }
        if let Some(level) = object.strip_prefix("level:").filter(|l| literal(l)) {
            if !classification.levels.iter().any(|l| l == level) {
                complain(format!(
                    "grant on level `{level}`, which classification.toml does not define (levels: {})",
                    classification.levels.join(", ")
                ));
            }
        }
        if action.starts_with("see:")
            && literal(&action[4..])
            && !SEE_ACTIONS.contains(&action.as_str())
        {
            complain(format!(
                "`{action}` is no visibility action; use {}",
                SEE_ACTIONS.join(", ")
            ));
        }
    }
    problems
}

/// Roles granted but never given a permission, and rule subjects that are
/// granted to nobody.
fn role_findings(outline: &files::ModelOutline, rules: &[files::RawRule]) -> Vec<Problem> {
    if outline.arity("g").is_none() {
        return Vec::new();
    }
    let Some(subject_index) = outline
        .tokens
        .get("p")
        .and_then(|t| t.iter().position(|t| t == "sub"))
    else {
        return Vec::new();
    };
    let mut rule_subjects: HashMap<&str, usize> = HashMap::new();
    let mut parents: HashMap<&str, Vec<&str>> = HashMap::new();
    let mut granted: HashMap<&str, usize> = HashMap::new();
    let mut in_grants: HashSet<&str> = HashSet::new();
    for rule in rules {
        match rule.fields.first().map(String::as_str) {
            Some("p") => {
                if let Some(subject) = rule.fields.get(subject_index + 1) {
                    rule_subjects.entry(subject).or_insert(rule.line);
                }
            }
            Some("g") if rule.fields.len() >= 3 => {
                let (member, role) = (rule.fields[1].as_str(), rule.fields[2].as_str());
                parents.entry(member).or_default().push(role);
                granted.entry(role).or_insert(rule.line);
                in_grants.insert(member);
                in_grants.insert(role);
            }
            _ => {}
        }
    }
    // A role is useful if it, or a role it inherits, has rules.
    fn useful<'a>(
        role: &'a str,
        rule_subjects: &HashMap<&str, usize>,
        parents: &HashMap<&'a str, Vec<&'a str>>,
        seen: &mut HashSet<&'a str>,
    ) -> bool {
        if rule_subjects.contains_key(role) {
            return true;
        }
        if !seen.insert(role) {
            return false;
        }
        parents
            .get(role)
            .is_some_and(|ps| ps.iter().any(|p| useful(p, rule_subjects, parents, seen)))
    }
    let mut findings = Vec::new();
    for (role, line) in &granted {
        if !useful(role, &rule_subjects, &parents, &mut HashSet::new()) {
            findings.push(Problem {
                file: POLICY_FILE.into(),
                line: *line,
                message: format!(
                    "role `{role}` is granted but neither it nor any role it inherits has a rule"
                ),
            });
        }
    }
    for (subject, line) in &rule_subjects {
        if !in_grants.contains(subject) && !subject.contains('*') {
            findings.push(Problem {
                file: POLICY_FILE.into(),
                line: *line,
                message: format!("`{subject}` has rules but appears in no role grant: a role nobody holds, or a user with direct rules"),
            });
        }
    }
    findings
}
