mod build;
mod fixtures;
mod hostile;
mod rules;

pub(super) fn fixture(name: &str) -> String {
    crate::test_fixtures::text(&format!("libvirt/{name}"))
}
