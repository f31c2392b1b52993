//! The part of the state tree a response certifies, and its certificate (spec "Certificate", "Lookup").
//!
//! A response holds only the paths it was asked for, each with its whole subtree, and no pruned nodes: every label
//! of a map is present, so a path that is not there reads as absent.

use std::collections::BTreeMap;

use ic_certification::hash_tree::{empty, fork, label, leaf, HashTree};
use ic_certification::Certificate;
use serde::Serialize;

use crate::keys::Keys;

/// A labeled tree: leaves hold bytes, maps hold labeled subtrees in label order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Node {
    Leaf(Vec<u8>),
    Map(BTreeMap<Vec<u8>, Node>),
}

impl Node {
    pub fn map() -> Self {
        Node::Map(BTreeMap::new())
    }

    pub fn leaf(bytes: impl Into<Vec<u8>>) -> Self {
        Node::Leaf(bytes.into())
    }

    /// A natural number as the state tree stores it: unsigned LEB128.
    pub fn nat(mut n: u64) -> Self {
        let mut bytes = Vec::new();
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                bytes.push(byte);
                return Node::Leaf(bytes);
            }
            bytes.push(byte | 0x80);
        }
    }

    /// Adds `child` under `label` (replacing what was there); `self` must be a map.
    pub fn with(mut self, label: impl Into<Vec<u8>>, child: Node) -> Self {
        self.insert(&[label.into()], child);
        self
    }

    /// Puts `subtree` at `path`, creating the maps on the way (a leaf on the way is replaced by a map).
    pub fn insert(&mut self, path: &[Vec<u8>], subtree: Node) {
        let Some((first, rest)) = path.split_first() else {
            *self = subtree;
            return;
        };
        if let Node::Leaf(_) = self {
            *self = Node::map();
        }
        let Node::Map(children) = self else { unreachable!() };
        let child = children.entry(first.clone()).or_insert_with(Node::map);
        if rest.is_empty() {
            *child = subtree;
        } else {
            child.insert(rest, subtree);
        }
    }

    /// The subtree at `path`, if there is one.
    pub fn get(&self, path: &[Vec<u8>]) -> Option<&Node> {
        let Some((first, rest)) = path.split_first() else {
            return Some(self);
        };
        match self {
            Node::Map(children) => children.get(first)?.get(rest),
            Node::Leaf(_) => None,
        }
    }

    /// The hash tree, with each map's labeled children under a balanced spine of forks.
    pub fn to_hash_tree(&self) -> HashTree<Vec<u8>> {
        match self {
            Node::Leaf(bytes) => leaf(bytes.clone()),
            Node::Map(children) => {
                let labeled: Vec<HashTree<Vec<u8>>> = children
                    .iter()
                    .map(|(name, child)| label(name.clone(), child.to_hash_tree()))
                    .collect();
                balanced(labeled)
            }
        }
    }
}

fn balanced(mut nodes: Vec<HashTree<Vec<u8>>>) -> HashTree<Vec<u8>> {
    match nodes.len() {
        0 => empty(),
        1 => nodes.pop().expect("one node"),
        n => {
            let right = nodes.split_off(n / 2);
            fork(balanced(nodes), balanced(right))
        }
    }
}

/// A certificate for `tree`, signed with the root key (no delegation: this network is its own root subnet),
/// CBOR-encoded with the self-describing tag as the IC sends it.
pub fn certificate(keys: &Keys, tree: &Node) -> Vec<u8> {
    let tree = tree.to_hash_tree();
    let signature = keys.sign_state_root(&tree.digest());
    let certificate = Certificate {
        tree,
        signature,
        delegation: None,
    };
    to_cbor(&certificate)
}

/// CBOR with the self-describing tag (55799), as the IC encodes its responses.
pub fn to_cbor<T: Serialize>(value: &T) -> Vec<u8> {
    let mut serializer = serde_cbor::Serializer::new(Vec::new());
    serializer.self_describe().expect("writing to a Vec cannot fail");
    value.serialize(&mut serializer).expect("the value serializes");
    serializer.into_inner()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ic_certification::hash_tree::{Label, LookupResult};

    fn path(labels: &[&str]) -> Vec<Label<Vec<u8>>> {
        labels.iter().map(|l| Label::from(l.as_bytes().to_vec())).collect()
    }

    #[test]
    fn paths_present_are_found_and_paths_missing_are_provably_absent() {
        let tree = Node::map().with("time", Node::nat(300)).with(
            "request_status",
            Node::map()
                .with("b", Node::map().with("status", Node::leaf("replied")))
                .with("d", Node::map().with("status", Node::leaf("rejected")))
                .with("f", Node::map().with("status", Node::leaf("processing"))),
        );
        let hash_tree = tree.to_hash_tree();
        assert_eq!(
            hash_tree.lookup_path(path(&["request_status", "d", "status"])),
            LookupResult::Found(b"rejected")
        );
        assert_eq!(
            hash_tree.lookup_path(path(&["time"])),
            LookupResult::Found(&[0xac, 0x02])
        );
        for missing in [
            &["request_status", "a"][..],
            &["request_status", "c"],
            &["request_status", "g"],
            &["x"],
        ] {
            assert_eq!(
                hash_tree.lookup_path(path(missing)),
                LookupResult::Absent,
                "{missing:?}"
            );
        }
    }

    #[test]
    fn insert_builds_the_maps_on_the_way() {
        let mut tree = Node::map();
        tree.insert(&[b"a".to_vec(), b"b".to_vec()], Node::leaf("x"));
        tree.insert(&[b"a".to_vec(), b"c".to_vec()], Node::leaf("y"));
        assert_eq!(tree.get(&[b"a".to_vec(), b"c".to_vec()]), Some(&Node::leaf("y")));
        assert_eq!(tree.get(&[b"a".to_vec(), b"b".to_vec(), b"z".to_vec()]), None);
    }
}
