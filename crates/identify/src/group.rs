//! Grouping a set of identities into "same bytes" and "same picture" groups.

use std::collections::HashMap;

use crate::{compare, BkTree, Identity, Match};

/// One member of a group: which input it is and how it relates to the group's best copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub index: usize,
    /// The member it matched (the group's first member for direct matches).
    pub matched: usize,
    /// `None` for the group's first member, the best copy (class, pixels, JPEG quality).
    pub relation: Option<Match>,
}

/// Images that are copies of one another. The first member is the best copy (the first
/// given among equals).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Group {
    pub members: Vec<Member>,
}

fn find(parent: &mut [usize], mut i: usize) -> usize {
    while parent[i] != i {
        parent[i] = parent[parent[i]];
        i = parent[i];
    }
    i
}

fn union(parent: &mut [usize], a: usize, b: usize) {
    let (ra, rb) = (find(parent, a), find(parent, b));
    if ra != rb {
        parent[ra.max(rb)] = ra.min(rb);
    }
}

/// Groups identities that are the same bytes or the same picture. Near matches are found
/// through a [`BkTree`], not by comparing every pair. Only groups of two or more are returned,
/// ordered by their first input index.
pub fn group(items: &[Identity]) -> Vec<Group> {
    let mut parent: Vec<usize> = (0..items.len()).collect();

    let mut first_by_digest = HashMap::new();
    let mut unique = Vec::new();
    for (i, item) in items.iter().enumerate() {
        match first_by_digest.entry(item.digest) {
            std::collections::hash_map::Entry::Occupied(e) => union(&mut parent, *e.get(), i),
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(i);
                unique.push(i);
            }
        }
    }

    let mut tree = BkTree::new();
    for &i in &unique {
        for (&j, _) in tree.same_picture(&items[i].identifier) {
            let j: usize = j;
            if crate::verify(&items[i].evidence, &items[j].evidence).is_ok() {
                union(&mut parent, i, j);
            }
        }
        tree.insert(items[i].identifier, i);
    }

    let mut sets: HashMap<usize, Vec<usize>> = HashMap::new();
    for i in 0..items.len() {
        let root = find(&mut parent, i);
        sets.entry(root).or_default().push(i);
    }
    let mut groups: Vec<Group> = sets
        .into_values()
        .filter(|s| s.len() > 1)
        .map(|mut s| {
            // The best copy first: class, then pixels, then JPEG quality.
            s.sort_by(|&a, &b| items[b].grade().rank(&items[a].grade()).then(a.cmp(&b)));
            let best = s[0];
            let members = s
                .iter()
                .enumerate()
                .map(|(pos, &i)| {
                    if pos == 0 {
                        return Member {
                            index: i,
                            matched: i,
                            relation: None,
                        };
                    }
                    // Chains are possible (A~B, B~C, A!~C): name the closest member matched.
                    let relation = compare(&items[best], &items[i]);
                    if relation.is_same() {
                        return Member {
                            index: i,
                            matched: best,
                            relation: Some(relation),
                        };
                    }
                    s.iter()
                        .filter(|&&j| j != i)
                        .map(|&j| (j, compare(&items[j], &items[i])))
                        .filter(|(_, m)| m.is_same())
                        .min_by_key(|(_, m)| match m {
                            Match::SamePicture(d) | Match::Different(d) | Match::Refuted(d, _) => {
                                d.total()
                            }
                            Match::SameBytes => 0,
                        })
                        .map(|(j, m)| Member {
                            index: i,
                            matched: j,
                            relation: Some(m),
                        })
                        .unwrap_or(Member {
                            index: i,
                            matched: best,
                            relation: Some(relation),
                        })
                })
                .collect();
            Group { members }
        })
        .collect();
    groups.sort_by_key(|g| g.members.iter().map(|m| m.index).min());
    groups
}
