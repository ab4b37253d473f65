//! What the full-screen interface draws: the progress view (torrent,
//! progress bar, piece map, totals, peers) and the log view. Pure
//! functions of a [`Snapshot`], so they are tested on ratatui's test
//! backend.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Cell, Gauge, Paragraph, Row, Table};
use ratatui::Frame;
use wire::Bitfield;

use crate::session::status::TorrentStatus;
use crate::ui::{human_bytes, human_rate};

/// Which screen is showing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    Progress,
    Log,
}

/// Everything one frame shows.
pub struct Snapshot<'a> {
    pub status: &'a TorrentStatus,
    pub have: &'a Bitfield,
    pub saveas: &'a str,
    pub listen: &'a str,
    pub log: &'a [String],
    pub view: View,
}

pub fn draw(frame: &mut Frame, s: &Snapshot) {
    let [body, footer] =
        Layout::vertical([Constraint::Min(3), Constraint::Length(1)]).areas(frame.area());
    match s.view {
        View::Progress => draw_progress(frame, body, s),
        View::Log => draw_log(frame, body, s),
    }
    let other = match s.view {
        View::Progress => "log view",
        View::Log => "progress view",
    };
    frame.render_widget(
        Paragraph::new(Line::from(vec![
            Span::styled(" q ", Style::new().add_modifier(Modifier::REVERSED)),
            Span::raw(" quit   "),
            Span::styled(" l ", Style::new().add_modifier(Modifier::REVERSED)),
            Span::raw(format!(" {other} (also Tab, Ctrl-Z)")),
        ])),
        footer,
    );
}

fn draw_progress(frame: &mut Frame, area: Rect, s: &Snapshot) {
    let st = s.status;
    let peers_rows = (st.peers.len() as u16).clamp(1, 12) + 3;
    // The map takes the rows its pieces need (one cell each) up to half
    // the screen; beyond that cells stand for runs of pieces.
    let inner_width = u32::from(area.width.saturating_sub(2).max(1));
    let map_rows = s
        .have
        .len()
        .div_ceil(inner_width)
        // (min then max: clamp would panic on a terminal 1 row high.)
        .min(u32::from(area.height / 2))
        .max(1);
    let [head, gauge, map, totals, peers] = Layout::vertical([
        Constraint::Length(2),
        Constraint::Length(1),
        Constraint::Length(
            u16::try_from(map_rows)
                .unwrap_or(u16::MAX)
                .saturating_add(2),
        ),
        Constraint::Length(2),
        Constraint::Min(peers_rows),
    ])
    .areas(area);
    frame.render_widget(
        Paragraph::new(vec![
            Line::from(vec![
                Span::styled(st.name.clone(), Style::new().add_modifier(Modifier::BOLD)),
                Span::raw(format!("  {}  ({})", human_bytes(st.total_bytes), st.phase)),
            ]),
            Line::from(format!(
                "info-hash {}  ·  saving to {}  ·  listening on {}",
                st.info_hash, s.saveas, s.listen
            )),
        ]),
        head,
    );
    let fraction = if st.total_bytes == 0 {
        1.0
    } else {
        st.have_bytes as f64 / st.total_bytes as f64
    };
    frame.render_widget(
        Gauge::default()
            .gauge_style(Style::new().fg(Color::Green).bg(Color::DarkGray))
            .ratio(fraction.clamp(0.0, 1.0))
            .label(format!(
                "{:.1}%  {} / {}  ({} of {} pieces)",
                fraction * 100.0,
                human_bytes(st.have_bytes),
                human_bytes(st.total_bytes),
                st.pieces_have,
                st.pieces_total
            )),
        gauge,
    );
    let map_block = Block::default().borders(Borders::ALL).title(" pieces ");
    let inner = map_block.inner(map);
    frame.render_widget(
        Paragraph::new(piece_map(s.have, inner.width, inner.height)).block(map_block),
        map,
    );
    let ratio = if st.downloaded > 0 {
        format!("{:.2}", st.uploaded as f64 / st.downloaded as f64)
    } else if st.total_bytes > 0 {
        // A seed from the start: uploads against the torrent's size.
        format!("{:.2}", st.uploaded as f64 / st.total_bytes as f64)
    } else {
        "-".to_owned()
    };
    frame.render_widget(
        Paragraph::new(vec![
            Line::from(format!(
                "down {}  up {}  ·  received {}  sent {}  wasted {}  ·  ratio {ratio}",
                human_rate(st.down_rate),
                human_rate(st.up_rate),
                human_bytes(st.downloaded),
                human_bytes(st.uploaded),
                human_bytes(st.wasted),
            )),
            Line::from(format!(
                "received as plain blocks {}  as coded symbols {}{}  ·  {} peers  ·  {:.0} s",
                human_bytes(st.received_plain),
                human_bytes(st.received_coded),
                outer_summary(st),
                st.peers.len(),
                st.elapsed.as_secs_f64()
            )),
        ]),
        totals,
    );
    draw_peers(frame, peers, st);
}

/// The outer code's share, when the torrent has one.
fn outer_summary(st: &TorrentStatus) -> String {
    if st.repair_total == 0 {
        return String::new();
    }
    format!(
        "  ·  repair pieces {}/{}, rebuilt {}",
        st.repair_have, st.repair_total, st.rebuilt
    )
}

