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
