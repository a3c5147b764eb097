//! `classification.toml`: ordered levels, labels with a default treatment,
//! path rules and content detectors. Every problem names its line.
//!
//! ```toml
//! levels = ["public", "internal", "confidential", "secret"]
//!
//! [labels]
//! phone = { level = "confidential", default = "mask" }
//!
//! [[rules]]
//! path = "**.phone"          # `*` one segment, `**` any depth, `[*]` any index
//! object = "crm.*"           # optional: only for these objects
//! label = "phone"
//! treatment = "redact"       # optional: overrides the label's default
//!
//! [[detectors]]
//! builtin = "cn_mobile"      # or: name = "employee_id", regex = "EMP-[0-9]{6}"
//! label = "phone"
//! ```

use std::collections::{BTreeMap, HashMap};

use regex::{Regex, RegexSet};
use serde::Deserialize;
use toml::Spanned;

use super::{
    detect::{Builtin, Detector, Pattern},
    treat::Treatment,
};
use crate::diagnostics::{line_of, toml_problem, Problem};

pub const CLASSIFICATION_FILE: &str = "classification.toml";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileDef {
    /// `"off"`: the operator states that this directory's data needs no
    /// masking, and Mask returns records as they are.
    masking: Option<Spanned<String>>,
    levels: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    labels: BTreeMap<String, Spanned<LabelDef>>,
    #[serde(default)]
    rules: Vec<Spanned<RuleDef>>,
    #[serde(default)]
    detectors: Vec<Spanned<DetectorDef>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LabelDef {
    level: String,
    default: String,
    /// What a valid value of the label looks like: a builtin detector's
    /// name (`cn_mobile`, `cn_resident_id`, `bank_card`, `email`, `ipv4`,
    /// `ipv6`) or `regex:PATTERN` (the whole value must match).
    #[serde(default)]
    format: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleDef {
    path: String,
    #[serde(default)]
    object: Option<String>,
    label: String,
    #[serde(default)]
    treatment: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DetectorDef {
    #[serde(default)]
    builtin: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    regex: Option<String>,
    label: String,
}

#[derive(Debug, Clone)]
pub struct Label {
    pub name: String,
    pub level: String,
    /// Position of the level, 0 = least sensitive.
    pub rank: usize,
    /// Treatment when no visibility grant covers the asker (fail closed).
    pub default: Treatment,
    /// What a valid value looks like, for data-quality checks: given in
    /// the file, or the builtin detector that finds this label.
    pub format: Option<Format>,
}

/// The shape of a label's valid values.
#[derive(Debug, Clone)]
pub enum Format {
    Builtin(Builtin),
    /// Anchored: the whole value must match.
    Pattern(Regex),
}

impl Format {
    fn parse(text: &str) -> Result<Format, String> {
        if let Some(pattern) = text.strip_prefix("regex:") {
            return Regex::new(&format!("^(?:{pattern})$"))
                .map(Format::Pattern)
                .map_err(|e| format!("format {text:?} is not a valid regular expression: {e}"));
        }
        Builtin::from_name(text)
            .map(Format::Builtin)
            .ok_or_else(|| {
                format!(
                    "unknown format {text:?}; expected regex:PATTERN or one of {}",
                    Builtin::ALL.map(Builtin::name).join(", ")
                )
            })
    }

    /// Whether `value` (surrounding spaces aside) is exactly one valid
    /// value of this format.
    pub fn accepts(&self, value: &str) -> bool {
        let value = value.trim();
        match self {
            Format::Pattern(regex) => regex.is_match(value),
            Format::Builtin(kind) => super::detect::is_exactly(*kind, value),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    Key(String),
    Index(usize),
    /// `*`: any one key or index.
    Any,
    /// `[*]` or `[]`: any array index.
    AnyIndex,
    /// `**`: any number of segments, including none.
    AnyDepth,
}

/// One step of a concrete path in a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step<'a> {
    Key(&'a str),
    Index(usize),
}

#[derive(Debug, Clone)]
pub struct PathRule {
    pub pattern: Vec<Segment>,
    pub object: Option<String>,
    pub label: String,
    pub treatment: Option<Treatment>,
    /// `classification.toml:LINE`, named in field actions.
    pub origin: String,
}

/// The classification in force (part of a policy snapshot).
#[derive(Debug, Clone, Default)]
pub struct Classification {
    pub levels: Vec<String>,
    pub labels: HashMap<String, Label>,
    pub rules: Vec<PathRule>,
    pub detectors: Vec<Detector>,
    /// Every custom detector's pattern in one set: a single pass tells
    /// whether any of them could match a text, before the detectors run.
    pub custom_prefilter: Option<RegexSet>,
    /// The built-in detector of each label, so that a field labelled by
    /// path (say `phone`) is masked in its kind's format (138****5678).
    /// Built once here rather than per Mask call.
    pub format_hints: HashMap<String, Builtin>,
    /// `masking = "off"` in the file.
    pub masking_off: bool,
}

pub fn parse_path(pattern: &str) -> Result<Vec<Segment>, String> {
    if pattern.trim().is_empty() {
        return Err("empty path pattern".into());
    }
    let mut segments = Vec::new();
    for piece in pattern.split('.') {
        let (key, mut brackets) = match piece.find('[') {
            Some(i) => (&piece[..i], &piece[i..]),
            None => (piece, ""),
        };
        match key {
            "" if brackets.is_empty() => {
                return Err(format!("path {pattern:?} has an empty segment"))
            }
            "" => {}
            "*" => segments.push(Segment::Any),
            "**" => segments.push(Segment::AnyDepth),
            key => segments.push(Segment::Key(key.to_owned())),
        }
        while !brackets.is_empty() {
            let close = brackets
                .find(']')
                .ok_or_else(|| format!("path {pattern:?}: unclosed '['"))?;
            let inner = &brackets[1..close];
            segments.push(match inner {
                "" | "*" => Segment::AnyIndex,
                n => Segment::Index(
                    n.parse()
                        .map_err(|_| format!("path {pattern:?}: [{n}] is not an index"))?,
                ),
            });
            brackets = &brackets[close + 1..];
            if !brackets.is_empty() && !brackets.starts_with('[') {
                return Err(format!(
                    "path {pattern:?}: unexpected {brackets:?} after ']'"
                ));
            }
        }
    }
    Ok(segments)
}

pub fn path_matches(pattern: &[Segment], path: &[Step<'_>]) -> bool {
    match pattern.split_first() {
        None => path.is_empty(),
        Some((Segment::AnyDepth, rest)) => {
            (0..=path.len()).any(|skip| path_matches(rest, &path[skip..]))
        }
        Some((segment, rest)) => {
            let Some((step, path_rest)) = path.split_first() else {
                return false;
            };
            let here = match (segment, step) {
                (Segment::Key(k), Step::Key(s)) => k == s,
                (Segment::Index(i), Step::Index(j)) => i == j,
                (Segment::Any, _) => true,
                (Segment::AnyIndex, Step::Index(_)) => true,
                _ => false,
            };
            here && path_matches(rest, path_rest)
        }
    }
}

/// Glob over object names: `*` matches any run of characters.
pub fn object_matches(pattern: &str, object: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == object;
    }
    let mut rest = object;
    for (i, part) in parts.iter().enumerate() {
        if i == 0 {
            let Some(after) = rest.strip_prefix(part) else {
                return false;
            };
            rest = after;
        } else if i == parts.len() - 1 {
            return rest.ends_with(part);
        } else {
            let Some(at) = rest.find(part) else {
                return false;
            };
            rest = &rest[at + part.len()..];
        }
    }
    true
}

/// Why a detector regex that compiles can still never label anything: it
/// matches no string at all (`[^\s\S]`), or only the empty one (`x{0}`),
/// which is never a span. `None` when it can match a value.
fn never_matches(pattern: &str) -> Option<&'static str> {
    let hir = regex_syntax::Parser::new().parse(pattern).ok()?;
    match (
        hir.properties().minimum_len(),
        hir.properties().maximum_len(),
    ) {
        (None, _) => Some("can never match anything"),
        (_, Some(0)) => Some("matches only the empty string, so it can never label a value"),
        _ => None,
    }
}

pub fn parse(text: &str) -> Result<Classification, Vec<Problem>> {
    let problem = |line: usize, message: String| Problem {
        file: CLASSIFICATION_FILE.into(),
        line,
        message,
    };
    let file: FileDef =
        toml::from_str(text).map_err(|e| vec![toml_problem(CLASSIFICATION_FILE, text, &e)])?;
    let mut problems = Vec::new();
    let masking_off = match &file.masking {
        None => false,
        Some(value) => match value.get_ref().as_str() {
            "on" => false,
            "off" => true,
            other => {
                problems.push(problem(
                    line_of(text, value.span().start),
                    format!("masking = {other:?}: expected \"on\" or \"off\""),
                ));
                false
            }
        },
    };
    let levels: Vec<String> = match &file.levels {
        Some(levels) => levels.get_ref().clone(),
        None => ["public", "internal", "confidential", "secret"]
            .map(String::from)
            .to_vec(),
    };
    if let Some(spanned) = &file.levels {
        let mut seen = std::collections::HashSet::new();
        for level in spanned.get_ref() {
            if !seen.insert(level) {
                problems.push(problem(
                    line_of(text, spanned.span().start),
                    format!("level {level:?} is listed twice"),
                ));
            }
        }
    }
    let mut labels = HashMap::new();
    for (name, spanned) in &file.labels {
        let line = line_of(text, spanned.span().start);
        let def = spanned.get_ref();
        let Some(rank) = levels.iter().position(|l| *l == def.level) else {
            problems.push(problem(
                line,
                format!(
                    "label {name:?}: unknown level {:?}; levels are {}",
                    def.level,
                    levels.join(" < ")
                ),
            ));
            continue;
        };
        let format = match def.format.as_deref().map(Format::parse).transpose() {
            Ok(format) => format,
            Err(e) => {
                problems.push(problem(line, format!("label {name:?}: {e}")));
                continue;
            }
        };
        match def.default.parse::<Treatment>() {
            Ok(default) => {
                labels.insert(
                    name.clone(),
                    Label {
                        name: name.clone(),
                        level: def.level.clone(),
                        rank,
                        default,
                        format,
                    },
                );
            }
            Err(e) => problems.push(problem(line, format!("label {name:?}: {e}"))),
        }
    }
    let known_label = |name: &str| file.labels.contains_key(name);
    let mut rules = Vec::new();
    for spanned in &file.rules {
        let line = line_of(text, spanned.span().start);
        let def = spanned.get_ref();
        if !known_label(&def.label) {
            problems.push(problem(
                line,
                format!("rule for {:?}: unknown label {:?}", def.path, def.label),
            ));
        }
        let pattern = parse_path(&def.path)
            .map_err(|e| problems.push(problem(line, e)))
            .ok();
        let treatment = match def.treatment.as_deref().map(str::parse::<Treatment>) {
            Some(Err(e)) => {
                problems.push(problem(line, format!("rule for {:?}: {e}", def.path)));
                None
            }
            Some(Ok(t)) => Some(t),
            None => None,
        };
        if let Some(pattern) = pattern {
            rules.push(PathRule {
                pattern,
                object: def.object.clone(),
                label: def.label.clone(),
                treatment,
                origin: format!("{CLASSIFICATION_FILE}:{line}"),
            });
        }
    }
    let mut detectors = Vec::new();
    let mut custom_patterns: Vec<String> = Vec::new();
    let mut custom_lines: Vec<usize> = Vec::new();
    // (builtin name or regex) → the line of the detector that has it: a
    // second one like it finds the same spans, and the first always wins.
    let mut first_with_pattern: HashMap<String, usize> = HashMap::new();
    for spanned in &file.detectors {
        let line = line_of(text, spanned.span().start);
        let def = spanned.get_ref();
        if let Some(key) = def.builtin.as_ref().or(def.regex.as_ref()) {
            if let Some(first) = first_with_pattern.get(key) {
                problems.push(problem(
                    line,
                    format!(
                        "detector {key:?} repeats the one at line {first}, which always \
                         matches first: this one can never match"
                    ),
                ));
                continue;
            }
            first_with_pattern.insert(key.clone(), line);
        }
        if !known_label(&def.label) {
            problems.push(problem(
                line,
                format!("detector: unknown label {:?}", def.label),
            ));
        }
        let pattern = match (&def.builtin, &def.regex) {
            (Some(name), None) => match Builtin::from_name(name) {
                Some(builtin) => Pattern::Builtin(builtin),
                None => {
                    let known: Vec<&str> = Builtin::ALL.iter().map(|b| b.name()).collect();
                    problems.push(problem(
                        line,
                        format!(
                            "unknown builtin detector {name:?}; known: {}",
                            known.join(", ")
                        ),
                    ));
                    continue;
                }
            },
            (None, Some(regex)) => match regex::Regex::new(regex) {
                Ok(compiled) if never_matches(regex).is_none() => {
                    custom_patterns.push(regex.clone());
                    custom_lines.push(line);
                    Pattern::Custom(compiled)
                }
                Ok(_) => {
                    let why = never_matches(regex).unwrap_or_default();
                    problems.push(problem(line, format!("detector regex {regex:?} {why}")));
                    continue;
                }
                Err(e) => {
                    problems.push(problem(
                        line,
                        format!("detector regex does not compile: {e}"),
                    ));
                    continue;
                }
            },
            _ => {
                problems.push(problem(
                    line,
                    "a detector needs exactly one of `builtin` and `regex`".into(),
                ));
                continue;
            }
        };
        let name = def
            .name
            .clone()
            .or_else(|| def.builtin.clone())
            .unwrap_or_else(|| format!("detector@{line}"));
        detectors.push(Detector {
            name,
            pattern,
            label: def.label.clone(),
        });
    }
    // Each regex fits the size limit alone; together, as the prefilter
    // set, they may not: a problem at the last one, never a panic.
    let mut custom_prefilter = None;
    if !custom_patterns.is_empty() {
        match RegexSet::new(&custom_patterns) {
            Ok(set) => custom_prefilter = Some(set),
            Err(e) => problems.push(problem(
                custom_lines.last().copied().unwrap_or(0),
                format!(
                    "the detector regexes (lines {}) together are too large to match at once \
                     ({e}); simplify or merge some",
                    custom_lines
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )),
        }
    }
    if problems.is_empty() {
        let mut format_hints = HashMap::new();
        for (name, label) in &labels {
            if let Some(Format::Builtin(builtin)) = label.format {
                format_hints.insert(name.clone(), builtin);
            }
        }
        for detector in &detectors {
            if let Pattern::Builtin(builtin) = detector.pattern {
                format_hints
                    .entry(detector.label.clone())
                    .or_insert(builtin);
            }
        }
        for (name, label) in labels.iter_mut() {
            if label.format.is_none() {
                label.format = format_hints.get(name).copied().map(Format::Builtin);
            }
        }
        Ok(Classification {
            levels,
            labels,
            rules,
            detectors,
            custom_prefilter,
            format_hints,
            masking_off,
        })
    } else {
        Err(problems)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn steps(path: &[&str]) -> Vec<Step<'static>> {
        path.iter()
            .map(|s| match s.parse::<usize>() {
                Ok(i) => Step::Index(i),
                Err(_) => Step::Key(Box::leak(s.to_string().into_boxed_str())),
            })
            .collect()
    }

    #[test]
    fn path_globs() {
        let check = |pattern: &str, path: &[&str], expect: bool| {
            assert_eq!(
                path_matches(&parse_path(pattern).unwrap(), &steps(path)),
                expect,
                "{pattern} vs {path:?}"
            );
        };
        check("phone", &["phone"], true);
        check("customer.phone", &["customer", "phone"], true);
        check("**.phone", &["a", "b", "phone"], true);
        check("**.phone", &["phone"], true);
        check("contacts[*].phone", &["contacts", "3", "phone"], true);
        check("contacts[1].phone", &["contacts", "3", "phone"], false);
        check("*.phone", &["a", "b", "phone"], false);
        assert!(object_matches("crm.*", "crm.customers") && !object_matches("crm.*", "hr.x"));
    }

    #[test]
    fn label_formats_validate_values() {
        let text = "levels = [\"internal\"]\n[labels]\nbadge = { level = \"internal\", default = \"mask\", format = \"regex:B-[0-9]{4}\" }\n\
                    mobile = { level = \"internal\", default = \"mask\", format = \"cn_mobile\" }\n";
        let classification = parse(text).unwrap();
        let accepts = |label: &str, value: &str| {
            classification.labels[label]
                .format
                .as_ref()
                .unwrap()
                .accepts(value)
        };
        assert!(accepts("badge", "B-1234"));
        assert!(!accepts("badge", "B-1234x"), "the whole value must match");
        assert!(accepts("mobile", " 13812345678 "));
        assert!(!accepts("mobile", "13812345678 13912345678"));
        assert!(!accepts("mobile", "1381234567"));
        assert_eq!(classification.format_hints["mobile"], Builtin::CnMobile);

        let problems = parse(
            "[labels]\nx = { level = \"internal\", default = \"mask\", format = \"phone\" }\n",
        )
        .unwrap_err();
        assert!(
            problems[0]
                .to_string()
                .starts_with("classification.toml:2: label \"x\": unknown format \"phone\""),
            "{problems:?}"
        );
    }

    /// A detector that can never label a value protects nothing while the
    /// operator believes it does: refused at load, naming its line.
    #[test]
    fn detectors_that_can_never_match_are_refused() {
        let text = "[labels]\nphone = { level = \"confidential\", default = \"mask\" }\n\
                    [[detectors]]\nregex = '[^\\s\\S]'\nlabel = \"phone\"\n\
                    [[detectors]]\nregex = 'x{0}'\nlabel = \"phone\"\n\
                    [[detectors]]\nbuiltin = \"cn_mobile\"\nlabel = \"phone\"\n\
                    [[detectors]]\nbuiltin = \"cn_mobile\"\nlabel = \"phone\"\n\
                    [[detectors]]\nregex = 'A-[0-9]*'\nlabel = \"phone\"\n";
        let problems: Vec<String> = parse(text)
            .unwrap_err()
            .iter()
            .map(|p| p.to_string())
            .collect();
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(
            problems[0].starts_with(
                "classification.toml:3: detector regex \"[^\\\\s\\\\S]\" can never match anything"
            ),
            "{problems:?}"
        );
        assert!(
            problems[1].starts_with(
                "classification.toml:6: detector regex \"x{0}\" matches only the empty string"
            ),
            "{problems:?}"
        );
        assert!(
            problems[2].starts_with(
                "classification.toml:12: detector \"cn_mobile\" repeats the one at line 9"
            ),
            "{problems:?}"
        );
    }

    #[test]
    fn detectors_too_large_together_are_a_problem_not_a_panic() {
        // Each fits the regex size limit alone; the two as one set do not.
        let text = "[labels]\nphone = { level = \"confidential\", default = \"mask\" }\n\
                    [[detectors]]\nregex = '\\w{200}1'\nlabel = \"phone\"\n\
                    [[detectors]]\nregex = '\\w{200}2'\nlabel = \"phone\"\n";
        let problems: Vec<String> = parse(text)
            .unwrap_err()
            .iter()
            .map(|p| p.to_string())
            .collect();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(
            problems[0].starts_with("classification.toml:6: the detector regexes (lines 3, 6)"),
            "{problems:?}"
        );
    }

    #[test]
    fn problems_name_their_line() {
        let text = "[labels]\nphone = { level = \"confidential\", default = \"mask\" }\nid = { level = \"top\", default = \"mask\" }\n\
                    [[rules]]\npath = \"a.b\"\nlabel = \"nope\"\n[[detectors]]\nregex = \"(\"\nlabel = \"phone\"\n";
        let problems: Vec<String> = parse(text)
            .unwrap_err()
            .iter()
            .map(|p| p.to_string())
            .collect();
        assert_eq!(problems.len(), 3, "{problems:?}");
        assert!(
            problems[0].starts_with("classification.toml:3: label \"id\": unknown level \"top\""),
            "{problems:?}"
        );
        assert!(
            problems[1]
                .starts_with("classification.toml:4: rule for \"a.b\": unknown label \"nope\""),
            "{problems:?}"
        );
        assert!(
            problems[2].starts_with("classification.toml:7: detector regex does not compile"),
            "{problems:?}"
        );
    }
}
