//! Sources: where observations come from (docs/ARCHITECTURE.md, "Sources"). Each source
//! turns what it sees into `StateEvent`s for the state writer.

pub mod kube;
pub mod libvirt;
