//! Sources: where observations come from (DESIGN §3). Each source turns what it sees into
//! `StateEvent`s for the state writer.

pub mod kube;
pub mod libvirt;
