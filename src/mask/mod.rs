//! Field-level protection: classify each field of a record (path rules
//! first, then content detectors, also inside free text) and apply the
//! treatment the asker is entitled to.
//!
//! Pure: no IO, no policy files. The caller says what the asker may see of
//! each label (a [`Visibility`] closure backed by the Casbin policy) and
//! hands in the keyring.
//!
//! Architecture invariant (fail closed): a value that a rule or detector
//! labels is shown in clear only when the label's default is `clear` or the
//! policy grants the asker `clear` for it. Clear values never appear in
//! errors or field actions.

pub mod detect;
pub mod rules;
pub mod treat;

pub use rules::{Classification, Label};
use rules::{Segment, Step};
pub use treat::Treatment;

mod json;
mod unmask;
pub use json::*;
pub use unmask::*;

use crate::{
    keys::{Keyring, Opened, Seal},
    proto::json::{value::Kind, ListValue, Struct, Value},
};
use detect::{Builtin, Pattern};

/// What was done to one field (or one span of free text). Never holds a
/// value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldAction {
    pub record_index: usize,
    pub path: String,
    pub label: String,
    pub treatment: String,
    /// Why: the classification rule or detector, and the grant or default
    /// that chose the treatment.
    pub rule: String,
    /// Whether the value is a valid value of its label's format (`None`:
    /// the label has none). Never the value itself.
    pub valid: Option<bool>,
    /// The reveal quota that was spent, so this value got a weaker
    /// treatment than its grant.
    pub quota: Option<String>,
}

impl FieldAction {
    /// The value's validity as answers spell it: `valid`, `invalid`, or
    /// empty when its label has no format.
    pub fn validity(&self) -> &'static str {
        match self.valid {
            Some(true) => "valid",
            Some(false) => "invalid",
            None => "",
        }
    }
}

/// The treatment the asker gets for a label and the grant behind it; `None`
/// when no grant covers the label (its default applies).
pub type Grant = Option<(Treatment, String)>;

/// Resolves grants for labels; `grant` and `weaker` are called at most
/// once per label per call, `reveal` once per value about to be shown in
/// clear.
pub trait Visibility {
    fn grant(&mut self, label: &Label) -> Grant;

    /// Whether one more value of `label` may be shown in clear; `Err`
    /// names the reveal quota that is spent.
    fn reveal(&mut self, _label: &Label) -> Result<(), String> {
        Ok(())
    }

    /// The best grant below `see:clear`, for values past a reveal quota.
    fn weaker(&mut self, _label: &Label) -> Grant {
        None
    }
}

impl<F: FnMut(&Label) -> Grant> Visibility for F {
    fn grant(&mut self, label: &Label) -> Grant {
        self(label)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MaskError {
    #[error("records[{record}] nests deeper than {limit} levels at {path}")]
    TooDeep {
        record: usize,
        path: String,
        limit: usize,
    },
    #[error("records[{record}]: the call visits more than {limit} values (max_mask_values); send fewer or smaller records")]
    OverBudget { record: usize, limit: usize },
}

#[derive(Clone)]
enum OwnedStep {
    Key(String),
    Index(usize),
}

fn render_path(path: &[OwnedStep]) -> String {
    let mut out = String::new();
    for step in path {
        match step {
            OwnedStep::Key(key) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(key);
            }
            OwnedStep::Index(i) => {
                out.push('[');
                out.push_str(&i.to_string());
                out.push(']');
            }
        }
    }
    out
}

/// How a field action names an object key it treated: its place, not its
/// text.
const KEY_PLACE: &str = "(key)";

/// Masks records for one asker.
pub struct Masker<'a, V: Visibility> {
    classification: &'a Classification,
    object: &'a str,
    /// The domain of the call: encrypted values are sealed for it and for
    /// `object`, and open only for the same pair.
    domain: &'a str,
    keys: &'a Keyring,
    visibility: V,
    max_depth: usize,
    /// Values (and treated spans) this call may still visit: bounds one
    /// call's work whatever its records hold.
    budget: usize,
    max_values: usize,
    /// Per label: the granted treatment and the one past its reveal quota.
    resolved: foldhash::HashMap<String, Resolved>,
    rules_for_object: Vec<&'a rules::PathRule>,
}

