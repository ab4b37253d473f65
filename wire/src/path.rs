//! A relative path that can never leave the download folder.
//!
//! Every file a torrent names goes through [`SafeRelPath`]: components are
//! checked one by one (no `.`/`..`, no separators, no NUL, no empty names,
//! bounded length and depth), so joining one under a root stays under it.
//! Symlinks already on disk are the storage layer's business; it opens files
//! without following them.

use std::path::{Path, PathBuf};

use thiserror::Error;

use crate::Limits;

/// Why a path component or path was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PathError {
    #[error("path has no components")]
    Empty,
    #[error("path has an empty component")]
    EmptyComponent,
    #[error("path component {0:?} refers to the current or parent folder")]
    DotComponent(String),
    #[error("path component {0:?} contains a path separator")]
    Separator(String),
    #[error("path component contains a NUL byte")]
    Nul,
    #[error("path component {0:?} contains a control character")]
    ControlCharacter(String),
    #[error("path component is {len} bytes long (limit {limit})")]
    ComponentTooLong { len: usize, limit: usize },
    #[error("path has {depth} components (limit {limit})")]
    TooDeep { depth: usize, limit: usize },
    #[error("path component is not valid UTF-8")]
    NotUtf8,
}

/// A checked, relative, non-empty path of plain names.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SafeRelPath {
    components: Vec<String>,
}

impl SafeRelPath {
    /// Checks every component; fails on the first unsafe one.
    pub fn new<S: AsRef<str>>(components: &[S], limits: &Limits) -> Result<Self, PathError> {
        if components.is_empty() {
            return Err(PathError::Empty);
        }
        if components.len() > limits.max_path_depth {
            return Err(PathError::TooDeep {
                depth: components.len(),
                limit: limits.max_path_depth,
            });
        }
        let components = components
            .iter()
            .map(|c| check_component(c.as_ref(), limits).map(str::to_owned))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(SafeRelPath { components })
    }

    /// From raw byte components (as found in a torrent).
    pub fn from_bytes(components: &[&[u8]], limits: &Limits) -> Result<Self, PathError> {
        let strs = components
            .iter()
            .map(|c| std::str::from_utf8(c).map_err(|_| PathError::NotUtf8))
            .collect::<Result<Vec<_>, _>>()?;
        Self::new(&strs, limits)
    }

    /// The checked components.
    pub fn components(&self) -> &[String] {
        &self.components
    }

    /// The path relative to the download folder.
    pub fn to_path_buf(&self) -> PathBuf {
        self.components.iter().collect()
    }

    /// `root` joined with this path; stays under `root` by construction.
    pub fn under(&self, root: &Path) -> PathBuf {
        let mut path = root.to_path_buf();
        path.extend(&self.components);
        path
    }

    /// The path with `/` separators, for display.
    pub fn display(&self) -> String {
        self.components.join("/")
    }
}

/// Checks one path component.
pub fn check_component<'a>(c: &'a str, limits: &Limits) -> Result<&'a str, PathError> {
    if c.is_empty() {
        return Err(PathError::EmptyComponent);
    }
    if c == "." || c == ".." {
        return Err(PathError::DotComponent(c.to_owned()));
    }
    if c.contains('\0') {
        return Err(PathError::Nul);
    }
    if c.contains(['/', '\\']) {
        return Err(PathError::Separator(c.to_owned()));
    }
    if c.chars().any(char::is_control) {
        return Err(PathError::ControlCharacter(c.escape_debug().to_string()));
    }
    if c.len() > limits.max_path_component {
        return Err(PathError::ComponentTooLong {
            len: c.len(),
            limit: limits.max_path_component,
        });
    }
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(parts: &[&str]) -> Result<SafeRelPath, PathError> {
        SafeRelPath::new(parts, &Limits::DEFAULT)
    }

    #[test]
    fn accepts_plain_names() {
        let p = check(&["dir", "sub dir", "file.bin"]).unwrap();
        assert_eq!(
            p.under(Path::new("/dl")),
            PathBuf::from("/dl/dir/sub dir/file.bin")
        );
        assert_eq!(p.display(), "dir/sub dir/file.bin");
    }

    #[test]
    fn refuses_every_escape() {
        assert_eq!(check(&[]), Err(PathError::Empty));
        assert_eq!(check(&["a", ""]), Err(PathError::EmptyComponent));
        assert!(matches!(check(&[".."]), Err(PathError::DotComponent(_))));
        assert!(matches!(
            check(&["a", "."]),
            Err(PathError::DotComponent(_))
        ));
        assert!(matches!(check(&["/etc"]), Err(PathError::Separator(_))));
        assert!(matches!(
            check(&["a/../../b"]),
            Err(PathError::Separator(_))
        ));
        assert!(matches!(check(&["..\\x"]), Err(PathError::Separator(_))));
        assert_eq!(check(&["a\0b"]), Err(PathError::Nul));
        assert!(matches!(
            check(&["a\nb"]),
            Err(PathError::ControlCharacter(_))
        ));
        assert!(matches!(
            check(&[&"x".repeat(256)]),
            Err(PathError::ComponentTooLong { .. })
        ));
        let deep: Vec<&str> = vec!["d"; 65];
        assert!(matches!(check(&deep), Err(PathError::TooDeep { .. })));
        assert_eq!(
            SafeRelPath::from_bytes(&[b"\xff"], &Limits::DEFAULT),
            Err(PathError::NotUtf8)
        );
    }
}
