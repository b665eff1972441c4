//! Checks the "same picture" rule against real photos and real video frames, step by step:
//! every generated copy must be the same picture; every pair of distinct photos, every hard
//! negative, every near shot, every local change (a displaced region, an object added or
//! removed) and every pair of consecutive frames must be different. The identifier alone
//! separates the first kinds; the verification step (`verify`) the last two.
//! `cargo bench -p photosync-bench --bench identify` prints the same figures.

#![allow(clippy::unwrap_used, clippy::print_stderr)]

use photosync_identify::{
    compare, identify_bytes, DetailDistance, Distance, Identity, Limits, Match, SAME_DETAIL,
};
use photosync_testkit::measure_separation;

fn identify(bytes: &[u8]) -> Identity {
    identify_bytes(bytes, &Limits::default()).unwrap()
}

#[test]
fn copies_are_same_picture_and_different_shots_are_different() {
    let s = measure_separation(identify, |a, b| {
        (
            compare(a, b),
            a.identifier.distance(&b.identifier),
            a.evidence.detail.compare(&b.evidence.detail),
        )
    });
    assert!(s.photos >= 30, "test photos missing");
    assert!(s.copies.len() >= 9 * 30);
    assert_eq!(s.local.len(), s.photos * 5);
    assert!(s.frames.len() >= 5);

    let mut failures = Vec::new();
    for ((m, d, detail), what) in &s.copies {
        if !m.is_same() {
            failures.push(format!(
                "copy {what}: {m:?} at {d}, detail {}",
                detail.worst
            ));
        }
    }
    for ((m, d, _), what) in s.distinct.iter().chain(&s.hard).chain(&s.near_shots) {
        if m.is_same() {
            failures.push(format!("{what}: same picture at {d}"));
        }
    }
    for ((m, d, detail), what) in s.local.iter().chain(&s.frames) {
        if m.is_same() {
            failures.push(format!(
                "{what}: same picture at {d}, detail {}",
                detail.worst
            ));
        }
    }

    // Step 1, the identifier: the largest distance of a copy.
    let worst: Distance = s
        .copies
        .iter()
        .map(|((_, d, _), _)| *d)
        .max_by_key(Distance::total)
        .unwrap();
    eprintln!("step 1, identifier: largest same-picture distance {worst}");
    // Step 2, the verification: the largest copy's detail distance beside the smallest of each
    // kind of negative the identifier lets through.
    let largest = s.copies.iter().map(|((_, _, x), w)| (*x, w)).max().unwrap();
    eprintln!(
        "step 2, detail: largest same-picture {} ({}), bound {SAME_DETAIL}",
        largest.0.worst, largest.1
    );
    let smallest = |what: &str, set: &[((Match, Distance, DetailDistance), String)]| {
        let (d, name) = set.iter().map(|((_, _, x), w)| (*x, w)).min().unwrap();
        let merged_by_identifier = set
            .iter()
            .filter(|((_, d, _), _)| d.is_same_picture())
            .count();
        eprintln!(
            "step 2, detail: smallest different, {what}: {} ({name}); {merged_by_identifier} of {} alike by the identifier alone",
            d.worst,
            set.len()
        );
        d.worst
    };
    for change in photosync_testkit::LOCAL_CHANGES {
        let tag = format!("{change:?}");
        let set: Vec<_> = s
            .local
            .iter()
            .filter(|(_, w)| w.ends_with(&tag))
            .cloned()
            .collect();
        let min = smallest(&tag, &set);
        assert!(min > SAME_DETAIL, "{tag}: {min} within the bound");
    }
    let min = smallest("consecutive video frames", &s.frames);
    assert!(min > SAME_DETAIL);
    assert!(largest.0.worst <= SAME_DETAIL);
    assert!(failures.is_empty(), "{failures:#?}");
}