/// What a label gets for this asker, decided once per call.
struct Resolved {
    /// The granted treatment (none: the default applies) and why.
    granted: Option<Treatment>,
    why: String,
    /// Past a reveal quota: the next weaker treatment and why (resolved
    /// when a quota is first spent).
    weaker: Option<(Treatment, String)>,
}

enum Fate {
    Keep,
    Drop,
}

impl<'a, V: Visibility> Masker<'a, V> {
    pub fn new(
        classification: &'a Classification,
        object: &'a str,
        keys: &'a Keyring,
        visibility: V,
        max_depth: usize,
    ) -> Self {
        let rules_for_object = classification
            .rules
            .iter()
            .filter(|r| {
                r.object
                    .as_deref()
                    .is_none_or(|pattern| rules::object_matches(pattern, object))
            })
            .collect();
        Masker {
            classification,
            object,
            domain: "",
            keys,
            visibility,
            max_depth,
            budget: usize::MAX,
            max_values: usize::MAX,
            resolved: foldhash::HashMap::with_capacity_and_hasher(
                classification.labels.len(),
                Default::default(),
            ),
            rules_for_object,
        }
    }

    pub fn object(&self) -> &str {
        self.object
    }

    /// Whether a field labelled `label` holds exactly one valid value of
    /// the label's format; objects and lists never do.
    fn validity(&self, label: &str, value: &Value) -> Option<bool> {
        let format = self.classification.labels.get(label)?.format.as_ref()?;
        Some(match &value.kind {
            Some(Kind::StringValue(text)) => format.accepts(text),
            Some(Kind::NumberValue(n)) if n.fract() == 0.0 && n.abs() < 1e19 => {
                format.accepts(&format!("{}", *n as i128))
            }
            Some(Kind::NumberValue(n)) => format.accepts(&n.to_string()),
            _ => false,
        })
    }

    /// A detected span is valid for its detector; against a label format
    /// of its own it is checked too.
    fn span_validity(&self, label: &str, piece: &str) -> Option<bool> {
        let format = self.classification.labels.get(label)?.format.as_ref()?;
        Some(format.accepts(piece))
    }

    /// The domain encrypted values are sealed for (with the object).
    pub fn with_domain(mut self, domain: &'a str) -> Self {
        self.domain = domain;
        self
    }

    fn seal<'s>(&'s self, label: &'s str) -> Seal<'s> {
        Seal {
            label,
            domain: self.domain,
            object: self.object,
        }
    }

    /// Limits the values (fields, list items, treated spans) this masker
    /// visits from now on, across every record it masks.
    pub fn with_budget(mut self, max_values: usize) -> Self {
        self.budget = max_values;
        self.max_values = max_values;
        self
    }

    /// A fresh budget, for a caller that masks one record per call (a
    /// JSONL stream).
    pub fn refill_budget(&mut self) {
        self.budget = self.max_values;
    }

    fn spend(&mut self, values: usize, record: usize) -> Result<(), MaskError> {
        match self.budget.checked_sub(values) {
            Some(left) => {
                self.budget = left;
                Ok(())
            }
            None => Err(MaskError::OverBudget {
                record,
                limit: self.max_values,
            }),
        }
    }

    /// The treatment for one field of `label` (grants resolved once per
    /// label), with its reason and, when a reveal quota turned a clear
    /// field into a weaker one, that quota. Shown in clear, the field
    /// spends one reveal per value it holds (`values`, asked only then):
    /// a list of six phone numbers is six reveals, not one.
    fn treatment(
        &mut self,
        label_name: &str,
        rule_default: Option<Treatment>,
        values: impl FnOnce() -> usize,
    ) -> (Treatment, &str, Option<String>) {
        let classification = self.classification;
        let Some(label) = classification.labels.get(label_name) else {
            // Validation guarantees labels exist; still fail closed.
            return (Treatment::Redact, "unknown label", None);
        };
        if !self.resolved.contains_key(label_name) {
            let (granted, why) = match self.visibility.grant(label) {
                Some((treatment, why)) if !why.is_empty() => (Some(treatment), why),
                _ => (None, format!("default for {label_name} (no grant)")),
            };
            self.resolved.insert(
                label_name.to_owned(),
                Resolved {
                    granted,
                    why,
                    weaker: None,
                },
            );
        }
        let resolved = &self.resolved[label_name];
        let treatment = resolved
            .granted
            .unwrap_or(rule_default.unwrap_or(label.default));
        if treatment != Treatment::Clear {
            return (treatment, &self.resolved[label_name].why, None);
        }
        let mut spent = None;
        for _ in 0..values().max(1) {
            if let Err(quota) = self.visibility.reveal(label) {
                // All or nothing: a field is shown whole or weakened whole.
                spent = Some(quota);
                break;
            }
        }
        let Some(quota) = spent else {
            return (treatment, &self.resolved[label_name].why, None);
        };
        if self.resolved[label_name].weaker.is_none() {
            // Past the quota nothing is clear: the next weaker grant, else
            // the label's default, else its format's mask.
            let weaker = match self.visibility.weaker(label) {
                Some((treatment, why)) if treatment != Treatment::Clear => (treatment, why),
                _ if label.default != Treatment::Clear => {
                    (label.default, format!("default for {label_name}"))
                }
                _ => (
                    Treatment::Mask {
                        keep_first: None,
                        keep_last: None,
                    },
                    format!("masked ({label_name}'s default is clear)"),
                ),
            };
            if let Some(resolved) = self.resolved.get_mut(label_name) {
                resolved.weaker = Some(weaker);
            }
        }
        match &self.resolved[label_name].weaker {
            Some((weaker, why)) => (*weaker, why, Some(quota)),
            None => (Treatment::Redact, "reveal quota spent", Some(quota)),
        }
    }

