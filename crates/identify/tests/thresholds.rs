//! Measures the identifier on real photos and checks the "same picture" rule against them:
//! every generated copy must be the same picture, every pair of distinct photos and every hard
//! negative must be different. Run with `--nocapture` to see the figures.

use photosync_identify::{compare, identify_bytes, Distance, Identity, Limits, Match};
use photosync_testkit::{
    make_copy, near_shot_pair, photos, Copy, COPIES, HARD_NEGATIVES, NEAR_SHOTS,
};

fn identify(bytes: &[u8]) -> Identity {
    identify_bytes(bytes, &Limits::default()).unwrap()
}

fn max_each(ds: impl Iterator<Item = Distance>) -> Distance {
    ds.fold(Distance::default(), |m, d| Distance {
        luma: m.luma.max(d.luma),
        texture: m.texture.max(d.texture),
        colour: m.colour.max(d.colour),
        aspect: m.aspect.max(d.aspect),
    })
}

#[test]
fn copies_are_same_picture_and_distinct_photos_are_different() {
    let photos = photos();
    assert!(photos.len() >= 30, "test photos missing");
    let originals: Vec<(String, Identity)> = photos
        .iter()
        .map(|(n, b)| (n.clone(), identify(b)))
        .collect();

    let mut same = Vec::new();
    let mut failures = Vec::new();
    for ((name, bytes), (_, original)) in photos.iter().zip(&originals) {
        for &copy in COPIES {
            let id = identify(&make_copy(bytes, copy));
            match compare(original, &id) {
                Match::SamePicture(d) => same.push((d, format!("{name} {copy:?}"))),
                Match::SameBytes => same.push((Distance::default(), format!("{name} {copy:?}"))),
                Match::Different(d) => {
                    failures.push(format!("{name} {copy:?}: different at {d}"));
                    same.push((d, format!("{name} {copy:?}")));
                }
            }
            // The upright size survives every copy but the half-size one.
            if copy != Copy::HalfSize {
                assert_eq!(
                    (id.width, id.height),
                    (original.width, original.height),
                    "{name} {copy:?}"
                );
            }
        }
    }

    let is_hard = |a: &str, b: &str| {
        HARD_NEGATIVES
            .iter()
            .any(|(x, y, _)| (a == *x && b == *y) || (a == *y && b == *x))
    };
    let mut different = Vec::new();
    for (i, (na, a)) in originals.iter().enumerate() {
        for (nb, b) in &originals[i + 1..] {
            if is_hard(na, nb) {
                continue;
            }
            let d = a.identifier.distance(&b.identifier);
            if compare(a, b).is_same() {
                failures.push(format!("{na} vs {nb}: same picture at {d}"));
            }
            different.push((d, format!("{na} vs {nb}")));
        }
    }
    let mut hard = Vec::new();
    for (a, b, why) in HARD_NEGATIVES {
        let find = |n: &str| &originals.iter().find(|(x, _)| x == n).unwrap().1;
        let (ia, ib) = (find(a), find(b));
        let d = ia.identifier.distance(&ib.identifier);
        if compare(ia, ib).is_same() {
            failures.push(format!(
                "hard negative {a} vs {b} ({why}): same picture at {d}"
            ));
        }
        hard.push((d, *why));
    }

    for &shot in NEAR_SHOTS {
        let mut nearest: Option<(Distance, &str)> = None;
        for (name, bytes) in &photos {
            let (a, b) = near_shot_pair(bytes, shot);
            let (ia, ib) = (identify(&a), identify(&b));
            let d = ia.identifier.distance(&ib.identifier);
            if compare(&ia, &ib).is_same() {
                failures.push(format!("{name} {shot:?}: same picture at {d}"));
            }
            if nearest.is_none_or(|(n, _)| d.total() < n.total()) {
                nearest = Some((d, name));
            }
        }
        let (d, name) = nearest.unwrap();
        eprintln!("nearest generated near shot, {shot:?}: {d} [{name}]");
    }

    let worst_same = same.iter().max_by_key(|(d, _)| d.total()).unwrap();
    let nearest_diff = different.iter().min_by_key(|(d, _)| d.total()).unwrap();
    eprintln!(
        "photos: {}, copies: {}, distinct pairs: {}",
        photos.len(),
        same.len(),
        different.len()
    );
    eprintln!(
        "largest same-picture distance: {} [{}]",
        worst_same.0, worst_same.1
    );
    eprintln!(
        "largest same-picture per feature: {:?}",
        max_each(same.iter().map(|(d, _)| *d))
    );
    eprintln!(
        "smallest different distance: {} [{}]",
        nearest_diff.0, nearest_diff.1
    );
    let min_each = different
        .iter()
        .fold((u32::MAX, u32::MAX, u32::MAX), |m, (d, _)| {
            (m.0.min(d.luma), m.1.min(d.texture), m.2.min(d.colour))
        });
    eprintln!("smallest different per feature (luma, texture, colour): {min_each:?}");
    for (d, why) in &hard {
        eprintln!("hard negative, {why}: {d}");
    }
    assert!(failures.is_empty(), "{failures:#?}");
}
