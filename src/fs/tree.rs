//! The mounted torrent's directory tree: inode numbers for the torrent's
//! files and the folders their paths imply, built once from the metainfo
//! (the tree never changes while mounted).

use std::collections::BTreeMap;

use wire::Info;

/// The root folder's inode (FUSE's fixed number).
pub const ROOT: u64 = 1;

#[derive(Debug)]
pub enum Kind {
    Dir {
        /// Name → inode, sorted so listings are stable.
        children: BTreeMap<String, u64>,
    },
    File {
        /// Where the file starts in the torrent's byte stream.
        offset: u64,
        length: u64,
    },
}

#[derive(Debug)]
pub struct Node {
    pub parent: u64,
    pub kind: Kind,
}

/// Every node, indexed by inode number − 1.
#[derive(Debug)]
pub struct Tree {
    nodes: Vec<Node>,
}

impl Tree {
    /// A single-file torrent shows its file at the mount's root; a
    /// multi-file torrent's folder *is* the mount's root (as `--saveas`
    /// names the folder for one).
    pub fn new(info: &Info) -> Tree {
        let mut tree = Tree {
            nodes: vec![Node {
                parent: ROOT,
                kind: Kind::Dir {
                    children: BTreeMap::new(),
                },
            }],
        };
        for f in &info.files {
            let components: Vec<&str> = if info.single_file {
                vec![info.name.as_str()]
            } else {
                f.path.components().iter().map(String::as_str).collect()
            };
            let Some((file_name, dirs)) = components.split_last() else {
                continue;
            };
            let mut dir = ROOT;
            for d in dirs {
                dir = tree.child_dir(dir, d);
            }
            let ino = tree.nodes.len() as u64 + 1;
            if let Some(Node {
                kind: Kind::Dir { children },
                ..
            }) = tree.nodes.get_mut((dir - 1) as usize)
            {
                // Paths were checked unique when the metainfo was parsed;
                // a clash (file vs folder) keeps the first entry.
                if children.contains_key(*file_name) {
                    continue;
                }
                children.insert((*file_name).to_owned(), ino);
            }
            tree.nodes.push(Node {
                parent: dir,
                kind: Kind::File {
                    offset: f.offset,
                    length: f.length,
                },
            });
        }
        tree
    }

    /// The folder `name` in `dir`, created when missing.
    fn child_dir(&mut self, dir: u64, name: &str) -> u64 {
        let next = self.nodes.len() as u64 + 1;
        let Some(Node {
            kind: Kind::Dir { children },
            ..
        }) = self.nodes.get_mut((dir - 1) as usize)
        else {
            return dir;
        };
        if let Some(&existing) = children.get(name) {
            return existing;
        }
        children.insert(name.to_owned(), next);
        self.nodes.push(Node {
            parent: dir,
            kind: Kind::Dir {
                children: BTreeMap::new(),
            },
        });
        next
    }

    pub fn get(&self, ino: u64) -> Option<&Node> {
        ino.checked_sub(1).and_then(|i| self.nodes.get(i as usize))
    }

    pub fn lookup(&self, dir: u64, name: &str) -> Option<u64> {
        match &self.get(dir)?.kind {
            Kind::Dir { children } => children.get(name).copied(),
            Kind::File { .. } => None,
        }
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }
}
