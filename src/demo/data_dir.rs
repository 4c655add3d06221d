//! The demo's data directory: private to its owner (0700, files 0600), since it holds the client
//! secret, the store's encryption key and the store; a temporary one is removed when the demo
//! stops, one given with `--data-dir` is kept so its connections survive a restart.

use std::fs::{DirBuilder, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use super::DemoError;
use crate::crypto::random_token;

/// The directory the demo keeps its files in; removes itself on drop when it is temporary.
pub(super) struct DataDir {
    path: PathBuf,
    temporary: bool,
}

fn problem(path: &Path, source: std::io::Error) -> DemoError {
    DemoError::DataDir {
        path: path.to_path_buf(),
        reason: source.to_string(),
    }
}

fn dir_builder() -> DirBuilder {
    let mut builder = DirBuilder::new();
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder
}

impl DataDir {
    /// The directory given with `--data-dir` (created 0700 when missing, kept on exit), or a new
    /// temporary one (removed on exit).
    pub(super) fn open(given: Option<PathBuf>) -> Result<Self, DemoError> {
        match given {
            Some(path) => Self::given(path),
            None => Self::temporary(),
        }
    }

    fn temporary() -> Result<Self, DemoError> {
        let path = std::env::temp_dir().join(format!("consent-broker-demo-{}", &random_token()[..12]));
        // Not recursive: a directory that already exists (someone else's) is refused, not reused.
        dir_builder().create(&path).map_err(|e| problem(&path, e))?;
        Ok(Self { path, temporary: true })
    }

    fn given(path: PathBuf) -> Result<Self, DemoError> {
        match std::fs::metadata(&path) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => {
                return Err(DemoError::DataDir {
                    path,
                    reason: "exists and is not a directory".into(),
                });
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                dir_builder()
                    .recursive(true)
                    .create(&path)
                    .map_err(|e| problem(&path, e))?;
            }
            Err(e) => return Err(problem(&path, e)),
        }
        Ok(Self { path, temporary: false })
    }

    /// The directory.
    pub(super) fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the directory is removed when the demo stops.
    pub(super) fn is_temporary(&self) -> bool {
        self.temporary
    }

    /// Opens `name` in the directory for writing, creating it readable by the owner only; an
    /// existing file (a reused `--data-dir`) is narrowed to 0600 too.
    fn open_private(&self, name: &str, truncate: bool) -> Result<(PathBuf, std::fs::File), DemoError> {
        let path = self.path.join(name);
        let mut options = OpenOptions::new();
        options.write(true).create(true).truncate(truncate);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let file = options.open(&path).map_err(|e| problem(&path, e))?;
        #[cfg(unix)]
        file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .map_err(|e| problem(&path, e))?;
        Ok((path, file))
    }

    /// Writes `name` (0600) with `contents`, replacing what it held.
    pub(super) fn write_private(&self, name: &str, contents: &[u8]) -> Result<PathBuf, DemoError> {
        let (path, mut file) = self.open_private(name, true)?;
        file.write_all(contents).map_err(|e| problem(&path, e))?;
        Ok(path)
    }

    /// Makes sure `name` exists and is 0600 without changing its contents: the store creates its
    /// file with the process's umask otherwise, and an empty file is a new store to it.
    pub(super) fn private_file(&self, name: &str) -> Result<PathBuf, DemoError> {
        Ok(self.open_private(name, false)?.0)
    }
}

impl Drop for DataDir {
    fn drop(&mut self) {
        if self.temporary
            && let Err(e) = std::fs::remove_dir_all(&self.path)
        {
            eprintln!(
                "could not remove the demo's data directory {}: {e}",
                self.path.display()
            );
        }
    }
}

#[cfg(all(test, unix))]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn a_temporary_directory_is_private_and_removed_on_drop() {
        let dir = DataDir::open(None).unwrap();
        let path = dir.path().to_path_buf();
        assert_eq!(mode(&path), 0o700);
        let file = dir.write_private("secret", b"s3cret").unwrap();
        assert_eq!(mode(&file), 0o600);
        assert!(dir.is_temporary());
        drop(dir);
        assert!(!path.exists(), "removed on drop");
    }

    #[test]
    fn a_given_directory_is_kept_and_its_existing_files_are_narrowed() {
        let parent = tempfile::tempdir().unwrap();
        let path = parent.path().join("nested/data");
        let dir = DataDir::open(Some(path.clone())).unwrap();
        assert_eq!(mode(&path), 0o700, "created private");
        std::fs::write(path.join("broker.redb"), b"kept").unwrap();
        std::fs::set_permissions(path.join("broker.redb"), std::fs::Permissions::from_mode(0o644)).unwrap();
        dir.private_file("broker.redb").unwrap();
        assert_eq!(mode(&path.join("broker.redb")), 0o600);
        assert_eq!(
            std::fs::read(path.join("broker.redb")).unwrap(),
            b"kept",
            "contents untouched"
        );
        dir.write_private("client-secret", b"one").unwrap();
        dir.write_private("client-secret", b"two").unwrap();
        assert_eq!(std::fs::read(path.join("client-secret")).unwrap(), b"two");
        drop(dir);
        assert!(path.is_dir(), "a given directory is kept");
    }

    #[test]
    fn a_file_or_a_path_under_a_file_is_a_clear_error() {
        let parent = tempfile::tempdir().unwrap();
        let file = parent.path().join("plain");
        std::fs::write(&file, b"x").unwrap();
        let e = DataDir::open(Some(file.clone())).err().unwrap().to_string();
        assert!(e.contains("not a directory") && e.contains("plain"), "{e}");
        let e = DataDir::open(Some(file.join("sub"))).err().unwrap().to_string();
        assert!(e.contains("plain/sub"), "{e}");
        assert_eq!(std::fs::read(&file).unwrap(), b"x", "the file is left alone");
    }
}
