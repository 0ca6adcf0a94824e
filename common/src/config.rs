//! Reading typed settings from the environment: every setting has a default in
//! code and can be overridden by a `TALLY_…` variable; a value that does not
//! parse is a [`ConfigError`] naming the variable (never a panic).

use std::str::FromStr;

/// A setting that could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The variable is set but does not parse.
    #[error("{var}={value:?} is invalid: {reason}")]
    Invalid {
        /// Variable name.
        var: String,
        /// Raw value.
        value: String,
        /// Parser's complaint.
        reason: String,
    },
    /// The combination of settings is unusable.
    #[error("invalid configuration: {0}")]
    Rule(String),
}

/// `var` parsed as `T`, or `default` when unset or empty.
pub fn env_or<T>(var: &str, default: T) -> Result<T, ConfigError>
where
    T: FromStr,
    T::Err: std::fmt::Display,
{
    match std::env::var(var) {
        Ok(value) if !value.trim().is_empty() => {
            value
                .trim()
                .parse()
                .map_err(|err: T::Err| ConfigError::Invalid {
                    var: var.to_owned(),
                    reason: err.to_string(),
                    value,
                })
        }
        _ => Ok(default),
    }
}

/// `var` as a string, or `default`.
pub fn env_string(var: &str, default: &str) -> String {
    match std::env::var(var) {
        Ok(value) if !value.trim().is_empty() => value.trim().to_owned(),
        _ => default.to_owned(),
    }
}

/// The per-machine cache `scripts/stack` installs into (tansu, geo-IP data, test
/// SDKs): `TALLY_CACHE_DIR`, default `~/.cache/tally`.
pub fn cache_dir() -> std::path::PathBuf {
    std::env::var("TALLY_CACHE_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| {
            std::path::PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| "/root".into()))
                .join(".cache/tally")
        })
}

/// Fails with [`ConfigError::Rule`] unless `ok`.
pub fn ensure(ok: bool, rule: impl Into<String>) -> Result<(), ConfigError> {
    if ok {
        Ok(())
    } else {
        Err(ConfigError::Rule(rule.into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_when_unset_and_error_names_the_variable() {
        assert_eq!(env_or("TALLY_TEST_SURELY_UNSET", 7u32).unwrap(), 7);
        // SAFETY-free: tests in this module use distinct variable names.
        std::env::set_var("TALLY_TEST_BAD_NUMBER", "seven");
        let err = env_or("TALLY_TEST_BAD_NUMBER", 7u32).unwrap_err();
        assert!(err.to_string().contains("TALLY_TEST_BAD_NUMBER"));
        std::env::set_var("TALLY_TEST_GOOD_NUMBER", " 9 ");
        assert_eq!(env_or("TALLY_TEST_GOOD_NUMBER", 7u32).unwrap(), 9);
    }
}
