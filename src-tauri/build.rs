fn main() {
    // The commit, for the About line.
    photosync_build_info::emit();
    // The window's files (ui/) and the icons are at the workspace root, shared with the docs.
    println!("cargo:rerun-if-changed=../icons");
    println!("cargo:rerun-if-changed=tauri.conf.json");
    tauri_build::try_build(tauri_build::Attributes::new()).expect("tauri build step failed");
}
