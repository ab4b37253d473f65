//! Choking: tit-for-tat with a rotating optimistic unchoke (BEP 3). While
//! downloading we reciprocate to the peers that give us the most; as a seed
//! we unchoke the peers we upload to fastest.

use super::picker::PeerKey;

/// What the choker knows about one interested peer.
#[derive(Debug, Clone, Copy)]
pub struct Candidate {
    pub peer: PeerKey,
    /// Their upload to us (bytes/s).
    pub download_rate: f64,
    /// Our upload to them (bytes/s).
    pub upload_rate: f64,
}

/// Chooses the peers to unchoke among the interested ones: the best
/// `slots` by reciprocation (or by upload rate when `seeding`), plus the
/// optimistic unchoke when it is not already among them.
pub fn choose_unchoked(
    mut interested: Vec<Candidate>,
    slots: usize,
    seeding: bool,
    optimistic: Option<PeerKey>,
) -> Vec<PeerKey> {
    let key = |c: &Candidate| {
        if seeding {
            c.upload_rate
        } else {
            c.download_rate
        }
    };
    interested.sort_by(|a, b| key(b).total_cmp(&key(a)).then(a.peer.cmp(&b.peer)));
    let mut out: Vec<PeerKey> = interested.iter().take(slots).map(|c| c.peer).collect();
    if let Some(o) = optimistic {
        if !out.contains(&o) && interested.iter().any(|c| c.peer == o) {
            out.push(o);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(peer: PeerKey, down: f64, up: f64) -> Candidate {
        Candidate {
            peer,
            download_rate: down,
            upload_rate: up,
        }
    }

    #[test]
    fn reciprocates_when_leeching_and_serves_fastest_when_seeding() {
        let peers = vec![
            c(1, 10.0, 900.0),
            c(2, 500.0, 1.0),
            c(3, 300.0, 50.0),
            c(4, 0.0, 0.0),
        ];
        assert_eq!(choose_unchoked(peers.clone(), 2, false, None), vec![2, 3]);
        assert_eq!(choose_unchoked(peers.clone(), 2, true, None), vec![1, 3]);
        assert_eq!(
            choose_unchoked(peers.clone(), 2, false, Some(4)),
            vec![2, 3, 4]
        );
        // The optimistic peer must still be interested.
        assert_eq!(choose_unchoked(peers, 2, false, Some(9)), vec![2, 3]);
    }
}
