//! Weighted rendezvous (highest random weight) hashing: which live node should hold a camera.
//!
//! Every node computes the same answer from the same list of nodes, with no coordination; a node
//! joining takes only the cameras it now scores highest on (about 1/N of them), and a node leaving
//! gives away only its own. The score of a (camera, node) pair is `-weight / ln(u)`, with `u` in
//! (0, 1) from SHA-256 of the pair, so a node of weight 2 holds about twice the cameras of one of
//! weight 1. SHA-256 rather than the standard library's hasher: nodes of different builds (a rolling
//! upgrade) must agree.

use sha2::{Digest, Sha256};

/// A candidate holder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate<'a> {
    /// Node id.
    pub id: &'a str,
    /// Relative share (at least 1).
    pub weight: u32,
}

fn score(camera: &str, node: &Candidate<'_>) -> f64 {
    let mut h = Sha256::new();
    h.update(camera.as_bytes());
    h.update([0]);
    h.update(node.id.as_bytes());
    let d = h.finalize();
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[..8]);
    // 53 random bits, strictly inside (0, 1).
    let u = ((u64::from_be_bytes(b) >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
    -f64::from(node.weight.max(1)) / u.ln()
}

/// The node that should hold `camera`, of `nodes` (none when the list is empty).
pub fn owner<'a>(camera: &str, nodes: &[Candidate<'a>]) -> Option<&'a str> {
    nodes
        .iter()
        .map(|n| (score(camera, n), n.id))
        .max_by(|a, b| a.0.total_cmp(&b.0).then_with(|| b.1.cmp(a.1)))
        .map(|(_, id)| id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn spread(cameras: &[String], nodes: &[Candidate<'_>]) -> HashMap<String, String> {
        cameras
            .iter()
            .map(|c| (c.clone(), owner(c, nodes).unwrap().to_owned()))
            .collect()
    }

    fn counts(placement: &HashMap<String, String>) -> HashMap<String, usize> {
        let mut n = HashMap::new();
        for node in placement.values() {
            *n.entry(node.clone()).or_default() += 1;
        }
        n
    }

    #[test]
    fn cameras_spread_evenly_by_weight_and_a_join_moves_only_the_new_nodes_share() {
        let cameras: Vec<String> = (0..3000).map(|i| format!("cam-{i:05}")).collect();
        let three = [
            Candidate {
                id: "node-0",
                weight: 1,
            },
            Candidate {
                id: "node-1",
                weight: 1,
            },
            Candidate {
                id: "node-2",
                weight: 1,
            },
        ];
        let before = spread(&cameras, &three);
        for (node, n) in counts(&before) {
            assert!((850..=1150).contains(&n), "{node} holds {n} of 3000");
        }
        // A fourth node: it takes about a quarter, every moved camera moves to it.
        let mut four = three.to_vec();
        four.push(Candidate {
            id: "node-3",
            weight: 1,
        });
        let after = spread(&cameras, &four);
        let moved: Vec<&String> = cameras.iter().filter(|c| before[*c] != after[*c]).collect();
        assert!((600..=900).contains(&moved.len()), "{} moved", moved.len());
        assert!(moved.iter().all(|c| after[*c] == "node-3"));
        // node-1 leaves: only its cameras move.
        let two = [three[0].clone(), three[2].clone()];
        let left = spread(&cameras, &two);
        for c in &cameras {
            if before[c] != "node-1" {
                assert_eq!(before[c], left[c], "{c} moved though its node stayed");
            }
        }
        // Weight 2 against 1: about two thirds.
        let weighted = [
            Candidate {
                id: "big",
                weight: 2,
            },
            Candidate {
                id: "small",
                weight: 1,
            },
        ];
        let n = counts(&spread(&cameras, &weighted));
        assert!((1850..=2150).contains(&n["big"]), "{n:?}");
    }

    #[test]
    fn no_node_no_owner_and_the_answer_is_the_same_in_any_order() {
        assert_eq!(owner("c", &[]), None);
        let a = [
            Candidate { id: "x", weight: 1 },
            Candidate { id: "y", weight: 3 },
        ];
        let b = [a[1].clone(), a[0].clone()];
        for i in 0..100 {
            let c = format!("c{i}");
            assert_eq!(owner(&c, &a), owner(&c, &b));
        }
    }
}
