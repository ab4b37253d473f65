//! Metainfo (.torrent) files, BEP 3 v1 with the BEP 12 announce-list.
//!
//! [`Metainfo::from_bytes`] turns untrusted bytes into checked types: the
//! piece geometry adds up, every file path is a [`SafeRelPath`], and the
//! info-hash is SHA-1 over the original bytes of `info`.

use std::collections::HashSet;

use sha1::{Digest, Sha1};
use thiserror::Error;

use crate::bencode::{self, BencodeError, Node, OwnedValue};
use crate::geometry::PieceGeometry;
use crate::ids::InfoHash;
use crate::outer_info::{OuterInfo, OuterInfoError};
use crate::path::{PathError, SafeRelPath};
use crate::Limits;

/// A parsed, checked .torrent file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Metainfo {
    /// The `announce` URL, if any.
    pub announce: Option<String>,
    /// BEP 12 tiers, as found (empty when absent).
    pub announce_list: Vec<Vec<String>>,
    pub comment: Option<String>,
    pub created_by: Option<String>,
    pub creation_date: Option<i64>,
    pub info: Info,
}

/// The checked `info` dictionary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Info {
    pub info_hash: InfoHash,
    /// The original bytes of the `info` dictionary (served as BEP 9
    /// metadata and hashed for the info-hash).
    pub raw: Vec<u8>,
    pub name: String,
    pub geometry: PieceGeometry,
    /// SHA-1 of every piece, in order.
    pub pieces: Vec<[u8; 20]>,
    pub private: bool,
    /// True for a single-file torrent (`length` in `info`): its one file is
    /// the download target itself rather than a file inside a folder.
    pub single_file: bool,
    /// Files in torrent order with their offsets in the piece space.
    pub files: Vec<FileEntry>,
    /// bitfountain's outer code (`bf`), when the torrent has repair pieces.
    pub outer: Option<OuterInfo>,
}

/// One file of a torrent, mapped onto the concatenated piece space.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileEntry {
    /// For a single-file torrent, the torrent's name; otherwise the path
    /// inside the torrent's folder.
    pub path: SafeRelPath,
    pub length: u64,
    /// Offset of the file's first byte in the concatenation of all files.
    pub offset: u64,
}

