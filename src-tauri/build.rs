fn main() {
    // The commit, for the About line.
    photosync_build_info::emit();
    // The config lives at the workspace root, beside ui/ and icons/.
    println!("cargo:rerun-if-changed=../icons");
    println!("cargo:rerun-if-changed=../tauri.conf.json");
    tauri_build::try_build(tauri_build::Attributes::new().config_path("../tauri.conf.json"))
        .expect("tauri build step failed");
}