    /// The visibility this masker was built with, once it is done (its
    /// reveal counts, for instance).
    pub fn into_visibility(self) -> V {
        self.visibility
    }

    /// Masks one record in place, appending its field actions.
    pub fn mask(
        &mut self,
        index: usize,
        record: &mut Struct,
        actions: &mut Vec<FieldAction>,
    ) -> Result<(), MaskError> {
        let mut path = Vec::new();
        self.walk_struct(index, record, &mut path, 1, actions)
    }

    fn walk_struct(
        &mut self,
        index: usize,
        record: &mut Struct,
        path: &mut Vec<OwnedStep>,
        depth: usize,
        actions: &mut Vec<FieldAction>,
    ) -> Result<(), MaskError> {
        let mut dropped = Vec::new();
        for (position, (key, value)) in record.fields.iter_mut().enumerate() {
            // A key can hold a sensitive value too (`{"13912345678": …}`):
            // it is treated like a string value, renamed to its treated
            // form or dropped with its entry, before it names a path.
            if let Fate::Drop = self.treat_key(index, key, path, actions)? {
                dropped.push(position);
                continue;
            }
            path.push(OwnedStep::Key(key.clone()));
            if let Fate::Drop = self.walk(index, value, path, depth, actions)? {
                dropped.push(position);
            }
            path.pop();
        }
        for position in dropped.into_iter().rev() {
            record.fields.remove(position);
        }
        Ok(())
    }

