mod build;
mod fixtures;
mod hostile;

pub(super) fn fixture(name: &str) -> String {
    let path = format!(
        "{}/../shared/fixtures/libvirt/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}
