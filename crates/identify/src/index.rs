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

    /// Identifiers spread over the space like real ones (xorshift).
    pub(super) fn id(seed: u64) -> Identifier {
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
/// The 256 luma bits are cut into 16 chunks of 16 bits. Two identifiers within the rule's luma
/// bound `L` differ in at most `L / 16` bits in at least one chunk (pigeonhole), so probing each
/// chunk's value and its neighbours within that radius finds every candidate; the full rule then
/// decides. Each chunk's table is a flat array sorted by chunk value (compressed sparse rows), and
/// keeps beside each entry 128 of its luma bits, so non-matches are dropped without
/// touching the entry itself. Entries added since the last rebuild are scanned directly.
///
/// Cost: 16 × 20 bytes per entry for the tables (about 320 MB per million identifiers), and
/// about 12 µs per lookup at 100,000 entries, 90 µs at 1,000,000 (random identifiers, this
/// machine; `cargo bench -p photosync-bench --bench server` measures it through the server).
#[derive(Debug, Default)]
pub struct MultiIndex<T> {
    entries: Vec<(Identifier, T)>,
    tables: Vec<ChunkTable>,
    /// Entries `[indexed..]` are not in the tables yet.
    indexed: usize,
}

#[derive(Debug, Default)]
struct ChunkTable {
    /// `offsets[v]..offsets[v + 1]` are the rows whose chunk value is `v`.
    offsets: Vec<u32>,
    rows: Vec<u32>,
    sketches: Vec<[u64; 2]>,
}

const CHUNKS: usize = 16;
/// Entries scanned directly before the tables are rebuilt.
const MAX_UNINDEXED: usize = 1024;

fn chunk(id: &Identifier, i: usize) -> u16 {
    (id.luma[i / 4] >> ((i % 4) * 16)) as u16
}

/// The luma bits kept beside chunk `i`'s rows: the chunk's own word and the next one.
fn sketch(id: &Identifier, i: usize) -> [u64; 2] {
    [id.luma[i / 4], id.luma[(i / 4 + 1) % 4]]
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
            tables: Vec::new(),
            indexed: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn insert(&mut self, id: Identifier, value: T) {
        self.entries.push((id, value));
        if self.entries.len() - self.indexed > MAX_UNINDEXED {
            self.rebuild();
        }
    }

    /// Adds many entries, rebuilding the tables once.
    pub fn extend(&mut self, items: impl IntoIterator<Item = (Identifier, T)>) {
        self.entries.extend(items);
        if self.entries.len() - self.indexed > MAX_UNINDEXED {
            self.rebuild();
        }
    }

    fn rebuild(&mut self) {
        let n = self.entries.len();
        assert!(u32::try_from(n).is_ok(), "index holds at most 2^32 entries");
        self.tables = (0..CHUNKS)
            .map(|c| {
                // counting sort by chunk value
                let mut offsets = vec![0u32; (1 << 16) + 1];
                for (id, _) in &self.entries {
                    offsets[usize::from(chunk(id, c)) + 1] += 1;
                }
                for v in 0..1 << 16 {
                    offsets[v + 1] += offsets[v];
                }
                let mut next = offsets.clone();
                let mut rows = vec![0u32; n];
                let mut sketches = vec![[0u64; 2]; n];
                for (row, (id, _)) in self.entries.iter().enumerate() {
                    let at = &mut next[usize::from(chunk(id, c))];
                    rows[*at as usize] = row as u32;
                    sketches[*at as usize] = sketch(id, c);
                    *at += 1;
                }
                ChunkTable {
                    offsets,
                    rows,
                    sketches,
                }
            })
            .collect();
        self.indexed = n;
    }

    /// Entries that are the same picture as `id` by the crate's rule, nearest first.
    pub fn same_picture(&self, id: &Identifier) -> Vec<(&T, Distance)> {
        let bound = crate::SAME_PICTURE.luma;
        let radius = bound / CHUNKS as u32;
        assert!(radius <= 2, "neighbour enumeration covers radius 2");
        let mut probe = Vec::new();
        let mut candidates: Vec<u32> = Vec::new();
        for (c, table) in self.tables.iter().enumerate() {
            let q = sketch(id, c);
            neighbours(chunk(id, c), radius, &mut probe);
            for &v in &probe {
                let range = table.offsets[usize::from(v)] as usize
                    ..table.offsets[usize::from(v) + 1] as usize;
                // Every luma word of a match is within the bound on its own.
                for (&row, &s) in table.rows[range.clone()].iter().zip(&table.sketches[range]) {
                    if (s[0] ^ q[0]).count_ones() + (s[1] ^ q[1]).count_ones() <= bound {
                        candidates.push(row);
                    }
                }
            }
        }
        candidates.extend(self.indexed as u32..self.entries.len() as u32);
        candidates.sort_unstable();
        candidates.dedup();
        let mut out: Vec<(&T, Distance)> = candidates
            .into_iter()
            .filter_map(|row| {
                let (other, value) = &self.entries[row as usize];
                let d = other.distance(id);
                d.is_same_picture().then_some((value, d))
            })
            .collect();
        out.sort_by_key(|(_, d)| d.total());
        out
    }
}

#[cfg(test)]
mod multi_index_tests {
    use super::tests::id as random_id;
    use super::*;

    #[test]
    fn finds_every_match_a_scan_finds() {
        let mut idx = MultiIndex::new();
        let mut all = Vec::new();
        for i in 0..10_000u64 {
            let mut x = random_id(i / 4);
            // copies of each base: up to 26 luma bits apart, spread over the chunks
            for b in 0..(i % 4) * 8 + (i % 3) {
                x.luma[(b % 4) as usize] ^= 1 << ((b * 7) % 64);
            }
            x.texture ^= i % 4;
            idx.insert(x, i);
            all.push((x, i));
        }
        for q in (0..10_000).step_by(97) {
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
