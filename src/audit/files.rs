//! How the writer touches the audit directory: one writer per directory
//! (an exclusive lock naming its holder), files opened only if they are
//! regular files reached without following a symlink, files 0640 and
//! directories 0750 so the trail is not world-readable.
//!
//! Why: whoever can plant a symlink in the directory could otherwise make
//! vigil truncate and append to a file of their choosing, and two vigils on
//! one directory would fork the chain for good.

use std::{
    fs::{DirBuilder, File, OpenOptions, TryLockError},
    io::{Read, Seek, Write},
    os::unix::fs::{DirBuilderExt, OpenOptionsExt},
    path::Path,
};

pub const FILE_MODE: u32 = 0o640;
pub const DIR_MODE: u32 = 0o750;
/// Held locked by the writer for as long as it runs; holds its pid.
pub const LOCK_FILE: &str = "vigil.lock";

/// Creates `dir` (and missing parents) with [`DIR_MODE`].
pub fn create_dir(dir: &Path) -> std::io::Result<()> {
    DirBuilder::new().recursive(true).mode(DIR_MODE).create(dir)
}

fn options() -> OpenOptions {
    let mut options = OpenOptions::new();
    options.mode(FILE_MODE).custom_flags(libc::O_NOFOLLOW);
    options
}

/// Opens (creating) `path` for appending.
pub fn open_append(path: &Path) -> std::io::Result<File> {
    checked(options().read(true).append(true).create(true).open(path))
}

/// Creates or replaces `path` with `contents`.
pub fn write_whole(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let mut file = checked(options().write(true).create(true).truncate(true).open(path))?;
    file.write_all(contents)
}

/// Refuses what is not a regular file, and says so when a symlink was.
fn checked(opened: std::io::Result<File>) -> std::io::Result<File> {
    let file = opened.map_err(|e| {
        if e.raw_os_error() == Some(libc::ELOOP) {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "is a symbolic link; vigil writes only regular files in its audit directory",
            )
        } else {
            e
        }
    })?;
    if !file.metadata()?.is_file() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "is not a regular file",
        ));
    }
    Ok(file)
}

/// The exclusive hold on an audit directory; released when dropped.
#[derive(Debug)]
pub struct DirLock {
    _file: File,
}

/// Takes the directory's lock, or says which process holds it.
pub fn lock(dir: &Path) -> Result<DirLock, String> {
    let path = dir.join(LOCK_FILE);
    let mut file = checked(options().read(true).write(true).create(true).open(&path))
        .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
    match file.try_lock() {
        Ok(()) => {
            let pid = format!("{}\n", std::process::id());
            file.set_len(0)
                .and_then(|()| file.rewind())
                .and_then(|()| file.write_all(pid.as_bytes()))
                .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
            Ok(DirLock { _file: file })
        }
        Err(TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = holder.trim();
            let holder = if holder.is_empty() {
                "another process".to_owned()
            } else {
                format!("another vigil (pid {holder})")
            };
            Err(format!(
                "{holder} is writing this audit directory; two writers would fork the chain. \
                 Stop it, or give this vigil its own --audit-dir"
            ))
        }
        Err(TryLockError::Error(e)) => Err(format!("cannot lock {}: {e}", path.display())),
    }
}
