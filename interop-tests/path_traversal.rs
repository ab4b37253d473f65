//! Path traversal: 37 malicious torrents (`..`, absolute paths, separators,
//! NUL, control characters, empty and overlong components, duplicates and
//! file/folder clashes, symlinks planted in the download folder) given to
//! `bitfountain get` in a download folder, without `--saveas`, as a user
//! would. Each case runs in its own sandbox beside an `outside` folder with
//! files and symlink targets: afterwards nothing outside the download
//! folder was created or changed, and inside it nothing but the torrent's
//! own files appeared. Legitimate odd names (`...`, `~`, `%2e%2e`,
//! full-width dots) download completely, inside the folder.

mod harness;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use harness::node::free_port;
use harness::*;
use sha1::{Digest, Sha1};
use wire::bencode::OwnedValue;

const PIECE: usize = 16384;
const MARK: &str = "bf-pwned";

/// What a case expects of `get`.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Expect {
    /// The torrent itself is refused (exit 1, nothing created anywhere).
    Refused,
    /// The torrent is fine but the download folder is hostile: `get` fails
    /// before writing anything.
    Fails,
    /// Odd but legitimate names: downloads completely, inside the folder.
    Completes,
}

/// Something planted in the download folder before `get` runs: a symlink
/// at `link` (relative to the download folder) to `target` (relative to the
/// sandbox's `outside` folder).
type Plant = (&'static str, &'static str);

struct Case {
    name: &'static str,
    torrent_name: Vec<u8>,
    /// Path components of each file (a single-file torrent when `None`).
    files: Option<Vec<Vec<Vec<u8>>>>,
    plant: Vec<Plant>,
    expect: Expect,
}

fn b(s: &str) -> Vec<u8> {
    s.as_bytes().to_vec()
}

fn path(parts: &[&str]) -> Vec<Vec<u8>> {
    parts.iter().map(|p| b(p)).collect()
}

fn multi(name: &'static str, files: Vec<Vec<Vec<u8>>>, expect: Expect) -> Case {
    Case {
        name,
        torrent_name: b("folder"),
        files: Some(files),
        plant: Vec::new(),
        expect,
    }
}

fn cases(sandbox_abs: &Path) -> Vec<Case> {
    use Expect::*;
    let abs = format!("{}/outside/{MARK}-abs", sandbox_abs.display());
    let long = "x".repeat(300);
    let deep: Vec<&str> = std::iter::repeat_n("d", 100).chain([MARK]).collect();
    let mut v = vec![
        multi("dotdot", vec![path(&[".."])], Refused),
        multi("dotdot twice", vec![path(&["..", "..", MARK])], Refused),
        multi(
            "dotdot in the middle",
            vec![path(&["a", "..", "..", MARK])],
            Refused,
        ),
        multi("dot", vec![path(&["."])], Refused),
        multi("dot then name", vec![path(&[".", MARK])], Refused),
        multi("absolute component", vec![vec![b(&abs)]], Refused),
        multi("absolute split", vec![path(&["", "tmp", MARK])], Refused),
        multi("separator inside", vec![path(&["a/../../", MARK])], Refused),
        multi(
            "separator escaping",
            vec![path(&[&format!("../../{MARK}")])],
            Refused,
        ),
        multi(
            "backslash",
            vec![path(&[&format!("..\\..\\{MARK}")])],
            Refused,
        ),
        multi("drive letter", vec![path(&["C:\\Windows", MARK])], Refused),
        multi("nul", vec![vec![b"a\0../../x".to_vec()]], Refused),
        multi("newline", vec![path(&["a\nb"])], Refused),
        multi("empty component", vec![path(&["a", "", MARK])], Refused),
        multi("empty path", vec![vec![]], Refused),
        multi("overlong component", vec![path(&[&long])], Refused),
        multi("too deep", vec![path(&deep)], Refused),
        multi(
            "not utf-8",
            vec![vec![vec![0xff, 0xfe, b'/', b'.']]],
            Refused,
        ),
        multi(
            "duplicate",
            vec![path(&["a", "b"]), path(&["a", "b"])],
            Refused,
        ),
        multi(
            "duplicate after joining",
            vec![path(&["a", "b"]), path(&["a/b"])],
            Refused,
        ),
        multi(
            "file and folder clash",
            vec![path(&["a"]), path(&["a", "b"])],
            Refused,
        ),
        multi("no files", vec![], Refused),
        multi(
            "one bad among good",
            vec![path(&["ok1"]), path(&["ok2"]), path(&["..", MARK])],
            Refused,
        ),
        // Legitimate odd names.
        multi("three dots", vec![path(&["...", "..."])], Completes),
        multi(
            "dots inside names",
            vec![path(&["..a", "b..", ".hidden"])],
            Completes,
        ),
        multi("tilde", vec![path(&["~", MARK])], Completes),
        multi(
            "percent-encoded dots",
            vec![path(&["%2e%2e", "%2f", MARK])],
            Completes,
        ),
        multi(
            "full-width dots",
            vec![path(&["\u{ff0e}\u{ff0e}", MARK])],
            Completes,
        ),
        // Symlinks planted in the download folder.
        Case {
            plant: vec![("folder/evil", "")],
            ..multi("symlinked folder", vec![path(&["evil", MARK])], Fails)
        },
        Case {
            plant: vec![("folder/a/evil", "")],
            ..multi(
                "symlinked folder deeper",
                vec![path(&["a", "real"]), path(&["a", "evil", MARK])],
                Fails,
            )
        },
        Case {
            plant: vec![("folder/victim", "victim.txt")],
            ..multi("symlink as a file", vec![path(&["victim"])], Fails)
        },
        Case {
            plant: vec![("folder", "")],
            ..multi(
                "the torrent's folder is a symlink",
                vec![path(&[MARK])],
                Fails,
            )
        },
        Case {
            plant: vec![("single.bin", "victim.txt")],
            torrent_name: b("single.bin"),
            files: None,
            ..multi("single file over a symlink", vec![], Fails)
        },
    ];
    // Single-file torrents with hostile names.
    for (name, torrent_name) in [
        ("single dotdot", b("..")),
        ("single with separator", b(&format!("../{MARK}"))),
        ("single absolute", b(&abs)),
        ("multi named dotdot", b("..")),
    ] {
        let files = (name == "multi named dotdot").then(|| vec![path(&[MARK])]);
        v.push(Case {
            name,
            torrent_name,
            files,
            plant: Vec::new(),
            expect: Refused,
        });
    }
    v
}

