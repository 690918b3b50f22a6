//! Shared test support: throw-away PostgreSQL clusters, the SSVirt-shaped table, and
//! helpers that wire stores and sinks to them.
#![allow(dead_code)]

pub mod daemon;
pub mod disk;
pub mod failpoints;
pub mod fake_kube;
pub mod fixtures;
pub mod libvirtd;
pub mod measure;
pub mod metrics;
pub mod nspawn;
pub mod pg;
pub mod pgbouncer;
pub mod pgstats;
pub mod prometheus;
pub mod ssvirt;
pub mod sync;
pub mod truth;
