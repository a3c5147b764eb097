//! `limits.toml`: call rates and reveal quotas, validated with `file:line`.
//!
//! ```toml
//! [[rate]]
//! name = "analyst-calls"
//! role = "analyst"            # or subject = "alice"; neither: everyone
//! object = "crm.*"            # `*` matches any run of characters
//! action = "read"             # default: any
//! domain = "*"                # default: any
//! rate = "100/s"              # N per s, min, h or d ("1000/h", "5/10s")
//! burst = 20                  # default: N
//! per = "subject"             # or "subject+object", or "role" (one budget)
//!
//! [[quota]]
//! name = "phone-reveals"
//! role = "analyst"
//! label = "phone"             # or level = "confidential"
//! reveals = "1000/h"          # values shown in clear
//! ```

use std::{num::NonZeroU32, time::Duration};

use serde::Deserialize;
use toml::Spanned;

use super::{Allowance, Per, Quota, Rate, Scope, Target};
use crate::diagnostics::{line_of, toml_problem, Problem};

/// The limits file in a policy directory (optional: none, no limits).
pub const LIMITS_FILE: &str = "limits.toml";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDef {
    #[serde(default)]
    rate: Vec<Spanned<RuleDef>>,
    #[serde(default)]
    quota: Vec<Spanned<RuleDef>>,
}

/// One `[[rate]]` or `[[quota]]` table; which keys belong to which kind is
/// checked after parsing, so a misplaced key is named with its line.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleDef {
    name: String,
    subject: Option<String>,
    role: Option<String>,
    object: Option<String>,
    action: Option<String>,
    domain: Option<String>,
    rate: Option<String>,
    label: Option<String>,
    level: Option<String>,
    reveals: Option<String>,
    burst: Option<u32>,
    per: Option<String>,
}

/// Parses `limits.toml`. `labels` and `levels` are the classification's,
/// so a quota naming neither is refused rather than never applied.
pub(super) fn parse(
    text: &str,
    labels: &dyn Fn(&str) -> bool,
    levels: &dyn Fn(&str) -> bool,
) -> Result<(Vec<Rate>, Vec<Quota>), Vec<Problem>> {
    let problem = |line: usize, message: String| Problem {
        file: LIMITS_FILE.into(),
        line,
        message,
    };
    let file: FileDef = toml::from_str(text).map_err(|e| {
        let mut problem = toml_problem(LIMITS_FILE, text, &e);
        if problem.message.contains("unknown field `limits`") {
            // The store's settings are the sidecar's, not the policy's.
            problem.message.push_str(
                "; [limits] (backend, prefix, fallback_fraction, max_keys, timeout) belongs in \
                 vigil's config file (--config), not in the policy set's limits.toml, which holds \
                 only [[rate]] and [[quota]] rules",
            );
        }
        vec![problem]
    })?;
    let mut problems = Vec::new();
    let mut names = std::collections::HashMap::new();
    let mut name_once = |name: &str, line: usize, problems: &mut Vec<Problem>| {
        if name.is_empty() {
            problems.push(problem(line, "name must not be empty".into()));
        } else if let Some(first) = names.insert(name.to_owned(), line) {
            problems.push(problem(
                line,
                format!("limit {name:?} is defined twice (first at line {first}); names must be unique: reasons and audit records name limits"),
            ));
        }
    };
    let mut rates = Vec::new();
    for spanned in &file.rate {
        let line = line_of(text, spanned.span().start);
        let def = spanned.get_ref();
        name_once(&def.name, line, &mut problems);
        let scope = scope(def);
        let allowance = match (&def.rate, &def.label, &def.level, &def.reveals) {
            (Some(rate), None, None, None) => allowance(rate, def.burst),
            (None, ..) => Err("a rate needs `rate = \"N/UNIT\"`".to_owned()),
            _ => Err("`label`, `level` and `reveals` belong to [[quota]] tables".to_owned()),
        };
        let per = per(def.per.as_deref(), &scope);
        match (allowance, per) {
            (Ok(allowance), Ok(per)) => {
                rates.push(Rate::new(def.name.clone(), line, scope, allowance, per))
            }
            (allowance, per) => {
                for why in [allowance.err(), per.err()].into_iter().flatten() {
                    problems.push(problem(line, format!("rate {:?}: {why}", def.name)));
                }
            }
        }
    }
    let mut quotas = Vec::new();
    for spanned in &file.quota {
        let line = line_of(text, spanned.span().start);
        let def = spanned.get_ref();
        name_once(&def.name, line, &mut problems);
        let scope = scope(def);
        if def.action.is_some() || def.rate.is_some() {
            problems.push(problem(
                line,
                format!(
                    "quota {:?}: a quota counts values shown in clear by Mask and Unmask, \
                     whatever the action, at `reveals = \"N/UNIT\"`; remove `action` and `rate`",
                    def.name
                ),
            ));
            continue;
        }
        let target = match (&def.label, &def.level) {
            (Some(label), None) if labels(label) => Ok(Target::Label(label.clone())),
            (Some(label), None) => Err(format!(
                "label {label:?} is not defined in classification.toml"
            )),
            (None, Some(level)) if levels(level) => Ok(Target::Level(level.clone())),
            (None, Some(level)) => Err(format!(
                "level {level:?} is not a level of classification.toml"
            )),
            (Some(_), Some(_)) => Err("give `label` or `level`, not both".to_owned()),
            (None, None) => Err("a quota needs the `label` or `level` it counts".to_owned()),
        };
        let allowance = match &def.reveals {
            Some(reveals) => allowance(reveals, def.burst),
            None => Err("a quota needs `reveals = \"N/UNIT\"`".to_owned()),
        };
        let per = per(def.per.as_deref(), &scope);
        match (target, allowance, per) {
            (Ok(target), Ok(allowance), Ok(per)) => quotas.push(Quota::new(
                def.name.clone(),
                line,
                scope,
                target,
                allowance,
                per,
            )),
            (target, allowance, per) => {
                for why in [target.err(), allowance.err(), per.err()]
                    .into_iter()
                    .flatten()
                {
                    problems.push(problem(line, format!("quota {:?}: {why}", def.name)));
                }
            }
        }
    }
    if problems.is_empty() {
        Ok((rates, quotas))
    } else {
        Err(problems)
    }
}