/// File contents for a case: file `i` holds 3000 + i bytes of `i`.
fn contents(case: &Case) -> Vec<Vec<u8>> {
    let n = case.files.as_ref().map_or(1, |f| f.len().max(1));
    (0..n).map(|i| vec![i as u8 + 1; 3000 + i]).collect()
}

fn torrent(case: &Case) -> Vec<u8> {
    let data = contents(case);
    let all: Vec<u8> = data.concat();
    let pieces: Vec<u8> = all
        .chunks(PIECE)
        .flat_map(|c| <[u8; 20]>::from(Sha1::digest(c)))
        .collect();
    let mut info = vec![
        ("name", OwnedValue::Bytes(case.torrent_name.clone())),
        ("piece length", OwnedValue::Int(PIECE as i64)),
        ("pieces", OwnedValue::Bytes(pieces)),
    ];
    match &case.files {
        Some(files) => {
            let list = files
                .iter()
                .zip(data.iter().chain(std::iter::repeat(&Vec::new())))
                .map(|(p, d)| {
                    OwnedValue::dict([
                        ("length", OwnedValue::Int(d.len() as i64)),
                        (
                            "path",
                            OwnedValue::List(p.iter().map(OwnedValue::bytes).collect()),
                        ),
                    ])
                })
                .collect();
            info.push(("files", OwnedValue::List(list)));
        }
        None => info.push(("length", OwnedValue::Int(all.len() as i64))),
    }
    OwnedValue::dict([
        ("announce", OwnedValue::bytes("http://127.0.0.1:9/announce")),
        ("info", OwnedValue::dict(info)),
    ])
    .to_bytes()
}

/// Every entry below `root` (not following symlinks): kind, size, content
/// hash, or link target.
fn snapshot(root: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let p = entry.unwrap().path();
            let meta = std::fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(root).unwrap().to_path_buf();
            let what = if meta.file_type().is_symlink() {
                format!("link to {}", std::fs::read_link(&p).unwrap().display())
            } else if meta.is_dir() {
                stack.push(p.clone());
                "dir".to_owned()
            } else {
                let hash = Sha1::digest(std::fs::read(&p).unwrap());
                format!("file {} {:x}", meta.len(), hash)
            };
            out.insert(rel, what);
        }
    }
    out
}

/// A seed for a legitimate case: its files written by the test, then our
/// `get` seeding them.
fn seed(case: &Case, torrent: &Path, dir: &Path) -> (Reaped, u16) {
    let root = dir.join("seed-data");
    let data = contents(case);
    for (parts, content) in case.files.as_ref().unwrap().iter().zip(&data) {
        let p: PathBuf = parts
            .iter()
            .map(|c| String::from_utf8(c.clone()).unwrap())
            .collect();
        let p = root.join(p);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }
    let port = free_port("127.0.0.2");
    let child = Reaped::spawn(
        "seed",
        bitfountain()
            .arg("get")
            .arg(torrent)
            .arg("--saveas")
            .arg(&root)
            .args(["--bind", "127.0.0.2", "--minport", &port.to_string()])
            .args(["--maxport", &port.to_string(), "--coded", "off"])
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    );
    (child, port)
}

