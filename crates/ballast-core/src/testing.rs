//! Test helpers shared by the modules of this crate.

/// Fails when the generated document `rel` (from the workspace root) differs
/// from `want`; with `UPDATE_DOCS` set, rewrites it instead. `how` says
/// which test to run to regenerate it.
pub fn check_generated_doc(rel: &str, want: &str, how: &str) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(rel);
    if std::env::var_os("UPDATE_DOCS").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, want).unwrap();
        return;
    }
    let have = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        have == want,
        "{rel} is stale: regenerate it with `UPDATE_DOCS=1 {how}`"
    );
}
