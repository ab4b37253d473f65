//! The bitfountain runtime: command line, torrent creation, and (as they
//! land) the swarm engine, storage, tracker, Kenosis and benchmarks.