#[test]
fn malicious_torrents_never_touch_anything_outside_the_download_folder() {
    let base = temp_dir("paths");
    let probe_cases = cases(Path::new("/probe"));
    assert!(probe_cases.len() >= 30, "{} cases", probe_cases.len());
    let mut refused = 0;
    for (i, _) in probe_cases.iter().enumerate() {
        let sandbox = base.path().join(format!("case{i:02}"));
        let case = cases(&sandbox).swap_remove(i);
        let outside = sandbox.join("outside");
        let dl = sandbox.join("dl");
        std::fs::create_dir_all(&outside).unwrap();
        std::fs::create_dir_all(&dl).unwrap();
        std::fs::write(outside.join("victim.txt"), b"precious").unwrap();
        std::fs::write(sandbox.join("beside.txt"), b"also precious").unwrap();
        for (link, target) in &case.plant {
            let link = dl.join(link);
            std::fs::create_dir_all(link.parent().unwrap()).unwrap();
            std::os::unix::fs::symlink(outside.join(target), link).unwrap();
        }
        let torrent_path = sandbox.join("case.torrent");
        std::fs::write(&torrent_path, torrent(&case)).unwrap();
        let outside_before = snapshot(&sandbox)
            .into_iter()
            .filter(|(p, _)| !p.starts_with("dl"))
            .collect::<BTreeMap<_, _>>();
        let dl_before = snapshot(&dl);

        let seed = (case.expect == Expect::Completes).then(|| seed(&case, &torrent_path, &sandbox));
        let port = free_port("127.0.0.1");
        let mut cmd = bitfountain();
        cmd.current_dir(&dl)
            .arg("get")
            .arg(&torrent_path)
            .args(["--bind", "127.0.0.1", "--minport", &port.to_string()])
            .args(["--maxport", &port.to_string(), "--coded", "off"])
            .arg("--exit-on-complete")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(sandbox.join("get.log")).unwrap());
        if let Some((_, seed_port)) = &seed {
            cmd.args(["--peer", &format!("127.0.0.2:{seed_port}")]);
        }
        let mut run = Reaped::spawn(case.name, &mut cmd);
        let status = run.wait_timeout(Duration::from_secs(30));
        drop(run);
        drop(seed);
        let log = std::fs::read_to_string(sandbox.join("get.log")).unwrap();
        std::fs::remove_file(sandbox.join("get.log")).unwrap();
        let code = status.and_then(|s| s.code());
        match case.expect {
            Expect::Refused | Expect::Fails => {
                assert_eq!(
                    code,
                    Some(1),
                    "{}: expected a refusal, got {code:?}:\n{log}",
                    case.name
                );
                refused += 1;
            }
            Expect::Completes => {
                assert_eq!(code, Some(0), "{}: should complete:\n{log}", case.name);
            }
        }
        // Outside the download folder nothing changed.
        let outside_after = snapshot(&sandbox)
            .into_iter()
            .filter(|(p, _)| !p.starts_with("dl") && !p.to_string_lossy().starts_with("seed-data"))
            .collect::<BTreeMap<_, _>>();
        assert_eq!(
            outside_before, outside_after,
            "{}: outside changed",
            case.name
        );
        // Inside it, only the torrent's own files (and resume data) appeared.
        let dl_after = snapshot(&dl);
        let added: Vec<&PathBuf> = dl_after
            .keys()
            .filter(|p| !dl_before.contains_key(*p))
            .collect();
        match case.expect {
            Expect::Refused => assert!(
                dl_after == dl_before,
                "{}: a refused torrent created {added:?}",
                case.name
            ),
            Expect::Fails => {
                assert!(
                    dl_before.iter().all(|(p, v)| dl_after.get(p) == Some(v)),
                    "{}: planted entries changed",
                    case.name
                );
                assert!(
                    added.iter().all(|p| !p.to_string_lossy().contains(MARK)),
                    "{}: created {added:?}",
                    case.name
                );
            }
            Expect::Completes => {
                let root = dl.join("folder");
                for (parts, content) in case.files.as_ref().unwrap().iter().zip(contents(&case)) {
                    let p: PathBuf = parts
                        .iter()
                        .map(|c| String::from_utf8(c.clone()).unwrap())
                        .collect();
                    assert_eq!(
                        std::fs::read(root.join(&p)).unwrap(),
                        content,
                        "{}",
                        case.name
                    );
                }
                assert!(
                    added
                        .iter()
                        .all(|p| p.starts_with("folder") || p.as_os_str() == "folder.bf-resume"),
                    "{}: created {added:?}",
                    case.name
                );
            }
        }
        eprintln!(
            "{:40} {:?}: {}",
            case.name,
            case.expect,
            log.lines().last().unwrap_or("")
        );
    }
    // Nothing escaped into the temp folder the sandboxes live in.
    let escaped: Vec<_> = std::fs::read_dir(base.path().parent().unwrap())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(MARK))
        .collect();
    assert!(
        escaped.is_empty(),
        "{escaped:?} appeared in the temp folder"
    );
    assert!(refused >= 25, "{refused}");
}