    fn walk(
        &mut self,
        index: usize,
        value: &mut Value,
        path: &mut Vec<OwnedStep>,
        depth: usize,
        actions: &mut Vec<FieldAction>,
    ) -> Result<Fate, MaskError> {
        if depth > self.max_depth {
            return Err(MaskError::TooDeep {
                record: index,
                path: render_path(path),
                limit: self.max_depth,
            });
        }
        self.spend(1, index)?;
        // Path rules first: they label whole fields (or whole subtrees).
        // Most patterns end in a key (`**.mobile`): a field whose own
        // name differs is ruled out without walking the pattern.
        // A key may spell a path itself (`{"contact.phone": …}`, a
        // flattened record): it is read as that path, so it meets the rules
        // `contact.phone` would, never as a free name.
        let last = path.last().map(|step| match step {
            OwnedStep::Key(key) => Step::Key(key.rsplit('.').next().unwrap_or(key)),
            OwnedStep::Index(i) => Step::Index(*i),
        });
        let mut candidates = self
            .rules_for_object
            .iter()
            .filter(|r| match (r.pattern.last(), last) {
                (Some(Segment::Key(key)), Some(Step::Key(name))) => key == name,
                (Some(Segment::Key(_)), Some(Step::Index(_))) => false,
                _ => true,
            })
            .peekable();
        if candidates.peek().is_some() {
            let mut steps: Vec<Step<'_>> = Vec::with_capacity(path.len() + 1);
            for step in path.iter() {
                match step {
                    OwnedStep::Key(key) => steps.extend(key.split('.').map(Step::Key)),
                    OwnedStep::Index(i) => steps.push(Step::Index(*i)),
                }
            }
            if let Some(rule) = candidates
                .find(|r| rules::path_matches(&r.pattern, &steps))
                .copied()
            {
                let valid = self.validity(&rule.label, value);
                let classification = self.classification;
                let (treatment, why, quota) = self.treatment(&rule.label, rule.treatment, || {
                    values_in(classification, value)
                });
                actions.push(FieldAction {
                    record_index: index,
                    path: render_path(path),
                    label: rule.label.clone(),
                    treatment: treatment.to_string(),
                    rule: with_quota(format!("{}; {why}", rule.origin), &quota),
                    valid,
                    quota,
                });
                let hint = self.classification.format_hints.get(&rule.label).copied();
                return Ok(self.treat_value(value, treatment, &rule.label, hint));
            }
        }
        match value.kind.as_mut() {
            Some(Kind::StructValue(inner)) => {
                self.walk_struct(index, inner, path, depth + 1, actions)?;
                Ok(Fate::Keep)
            }
            Some(Kind::ListValue(ListValue { values })) => {
                let mut keep = Vec::with_capacity(values.len());
                for (i, item) in values.iter_mut().enumerate() {
                    path.push(OwnedStep::Index(i));
                    keep.push(matches!(
                        self.walk(index, item, path, depth + 1, actions)?,
                        Fate::Keep
                    ));
                    path.pop();
                }
                let mut flags = keep.into_iter();
                values.retain(|_| flags.next().unwrap_or(true));
                Ok(Fate::Keep)
            }
            Some(Kind::StringValue(text)) => {
                let text = std::mem::take(text);
                let before = actions.len();
                let (fate, result) = self.detect(index, text, path, actions);
                *value = result;
                self.spend(actions.len() - before, index)?;
                Ok(fate)
            }
            Some(Kind::NumberValue(number)) if number.fract() == 0.0 && number.abs() < 1e19 => {
                let digits = format!("{}", *number as i128);
                if digits.len() < 7 {
                    return Ok(Fate::Keep);
                }
                let original = value.clone();
                let (fate, result) = self.detect(index, digits.clone(), path, actions);
                // Untouched numbers stay numbers.
                *value = match &result.kind {
                    Some(Kind::StringValue(s)) if *s == digits => original,
                    _ => result,
                };
                Ok(fate)
            }
            _ => Ok(Fate::Keep),
        }
    }

    /// Applies a field-level treatment to any value.
    fn treat_value(
        &mut self,
        value: &mut Value,
        treatment: Treatment,
        label: &str,
        kind: Option<Builtin>,
    ) -> Fate {
        match treatment {
            Treatment::Clear => Fate::Keep,
            Treatment::Drop => Fate::Drop,
            Treatment::Null => {
                *value = Value {
                    kind: Some(Kind::NullValue(0)),
                };
                Fate::Keep
            }
            _ => {
                let text = match &value.kind {
                    Some(Kind::StringValue(s)) => s.clone(),
                    Some(Kind::NumberValue(n)) if n.fract() == 0.0 && n.abs() < 1e19 => {
                        format!("{}", *n as i128)
                    }
                    Some(Kind::NumberValue(n)) => n.to_string(),
                    Some(Kind::BoolValue(b)) => b.to_string(),
                    Some(Kind::NullValue(_)) | None => return Fate::Keep,
                    Some(_) => {
                        // A whole object or list: partial masks have no
                        // format to keep, so they redact.
                        let json = to_json(value).to_string();
                        if matches!(treatment, Treatment::Mask { .. } | Treatment::Generalize(_)) {
                            treat::REDACTED.to_owned()
                        } else {
                            treat::apply(treatment, &json, &self.seal(label), None, self.keys)
                                .unwrap_or_default()
                        }
                    }
                };
                let treated = match &value.kind {
                    Some(Kind::StructValue(_) | Kind::ListValue(_)) => text,
                    _ => treat::apply(treatment, &text, &self.seal(label), kind, self.keys)
                        .unwrap_or_default(),
                };
                *value = Value {
                    kind: Some(Kind::StringValue(treated)),
                };
                Fate::Keep
            }
        }
    }

