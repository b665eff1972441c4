//! The decision step, pure: what happens to a file given the server's answer and the policy,
//! and which copy of a picture goes up when several arrive within one run.
//!
//! Nothing here reads a file, the database or the network, so every rule is unit- and
//! property-tested below.

use photosync_protocol::DetectResult;

use photosync_events::OnServer;

/// What the person asked for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Policy {
    /// Upload same-picture copies even when the server's copy is as large.
    pub upload_all_copies: bool,
    /// This file was forced: it goes up whatever the server holds of the picture.
    pub forced: bool,
}

/// What becomes of one file once the server has answered.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Verdict {
    /// The server holds it (these bytes, or the picture at least as large): nothing goes up.
    OnServer(OnServer),
    /// Upload it. `why` is the server's smaller or unwanted copy of the picture, if any.
    Upload { why: Option<OnServer> },
}

/// The server's answer about one file, under `policy`. `local_pixels` is the file's own size
/// in pixels (`None` for a file known by its bytes alone).
pub(crate) fn verdict(answer: &DetectResult, local_pixels: Option<u64>, policy: Policy) -> Verdict {
    match answer {
        // The same bytes are the same file: forcing cannot make a second copy of it.
        DetectResult::SameBytes { image } => Verdict::OnServer(OnServer::SameBytes {
            remote_id: image.id,
            name: image.name.clone(),
        }),
        DetectResult::SamePicture { image, distance } => {
            let remote_pixels = image
                .width
                .zip(image.height)
                .map(|(w, h)| u64::from(w) * u64::from(h));
            let how = OnServer::SamePicture {
                remote_id: image.id,
                name: image.name.clone(),
                distance: distance.total,
                remote_pixels,
                local_pixels,
            };
            // An unknown size counts as the smallest: a server copy of unknown size never
            // stands in for a local file of known size.
            let as_good = match (remote_pixels, local_pixels) {
                (Some(r), Some(l)) => r >= l,
                (_, None) => true,
                (None, Some(_)) => false,
            };
            if as_good && !policy.upload_all_copies && !policy.forced {
                Verdict::OnServer(how)
            } else {
                Verdict::Upload { why: Some(how) }
            }
        }
        DetectResult::Absent => Verdict::Upload { why: None },
    }
}

/// Whether two pictures are the same, and how far apart.
pub(crate) trait Picture {
    fn same_picture(&self, other: &Self) -> Option<u32>;
}

impl Picture for photosync_identify::Identifier {
    fn same_picture(&self, other: &Self) -> Option<u32> {
        let d = self.distance(other);
        d.is_same_picture().then(|| d.total())
    }
}

/// A copy's role among this run's copies, after a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Placed<Id> {
    /// It goes up.
    Lead(Id),
    /// A copy at least as large is on its way: this one waits for its outcome.
    Follow { id: Id, leader: Id, distance: u32 },
}

struct Copy<Id, P> {
    id: Id,
    picture: P,
    pixels: u64,
}

struct Leader<Id, P> {
    copy: Copy<Id, P>,
    started: bool,
    followers: Vec<(Copy<Id, P>, u32)>,
}

/// The pictures of one run that are on their way up, with the copies waiting on each.
///
/// Copies of one picture arrive in different detect batches. A copy waits (follows) while a
/// copy at least as large is on its way. A larger copy takes the place of smaller ones that
/// have not started. A smaller copy that already started keeps going, and the larger one goes
/// up too: it is never skipped. A leader that settles hands back its followers: on the server
/// when it went up, asked about and placed again when it did not.
pub(crate) struct Copies<Id, P> {
    leaders: Vec<Leader<Id, P>>,
}

impl<Id, P> Default for Copies<Id, P> {
    fn default() -> Self {
        Copies {
            leaders: Vec::new(),
        }
    }
}

impl<Id: std::marker::Copy + PartialEq, P: Picture> Copies<Id, P> {
    /// Places a picture the server lacks (or holds smaller). Returns every role that changed:
    /// the new copy's, and those of smaller copies it displaced.
    pub fn place(&mut self, id: Id, picture: P, pixels: Option<u64>) -> Vec<Placed<Id>> {
        let mut changes = Vec::new();
        self.place_copy(
            Copy {
                id,
                picture,
                pixels: pixels.unwrap_or(0),
            },
            &mut changes,
        );
        changes
    }

