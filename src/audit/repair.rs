//! Crash repair: a crash can only damage the last writes of the active
//! segment. On start-up the writer finds the chain head at the end of the
//! newest segment; a final line that is incomplete or fails its hash is cut
//! off, kept beside the log as `.torn-OFFSET`, and described by a
//! `recovery` record.

use std::{
    fs::File,
    io::{Read, Seek, SeekFrom},
    path::{Path, PathBuf},
    sync::Arc,
    time::Instant,
};

use super::{
    error::AuditError,
    files,
    record::{self, kind, Record, GENESIS},
    segment::Tail,
};

/// Opens a segment and finds the chain head at its end. A final line that
/// is incomplete or fails its hash is what a crash mid-write leaves: it is
/// cut off (kept beside the log for inspection) and a recovery record
/// describing the cut is returned for writing.
pub(super) fn open_tail(index: u64, path: &Path) -> Result<(Tail, Option<Record>), AuditError> {
    let corrupt = |offset: u64, message: String| AuditError::Corrupt {
        file: path.to_owned(),
        offset,
        message,
    };
    let mut file = files::open_append(path).map_err(|e| corrupt(0, format!("cannot open: {e}")))?;
    let len = file
        .metadata()
        .map_err(|e| corrupt(0, e.to_string()))?
        .len();
    let tail = |file, len, seq, hash| Tail {
        index,
        path: path.to_owned(),
        file: Arc::new(file),
        len,
        seq,
        hash,
        opened: Instant::now(),
    };
    if len == 0 {
        return Ok((tail(file, 0, 0, GENESIS), None));
    }

    let (start, window) =
        read_window(&mut file, len).map_err(|(offset, e)| corrupt(offset, e.to_string()))?;
    if let Some((line_end, fields)) = last_intact_line(&window, start == 0) {
        let good_len = start + line_end as u64;
        let recovery = if good_len < len {
            Some(cut_tail(
                path,
                &mut file,
                &window[line_end..],
                good_len,
                len,
                fields.seq,
            )?)
        } else {
            None
        };
        return Ok((tail(file, good_len, fields.seq, fields.hash), recovery));
    }
    if start == 0 && window.iter().all(|&b| b != b'\n') {
        // Not a single complete line: the crash hit the very first record.
        let recovery = cut_tail(path, &mut file, &window, 0, len, 0)?;
        return Ok((tail(file, 0, 0, GENESIS), Some(recovery)));
    }
    Err(corrupt(
        start,
        "no intact record at the end of the file; this is not damage a crash leaves. \
         Run `vigil audit verify` and move the file aside to start a new log"
            .to_owned(),
    ))
}

/// A crash can only damage the last writes: the last 4 MiB of a segment
/// (all of it when smaller), and where that window starts.
fn read_window(file: &mut File, len: u64) -> Result<(u64, Vec<u8>), (u64, std::io::Error)> {
    const WINDOW: u64 = 4 << 20;
    let start = len.saturating_sub(WINDOW);
    let mut window = Vec::with_capacity((len - start) as usize);
    file.seek(SeekFrom::Start(start)).map_err(|e| (start, e))?;
    file.read_to_end(&mut window).map_err(|e| (start, e))?;
    Ok((start, window))
}

/// The last complete line of `window` that checks against its own hash:
/// where it ends (after its newline) and its chain fields. `whole_file`
/// says the window starts at the file's start, so its first line is
/// complete too.
fn last_intact_line(window: &[u8], whole_file: bool) -> Option<(usize, record::ChainFields)> {
    let mut end = window.iter().rposition(|&b| b == b'\n').map(|i| i + 1);
    while let Some(line_end) = end {
        let line_start = window[..line_end - 1]
            .iter()
            .rposition(|&b| b == b'\n')
            .map(|i| i + 1)
            .or(whole_file.then_some(0))?;
        if let Ok(fields) = record::check(&window[line_start..line_end - 1]) {
            return Some((line_end, fields));
        }
        end = (line_start > 0).then_some(line_start);
    }
    None
}

/// The seq of the last record of a closed segment, read without touching
/// it; `None` unless the segment ends with an intact record (retention never
/// prunes what verification would flag).
pub(super) fn closed_segment_last_seq(path: &Path) -> Option<u64> {
    let mut file = File::open(path).ok()?;
    let len = file.metadata().ok()?.len();
    let (start, window) = read_window(&mut file, len).ok()?;
    let (line_end, fields) = last_intact_line(&window, start == 0)?;
    (line_end == window.len()).then_some(fields.seq)
}

fn cut_tail(
    path: &Path,
    file: &mut File,
    torn: &[u8],
    good_len: u64,
    len: u64,
    last_seq: u64,
) -> Result<Record, AuditError> {
    let corrupt = |message: String| AuditError::Corrupt {
        file: path.to_owned(),
        offset: good_len,
        message,
    };
    let mut saved = path.as_os_str().to_owned();
    saved.push(format!(".torn-{good_len}"));
    let saved = PathBuf::from(saved);
    files::write_whole(&saved, torn)
        .map_err(|e| corrupt(format!("cannot save the torn tail: {e}")))?;
    file.set_len(good_len)
        .map_err(|e| corrupt(format!("cannot truncate the torn tail: {e}")))?;
    file.sync_all()
        .map_err(|e| corrupt(format!("cannot sync after truncating: {e}")))?;
    tracing::warn!(file = %path.display(), offset = good_len, bytes = len - good_len, "audit log: cut a torn final record left by a crash");
    let mut recovery = Record::new(kind::RECOVERY);
    recovery.reason = Some("torn final record left by an interrupted write was cut off".to_owned());
    recovery.detail = Some(
        serde_json::json!({
            "file": path.file_name().map(|n| n.to_string_lossy().into_owned()),
            "after_seq": last_seq,
            "offset": good_len,
            "bytes": len - good_len,
            "saved_to": saved.file_name().map(|n| n.to_string_lossy().into_owned()),
        })
        .into(),
    );
    Ok(recovery)
}
