//! The commit the binaries are built from (see `photosync-build-info`).

fn main() {
    photosync_build_info::emit();
}
