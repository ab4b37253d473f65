//! The bitfountain runtime: command line, torrent creation, and the swarm
//! engine, storage, tracker, Kenosis, benchmarks and user interfaces.

pub mod bench;
pub mod cli;
pub mod demo;
pub mod dns;
pub mod fs;
pub mod fsutil;
pub mod get;
pub mod kenosis;
pub mod logging;
pub mod make;
pub mod session;
pub mod show;
pub mod storage;
pub mod tracker;
pub mod ui;
