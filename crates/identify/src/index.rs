//! A BK-tree over identifiers, so near matches are found without comparing against every entry.
//!
//! The metric is the Hamming distance over all feature bits; the "same picture" rule is then
//! applied to the candidates, so the tree only prunes and never decides.

use crate::{Distance, Identifier};

#[derive(Debug)]
struct Node<T> {
    id: Identifier,
    value: T,
    children: Vec<(u32, usize)>,
}

/// Identifiers with a value each, searchable by distance.
#[derive(Debug)]
pub struct BkTree<T> {
    nodes: Vec<Node<T>>,
}

impl<T> Default for BkTree<T> {
    fn default() -> Self {
        BkTree { nodes: Vec::new() }
    }
}

fn metric(a: &Identifier, b: &Identifier) -> u32 {
    a.feature_words()
        .iter()
        .zip(b.feature_words())
        .map(|(x, y)| (x ^ y).count_ones())
        .sum()
}

impl<T> BkTree<T> {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    pub fn insert(&mut self, id: Identifier, value: T) {
        let new = self.nodes.len();
        self.nodes.push(Node {
            id,
            value,
            children: Vec::new(),
        });
        if new == 0 {
            return;
        }
        let mut at = 0;
        loop {
            let d = metric(&self.nodes[at].id, &id);
            match self.nodes[at].children.iter().find(|(cd, _)| *cd == d) {
                Some(&(_, child)) => at = child,
                None => {
                    self.nodes[at].children.push((d, new));
                    return;
                }
            }
        }
    }

    /// Every entry whose total feature distance to `id` is at most `radius`.
    pub fn within(&self, id: &Identifier, radius: u32) -> Vec<(&T, Distance)> {
        let mut out = Vec::new();
        if self.nodes.is_empty() {
            return out;
        }
        let mut stack = vec![0usize];
        while let Some(at) = stack.pop() {
            let node = &self.nodes[at];
            let d = metric(&node.id, id);
            if d <= radius {
                out.push((&node.value, node.id.distance(id)));
            }
            let (lo, hi) = (d.saturating_sub(radius), d + radius);
            stack.extend(
                node.children
                    .iter()
                    .filter(|(cd, _)| (lo..=hi).contains(cd))
                    .map(|&(_, c)| c),
            );
        }
        out
    }

    /// Entries that are the same picture as `id` by the crate's rule.
    pub fn same_picture(&self, id: &Identifier) -> Vec<(&T, Distance)> {
        let t = crate::SAME_PICTURE;
        let mut found = self.within(id, t.luma + t.texture + t.colour);
        found.retain(|(_, d)| d.is_same_picture());
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(seed: u64) -> Identifier {
        // xorshift, so identifiers are spread over the space like real ones
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let mut next = || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s
        };
        Identifier {
            luma: [next(), next(), next(), next()],
            texture: next(),
            colour: [next(), next(), next(), next()],
            aspect: 0,
        }
    }

    #[test]
    fn finds_exactly_what_a_scan_finds() {
        let mut tree = BkTree::new();
        let mut all = Vec::new();
        for i in 0..500u64 {
            let mut x = id(i / 5);
            // five variants of each base, a few bits apart
            x.luma[0] ^= (1u64 << (i % 5)) - 1;
            x.colour[1] ^= i % 5;
            tree.insert(x, i);
            all.push((x, i));
        }
        for q in [0u64, 7, 133, 499] {
            let target = all[q as usize].0;
            for radius in [0, 3, 10, 60, 250] {
                let mut got: Vec<u64> = tree
                    .within(&target, radius)
                    .iter()
                    .map(|(v, _)| **v)
                    .collect();
                got.sort_unstable();
                let mut want: Vec<u64> = all
                    .iter()
                    .filter(|(x, _)| x.distance(&target).total() <= radius)
                    .map(|(_, v)| *v)
                    .collect();
                want.sort_unstable();
                assert_eq!(got, want, "query {q} radius {radius}");
            }
        }
    }

    #[test]
    fn same_picture_applies_the_rule() {
        let mut tree = BkTree::new();
        let base = id(1);
        let mut near = base;
        near.luma[2] ^= 0b1011;
        let mut wrong_shape = base;
        wrong_shape.aspect = 2000;
        tree.insert(base, "base");
        tree.insert(near, "near");
        tree.insert(wrong_shape, "wrong shape");
        tree.insert(id(2), "other");
        let mut got: Vec<&str> = tree.same_picture(&base).iter().map(|(v, _)| **v).collect();
        got.sort_unstable();
        assert_eq!(got, vec!["base", "near"]);
    }
}