/// Why a .torrent file was rejected.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum MetainfoError {
    #[error("metainfo is {size} bytes, larger than the {limit}-byte limit")]
    TooLarge { size: usize, limit: usize },
    #[error(transparent)]
    Bencode(#[from] BencodeError),
    #[error("metainfo is a {0}, not a dictionary")]
    NotADict(&'static str),
    #[error("missing required field `{0}`")]
    MissingField(&'static str),
    #[error("field `{field}` is a {found}, expected a {expected}")]
    WrongType {
        field: &'static str,
        expected: &'static str,
        found: &'static str,
    },
    #[error("field `{0}` is not valid UTF-8")]
    NotUtf8(&'static str),
    #[error("piece length {value} is outside {min}..={max}")]
    PieceLengthOutOfRange { value: i64, min: u32, max: u32 },
    #[error("`pieces` is {0} bytes, not a multiple of 20")]
    PiecesNotMultipleOf20(usize),
    #[error("`pieces` holds {found} hashes but {total} bytes in {piece_length}-byte pieces need {expected}")]
    PieceCountMismatch {
        found: usize,
        expected: u64,
        total: u64,
        piece_length: u32,
    },
    #[error("`info` has both `length` and `files`")]
    BothLengthAndFiles,
    #[error("`info` has neither `length` nor `files`")]
    NeitherLengthNorFiles,
    #[error("`files` is empty")]
    NoFiles,
    #[error("torrent has {count} files (limit {limit})")]
    TooManyFiles { count: usize, limit: usize },
    #[error("file {index} has negative length {length}")]
    NegativeLength { index: usize, length: i64 },
    #[error("total length exceeds {limit} bytes")]
    TotalTooLarge { limit: u64 },
    #[error("torrent holds no data (total length 0)")]
    Empty,
    #[error("name is unsafe: {0}")]
    BadName(PathError),
    #[error("path of file {index} is unsafe: {reason}")]
    BadPath { index: usize, reason: PathError },
    #[error("two files share the path {0:?}")]
    DuplicatePath(String),
    #[error("{0:?} is both a file and a folder")]
    PathConflict(String),
    #[error(transparent)]
    Outer(#[from] OuterInfoError),
}

impl Metainfo {
    /// Parses and checks a .torrent file.
    pub fn from_bytes(bytes: &[u8], limits: &Limits) -> Result<Self, MetainfoError> {
        if bytes.len() > limits.metainfo_max_size {
            return Err(MetainfoError::TooLarge {
                size: bytes.len(),
                limit: limits.metainfo_max_size,
            });
        }
        let root = bencode::decode(bytes, limits)?;
        if root.as_dict().is_none() {
            return Err(MetainfoError::NotADict(root.kind()));
        }
        let info_node = root
            .get(b"info")
            .ok_or(MetainfoError::MissingField("info"))?;
        let info = Info::from_node(info_node, limits)?;
        let announce = optional_string(&root, b"announce", "announce")?;
        let announce_list = match root.get(b"announce-list") {
            None => Vec::new(),
            Some(node) => parse_announce_list(node)?,
        };
        Ok(Metainfo {
            announce,
            announce_list,
            comment: optional_string(&root, b"comment", "comment")?,
            created_by: optional_string(&root, b"created by", "created by")?,
            creation_date: optional_int(&root, b"creation date", "creation date")?,
            info,
        })
    }

    /// Tracker tiers to use: the announce-list when present (BEP 12),
    /// otherwise the single announce URL.
    pub fn tracker_tiers(&self) -> Vec<Vec<String>> {
        let tiers: Vec<Vec<String>> = self
            .announce_list
            .iter()
            .map(|tier| {
                tier.iter()
                    .filter(|u| !u.is_empty())
                    .cloned()
                    .collect::<Vec<_>>()
            })
            .filter(|tier| !tier.is_empty())
            .collect();
        if !tiers.is_empty() {
            return tiers;
        }
        self.announce
            .iter()
            .filter(|u| !u.is_empty())
            .map(|u| vec![u.clone()])
            .collect()
    }

    /// Encodes a metainfo document around an already-encoded `info`
    /// dictionary, so the info-hash of `info_raw` is preserved exactly.
    pub fn encode_with_info(
        info_raw: &[u8],
        announce: Option<&str>,
        announce_list: &[Vec<String>],
        comment: Option<&str>,
        created_by: Option<&str>,
        creation_date: Option<i64>,
    ) -> Vec<u8> {
        // Keys in sorted order: announce, announce-list, comment, created by,
        // creation date, info.
        let mut out = Vec::with_capacity(info_raw.len() + 256);
        let mut enc = bencode::Encoder::new(&mut out);
        enc.begin_dict();
        if let Some(url) = announce {
            enc.key_bytes(b"announce", url.as_bytes());
        }
        if !announce_list.is_empty() {
            enc.bytes(b"announce-list");
            enc.begin_list();
            for tier in announce_list {
                enc.begin_list();
                for url in tier {
                    enc.bytes(url.as_bytes());
                }
                enc.end();
            }
            enc.end();
        }
        if let Some(comment) = comment {
            enc.key_bytes(b"comment", comment.as_bytes());
        }
        if let Some(by) = created_by {
            enc.key_bytes(b"created by", by.as_bytes());
        }
        if let Some(date) = creation_date {
            enc.key_int(b"creation date", date);
        }
        enc.bytes(b"info");
        out.extend_from_slice(info_raw);
        out.push(b'e');
        out
    }
}

impl Info {
    /// Checks an `info` dictionary (from a .torrent or from BEP 9 metadata).
    pub fn from_node(node: &Node<'_>, limits: &Limits) -> Result<Self, MetainfoError> {
        if node.as_dict().is_none() {
            return Err(MetainfoError::WrongType {
                field: "info",
                expected: "dictionary",
                found: node.kind(),
            });
        }
        let name_bytes = utf8_preferred(node, b"name.utf-8", b"name", "info.name")?
            .ok_or(MetainfoError::MissingField("info.name"))?;
        let name =
            SafeRelPath::from_bytes(&[name_bytes], limits).map_err(MetainfoError::BadName)?;

        let piece_length = required_int(node, b"piece length", "info.piece length")?;
        let piece_length = u32::try_from(piece_length)
            .ok()
            .filter(|p| (limits.min_piece_length..=limits.max_piece_length).contains(p))
            .ok_or(MetainfoError::PieceLengthOutOfRange {
                value: piece_length,
                min: limits.min_piece_length,
                max: limits.max_piece_length,
            })?;

        let pieces_raw = required_bytes(node, b"pieces", "info.pieces")?;
        if pieces_raw.len() % 20 != 0 {
            return Err(MetainfoError::PiecesNotMultipleOf20(pieces_raw.len()));
        }

        let (single_file, files) = match (node.get(b"length"), node.get(b"files")) {
            (Some(_), Some(_)) => return Err(MetainfoError::BothLengthAndFiles),
            (None, None) => return Err(MetainfoError::NeitherLengthNorFiles),
            (Some(length), None) => {
                let length = int_of(length, "info.length")?;
                let length = u64::try_from(length)
                    .map_err(|_| MetainfoError::NegativeLength { index: 0, length })?;
                (
                    true,
                    vec![FileEntry {
                        path: name.clone(),
                        length,
                        offset: 0,
                    }],
                )
            }
            (None, Some(files)) => (false, parse_files(files, limits)?),
        };

        let total = files
            .last()
            .map(|f| f.offset.saturating_add(f.length))
            .unwrap_or(0);
        if total > limits.max_total_length {
            return Err(MetainfoError::TotalTooLarge {
                limit: limits.max_total_length,
            });
        }
        if total == 0 {
            return Err(MetainfoError::Empty);
        }
        let expected = total.div_ceil(u64::from(piece_length));
        let found = pieces_raw.len() / 20;
        if u64::try_from(found).ok() != Some(expected) {
            return Err(MetainfoError::PieceCountMismatch {
                found,
                expected,
                total,
                piece_length,
            });
        }
        let geometry =
            PieceGeometry::new(piece_length, total).ok_or(MetainfoError::TotalTooLarge {
                limit: limits.max_total_length,
            })?;
        let pieces = pieces_raw
            .chunks_exact(20)
            .filter_map(|c| <[u8; 20]>::try_from(c).ok())
            .collect();
        let private = matches!(node.get(b"private").and_then(Node::as_int), Some(1));
        // As many repair pieces as pieces at most: more would not help.
        let outer = node
            .get(b"bf")
            .map(|bf| OuterInfo::parse(bf, geometry.piece_count()))
            .transpose()?;

        Ok(Info {
            info_hash: InfoHash(Sha1::digest(node.raw).into()),
            raw: node.raw.to_vec(),
            name: name.display(),
            geometry,
            pieces,
            private,
            single_file,
            files,
            outer,
        })
    }

    /// Parses raw `info` bytes (BEP 9 metadata) and checks them.
    pub fn from_bytes(raw: &[u8], limits: &Limits) -> Result<Self, MetainfoError> {
        if raw.len() > limits.metainfo_max_size {
            return Err(MetainfoError::TooLarge {
                size: raw.len(),
                limit: limits.metainfo_max_size,
            });
        }
        let node = bencode::decode(raw, limits)?;
        Self::from_node(&node, limits)
    }

    /// Total size of the content in bytes.
    pub fn total_length(&self) -> u64 {
        self.geometry.total_length()
    }

    /// Number of pieces.
    pub fn piece_count(&self) -> u32 {
        self.geometry.piece_count()
    }

    /// The expected SHA-1 of a piece.
    pub fn piece_hash(&self, index: u32) -> Option<&[u8; 20]> {
        self.pieces.get(usize::try_from(index).ok()?)
    }

    /// The raw value of an unknown key inside `info`, re-parsed from `raw`
    /// (extensions such as the `bf` dictionary read their keys this way).
    pub fn extension_value(&self, key: &[u8], limits: &Limits) -> Option<OwnedValue> {
        let node = bencode::decode(&self.raw, limits).ok()?;
        node.get(key).map(Node::to_owned_value)
    }
}

fn parse_files(files: &Node<'_>, limits: &Limits) -> Result<Vec<FileEntry>, MetainfoError> {
    let list = files.as_list().ok_or(MetainfoError::WrongType {
        field: "info.files",
        expected: "list",
        found: files.kind(),
    })?;
    if list.is_empty() {
        return Err(MetainfoError::NoFiles);
    }
    if list.len() > limits.max_files {
        return Err(MetainfoError::TooManyFiles {
            count: list.len(),
            limit: limits.max_files,
        });
    }
    let mut out = Vec::with_capacity(list.len());
    let mut offset: u64 = 0;
    let mut seen_files: HashSet<&[String]> = HashSet::new();
    let mut entries = Vec::with_capacity(list.len());
    for (index, file) in list.iter().enumerate() {
        if file.as_dict().is_none() {
            return Err(MetainfoError::WrongType {
                field: "info.files[]",
                expected: "dictionary",
                found: file.kind(),
            });
        }
        let length = required_int(file, b"length", "info.files[].length")?;
        let length =
            u64::try_from(length).map_err(|_| MetainfoError::NegativeLength { index, length })?;
        let path_node = file
            .get(b"path.utf-8")
            .filter(|p| path_components(p).is_some())
            .or_else(|| file.get(b"path"))
            .ok_or(MetainfoError::MissingField("info.files[].path"))?;
        let components = path_components(path_node).ok_or(MetainfoError::WrongType {
            field: "info.files[].path",
            expected: "list of byte strings",
            found: path_node.kind(),
        })?;
        let path = SafeRelPath::from_bytes(&components, limits)
            .map_err(|reason| MetainfoError::BadPath { index, reason })?;
        entries.push((path, length, offset));
        offset = offset
            .checked_add(length)
            .filter(|t| *t <= limits.max_total_length)
            .ok_or(MetainfoError::TotalTooLarge {
                limit: limits.max_total_length,
            })?;
    }
    // Duplicates, and a file that is also another file's folder, would make
    // two files share storage; refuse both.
    let mut folders: HashSet<&[String]> = HashSet::new();
    for (path, _, _) in &entries {
        let components = path.components();
        if !seen_files.insert(components) {
            return Err(MetainfoError::DuplicatePath(path.display()));
        }
        for depth in 1..components.len() {
            if let Some(prefix) = components.get(..depth) {
                folders.insert(prefix);
            }
        }
    }
    if let Some(clash) = seen_files.iter().find(|f| folders.contains(*f)) {
        return Err(MetainfoError::PathConflict(clash.join("/")));
    }
    for (path, length, offset) in entries {
        out.push(FileEntry {
            path,
            length,
            offset,
        });
    }
    Ok(out)
}

fn path_components<'a>(node: &Node<'a>) -> Option<Vec<&'a [u8]>> {
    node.as_list()?.iter().map(Node::as_bytes).collect()
}

fn parse_announce_list(node: &Node<'_>) -> Result<Vec<Vec<String>>, MetainfoError> {
    let wrong = |found| MetainfoError::WrongType {
        field: "announce-list",
        expected: "list of lists of strings",
        found,
    };
    let tiers = node.as_list().ok_or_else(|| wrong(node.kind()))?;
    tiers
        .iter()
        .map(|tier| {
            tier.as_list()
                .ok_or_else(|| wrong(tier.kind()))?
                .iter()
                .map(|url| {
                    url.as_bytes()
                        .ok_or_else(|| wrong(url.kind()))
                        .and_then(|b| {
                            String::from_utf8(b.to_vec())
                                .map_err(|_| MetainfoError::NotUtf8("announce-list"))
                        })
                })
                .collect()
        })
        .collect()
}

fn utf8_preferred<'a>(
    node: &Node<'a>,
    utf8_key: &[u8],
    key: &[u8],
    field: &'static str,
) -> Result<Option<&'a [u8]>, MetainfoError> {
    if let Some(b) = node.get(utf8_key).and_then(Node::as_bytes) {
        if std::str::from_utf8(b).is_ok() {
            return Ok(Some(b));
        }
    }
    match node.get(key) {
        None => Ok(None),
        Some(n) => n.as_bytes().map(Some).ok_or(MetainfoError::WrongType {
            field,
            expected: "byte string",
            found: n.kind(),
        }),
    }
}

