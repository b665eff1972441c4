//! The decision step, pure: what happens to a file given the server's answer and the policy,
//! and which copy of a picture goes up when several arrive within one run.
//!
//! Nothing here reads a file, the database or the network, so every rule is unit- and
//! property-tested below.

use std::cmp::Ordering;

use photosync_events::{OnServer, Standing, Worse};
use photosync_identify::{verify, Evidence, Grade, Identifier, Shortfall};
use photosync_protocol::{Candidate, DetectResult};

use crate::state::FileRecord;

/// What the person asked for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Policy {
    /// Upload same-picture copies even when the server's copy is as good.
    pub upload_all_copies: bool,
    /// This file was forced: it goes up whatever the server holds of the picture.
    pub forced: bool,
}

/// What becomes of one file once the server has answered.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Verdict {
    /// The server holds it (these bytes, or the picture at least as good): nothing goes up.
    OnServer(OnServer),
    /// Upload it. `why` is the server's worse or unwanted copy of the picture, if any.
    Upload { why: Option<OnServer> },
}

/// A local picture as the decisions see it: its identifier, its evidence and how good it is.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Photo {
    pub identifier: Identifier,
    pub evidence: Evidence,
    pub grade: Grade,
}

impl Photo {
    /// The picture of a file identified as an image; `None` for a file known by its bytes.
    pub fn of(rec: &FileRecord) -> Option<Photo> {
        let evidence = rec.evidence.as_deref()?.clone();
        Some(Photo {
            identifier: rec.identifier?,
            grade: Grade {
                pixels: rec.pixels?,
                quality: evidence.quality,
            },
            evidence,
        })
    }
}

fn worse(s: Shortfall) -> Worse {
    match s {
        Shortfall::Pixels => Worse::Pixels,
        Shortfall::Class => Worse::Class,
        Shortfall::Compression => Worse::Compression,
    }
}

/// How a server copy of `grade` stands against the local one.
pub(crate) fn standing(remote: &Grade, local: &Grade) -> Standing {
    match remote.covers(local) {
        Ok(()) => Standing::AtLeastAsGood,
        Err(s) => Standing::Worse(worse(s)),
    }
}

/// The server's answer about one file, under `policy`. `local` is the file's picture (`None`
/// for a file known by its bytes alone, which no candidate can stand in for).
pub(crate) fn verdict(answer: &DetectResult, local: Option<&Photo>, policy: Policy) -> Verdict {
    match answer {
        // The same bytes are the same file: forcing cannot make a second copy of it.
        DetectResult::SameBytes { image } => Verdict::OnServer(OnServer::SameBytes {
            remote_id: image.id,
            name: image.name.clone(),
        }),
        DetectResult::Candidates { candidates } => {
            let Some(local) = local else {
                return Verdict::Upload { why: None };
            };
            // The nearest verified candidate that is at least as good stands in for the file;
            // failing that, the nearest verified one is named as the reason for the upload.
            let mut worse_copy = None;
            for c in candidates {
                let Some(how) = verified(c, local) else {
                    continue;
                };
                let as_good = matches!(
                    how,
                    OnServer::SamePicture {
                        standing: Standing::AtLeastAsGood,
                        ..
                    }
                );
                if as_good && !policy.upload_all_copies && !policy.forced {
                    return Verdict::OnServer(how);
                }
                if as_good {
                    return Verdict::Upload { why: Some(how) };
                }
                worse_copy.get_or_insert(how);
            }
            Verdict::Upload { why: worse_copy }
        }
        DetectResult::Absent => Verdict::Upload { why: None },
    }
}

/// A candidate the verification step confirms as the same picture as `local`, with how the
/// server's copy stands. A candidate without readable evidence confirms nothing.
fn verified(c: &Candidate, local: &Photo) -> Option<OnServer> {
    let evidence: Evidence = c.evidence.as_deref()?.parse().ok()?;
    if let Err(why) = verify(&local.evidence, &evidence) {
        tracing::debug!(image = c.image.id, %why, "candidate refuted");
        return None;
    }
    let remote_pixels = c
        .image
        .width
        .zip(c.image.height)
        .map(|(w, h)| u64::from(w) * u64::from(h));
    // An unknown size counts as the smallest: it never stands in for a file of known size.
    let remote = Grade {
        pixels: remote_pixels.unwrap_or(0),
        quality: evidence.quality,
    };
    Some(OnServer::SamePicture {
        remote_id: c.image.id,
        name: c.image.name.clone(),
        distance: c.distance.total,
        remote_pixels,
        local_pixels: Some(local.grade.pixels),
        standing: standing(&remote, &local.grade),
    })
}

