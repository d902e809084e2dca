//! Directories the runtime creates for its data.

use std::io;
use std::path::Path;

/// Creates `dir` and any missing parents, readable by the owner only (mode `0700` on Unix), as
/// databases keep their data directories: events and logs may carry personal or secret data.
/// Directories that exist already are left as they are.
///
/// # Errors
/// Whatever the filesystem says (permission denied, a file in the way).
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(unix)]
    #[test]
    fn new_directories_are_private_and_existing_ones_kept() {
        use std::os::unix::fs::PermissionsExt;
        let root = std::env::temp_dir().join(format!("tamma-core-fs-{}", std::process::id()));
        let nested = root.join("a/b");
        create_private_dir(&nested).unwrap();
        for d in [&root, &root.join("a"), &nested] {
            let mode = std::fs::metadata(d).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o700, "{}", d.display());
        }
        std::fs::set_permissions(&nested, std::fs::Permissions::from_mode(0o755)).unwrap();
        create_private_dir(&nested).unwrap();
        let mode = std::fs::metadata(&nested).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o755, "an existing directory keeps its mode");
        std::fs::remove_dir_all(&root).unwrap();
    }
}
