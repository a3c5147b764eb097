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
    match PolicySet::load(dir).await {
        Ok(set) => {
            report.warnings.extend(set.warnings.iter().cloned());
            if let Some(why) = &set.unclassified {
                report.errors.push(Problem {
                    file: crate::mask::rules::CLASSIFICATION_FILE.to_owned(),
                    line: 0,
                    message: why.clone(),
                });
            }
        }
        Err(PolicyError::Invalid(problems)) => report.errors.extend(problems),
        Err(e @ PolicyError::Read { .. }) => {
            report.errors.push(Problem {
                file: String::new(),
                line: 0,
                message: e.to_string(),
            });
            return report;
        }
    }
    // Role analysis works on the text even when loading failed elsewhere.
    let (Ok(model), Ok(policy)) = (
        std::fs::read_to_string(dir.join(MODEL_FILE)),
        std::fs::read_to_string(dir.join(POLICY_FILE)),
    ) else {
        return report;
    };
    let Ok(outline) = files::parse_model(&model) else {
        return report;
    };
    report
        .warnings
        .extend(role_findings(&outline, &files::parse_policy_csv(&policy)));
    report
        .warnings
        .sort_by(|a, b| (&a.file, a.line).cmp(&(&b.file, b.line)));
    report
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