    fn place_copy(&mut self, copy: Copy<Id, P>, changes: &mut Vec<Placed<Id>>) {
        let best = self
            .leaders
            .iter_mut()
            .filter(|l| l.copy.pixels >= copy.pixels)
            .filter_map(|l| l.copy.picture.same_picture(&copy.picture).map(|d| (l, d)))
            .min_by_key(|(_, d)| *d);
        if let Some((leader, distance)) = best {
            changes.push(Placed::Follow {
                id: copy.id,
                leader: leader.copy.id,
                distance,
            });
            leader.followers.push((copy, distance));
            return;
        }
        // Smaller copies that have not started step back behind this one.
        let (displaced, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut self.leaders)
            .into_iter()
            .partition(|l| {
                !l.started
                    && l.copy.pixels < copy.pixels
                    && l.copy.picture.same_picture(&copy.picture).is_some()
            });
        self.leaders = kept;
        changes.push(Placed::Lead(copy.id));
        self.leaders.push(Leader {
            copy,
            started: false,
            followers: Vec::new(),
        });
        // Each is placed again: never assumed to be the same picture as the new leader
        // because it was the same as the one it followed.
        for l in displaced {
            self.place_copy(l.copy, changes);
            for (f, _) in l.followers {
                self.place_copy(f, changes);
            }
        }
    }

    /// The leader's upload has started: a larger copy can no longer take its place.
    pub fn started(&mut self, id: Id) {
        if let Some(l) = self.leaders.iter_mut().find(|l| l.copy.id == id) {
            l.started = true;
        }
    }

    /// The leader went up: its followers, with their distances, are on the server.
    pub fn settled(&mut self, id: Id) -> Vec<(Id, u32)> {
        self.take(id).into_iter().map(|(f, d)| (f.id, d)).collect()
    }

    /// The leader did not go up: its followers, largest first. Each must be asked about
    /// again (another copy may have reached the server meanwhile) and placed again.
    pub fn failed(&mut self, id: Id) -> Vec<Id> {
        let mut followers = self.take(id);
        followers.sort_by_key(|(f, _)| std::cmp::Reverse(f.pixels));
        followers.into_iter().map(|(f, _)| f.id).collect()
    }

    /// The leader and its followers leave (the run was cancelled): the followers' ids.
    pub fn abandoned(&mut self, id: Id) -> Vec<Id> {
        self.take(id).into_iter().map(|(f, _)| f.id).collect()
    }

    fn take(&mut self, id: Id) -> Vec<(Copy<Id, P>, u32)> {
        match self.leaders.iter().position(|l| l.copy.id == id) {
            Some(i) => self.leaders.swap_remove(i).followers,
            None => Vec::new(),
        }
    }

