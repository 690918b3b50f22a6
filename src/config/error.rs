//! [`ConfigError`]: every problem found, each naming its key; and the list of problems
//! the parsing stages add to.

/// A configuration problem. `key` is the dotted key, decorated with where the
/// value came from when it was not the file (`VIRTSYNC_X (x)`, `--set x`).
///
/// [`Config::parse`](super::Config::parse) reports every problem it finds: the first one is `key` and
/// `problem`, the others are in `more` (each with an empty `more` of its own). The
/// display is `key: problem`, the problems joined by `"; "` when there are several;
/// [`ConfigError::problems`] gives them one by one (the command line prints one per line).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.joined())]
pub struct ConfigError {
    pub key: String,
    pub problem: String,
    pub more: Vec<ConfigError>,
}

impl ConfigError {
    /// One problem.
    pub fn new(key: impl Into<String>, problem: impl Into<String>) -> Self {
        ConfigError {
            key: key.into(),
            problem: problem.into(),
            more: Vec::new(),
        }
    }

    /// Several problems as one error (`None` for none), in the order given.
    pub fn from_list(list: Vec<ConfigError>) -> Option<ConfigError> {
        let mut flat = list.into_iter().flat_map(ConfigError::into_list);
        let mut first = flat.next()?;
        first.more = flat.collect();
        Some(first)
    }

    /// This error with the problems of `others` after its own.
    pub fn and(mut self, others: Vec<ConfigError>) -> ConfigError {
        self.more
            .extend(others.into_iter().flat_map(ConfigError::into_list));
        self
    }

    /// Every problem as a one-problem error: this one, then `more`.
    pub fn into_list(mut self) -> Vec<ConfigError> {
        let more = std::mem::take(&mut self.more);
        std::iter::once(self)
            .chain(more.into_iter().flat_map(ConfigError::into_list))
            .collect()
    }

    /// Every problem as `(key, problem)`: this one, then `more`.
    pub fn problems(&self) -> Vec<(&str, &str)> {
        let mut all = vec![(self.key.as_str(), self.problem.as_str())];
        for other in &self.more {
            all.extend(other.problems());
        }
        all
    }

    fn joined(&self) -> String {
        self.problems()
            .iter()
            .map(|(key, problem)| format!("{key}: {problem}"))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// The problems found so far while parsing, each with the plain dotted key it is
/// about (whatever its label says), so that a later check can leave a key alone
/// that already has a problem.
#[derive(Debug, Default)]
pub(super) struct Problems(Vec<(String, ConfigError)>);

impl Problems {
    pub(super) fn add(&mut self, key: &str, error: ConfigError) {
        self.0.push((key.to_owned(), error));
    }

    pub(super) fn has(&self, key: &str) -> bool {
        self.0.iter().any(|(k, _)| k == key)
    }

    pub(super) fn into_error(self) -> Option<ConfigError> {
        ConfigError::from_list(self.0.into_iter().map(|(_, e)| e).collect())
    }
}