/// Multi-index hashing over the luminance bits, for stores too large for a BK-tree.
///
/// The 256 luma bits are cut into 16 chunks of 16 bits, and every entry is filed under each of
/// its chunks. Two identifiers within the rule's luma bound `L` differ in at most `L / 16` bits
/// in at least one chunk (pigeonhole), so probing each chunk's value and its neighbours within
/// that radius finds every candidate; the full rule then decides. A lookup costs a few hundred
/// hash probes however many entries there are.
#[derive(Debug, Default)]
pub struct MultiIndex<T> {
    entries: Vec<(Identifier, T)>,
    chunks: Vec<std::collections::HashMap<u16, Vec<u32>>>,
}

const CHUNKS: usize = 16;

fn chunk(id: &Identifier, i: usize) -> u16 {
    (id.luma[i / 4] >> ((i % 4) * 16)) as u16
}

/// Every 16-bit value within `radius` bits of `v`.
fn neighbours(v: u16, radius: u32, out: &mut Vec<u16>) {
    out.clear();
    out.push(v);
    if radius >= 1 {
        for a in 0..16 {
            out.push(v ^ (1 << a));
            if radius >= 2 {
                for b in a + 1..16 {
                    out.push(v ^ (1 << a) ^ (1 << b));
                }
            }
        }
    }
}

impl<T> MultiIndex<T> {
    pub fn new() -> Self {
        MultiIndex {
            entries: Vec::new(),
            chunks: (0..CHUNKS).map(|_| Default::default()).collect(),
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn insert(&mut self, id: Identifier, value: T) {
        let n = u32::try_from(self.entries.len()).expect("index holds at most 2^32 entries");
        for (i, map) in self.chunks.iter_mut().enumerate() {
            map.entry(chunk(&id, i)).or_default().push(n);
        }
        self.entries.push((id, value));
    }

    /// Entries that are the same picture as `id` by the crate's rule, nearest first.
    pub fn same_picture(&self, id: &Identifier) -> Vec<(&T, Distance)> {
        let radius = crate::SAME_PICTURE.luma / CHUNKS as u32;
        assert!(radius <= 2, "neighbour enumeration covers radius 2");
        let mut seen = std::collections::HashSet::new();
        let mut probe = Vec::new();
        let mut out = Vec::new();
        for (i, map) in self.chunks.iter().enumerate() {
            neighbours(chunk(id, i), radius, &mut probe);
            for v in &probe {
                for &n in map.get(v).into_iter().flatten() {
                    if !seen.insert(n) {
                        continue;
                    }
                    let (other, value) = &self.entries[n as usize];
                    let d = other.distance(id);
                    if d.is_same_picture() {
                        out.push((value, d));
                    }
                }
            }
        }
        out.sort_by_key(|(_, d)| d.total());
        out
    }
}

#[cfg(test)]
mod multi_index_tests {
    use super::*;

    fn random_id(seed: u64) -> Identifier {
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        let mut next = || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s
        };
        Identifier {
            luma: [next(), next(), next(), next()],
            texture: next(),
            colour: [next(), next(), next(), next()],
            aspect: 0,
        }
    }

    #[test]
    fn finds_every_match_a_scan_finds() {
        let mut idx = MultiIndex::new();
        let mut all = Vec::new();
        for i in 0..2000u64 {
            let mut x = random_id(i / 4);
            // copies of each base: up to 26 luma bits apart, spread over the chunks
            for b in 0..(i % 4) * 8 + (i % 3) {
                x.luma[(b % 4) as usize] ^= 1 << ((b * 7) % 64);
            }
            x.texture ^= i % 4;
            idx.insert(x, i);
            all.push((x, i));
        }
        for q in (0..2000).step_by(37) {
            let target = all[q].0;
            let mut got: Vec<u64> = idx.same_picture(&target).iter().map(|(v, _)| **v).collect();
            got.sort_unstable();
            let mut want: Vec<u64> = all
                .iter()
                .filter(|(x, _)| x.distance(&target).is_same_picture())
                .map(|(_, v)| *v)
                .collect();
            want.sort_unstable();
            assert_eq!(got, want, "query {q}");
            assert!(!got.is_empty());
        }
    }
}