    /// Copies on their way up or waiting: none once a run has settled everything.
    pub fn len(&self) -> usize {
        self.leaders.iter().map(|l| 1 + l.followers.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use photosync_protocol::{Distance, ImageInfo};
    use proptest::prelude::*;
    use std::collections::HashMap;

    fn image(id: i64, size: Option<(u32, u32)>) -> ImageInfo {
        ImageInfo {
            id,
            name: format!("server-{id}.jpg"),
            width: size.map(|s| s.0),
            height: size.map(|s| s.1),
            name_bytes: None,
            digest: "00".repeat(32),
            identifier: None,
            bytes: 1,
            mtime: None,
            uploaded_at: 0,
        }
    }

    fn same_picture(size: Option<(u32, u32)>) -> DetectResult {
        DetectResult::SamePicture {
            image: image(7, size),
            distance: Distance {
                total: 9,
                luma: 5,
                texture: 2,
                colour: 2,
            },
        }
    }

    const AS_IS: Policy = Policy {
        upload_all_copies: false,
        forced: false,
    };

    #[test]
    fn the_same_bytes_are_never_uploaded_again_even_forced() {
        for policy in [
            AS_IS,
            Policy {
                forced: true,
                upload_all_copies: true,
            },
        ] {
            let v = verdict(
                &DetectResult::SameBytes {
                    image: image(3, None),
                },
                Some(100),
                policy,
            );
            assert!(matches!(
                v,
                Verdict::OnServer(OnServer::SameBytes { remote_id: 3, .. })
            ));
        }
    }

    #[test]
    fn a_picture_the_server_holds_at_least_as_large_is_not_uploaded() {
        let v = verdict(&same_picture(Some((10, 10))), Some(100), AS_IS);
        assert!(matches!(
            v,
            Verdict::OnServer(OnServer::SamePicture { remote_id: 7, .. })
        ));
        let v = verdict(&same_picture(Some((10, 10))), Some(80), AS_IS);
        assert!(matches!(v, Verdict::OnServer(_)));
    }

    #[test]
    fn a_larger_local_copy_or_an_unknown_server_size_is_uploaded() {
        for (server, local) in [(Some((10, 10)), Some(101)), (None, Some(1))] {
            let v = verdict(&same_picture(server), local, AS_IS);
            assert!(
                matches!(
                    v,
                    Verdict::Upload {
                        why: Some(OnServer::SamePicture { .. })
                    }
                ),
                "{server:?} {local:?}: {v:?}"
            );
        }
        assert_eq!(
            verdict(&DetectResult::Absent, Some(5), AS_IS),
            Verdict::Upload { why: None }
        );
    }

    #[test]
    fn forced_files_and_the_all_copies_policy_upload_a_smaller_copy() {
        for policy in [
            Policy {
                forced: true,
                ..AS_IS
            },
            Policy {
                upload_all_copies: true,
                ..AS_IS
            },
        ] {
            let v = verdict(&same_picture(Some((10, 10))), Some(50), policy);
            assert!(matches!(v, Verdict::Upload { why: Some(_) }), "{policy:?}");
        }
    }

    /// Pictures in tests: copies of one group are the same picture.
    #[derive(Debug, Clone, Copy, PartialEq)]
    struct Group(u8);

    impl Picture for Group {
        fn same_picture(&self, other: &Self) -> Option<u32> {
            (self.0 == other.0).then_some(1)
        }
    }

    #[test]
    fn a_smaller_copy_follows_a_larger_one_on_its_way() {
        let mut c = Copies::default();
        assert_eq!(c.place(1, Group(0), Some(100)), [Placed::Lead(1)]);
        assert_eq!(
            c.place(2, Group(0), Some(50)),
            [Placed::Follow {
                id: 2,
                leader: 1,
                distance: 1
            }]
        );
        // Another picture leads on its own.
        assert_eq!(c.place(3, Group(1), Some(10)), [Placed::Lead(3)]);
        assert_eq!(c.settled(1), [(2, 1)]);
        assert_eq!(c.settled(3), []);
        assert_eq!(c.len(), 0);
    }

    #[test]
    fn a_larger_copy_displaces_a_waiting_smaller_one_but_not_a_started_one() {
        let mut c = Copies::default();
        c.place(1, Group(0), Some(50));
        c.place(2, Group(0), Some(40));
        assert_eq!(
            c.place(3, Group(0), Some(100)),
            [
                Placed::Lead(3),
                Placed::Follow {
                    id: 1,
                    leader: 3,
                    distance: 1
                },
                Placed::Follow {
                    id: 2,
                    leader: 3,
                    distance: 1
                },
            ]
        );
        let mut c = Copies::default();
        c.place(1, Group(0), Some(50));
        c.started(1);
        // The started smaller copy keeps going; the larger is never skipped.
        assert_eq!(c.place(3, Group(0), Some(100)), [Placed::Lead(3)]);
    }

    #[test]
    fn a_failed_leader_hands_over_to_its_largest_follower() {
        let mut c = Copies::default();
        c.place(1, Group(0), Some(100));
        c.place(2, Group(0), Some(20));
        c.place(3, Group(0), Some(60));
        c.started(1);
        assert_eq!(
            c.failed(1),
            [3, 2],
            "largest first, to be asked about again"
        );
        assert_eq!(c.len(), 0);
        // Placed again in that order, the largest leads.
        assert_eq!(c.place(3, Group(0), Some(60)), [Placed::Lead(3)]);
        assert_eq!(
            c.place(2, Group(0), Some(20)),
            [Placed::Follow {
                id: 2,
                leader: 3,
                distance: 1
            }]
        );
        assert_eq!(c.abandoned(3), [2]);
        assert_eq!(c.len(), 0);
    }

    /// One step of a run: a copy arrives (group, pixels), or the oldest waiting upload starts,
    /// or the oldest started one settles (true: it went up).
    #[derive(Debug, Clone)]
    enum Step {
        Arrive(u8, u64),
        Start,
        Settle(bool),
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            3 => (0u8..3, 1u64..6).prop_map(|(g, p)| Step::Arrive(g, p)),
            2 => Just(Step::Start),
            2 => any::<bool>().prop_map(Step::Settle),
        ]
    }

    /// A run driven through `Copies` as the engine drives it.
    #[derive(Default)]
    struct Run {
        copies: Copies<usize, Group>,
        arrived: Vec<(u8, u64)>,
        waiting: Vec<usize>,
        started: Vec<usize>,
        following: HashMap<usize, usize>,
        uploaded: Vec<usize>,
        failed: Vec<usize>,
        /// A follower recorded as on the server, and the copy it followed.
        via: HashMap<usize, usize>,
        /// How many copies had arrived when each upload started.
        arrived_at_start: HashMap<usize, usize>,
    }

    impl Run {
        /// Detection, then placement: the server answers for a copy already up that is at
        /// least as large; the rest is placed among the copies on their way.
        fn ask(&mut self, id: usize) {
            let (g, p) = self.arrived[id];
            let on_server = self.uploaded.iter().copied().find(|&u| {
                let (ug, up) = self.arrived[u];
                ug == g && up >= p
            });
            if let Some(u) = on_server {
                self.via.insert(id, u);
                return;
            }
            let changes = self.copies.place(id, Group(g), Some(p));
            self.apply(changes);
        }

        fn apply(&mut self, changes: Vec<Placed<usize>>) {
            for ch in changes {
                match ch {
                    Placed::Lead(id) => {
                        self.following.remove(&id);
                        if !self.waiting.contains(&id) {
                            self.waiting.push(id);
                        }
                    }
                    Placed::Follow { id, leader, .. } => {
                        self.waiting.retain(|w| *w != id);
                        self.following.insert(id, leader);
                    }
                }
            }
        }

        fn step(&mut self, step: &Step) {
            match *step {
                Step::Arrive(g, p) => {
                    self.arrived.push((g, p));
                    self.ask(self.arrived.len() - 1);
                }
                Step::Start if !self.waiting.is_empty() => {
                    let id = self.waiting.remove(0);
                    self.copies.started(id);
                    self.started.push(id);
                    self.arrived_at_start.insert(id, self.arrived.len());
                }
                Step::Settle(ok) if !self.started.is_empty() => {
                    let id = self.started.remove(0);
                    if ok {
                        self.uploaded.push(id);
                        for (f, _) in self.copies.settled(id) {
                            self.following.remove(&f);
                            self.via.insert(f, id);
                        }
                    } else {
                        // Reported failed (and retried by a later round); its followers are
                        // asked about again.
                        self.failed.push(id);
                        for f in self.copies.failed(id) {
                            self.following.remove(&f);
                            self.ask(f);
                        }
                    }
                }
                Step::Start | Step::Settle(_) => {}
            }
        }
    }

    proptest! {
        /// Whatever the order of arrivals, starts and outcomes, every copy ends uploaded,
        /// failed (reported, so retried), or on the server through an uploaded copy of its
        /// picture at least as large. The largest copy of a picture goes up or fails, never
        /// skipped. Two copies of one picture go up only when the smaller had started before
        /// the larger arrived.
        #[test]
        fn no_copy_is_lost_and_the_largest_is_never_skipped(
            steps in prop::collection::vec(step(), 1..60)
        ) {
            let mut run = Run::default();
            for s in &steps {
                run.step(s);
            }
            while !run.waiting.is_empty() || !run.started.is_empty() {
                run.step(&Step::Start);
                run.step(&Step::Settle(true));
            }
            prop_assert!(run.following.is_empty(), "left waiting: {:?}", run.following);
            prop_assert_eq!(run.copies.len(), 0);
            for (id, &(g, p)) in run.arrived.iter().enumerate() {
                if run.uploaded.contains(&id) || run.failed.contains(&id) {
                    continue;
                }
                let leader = run.via.get(&id).copied();
                prop_assert!(leader.is_some(), "copy {} {:?} lost", id, (g, p));
                let l = leader.unwrap_or_default();
                prop_assert!(run.uploaded.contains(&l));
                prop_assert_eq!(run.arrived[l].0, g);
                prop_assert!(run.arrived[l].1 >= p, "followed a smaller copy");
            }
            for g in 0..3u8 {
                let Some(max) = run.arrived.iter().filter(|c| c.0 == g).map(|c| c.1).max()
                else {
                    continue;
                };
                prop_assert!(
                    run.uploaded.iter().chain(&run.failed).any(|&u| run.arrived[u] == (g, max)),
                    "picture {}: its largest copy was skipped", g
                );
                let ups: Vec<usize> =
                    run.uploaded.iter().copied().filter(|&u| run.arrived[u].0 == g).collect();
                for &small in &ups {
                    for &large in &ups {
                        if run.arrived[small].1 < run.arrived[large].1 {
                            prop_assert!(
                                run.arrived_at_start[&small] <= large,
                                "{} went up beside the larger {} that arrived first", small, large
                            );
                        }
                    }
                }
            }
        }
    }
}