fn draw_peers(frame: &mut Frame, area: Rect, st: &TorrentStatus) {
    let header = Row::new(["peer", "client", "kind", "down", "up", "has", "flags"])
        .style(Style::new().add_modifier(Modifier::BOLD));
    let rows: Vec<Row> = st
        .peers
        .iter()
        .map(|p| {
            let has = if st.pieces_total == 0 {
                0.0
            } else {
                f64::from(p.pieces) * 100.0 / f64::from(st.pieces_total)
            };
            let kind = if p.coded {
                Cell::from("coded").style(Style::new().fg(Color::Cyan))
            } else {
                Cell::from("legacy")
            };
            let flags = format!(
                "{}{}{}",
                if p.outgoing { "out" } else { "in" },
                if p.interested { " interested" } else { "" },
                if p.choked { " choked" } else { "" }
            );
            Row::new(vec![
                Cell::from(p.addr.to_string()),
                Cell::from(p.client.clone()),
                kind,
                Cell::from(human_rate(p.down_rate)),
                Cell::from(human_rate(p.up_rate)),
                Cell::from(format!("{has:.0}%")),
                Cell::from(flags),
            ])
        })
        .collect();
    let empty = rows.is_empty();
    let table = Table::new(
        rows,
        [
            Constraint::Length(22),
            Constraint::Length(22),
            Constraint::Length(7),
            Constraint::Length(12),
            Constraint::Length(12),
            Constraint::Length(5),
            Constraint::Min(5),
        ],
    )
    .header(header)
    .block(Block::default().borders(Borders::ALL).title(if empty {
        " peers: none connected yet "
    } else {
        " peers "
    }));
    frame.render_widget(table, area);
}

fn draw_log(frame: &mut Frame, area: Rect, s: &Snapshot) {
    let block = Block::default().borders(Borders::ALL).title(" log ");
    let inner = block.inner(area);
    let skip = s.log.len().saturating_sub(inner.height as usize);
    let lines: Vec<Line> = s
        .log
        .iter()
        .skip(skip)
        .map(|l| Line::from(l.as_str()))
        .collect();
    frame.render_widget(Paragraph::new(lines).block(block), area);
}

/// The piece map: each character cell stands for an equal run of pieces
/// and is shaded by how many of them we have (full, most, some, none).
pub fn piece_map(have: &Bitfield, width: u16, height: u16) -> Vec<Line<'static>> {
    let cells = u32::from(width) * u32::from(height);
    let total = have.len();
    if cells == 0 || total == 0 {
        return Vec::new();
    }
    // Fewer pieces than cells: one cell per piece, the rest left blank.
    let used = cells.min(total);
    let mut lines = Vec::with_capacity(usize::from(height));
    let mut line = String::with_capacity(usize::from(width) * 3);
    for cell in 0..used {
        let start = (u64::from(cell) * u64::from(total) / u64::from(used)) as u32;
        let end = ((u64::from(cell) + 1) * u64::from(total) / u64::from(used)) as u32;
        let got = (start..end).filter(|&p| have.has(p)).count() as u32;
        let n = (end - start).max(1);
        line.push(match got {
            g if g == n => '█',
            g if g * 2 >= n => '▓',
            0 => '·',
            _ => '░',
        });
        if (cell + 1) % u32::from(width) == 0 {
            lines.push(Line::from(std::mem::take(&mut line)));
        }
    }
    if !line.is_empty() {
        lines.push(Line::from(line));
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use ratatui::backend::TestBackend;
    use ratatui::Terminal;

    #[test]
    fn piece_map_shades_runs_of_pieces() {
        let mut have = Bitfield::new(8);
        for p in [0, 1, 2, 3, 4] {
            have.set(p);
        }
        // 8 pieces on 4 cells: 2 per cell.
        let lines = piece_map(&have, 4, 1);
        assert_eq!(lines[0].to_string(), "██▓·");
        // More cells than pieces: one each, in rows of the width.
        let lines = piece_map(&have, 3, 4);
        let text: Vec<String> = lines.iter().map(ToString::to_string).collect();
        assert_eq!(text, ["███", "██·", "··"]);
        assert!(piece_map(&have, 0, 5).is_empty());
    }

    #[test]
    fn progress_and_log_views_render() {
        let status = TorrentStatus {
            name: "ubuntu.iso".into(),
            info_hash: "ab".repeat(20),
            total_bytes: 1 << 20,
            have_bytes: 1 << 19,
            pieces_have: 2,
            pieces_total: 4,
            uploaded: 100,
            downloaded: 200,
            ..TorrentStatus::default()
        };
        let have = Bitfield::new(4);
        let log = vec!["first line".to_owned(), "second line".to_owned()];
        let mut terminal = Terminal::new(TestBackend::new(100, 30)).unwrap();
        let mut snap = Snapshot {
            status: &status,
            have: &have,
            saveas: "/tmp/x",
            listen: "0.0.0.0:6881",
            log: &log,
            view: View::Progress,
        };
        terminal.draw(|f| draw(f, &snap)).unwrap();
        let screen = format!("{:?}", terminal.backend().buffer());
        assert!(screen.contains("ubuntu.iso"));
        assert!(screen.contains("50.0%"));
        assert!(screen.contains("ratio 0.50"));
        assert!(screen.contains("peers: none connected yet"));
        snap.view = View::Log;
        terminal.draw(|f| draw(f, &snap)).unwrap();
        let screen = format!("{:?}", terminal.backend().buffer());
        assert!(screen.contains("second line"));
        assert!(!screen.contains("ubuntu.iso"));
    }
}
