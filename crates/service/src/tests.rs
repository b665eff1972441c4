#![allow(clippy::unwrap_used)]

use super::*;

#[test]
fn settings_round_trip_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("conf/settings.json");
    assert_eq!(Settings::load(&path).unwrap(), Settings::default());
    let s = Settings {
        server_url: "http://127.0.0.1:1".into(),
        token: "psk_x".into(),
        folders: vec!["/photos".into()],
        bandwidth_limit: 1000,
        ..Settings::default()
    };
    s.save(&path).unwrap();
    assert_eq!(Settings::load(&path).unwrap(), s);
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    std::fs::write(&path, b"{not json").unwrap();
    let e = Settings::load(&path).unwrap_err();
    assert!(
        matches!(&e, ServiceError::Settings { path: p, .. } if *p == path),
        "{e}"
    );
    assert!(e.to_string().contains("not valid settings"), "{e}");
}
