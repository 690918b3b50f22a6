mod build;
mod fixtures;
mod hostile;

pub(super) fn fixture(name: &str) -> String {
    crate::test_fixtures::text(&format!("libvirt/{name}"))
}