/// Whether two copies are the same picture, and which is the better copy.
pub(crate) trait Picture {
    /// The distance when the two are verified to be the same picture.
    fn same_picture(&self, other: &Self) -> Option<u32>;
    /// At least as good a copy as `other` (pixels, class, compression).
    fn covers(&self, other: &Self) -> bool;
    /// An order, best last, to hand over to the best remaining copy.
    fn rank(&self, other: &Self) -> Ordering;
}

impl Picture for Photo {
    fn same_picture(&self, other: &Self) -> Option<u32> {
        let d = self.identifier.distance(&other.identifier);
        (d.is_same_picture() && verify(&self.evidence, &other.evidence).is_ok()).then(|| d.total())
    }

    fn covers(&self, other: &Self) -> bool {
        self.grade.covers(&other.grade).is_ok()
    }

    fn rank(&self, other: &Self) -> Ordering {
        self.grade.rank(&other.grade)
    }
}

/// A copy's role among this run's copies, after a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Placed<Id> {
    /// It goes up.
    Lead(Id),
    /// A copy at least as good is on its way: this one waits for its outcome.
    Follow { id: Id, leader: Id, distance: u32 },
}

struct Copy<Id, P> {
    id: Id,
    picture: P,
}

struct Leader<Id, P> {
    copy: Copy<Id, P>,
    started: bool,
    followers: Vec<(Copy<Id, P>, u32)>,
}