fn scope(def: &RuleDef) -> Scope {
    let any = |value: &Option<String>| value.clone().filter(|v| v != "*");
    Scope {
        subject: any(&def.subject),
        role: def.role.clone(),
        object: any(&def.object),
        action: any(&def.action),
        domain: any(&def.domain),
    }
}

fn per(text: Option<&str>, scope: &Scope) -> Result<Per, String> {
    match text.unwrap_or("subject") {
        "subject" => Ok(Per::Subject),
        "subject+object" => Ok(Per::SubjectObject),
        "role" if scope.role.is_some() => Ok(Per::Role),
        "role" => {
            Err("per = \"role\" shares one budget among a role's members: name the `role`".into())
        }
        other => Err(format!(
            "per = {other:?}: expected \"subject\", \"subject+object\" or \"role\""
        )),
    }
}

/// `N/unit` with an optional count of units: `100/s`, `1000/h`, `5/10s`.
pub fn allowance(text: &str, burst: Option<u32>) -> Result<Allowance, String> {
    let bad = || {
        format!(
            "{text:?} is not a rate: write N/UNIT with UNIT s, min, h or d \
             (optionally a count of them: 5/10s)"
        )
    };
    let (count, unit) = text.trim().split_once('/').ok_or_else(bad)?;
    let count: u32 = count.trim().replace('_', "").parse().map_err(|_| bad())?;
    let count = NonZeroU32::new(count)
        .ok_or("a rate of 0 allows nothing; remove the rule or deny in the policy")?;
    let unit = unit.trim();
    let digits = unit
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(unit.len());
    let times: u64 = if digits == 0 {
        1
    } else {
        unit[..digits].parse().map_err(|_| bad())?
    };
    let seconds = match &unit[digits..] {
        "s" | "sec" | "second" => 1,
        "m" | "min" | "minute" => 60,
        "h" | "hour" => 3600,
        "d" | "day" => 86_400,
        _ => return Err(bad()),
    };
    if times == 0 {
        return Err(bad());
    }
    let burst = match burst {
        None => count,
        Some(b) => NonZeroU32::new(b).ok_or("burst must be at least 1")?,
    };
    Ok(Allowance {
        count,
        period: Duration::from_secs(seconds * times),
        burst,
        text: text.trim().to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_all(text: &str) -> Result<(Vec<Rate>, Vec<Quota>), Vec<Problem>> {
        parse(text, &|l| l == "phone", &|l| l == "confidential")
    }

    /// The store's settings belong to the sidecar: found in limits.toml,
    /// the problem says where they go.
    #[test]
    fn a_limits_section_points_to_the_config_file() {
        let problems = parse_all("[limits]\nbackend = \"redis://h\"\n").unwrap_err();
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].line, 1);
        assert!(
            problems[0]
                .message
                .contains("vigil's config file (--config)"),
            "{}",
            problems[0].message
        );
    }

    #[test]
    fn rates_parse_with_their_units_and_bursts() {
        let a = allowance("100/s", None).unwrap();
        assert_eq!(
            (a.count.get(), a.period, a.burst.get()),
            (100, Duration::from_secs(1), 100)
        );
        let a = allowance("5/10s", Some(2)).unwrap();
        assert_eq!(
            (a.count.get(), a.period, a.burst.get()),
            (5, Duration::from_secs(10), 2)
        );
        assert_eq!(
            allowance("1_000/h", None).unwrap().period,
            Duration::from_secs(3600)
        );
        for bad in ["100", "0/s", "x/s", "10/fortnight", "10/0s"] {
            assert!(allowance(bad, None).is_err(), "{bad}");
        }
    }

    #[test]
    fn mistakes_name_their_line() {
        let text =
            "[[rate]]\nname = \"a\"\nrate = \"10/s\"\n\n[[rate]]\nname = \"a\"\nrate = \"ten/s\"\n";
        let problems = parse_all(text).unwrap_err();
        assert!(problems.iter().all(|p| p.line == 5), "{problems:?}");
        assert!(problems.iter().any(|p| p.message.contains("defined twice")));
        assert!(problems.iter().any(|p| p.message.contains("not a rate")));

        let text = "[[quota]]\nname = \"q\"\nlabel = \"fone\"\nreveals = \"10/h\"\n";
        let problems = parse_all(text).unwrap_err();
        assert_eq!(problems[0].line, 1);
        assert!(problems[0]
            .message
            .contains("not defined in classification.toml"));

        let text = "[[rate]]\nname = \"a\"\nrate = \"10/s\"\nsubjct = \"x\"\n";
        let problems = parse_all(text).unwrap_err();
        assert!(problems[0].message.contains("subjct"), "{problems:?}");
    }

    #[test]
    fn a_shared_budget_needs_its_role() {
        let problems =
            parse_all("[[rate]]\nname = \"a\"\nrate = \"1/s\"\nper = \"role\"\n").unwrap_err();
        assert!(problems[0].message.contains("name the `role`"));
        let (rates, _) =
            parse_all("[[rate]]\nname = \"a\"\nrole = \"x\"\nrate = \"1/s\"\nper = \"role\"\n")
                .unwrap();
        assert_eq!(rates[0].per, Per::Role);
    }
}