    /// Runs the detectors over a string leaf.
    /// Detection on an object key. Its field actions point at the key's
    /// place in the parent (`parent.(key)`), never at its clear text.
    fn treat_key(
        &mut self,
        index: usize,
        key: &mut String,
        path: &mut Vec<OwnedStep>,
        actions: &mut Vec<FieldAction>,
    ) -> Result<Fate, MaskError> {
        if !detect::worth_scanning(key, self.classification.custom_prefilter.as_ref()) {
            return Ok(Fate::Keep);
        }
        let before = actions.len();
        path.push(OwnedStep::Key(KEY_PLACE.to_owned()));
        let (fate, treated) = self.detect(index, std::mem::take(key), path, actions);
        path.pop();
        self.spend(actions.len() - before, index)?;
        *key = match treated.kind {
            Some(Kind::StringValue(text)) => text,
            // A treatment that leaves no value (null) leaves no key either.
            _ => return Ok(Fate::Drop),
        };
        Ok(fate)
    }

    fn detect(
        &mut self,
        index: usize,
        text: String,
        path: &[OwnedStep],
        actions: &mut Vec<FieldAction>,
    ) -> (Fate, Value) {
        let classification = self.classification;
        let spans = detect::find_spans(
            &classification.detectors,
            classification.custom_prefilter.as_ref(),
            &text,
        );
        if spans.is_empty() {
            return (
                Fate::Keep,
                Value {
                    kind: Some(Kind::StringValue(text)),
                },
            );
        }
        let builtin = |detector: usize| match classification.detectors[detector].pattern {
            Pattern::Builtin(b) => Some(b),
            Pattern::Custom(_) => None,
        };
        let trimmed = text.trim();
        let whole = spans.len() == 1 && &text[spans[0].start..spans[0].end] == trimmed;
        if whole {
            let detector = &classification.detectors[spans[0].detector];
            let valid = self.span_validity(&detector.label, trimmed);
            let (treatment, why, quota) = self.treatment(&detector.label, None, || 1);
            actions.push(FieldAction {
                record_index: index,
                path: render_path(path),
                label: detector.label.clone(),
                treatment: treatment.to_string(),
                rule: with_quota(format!("detector {}; {why}", detector.name), &quota),
                valid,
                quota,
            });
            let mut value = Value {
                kind: Some(Kind::StringValue(text)),
            };
            let fate = self.treat_value(
                &mut value,
                treatment,
                &detector.label.clone(),
                builtin(spans[0].detector),
            );
            return (fate, value);
        }
        // Free text: treat each span, keep the rest.
        let mut out = String::with_capacity(text.len());
        let mut cursor = 0;
        for span in &spans {
            let detector = &classification.detectors[span.detector];
            let (treatment, why, quota) = self.treatment(&detector.label, None, || 1);
            let rule = with_quota(
                format!("detector {} in free text; {why}", detector.name),
                &quota,
            );
            let piece = &text[span.start..span.end];
            out.push_str(&text[cursor..span.start]);
            out.push_str(
                &treat::apply(
                    treatment,
                    piece,
                    &self.seal(&detector.label),
                    builtin(span.detector),
                    self.keys,
                )
                .unwrap_or_default(),
            );
            cursor = span.end;
            let valid = self.span_validity(&detector.label, piece);
            actions.push(FieldAction {
                record_index: index,
                path: format!("{}[{}..{}]", render_path(path), span.start, span.end),
                label: detector.label.clone(),
                treatment: treatment.to_string(),
                rule,
                valid,
                quota,
            });
        }
        out.push_str(&text[cursor..]);
        (
            Fate::Keep,
            Value {
                kind: Some(Kind::StringValue(out)),
            },
        )
    }
}

/// How many values a labelled field shows if it is shown in clear: each
/// scalar in it, and in text each value a detector finds (at least one).
fn values_in(classification: &Classification, value: &Value) -> usize {
    match &value.kind {
        None | Some(Kind::NullValue(_)) => 0,
        Some(Kind::BoolValue(_) | Kind::NumberValue(_)) => 1,
        Some(Kind::StringValue(text)) => detect::find_spans(
            &classification.detectors,
            classification.custom_prefilter.as_ref(),
            text,
        )
        .len()
        .max(1),
        Some(Kind::ListValue(list)) => list
            .values
            .iter()
            .map(|item| values_in(classification, item))
            .sum(),
        Some(Kind::StructValue(record)) => record
            .fields
            .iter()
            .map(|(_, item)| values_in(classification, item))
            .sum(),
    }
}

/// A field action's reason, naming the reveal quota that weakened it.
fn with_quota(rule: String, quota: &Option<String>) -> String {
    match quota {
        Some(quota) => format!("{rule}; reveal quota {quota} spent"),
        None => rule,
    }
}
