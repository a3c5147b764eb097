//! policy.csv as Casbin's file adapter reads it, and every rule checked
//! against the model at its line.

use super::*;

/// A rule line as parsed, before it is checked against the model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawRule {
    pub line: usize,
    pub fields: Vec<String>,
}

/// Splits policy.csv into fields the way Casbin's file adapter does: commas
/// outside double quotes separate, fields are trimmed, surrounding quotes
/// are removed, blank lines and `#` comments are skipped.
pub fn parse_policy_csv(text: &str) -> Vec<RawRule> {
    let mut rules = Vec::new();
    for (index, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        rules.push(RawRule {
            line: index + 1,
            fields: split_csv_fields(line),
        });
    }
    rules
}

pub(super) fn split_csv_fields(line: &str) -> Vec<String> {
    let mut fields = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    for c in line.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                current.push(c);
            }
            ',' if !quoted => fields.push(std::mem::take(&mut current)),
            _ => current.push(c),
        }
    }
    fields.push(current);
    fields
        .into_iter()
        .map(|field| {
            let field = field.trim();
            if field.len() >= 2 && field.starts_with('"') && field.ends_with('"') {
                field[1..field.len() - 1].to_owned()
            } else {
                field.to_owned()
            }
        })
        .collect()
}

/// Checks each rule against the model (known type, right arity) and drops
/// exact duplicates, which Casbin ignores too. Returns the rules and the
/// duplicate lines (warnings for the linter).
pub fn check_rules(
    outline: &ModelOutline,
    raw: Vec<RawRule>,
) -> Result<(Vec<RuleLine>, Vec<Problem>), Vec<Problem>> {
    let file: Arc<str> = POLICY_FILE.into();
    let mut problems = Vec::new();
    let mut warnings = Vec::new();
    let mut seen: HashMap<(String, Vec<String>), usize> = HashMap::new();
    let mut patterns_passed = Vec::new();
    let mut rules = Vec::with_capacity(raw.len());
    for RawRule { line, mut fields } in raw {
        let ptype = fields.remove(0);
        let Some(arity) = outline
            .arity(&ptype)
            .filter(|_| ptype.starts_with('p') || ptype.starts_with('g'))
        else {
            problems.push(problem(
                POLICY_FILE,
                line,
                format!(
                    "rule type `{ptype}` is not defined in {MODEL_FILE} (defined: {})",
                    outline.rule_types().join(", ")
                ),
            ));
            continue;
        };
        if fields.len() != arity {
            problems.push(problem(
                POLICY_FILE,
                line,
                format!(
                    "`{ptype}` rule has {} field(s) but {MODEL_FILE} line {} defines {arity}",
                    fields.len(),
                    outline.definitions[&ptype].1
                ),
            ));
            continue;
        }
        if let Some(empty) = fields.iter().position(String::is_empty) {
            problems.push(problem(
                POLICY_FILE,
                line,
                format!("`{ptype}` rule has an empty field {}", empty + 1),
            ));
            continue;
        }
        if let Some(refusal) = pattern_refusal(outline, &ptype, &fields, &mut patterns_passed) {
            problems.push(problem(POLICY_FILE, line, refusal));
            continue;
        }
        match effect_check(outline, &ptype, &fields) {
            EffectCheck::Counts => {}
            EffectCheck::Ignored(why) => warnings.push(problem(POLICY_FILE, line, why)),
            EffectCheck::Unknown(why) => {
                problems.push(problem(POLICY_FILE, line, why));
                continue;
            }
        }
        match seen.entry((ptype.clone(), fields.clone())) {
            std::collections::hash_map::Entry::Occupied(first) => {
                warnings.push(problem(
                    POLICY_FILE,
                    line,
                    format!("duplicate of line {}; ignored", first.get()),
                ));
            }
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(line);
                rules.push(RuleLine {
                    ptype,
                    values: fields,
                    origin: Origin {
                        file: file.clone(),
                        line,
                    },
                });
            }
        }
    }
    if problems.is_empty() {
        Ok((rules, warnings))
    } else {
        Err(problems)
    }
}
