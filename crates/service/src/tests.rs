#![allow(clippy::unwrap_used)]

use super::*;

#[test]
fn settings_round_trip_owner_only() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("conf/settings.json");
    assert_eq!(Settings::load(&path, None).unwrap(), Settings::default());
    let s = Settings {
        server_url: "http://127.0.0.1:1".into(),
        token: "psk_x".into(),
        folders: vec!["/photos".into()],
        bandwidth_limit: 1000,
        ..Settings::default()
    };
    // No keyring: the token stays in the file, and the file says so.
    assert_eq!(s.save(&path, None).unwrap(), TokenStore::File);
    assert_eq!(Settings::load(&path, None).unwrap(), s);
    let on_disk: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(
        (on_disk["token"].clone(), on_disk["token_store"].clone()),
        (serde_json::json!("psk_x"), serde_json::json!("file"))
    );
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    std::fs::write(&path, b"{not json").unwrap();
    let e = Settings::load(&path, None).unwrap_err();
    assert!(
        matches!(&e, ServiceError::Settings { path: p, .. } if *p == path),
        "{e}"
    );
    assert!(e.to_string().contains("not valid settings"), "{e}");
}

#[test]
fn a_typed_address_gets_http_when_it_has_no_scheme() {
    assert_eq!(
        server_address(" 192.168.1.10:8080/ ").unwrap(),
        "http://192.168.1.10:8080"
    );
    assert_eq!(
        server_address("https://photos.example.org").unwrap(),
        "https://photos.example.org"
    );
    assert!(server_address("ftp://nas").unwrap_err().contains("http://"));
    assert!(server_address("http://").is_err());
    assert!(server_address("  ").unwrap_err().contains("address"));
}

#[test]
fn a_folder_path_expands_the_home_folder_and_refuses_relative_paths() {
    #[allow(deprecated)]
    let home = std::env::home_dir().unwrap();
    assert_eq!(
        folder_path(Path::new("~/Pictures")).unwrap(),
        home.join("Pictures")
    );
    assert_eq!(folder_path(Path::new("~")).unwrap(), home);
    assert_eq!(
        folder_path(Path::new("/srv/photos")).unwrap(),
        PathBuf::from("/srv/photos")
    );
    let e = folder_path(Path::new("Pictures/2024")).unwrap_err();
    assert!(matches!(e, ServiceError::RelativePath(_)), "{e}");
    assert!(e.to_string().contains("not a full path"), "{e}");
    // "~user" is not this user's home: refused as relative, not guessed.
    assert!(folder_path(Path::new("~bob/Pictures")).is_err());
}

#[test]
fn notifications_count_photos_videos_and_other_files_with_plurals() {
    let k = |photos, videos, others| photosync_engine::Kinds {
        photos,
        videos,
        others,
    };
    assert_eq!(counted(&k(1, 0, 0)), "1 photo");
    assert_eq!(counted(&k(12, 3, 0)), "12 photos and 3 videos");
    assert_eq!(counted(&k(0, 0, 90)), "90 files");
    assert_eq!(counted(&k(2, 1, 1)), "2 photos, 1 video and 1 other file");
    assert_eq!(counted(&k(0, 0, 0)), "0 files");
}
