//! Unit tests of the configuration, by concern. The helpers here build an
//! [`Env`] and parse with it.

use std::path::Path;

use super::*;

mod errors;
mod overrides;
mod packaging;
mod parse;
mod password;
mod schema;

/// Environment variables or `--set` pairs, as test data.
type Vars = &'static [(&'static str, &'static str)];

fn env_with(vars: &[(&str, &str)]) -> Env {
    Env {
        hostname: "Node-1".to_owned(),
        vars: vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
    }
}

fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
    env_with(items).vars
}

fn parse(text: &str, vars: &[(&str, &str)], sets: &[(&str, &str)]) -> Result<Config, ConfigError> {
    Config::parse(text, &env_with(vars), &pairs(sets))
}

fn parse_ok(text: &str, vars: &[(&str, &str)], sets: &[(&str, &str)]) -> Config {
    match parse(text, vars, sets) {
        Ok(c) => c,
        Err(e) => panic!("unexpected error: {e}\n--- input:\n{text}"),
    }
}
