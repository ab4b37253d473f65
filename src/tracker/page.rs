//! The index page (`/`) and the figures behind `/stats`.
//!
//! The page is self-contained HTML (inline CSS, no scripts, no external
//! resources) so it renders the same in a browser, in headless Chromium and
//! in `curl`. Every piece of text that came from outside (torrent names) is
//! HTML-escaped. It lists at most [`MAX_ROWS`] swarms, busiest first, so a
//! tracker with 100,000 swarms still answers with a page of sane size.

use std::fmt::Write;

use wire::InfoHash;

use super::allow::AllowSet;
use super::store::{StoreTotals, SwarmRow};

pub(crate) const MAX_ROWS: usize = 1000;

const STYLE: &str = "body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;\
margin:2rem auto;max-width:72rem;padding:0 1rem;color:#1b1f24;background:#fff}\
h1{font-size:1.5rem;margin-bottom:.25rem}p.sub{color:#57606a;margin-top:0}\
table{border-collapse:collapse;width:100%;font-size:.9rem}\
th,td{padding:.35rem .6rem;border-bottom:1px solid #d0d7de;text-align:left}\
th{background:#f6f8fa;position:sticky;top:0}td.n,th.n{text-align:right;font-variant-numeric:tabular-nums}\
code{font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:.85rem}\
tfoot td{font-weight:600;border-top:2px solid #57606a}tbody tr:nth-child(even){background:#fafbfc}";

/// Escapes text for HTML element content and attribute values.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// Renders the index page.
pub(crate) fn index_html(
    mut rows: Vec<SwarmRow>,
    allow: &AllowSet,
    totals: &StoreTotals,
) -> String {
    // Torrents published in the folder are listed even before anyone joins.
    let known: std::collections::HashSet<InfoHash> = rows.iter().map(|r| r.info_hash).collect();
    for hash in allow.names.keys().filter(|h| !known.contains(h)) {
        rows.push(SwarmRow {
            info_hash: *hash,
            seeders: 0,
            leechers: 0,
            downloaded: 0,
        });
    }
    let total_rows = rows.len();
    rows.sort_unstable_by(|a, b| {
        let busy = |r: &SwarmRow| u64::from(r.seeders) + u64::from(r.leechers);
        busy(b)
            .cmp(&busy(a))
            .then(b.downloaded.cmp(&a.downloaded))
            .then(a.info_hash.cmp(&b.info_hash))
    });
    rows.truncate(MAX_ROWS);

    let mut h = String::with_capacity(2048 + rows.len() * 220);
    h.push_str("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">");
    h.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">");
    h.push_str("<title>bitfountain tracker</title><style>");
    h.push_str(STYLE);
    h.push_str("</style></head><body>\n<h1>bitfountain tracker</h1>\n");
    let _ = writeln!(
        h,
        "<p class=\"sub\">{} swarms · {} seeds · {} leechers · {} completed downloads. \
         Announce to <code>/announce</code>; figures as JSON at <a href=\"/stats\">/stats</a>.</p>",
        totals.swarms, totals.seeders, totals.leechers, totals.completed
    );
    if total_rows > rows.len() {
        let _ = writeln!(
            h,
            "<p class=\"sub\">Showing the {} busiest of {total_rows} swarms.</p>",
            rows.len()
        );
    }
    h.push_str("<table><thead><tr><th>info-hash</th><th>name</th>");
    h.push_str("<th class=\"n\">seeds</th><th class=\"n\">leechers</th><th class=\"n\">completed</th></tr></thead>\n<tbody>\n");
    if rows.is_empty() {
        h.push_str("<tr><td colspan=\"5\">No swarms yet.</td></tr>\n");
    }
    for r in &rows {
        let name = allow
            .names
            .get(&r.info_hash)
            .map(|n| escape(n))
            .unwrap_or_default();
        let _ = writeln!(
            h,
            "<tr><td><code>{}</code></td><td>{name}</td><td class=\"n\">{}</td>\
             <td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            r.info_hash.to_hex(),
            r.seeders,
            r.leechers,
            r.downloaded
        );
    }
    let _ = writeln!(
        h,
        "</tbody>\n<tfoot><tr><td>total</td><td>{} swarms</td><td class=\"n\">{}</td>\
         <td class=\"n\">{}</td><td class=\"n\">{}</td></tr></tfoot></table>\n</body></html>",
        totals.swarms, totals.seeders, totals.leechers, totals.completed
    );
    h
}

/// The JSON behind `/stats` (and [`super::Tracker::stats`]).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TrackerStats {
    pub uptime_secs: u64,
    pub swarms: u64,
    pub peers: u64,
    pub seeders: u64,
    pub leechers: u64,
    /// Completed downloads (`event=completed`) over the swarms kept.
    pub completed: u64,
    pub announces: u64,
    pub scrapes: u64,
    /// Requests answered with a failure reason (bad parameters, refusals).
    pub failures: u64,
    /// Requests refused by the per-address rate limit (HTTP 429).
    pub rate_limited: u64,
    pub connections_open: u64,
    /// Connections closed at once because of the connection caps.
    pub connections_refused: u64,
    /// Size of the allow-list, when one is enforced.
    pub allowed: Option<u64>,
    /// Access-log lines dropped because stdout could not keep up.
    pub access_log_dropped: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_names_and_lists_rows() {
        let hash = InfoHash([0xab; 20]);
        let mut allow = AllowSet::default();
        allow
            .names
            .insert(hash, "<script>alert('x')</script> & \"co\"".into());
        allow.names.insert(InfoHash([1; 20]), "idle.iso".into());
        let rows = vec![SwarmRow {
            info_hash: hash,
            seeders: 2,
            leechers: 3,
            downloaded: 4,
        }];
        let totals = StoreTotals {
            swarms: 1,
            peers: 5,
            seeders: 2,
            leechers: 3,
            completed: 4,
            announces: 9,
        };
        let page = index_html(rows, &allow, &totals);
        assert!(!page.contains("<script>"));
        assert!(
            page.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;co&quot;")
        );
        assert!(page.contains(&format!(
            "<code>{}</code></td><td>&lt;script",
            hash.to_hex()
        )));
        assert!(page.contains("<td class=\"n\">2</td><td class=\"n\">3</td><td class=\"n\">4</td>"));
        // Published but idle torrents are listed, after busy ones.
        let idle = page.find("idle.iso").unwrap();
        assert!(idle > page.find("&lt;script").unwrap());
        assert!(page.ends_with("</html>\n"));
    }
}