/// The pictures of one run that are on their way up, with the copies waiting on each.
///
/// Copies of one picture arrive in different detect batches. A copy waits (follows) while a
/// copy at least as good (`Picture::covers`) is on its way. A better copy takes the place of
/// worse ones that have not started. A worse copy that already started keeps going, and the
/// better one goes up too: it is never skipped. Copies neither of which covers the other (a
/// large JPEG and a small PNG) both go up. A leader that settles hands back its followers: on
/// the server when it went up, asked about and placed again when it did not.
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
    /// Places a picture the server lacks (or holds a worse copy of). Returns every role that
    /// changed: the new copy's, and those of worse copies it displaced.
    pub fn place(&mut self, id: Id, picture: P) -> Vec<Placed<Id>> {
        let mut changes = Vec::new();
        self.place_copy(Copy { id, picture }, &mut changes);
        changes
    }

    fn place_copy(&mut self, copy: Copy<Id, P>, changes: &mut Vec<Placed<Id>>) {
        let best = self
            .leaders
            .iter_mut()
            .filter(|l| l.copy.picture.covers(&copy.picture))
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
        // Worse copies that have not started step back behind this one.
        let (displaced, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut self.leaders)
            .into_iter()
            .partition(|l| {
                !l.started
                    && copy.picture.covers(&l.copy.picture)
                    && !l.copy.picture.covers(&copy.picture)
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

    /// The leader did not go up: its followers, best first. Each must be asked about again
    /// (another copy may have reached the server meanwhile) and placed again.
    pub fn failed(&mut self, id: Id) -> Vec<Id> {
        let mut followers = self.take(id);
        followers.sort_by(|(a, _), (b, _)| b.picture.rank(&a.picture));
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
    use photosync_identify::{Capture, Class, Quality};
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
            folder: None,
            taken: None,
            format: None,
        }
    }

    fn evidence(class: Class, jpeg: Option<u8>, taken: Option<&str>) -> Evidence {
        Evidence {
            detail: base64::Engine::encode(
                &base64::engine::general_purpose::URL_SAFE_NO_PAD,
                [64u8; 64 * 64],
            )
            .parse()
            .unwrap_or_else(|e| panic!("{e}")),
            capture: Capture {
                time: taken.map(str::to_owned),
                ..Capture::default()
            },
            quality: Quality { class, jpeg },
        }
    }

    fn lossy(q: u8) -> Evidence {
        evidence(Class::Lossy, Some(q), None)
    }

    fn photo(pixels: u64, evidence: Evidence) -> Photo {
        Photo {
            identifier: format!("{}:{}", photosync_identify::VERSION, "0".repeat(148))
                .parse()
                .unwrap_or_else(|e| panic!("{e}")),
            grade: Grade {
                pixels,
                quality: evidence.quality,
            },
            evidence,
        }
    }

    fn candidate(id: i64, size: Option<(u32, u32)>, evidence: Option<Evidence>) -> Candidate {
        Candidate {
            image: image(id, size),
            distance: Distance {
                total: 9,
                luma: 5,
                texture: 2,
                colour: 2,
            },
            evidence: evidence.map(|e| e.to_string()),
        }
    }

    fn candidates(list: Vec<Candidate>) -> DetectResult {
        DetectResult::Candidates { candidates: list }
    }

    const AS_IS: Policy = Policy {
        upload_all_copies: false,
        forced: false,
    };

    fn standing_of(v: &Verdict) -> Option<Standing> {
        match v {
            Verdict::OnServer(OnServer::SamePicture { standing, .. })
            | Verdict::Upload {
                why: Some(OnServer::SamePicture { standing, .. }),
            } => Some(*standing),
            _ => None,
        }
    }

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
                Some(&photo(100, lossy(90))),
                policy,
            );
            assert!(matches!(
                v,
                Verdict::OnServer(OnServer::SameBytes { remote_id: 3, .. })
            ));
        }
    }

    #[test]
    fn a_picture_the_server_holds_at_least_as_good_is_not_uploaded() {
        let answer = candidates(vec![candidate(7, Some((10, 10)), Some(lossy(92)))]);
        for local in [photo(100, lossy(92)), photo(80, lossy(95))] {
            let v = verdict(&answer, Some(&local), AS_IS);
            assert!(
                matches!(
                    v,
                    Verdict::OnServer(OnServer::SamePicture { remote_id: 7, .. })
                ),
                "{v:?}"
            );
            assert_eq!(standing_of(&v), Some(Standing::AtLeastAsGood));
        }
    }

    #[test]
    fn a_better_local_copy_is_uploaded_and_the_rule_is_named() {
        let lossless = evidence(Class::Lossless, None, None);
        let raw = evidence(Class::Raw, None, None);
        for (server, local, rule) in [
            // More pixels here.
            (
                candidate(7, Some((10, 10)), Some(lossy(92))),
                photo(101, lossy(92)),
                Worse::Pixels,
            ),
            // An unknown server size counts as the smallest.
            (
                candidate(7, None, Some(lossy(92))),
                photo(1, lossy(92)),
                Worse::Pixels,
            ),
            // A PNG master beside the server's JPEG of the same size.
            (
                candidate(7, Some((10, 10)), Some(lossy(100))),
                photo(100, lossless),
                Worse::Class,
            ),
            // The q92 original beside the server's q75 re-encode.
            (
                candidate(7, Some((10, 10)), Some(lossy(75))),
                photo(100, lossy(92)),
                Worse::Compression,
            ),
        ] {
            let v = verdict(&candidates(vec![server]), Some(&local), AS_IS);
            assert!(matches!(v, Verdict::Upload { why: Some(_) }), "{v:?}");
            assert_eq!(standing_of(&v), Some(Standing::Worse(rule)));
        }
        // A RAW file beside its camera JPEG, either way round: both kept, no match at all.
        let v = verdict(
            &candidates(vec![candidate(7, Some((100, 100)), Some(lossy(98)))]),
            Some(&photo(100, raw.clone())),
            AS_IS,
        );
        assert_eq!(v, Verdict::Upload { why: None });
        let v = verdict(
            &candidates(vec![candidate(7, Some((100, 100)), Some(raw))]),
            Some(&photo(100, lossy(98))),
            AS_IS,
        );
        assert_eq!(v, Verdict::Upload { why: None });
    }

    #[test]
    fn only_verified_candidates_count_and_the_best_of_them_stands_in() {
        let local = photo(
            100,
            evidence(Class::Lossy, Some(92), Some("2024-05-01T10:00:00.12")),
        );
        // Another moment of a burst, no evidence yet, a file known by its bytes: uploaded.
        for c in [
            candidate(
                7,
                Some((10, 10)),
                Some(evidence(
                    Class::Lossy,
                    Some(92),
                    Some("2024-05-01T10:00:00.25"),
                )),
            ),
            candidate(7, Some((10, 10)), None),
        ] {
            let answer = candidates(vec![c]);
            assert_eq!(
                verdict(&answer, Some(&local), AS_IS),
                Verdict::Upload { why: None }
            );
            assert_eq!(verdict(&answer, None, AS_IS), Verdict::Upload { why: None });
        }
        // The nearest is worse; a farther one covers the file.
        let answer = candidates(vec![
            candidate(7, Some((10, 10)), Some(lossy(75))),
            candidate(8, Some((10, 10)), Some(lossy(92))),
        ]);
        let v = verdict(&answer, Some(&local), AS_IS);
        assert!(
            matches!(
                v,
                Verdict::OnServer(OnServer::SamePicture { remote_id: 8, .. })
            ),
            "{v:?}"
        );
        assert_eq!(
            verdict(&DetectResult::Absent, Some(&local), AS_IS),
            Verdict::Upload { why: None }
        );
    }

    #[test]
    fn forced_files_and_the_all_copies_policy_upload_a_covered_copy() {
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
            let answer = candidates(vec![candidate(7, Some((10, 10)), Some(lossy(92)))]);
            let v = verdict(&answer, Some(&photo(50, lossy(92))), policy);
            assert!(matches!(v, Verdict::Upload { why: Some(_) }), "{policy:?}");
        }
    }

    /// Pictures in tests: copies of one group are the same picture; a copy covers another
    /// with at least as many pixels and at least as high a class (0 lossy, 1 lossless).
    #[derive(Debug, Clone, Copy, PartialEq)]
    struct Shot {
        group: u8,
        pixels: u64,
        class: u8,
    }

    /// `id` waits for `leader` (a test `Shot`'s distance is always 1).
    fn follow(id: usize, leader: usize) -> Placed<usize> {
        Placed::Follow {
            id,
            leader,
            distance: 1,
        }
    }

    fn shot(group: u8, pixels: u64) -> Shot {
        Shot {
            group,
            pixels,
            class: 0,
        }
    }

    impl Picture for Shot {
        fn same_picture(&self, other: &Self) -> Option<u32> {
            (self.group == other.group).then_some(1)
        }

        fn covers(&self, other: &Self) -> bool {
            self.pixels >= other.pixels && self.class >= other.class
        }

        fn rank(&self, other: &Self) -> Ordering {
            (self.class, self.pixels).cmp(&(other.class, other.pixels))
        }
    }

    #[test]
    fn copies_that_do_not_cover_each_other_both_go_up() {
        let mut c = Copies::default();
        let big_jpeg = shot(0, 400);
        let small_png = Shot {
            class: 1,
            ..shot(0, 100)
        };
        assert_eq!(c.place(1, big_jpeg), [Placed::Lead(1)]);
        assert_eq!(c.place(2, small_png), [Placed::Lead(2)]);
        // A large PNG covers both: it displaces them while they wait.
        let big_png = Shot {
            class: 1,
            ..shot(0, 400)
        };
        assert_eq!(
            c.place(3, big_png),
            [Placed::Lead(3), follow(1, 3), follow(2, 3),]
        );
    }

    #[test]
    fn a_smaller_copy_follows_a_larger_one_on_its_way() {
        let mut c = Copies::default();
        assert_eq!(c.place(1, shot(0, 100)), [Placed::Lead(1)]);
        assert_eq!(c.place(2, shot(0, 50)), [follow(2, 1)]);
        // Another picture leads on its own.
        assert_eq!(c.place(3, shot(1, 10)), [Placed::Lead(3)]);
        assert_eq!(c.settled(1), [(2, 1)]);
        assert_eq!(c.settled(3), []);
        assert_eq!(c.len(), 0);
    }

    #[test]
    fn a_larger_copy_displaces_a_waiting_smaller_one_but_not_a_started_one() {
        let mut c = Copies::default();
        c.place(1, shot(0, 50));
        c.place(2, shot(0, 40));
        assert_eq!(
            c.place(3, shot(0, 100)),
            [Placed::Lead(3), follow(1, 3), follow(2, 3),]
        );
        let mut c = Copies::default();
        c.place(1, shot(0, 50));
        c.started(1);
        // The started smaller copy keeps going; the larger is never skipped.
        assert_eq!(c.place(3, shot(0, 100)), [Placed::Lead(3)]);
    }

    #[test]
    fn a_failed_leader_hands_over_to_its_largest_follower() {
        let mut c = Copies::default();
        c.place(1, shot(0, 100));
        c.place(2, shot(0, 20));
        c.place(3, shot(0, 60));
        c.started(1);
        assert_eq!(
            c.failed(1),
            [3, 2],
            "largest first, to be asked about again"
        );
        assert_eq!(c.len(), 0);
        // Placed again in that order, the largest leads.
        assert_eq!(c.place(3, shot(0, 60)), [Placed::Lead(3)]);
        assert_eq!(c.place(2, shot(0, 20)), [follow(2, 3)]);
        assert_eq!(c.abandoned(3), [2]);
        assert_eq!(c.len(), 0);
    }

    /// One step of a run: a copy arrives (group, pixels, class), or the oldest waiting upload
    /// starts, or the oldest started one settles (true: it went up).
    #[derive(Debug, Clone)]
    enum Step {
        Arrive(u8, u64, u8),
        Start,
        Settle(bool),
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            3 => (0u8..3, 1u64..6, 0u8..2).prop_map(|(g, p, c)| Step::Arrive(g, p, c)),
            2 => Just(Step::Start),
            2 => any::<bool>().prop_map(Step::Settle),
        ]
    }

    /// A run driven through `Copies` as the engine drives it.
    #[derive(Default)]
    struct Run {
        copies: Copies<usize, Shot>,
        arrived: Vec<Shot>,
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
        /// Detection, then placement: the server answers for a copy already up that covers
        /// it; the rest is placed among the copies on their way.
        fn ask(&mut self, id: usize) {
            let me = self.arrived[id];
            let on_server = self.uploaded.iter().copied().find(|&u| {
                let up = self.arrived[u];
                up.group == me.group && up.covers(&me)
            });
            if let Some(u) = on_server {
                self.via.insert(id, u);
                return;
            }
            let changes = self.copies.place(id, me);
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
                Step::Arrive(group, pixels, class) => {
                    self.arrived.push(Shot {
                        group,
                        pixels,
                        class,
                    });
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
        /// picture that covers it. No copy that another does not beat is skipped for a worse
        /// one: some copy as good goes up or fails. Two copies of one picture, one better,
        /// go up only when the worse had started before the better arrived.
        #[test]
        fn no_copy_is_lost_and_the_best_is_never_skipped(
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
            let beats = |a: &Shot, b: &Shot| a.covers(b) && !b.covers(a);
            for (id, me) in run.arrived.iter().enumerate() {
                if run.uploaded.contains(&id) || run.failed.contains(&id) {
                    continue;
                }
                let leader = run.via.get(&id).copied();
                prop_assert!(leader.is_some(), "copy {} {:?} lost", id, me);
                let l = leader.unwrap_or_default();
                prop_assert!(run.uploaded.contains(&l));
                prop_assert_eq!(run.arrived[l].group, me.group);
                prop_assert!(run.arrived[l].covers(me), "followed a worse copy");
            }
            for me in &run.arrived {
                if run.arrived.iter().any(|o| o.group == me.group && beats(o, me)) {
                    continue;
                }
                prop_assert!(
                    run.uploaded.iter().chain(&run.failed).any(|&u| {
                        let up = run.arrived[u];
                        up.group == me.group && up.covers(me)
                    }),
                    "{:?}: no copy as good went up", me
                );
            }
            for &worse in &run.uploaded {
                for &better in &run.uploaded {
                    let (w, b) = (run.arrived[worse], run.arrived[better]);
                    if w.group == b.group && beats(&b, &w) {
                        prop_assert!(
                            run.arrived_at_start[&worse] <= better,
                            "{} went up beside the better {} that arrived first", worse, better
                        );
                    }
                }
            }
        }
    }
}
