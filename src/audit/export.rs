//! Reading the audit trail back out for auditors and log pipelines:
//! filtered, in chain order, as the exact JSONL lines (so an export can be
//! verified independently) or as CSV.

use std::{io::Write, path::Path, time::SystemTime};

use super::{
    privacy::Redactor,
    record::{self, CheckedLine, Record},
    verify::{audit_files, walk, VerifyError},
};

#[derive(Debug, Clone, Default)]
pub struct ExportFilter {
    pub since: Option<SystemTime>,
    pub until: Option<SystemTime>,
    pub subject: Option<String>,
    pub allowed: Option<bool>,
    pub from_seq: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Jsonl,
    Csv,
}

impl ExportFilter {
    /// Parses the textual filters of the CLI and the gRPC request.
    pub fn parse(
        since: Option<&str>,
        until: Option<&str>,
        subject: Option<String>,
        allowed: Option<&str>,
        from_seq: Option<u64>,
    ) -> Result<ExportFilter, String> {
        let time = |s: &str| {
            humantime::parse_rfc3339_weak(s).map_err(|e| {
                format!("{s:?} is not an RFC 3339 time like 2026-01-31T12:00:00Z ({e})")
            })
        };
        let allowed = match allowed {
            None | Some("") => None,
            Some("true") => Some(true),
            Some("false") => Some(false),
            Some(other) => return Err(format!("allowed must be true or false, got {other:?}")),
        };
        Ok(ExportFilter {
            since: since.filter(|s| !s.is_empty()).map(time).transpose()?,
            until: until.filter(|s| !s.is_empty()).map(time).transpose()?,
            subject: subject.filter(|s| !s.is_empty()),
            allowed,
            from_seq: from_seq.filter(|&n| n > 0),
        })
    }

    pub fn matches(&self, record: &Record, redactor: &Redactor) -> bool {
        if self.from_seq.is_some_and(|from| record.seq < from) {
            return false;
        }
        if let Some(allowed) = self.allowed {
            if record.allowed != Some(allowed) {
                return false;
            }
        }
        if let Some(subject) = &self.subject {
            if !record
                .sub
                .as_deref()
                .is_some_and(|written| redactor.subject_matches(written, subject))
            {
                return false;
            }
        }
        if self.since.is_some() || self.until.is_some() {
            let Ok(ts) = humantime::parse_rfc3339_weak(&record.ts) else {
                return false;
            };
            if self.since.is_some_and(|since| ts < since)
                || self.until.is_some_and(|until| ts > until)
            {
                return false;
            }
        }
        true
    }
}

/// Visits each matching record with its exact stored line.
pub fn for_each<F>(
    dir: &Path,
    filter: &ExportFilter,
    redactor: &Redactor,
    mut visit: F,
) -> Result<(), VerifyError>
where
    F: FnMut(&[u8], &CheckedLine) -> Result<(), String>,
{
    let files = audit_files(dir)?;
    walk(&files, |_, _, _, line, fields| {
        // `walk` has checked the hash; only the JSON is left to read.
        let checked = record::parse(line, fields).map_err(|e| e.to_string())?;
        if filter.matches(&checked.record, redactor) {
            visit(line, &checked)?;
        }
        Ok(())
    })?;
    Ok(())
}

pub const CSV_HEADER: &str = "seq,ts,kind,id,sub,obj,act,dom,allowed,reason,pv,prev,hash";

fn csv_field(out: &mut String, value: &str) {
    if value.contains([',', '"', '\n', '\r']) {
        out.push('"');
        out.push_str(&value.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(value);
    }
}

pub fn csv_row(checked: &CheckedLine) -> String {
    let r = &checked.record;
    let hash = record::hash_text(&checked.hash);
    let fields = [
        r.seq.to_string(),
        r.ts.clone(),
        r.kind.to_string(),
        r.id.clone().unwrap_or_default(),
        r.sub.clone().unwrap_or_default(),
        r.obj.clone().unwrap_or_default(),
        r.act.clone().unwrap_or_default(),
        r.dom.clone().unwrap_or_default(),
        r.allowed.map(|a| a.to_string()).unwrap_or_default(),
        r.reason.clone().unwrap_or_default(),
        r.pv.clone().unwrap_or_default(),
        r.prev.clone(),
        hash,
    ];
    let mut out = String::with_capacity(256);
    for (i, field) in fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        if CALLER_TEXT.contains(&i) {
            csv_field(&mut out, &neutralize_formula(field));
        } else {
            csv_field(&mut out, field);
        }
    }
    out
}

/// Columns whose text comes from callers or policy files (subject, object,
/// action, domain, reason): what a spreadsheet must not run.
const CALLER_TEXT: [usize; 5] = [4, 5, 6, 7, 9];

/// OWASP's rule against CSV injection: a cell a spreadsheet would read as a
/// formula (leading `=`, `+`, `-`, `@`, tab or carriage return) gets a
/// leading `'`, so it shows as text. Only caller-supplied columns are
/// touched; seq, time, hashes and ids stay byte-exact.
fn neutralize_formula(value: &str) -> std::borrow::Cow<'_, str> {
    if value.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        std::borrow::Cow::Owned(format!("'{value}"))
    } else {
        std::borrow::Cow::Borrowed(value)
    }
}

/// Writes the export to `out` (the CLI's stdout).
pub fn export(
    dir: &Path,
    filter: &ExportFilter,
    redactor: &Redactor,
    format: Format,
    out: &mut dyn Write,
) -> Result<u64, VerifyError> {
    let mut count = 0;
    let io_error = |e: std::io::Error| e.to_string();
    if format == Format::Csv {
        writeln!(out, "{CSV_HEADER}").map_err(|source| VerifyError::Io {
            path: "stdout".into(),
            source,
        })?;
    }
    for_each(dir, filter, redactor, |line, checked| {
        count += 1;
        match format {
            Format::Jsonl => {
                out.write_all(line).map_err(io_error)?;
                out.write_all(b"\n").map_err(io_error)
            }
            Format::Csv => writeln!(out, "{}", csv_row(checked)).map_err(io_error),
        }
    })?;
    Ok(count)
}
