//! Checks the "same picture" rule against real photos: every generated copy must be the same
//! picture, and every pair of distinct photos, every hard negative and every generated near
//! shot must be different. `cargo bench -p photosync-bench` prints the same figures.

#![allow(clippy::unwrap_used)]

use photosync_identify::{compare, identify_bytes, Distance, Identity, Limits, Match};
use photosync_testkit::measure_separation;

fn identify(bytes: &[u8]) -> Identity {
    identify_bytes(bytes, &Limits::default()).unwrap()
}

#[test]
fn copies_are_same_picture_and_different_shots_are_different() {
    let s = measure_separation(identify, |a, b| {
        (compare(a, b), a.identifier.distance(&b.identifier))
    });
    assert!(s.photos >= 30, "test photos missing");
    assert!(s.copies.len() >= 9 * 30);

    let mut failures = Vec::new();
    for ((m, d), what) in &s.copies {
        if !m.is_same() {
            failures.push(format!("copy {what}: different at {d}"));
        }
    }
    for ((m, d), what) in s.distinct.iter().chain(&s.hard).chain(&s.near_shots) {
        if m.is_same() {
            failures.push(format!("{what}: same picture at {d}"));
        }
    }
    let worst: &(Match, Distance) = &s
        .copies
        .iter()
        .max_by_key(|((_, d), _)| d.total())
        .unwrap()
        .0;
    eprintln!("largest same-picture distance: {}", worst.1);
    assert!(failures.is_empty(), "{failures:#?}");
}
