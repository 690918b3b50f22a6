//! Sinks: where derived state goes. PostgreSQL (the cloud API's `vms` table) for now;
//! metrics and the socket API read the state directly.

pub mod postgres;