fn int_of(node: &Node<'_>, field: &'static str) -> Result<i64, MetainfoError> {
    node.as_int().ok_or(MetainfoError::WrongType {
        field,
        expected: "integer",
        found: node.kind(),
    })
}

fn required_int(node: &Node<'_>, key: &[u8], field: &'static str) -> Result<i64, MetainfoError> {
    int_of(
        node.get(key).ok_or(MetainfoError::MissingField(field))?,
        field,
    )
}

fn required_bytes<'a>(
    node: &Node<'a>,
    key: &[u8],
    field: &'static str,
) -> Result<&'a [u8], MetainfoError> {
    let value = node.get(key).ok_or(MetainfoError::MissingField(field))?;
    value.as_bytes().ok_or(MetainfoError::WrongType {
        field,
        expected: "byte string",
        found: value.kind(),
    })
}

fn optional_int(
    node: &Node<'_>,
    key: &[u8],
    field: &'static str,
) -> Result<Option<i64>, MetainfoError> {
    node.get(key).map(|v| int_of(v, field)).transpose()
}

fn optional_string(
    node: &Node<'_>,
    key: &[u8],
    field: &'static str,
) -> Result<Option<String>, MetainfoError> {
    match node.get(key) {
        None => Ok(None),
        Some(v) => {
            let bytes = v.as_bytes().ok_or(MetainfoError::WrongType {
                field,
                expected: "byte string",
                found: v.kind(),
            })?;
            // Optional text fields from old tools are sometimes in legacy
            // encodings; show them lossily rather than reject the torrent.
            Ok(Some(String::from_utf8_lossy(bytes).into_owned()))
        }
    }
}
