//! `wire`: bitfountain's formats and protocol state machines, with no I/O.
//!
//! Everything here takes bytes (and, for state machines, time) and returns
//! typed values, events and bytes to send. Nothing here may panic on input:
//! the crate denies `unwrap`, `expect`, `panic!` and unchecked indexing, and
//! every bound lives in [`Limits`].

#![cfg_attr(
    test,
    allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

pub mod bencode;
pub mod bitfield;
pub mod fountain;
pub mod fuzz_entry;
pub mod geometry;
pub mod ids;
pub mod kenosis;
pub mod limits;
pub mod magnet;
pub mod metainfo;
pub mod outer_info;
pub mod path;
pub mod peer;
pub mod tracker;

pub use bitfield::Bitfield;
pub use geometry::{BlockRef, FileSlice, FileSpans, PieceGeometry, BLOCK_SIZE};
pub use ids::{InfoHash, PeerId};
pub use limits::Limits;
pub use magnet::Magnet;
pub use metainfo::{FileEntry, Info, Metainfo, MetainfoError};
pub use outer_info::{OuterInfo, OuterInfoError};
pub use path::{PathError, SafeRelPath};
