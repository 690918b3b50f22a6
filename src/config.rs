//! TEMPORARY stand-in with the agreed API; replaced by the real module.
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Env { pub hostname: String, pub vars: Vec<(String, String)> }
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role { Node, Cluster, All }
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Owns { pub status: bool, pub legacy: bool, pub runtime: bool }
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchemaMode { Compat, Extended }
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostgresConfig {
  pub url: Option<String>, pub owner_url: Option<String>, pub password_file: Option<PathBuf>, pub schema: SchemaMode,
  pub table: String, pub batch_size: usize, pub flush_interval: Duration, pub managed_refresh_interval: Duration,
  pub resync_interval: Duration, pub connect_timeout: Duration, pub lock_key: i64, pub lock_timeout: Duration,
}
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheConfig { pub path: PathBuf, pub cache_size: u64 }
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config { pub node_name: String, pub role: Role, pub owns: Owns, pub postgres: PostgresConfig, pub cache: CacheConfig, pub metrics_listen: SocketAddr }
#[derive(Debug, thiserror::Error)]
#[error("{key}: {problem}")]
pub struct ConfigError { pub key: String, pub problem: String }
impl Config {
  pub fn defaults(env: &Env) -> Config { todo!() }
  pub fn parse(text: &str, env: &Env, sets: &[(String, String)]) -> Result<Config, ConfigError> { todo!() }
  pub fn require_postgres_url(&self) -> Result<&str, ConfigError> { todo!() }
}
pub fn read_password(cfg: &PostgresConfig, credentials_directory: Option<&Path>) -> Result<Option<String>, ConfigError> { todo!() }
