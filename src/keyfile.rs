//! Writing key material to disk: created new, readable by the owner only.

use std::{io::Write, path::Path};

/// Creates `path` with mode 0600 and writes `contents`; fails if it exists,
/// so a key is never silently replaced.
pub fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}
