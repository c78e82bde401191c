//! Output files that appear whole or not at all.
//!
//! A command that fails half-way (bad options found late, a full disk, an
//! input that breaks) must not leave a file that looks like a finished
//! capture, book or summary. [`OutputFile`] writes under a hidden temporary
//! name (`.NAME.PID-N.part`) in the target's directory and renames it into
//! place on [`OutputFile::commit`]; dropped uncommitted, the temporary file
//! is removed.
//!
//! A path that already exists and is not a regular file (a FIFO,
//! `/dev/stdout`, `/dev/null`) is written in place: renaming over it would
//! replace the device, and a stream cannot be taken back anyway.

use std::ffi::OsString;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::CaptureError;

/// Where the bytes go until [`OutputFile::commit`].
#[derive(Debug)]
enum Target {
    /// A temporary file beside the destination, renamed onto it at the end.
    Staged {
        file: File,
        staging: PathBuf,
        /// The destination, symbolic links resolved.
        destination: PathBuf,
    },
    /// The destination itself (not a regular file).
    InPlace(File),
}

/// A file that appears at its path only once committed.
#[derive(Debug)]
pub struct OutputFile {
    target: Target,
    /// The path as the user gave it, for messages.
    path: PathBuf,
    committed: bool,
}

impl OutputFile {
    /// Starts writing `path`: a temporary file in the same directory (so
    /// the final rename cannot cross file systems), created as
    /// `File::create` would create the file itself.
    pub fn create(path: &Path) -> Result<Self, CaptureError> {
        let io_err = |source| CaptureError::Io {
            path: path.to_owned(),
            source,
        };
        // None: no file yet; Some(false): a FIFO, a device, a directory.
        let regular = std::fs::metadata(path).ok().map(|m| m.is_file());
        if regular == Some(false) {
            let file = OpenOptions::new().write(true).open(path).map_err(io_err)?;
            return Ok(Self {
                target: Target::InPlace(file),
                path: path.to_owned(),
                committed: false,
            });
        }
        // An existing regular file, maybe behind a symbolic link: replace
        // the file the link points to, not the link.
        let destination = match regular {
            Some(_) => std::fs::canonicalize(path).map_err(io_err)?,
            None => path.to_owned(),
        };
        let name = destination.file_name().ok_or_else(|| {
            io_err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the path names no file",
            ))
        })?;
        let dir = match destination.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        let mut attempt = 0u32;
        loop {
            // Hidden, marked as partial, unique to this process.
            let mut staged = OsString::from(".");
            staged.push(name);
            staged.push(format!(".{}-{attempt}.part", std::process::id()));
            let staging = dir.join(staged);
            match OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&staging)
            {
                Ok(file) => {
                    return Ok(Self {
                        target: Target::Staged {
                            file,
                            staging,
                            destination,
                        },
                        path: path.to_owned(),
                        committed: false,
                    });
                }
                // Left by a killed run that had this process id.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempt < 100 => {
                    attempt += 1;
                }
                Err(e) => return Err(io_err(e)),
            }
        }
    }

    /// The path the file will have.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Puts the finished file in place (renames the temporary file onto the
    /// destination).
    pub fn commit(mut self) -> Result<(), CaptureError> {
        if let Target::Staged {
            staging,
            destination,
            ..
        } = &self.target
        {
            std::fs::rename(staging, destination).map_err(|source| CaptureError::Io {
                path: self.path.clone(),
                source,
            })?;
        }
        self.committed = true;
        Ok(())
    }

    fn file(&mut self) -> &mut File {
        match &mut self.target {
            Target::Staged { file, .. } | Target::InPlace(file) => file,
        }
    }
}

impl Drop for OutputFile {
    fn drop(&mut self) {
        if let Target::Staged { staging, .. } = &self.target
            && !self.committed
        {
            // Nothing to report to from a drop; at worst a hidden `.part`
            // file stays.
            let _ = std::fs::remove_file(staging);
        }
    }
}

impl Write for OutputFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file().write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file().flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names_in(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn the_file_appears_only_when_committed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.pcap");
        let mut out = OutputFile::create(&path).unwrap();
        out.write_all(b"half").unwrap();
        assert!(!path.exists(), "nothing at the path before the commit");
        drop(out);
        assert!(
            names_in(dir.path()).is_empty(),
            "an uncommitted file leaves nothing behind"
        );

        let mut out = OutputFile::create(&path).unwrap();
        out.write_all(b"whole").unwrap();
        out.commit().unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"whole");
        assert_eq!(names_in(dir.path()), ["out.pcap"]);
    }

    #[test]
    fn a_failed_rewrite_keeps_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.pcap");
        std::fs::write(&path, b"old").unwrap();
        let mut out = OutputFile::create(&path).unwrap();
        out.write_all(b"new but unfinished").unwrap();
        drop(out);
        assert_eq!(std::fs::read(&path).unwrap(), b"old");
    }

    #[test]
    fn a_symbolic_link_keeps_pointing_at_the_new_file() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real.pcap");
        let link = dir.path().join("link.pcap");
        std::fs::write(&real, b"old").unwrap();
        std::os::unix::fs::symlink(&real, &link).unwrap();
        let mut out = OutputFile::create(&link).unwrap();
        out.write_all(b"new").unwrap();
        out.commit().unwrap();
        assert!(link.symlink_metadata().unwrap().file_type().is_symlink());
        assert_eq!(std::fs::read(&real).unwrap(), b"new");
    }

    #[test]
    fn a_device_is_written_in_place() {
        use std::os::unix::fs::FileTypeExt;
        let mut out = OutputFile::create(Path::new("/dev/null")).unwrap();
        out.write_all(b"gone").unwrap();
        out.commit().unwrap();
        assert!(
            std::fs::metadata("/dev/null")
                .unwrap()
                .file_type()
                .is_char_device()
        );
    }

    #[test]
    fn a_missing_directory_is_an_error_naming_the_path() {
        let err = OutputFile::create(Path::new("/nonexistent-dir/out.pcap")).unwrap_err();
        assert!(
            err.to_string().contains("/nonexistent-dir/out.pcap"),
            "{err}"
        );
    }
}
