//! Layered configuration: defaults in code < TOML file < `P2P_` environment < command-line flags.
//!
//! Each service describes its config as one typed struct with `deny_unknown_fields`; this module
//! only stacks the sources and turns every failure into a message that names the key and where
//! its value came from.

use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::providers::{Env, Format, Serialized, Toml};
use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

/// Environment variable naming the config file when `--config` is not given.
pub const CONFIG_ENV: &str = "P2P_CONFIG";
/// Prefix of every config environment variable (`P2P_SECTION__KEY`).
pub const ENV_PREFIX: &str = "P2P_";

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {0} does not exist")]
    MissingFile(PathBuf),
    #[error("{}", describe(.0))]
    Figment(#[from] Box<figment::Error>),
    #[error("invalid value for key \"{key}\" (from {origin}): {message}")]
    Invalid {
        key: String,
        origin: String,
        message: String,
    },
}

/// Names the source of a value: the file, the exact environment variable, or the flag.
fn origin(m: &Metadata, key: &str) -> String {
    if m.name.contains("environment") {
        return format!(
            "environment variable {ENV_PREFIX}{}",
            key.replace('.', "__").to_uppercase()
        );
    }
    match &m.source {
        Some(src) => format!("{} {src}", m.name),
        None => m.name.to_string(),
    }
}

/// One line per problem: what is wrong, the key, and which source gave the value.
fn describe(err: &figment::Error) -> String {
    let mut lines: Vec<String> = err
        .clone()
        .into_iter()
        .map(|e| {
            let key = e.path.join(".").to_lowercase();
            let origin = match &e.metadata {
                Some(m) => origin(m, &key),
                None => "unknown source".to_owned(),
            };
            if key.is_empty() {
                format!("{} (from {origin})", e.kind)
            } else {
                format!("key \"{key}\" (from {origin}): {}", e.kind)
            }
        })
        .collect();
    lines.dedup();
    lines.join("\n")
}

/// Values given on the command line, as dotted keys (`peer.listen`).
#[derive(Debug, Default, Clone)]
pub struct Flags(Vec<(String, Value)>);

impl Flags {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `key = value` when the flag was given.
    pub fn set<V: Serialize>(&mut self, key: &str, value: Option<V>) -> &mut Self {
        if let Some(v) = value {
            match Value::serialize(v) {
                Ok(v) => self.0.push((key.to_owned(), v)),
                // Flags are plain strings, numbers and paths: serialising them cannot fail.
                Err(e) => {
                    tracing::warn!(key, error = %e, "ignoring flag that cannot be serialised")
                }
            }
        }
        self
    }
}

impl Provider for Flags {
    fn metadata(&self) -> Metadata {
        Metadata::named("command-line flag")
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        // Built by hand so the values stay untagged and the outer figment tags them as flags.
        let mut root = Dict::new();
        for (key, value) in &self.0 {
            let mut parts: Vec<&str> = key.split('.').collect();
            let last = parts.pop().unwrap_or_default();
            let mut dict = &mut root;
            for p in parts {
                let entry = dict
                    .entry(p.to_owned())
                    .or_insert_with(|| Value::from(Dict::new()));
                if !matches!(entry, Value::Dict(..)) {
                    *entry = Value::from(Dict::new());
                }
                let Value::Dict(_, inner) = entry else {
                    unreachable!("made a dict just above")
                };
                dict = inner;
            }
            dict.insert(last.to_owned(), value.clone());
        }
        Ok(Profile::Default.collect(root))
    }
}

/// A loaded config and the sources it came from, for messages about invalid values.
pub struct Loaded<T> {
    pub value: T,
    figment: Figment,
}

impl<T> Loaded<T> {
    /// An error for a value that has the right type but is not acceptable.
    pub fn invalid(&self, key: &str, message: impl Into<String>) -> ConfigError {
        let origin = self
            .figment
            .find_metadata(key)
            .map(|m| origin(m, key))
            .unwrap_or_else(|| "built-in default".to_owned());
        ConfigError::Invalid {
            key: key.to_owned(),
            origin,
            message: message.into(),
        }
    }
}

/// Stacks the layers and deserialises `T`. `sections` are the top-level tables `T` has; env vars
/// for other sections are left alone so one shell can configure several services.
pub fn load<T>(
    sections: &[&str],
    file: Option<&Path>,
    flags: Flags,
) -> Result<Loaded<T>, ConfigError>
where
    T: DeserializeOwned + Serialize + Default,
{
    let env_file = std::env::var_os(CONFIG_ENV)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from);
    let file = file.map(Path::to_path_buf).or(env_file);

    let mut figment = Figment::from(Serialized::defaults(T::default()));
    if let Some(path) = file {
        if !path.is_file() {
            return Err(ConfigError::MissingFile(path));
        }
        figment = figment.merge(Toml::file(path));
    }
    let sections: Vec<String> = sections.iter().map(|s| s.to_string()).collect();
    figment = figment
        .merge(Env::prefixed(ENV_PREFIX).split("__").filter(move |key| {
            let top = key.as_str().split('.').next().unwrap_or_default();
            sections.iter().any(|s| s.eq_ignore_ascii_case(top))
        }))
        .merge(flags);
    let value = figment.extract::<T>().map_err(Box::new)?;
    Ok(Loaded { value, figment })
}

/// Settings for logs and traces, the same in every service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetryConfig {
    /// `RUST_LOG`-style filter; `RUST_LOG` wins when set.
    pub log_level: String,
    pub log_format: LogFormat,
    /// OTLP endpoint for traces; empty turns trace export off.
    pub otlp_endpoint: String,
    pub sampling_ratio: f64,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            log_level: "info".into(),
            log_format: LogFormat::Auto,
            otlp_endpoint: String::new(),
            sampling_ratio: 1.0,
        }
    }
}

impl TelemetryConfig {
    pub fn validate<T>(&self, loaded: &Loaded<T>) -> Result<(), ConfigError> {
        if !(0.0..=1.0).contains(&self.sampling_ratio) {
            return Err(loaded.invalid("telemetry.sampling_ratio", "must be between 0.0 and 1.0"));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Text on a terminal, JSON otherwise.
    Auto,
    Text,
    Json,
}

/// Rejects zero durations, which would turn timers into busy loops.
pub fn require_positive<T>(
    loaded: &Loaded<T>,
    key: &str,
    value: Duration,
) -> Result<(), ConfigError> {
    if value.is_zero() {
        return Err(loaded.invalid(key, "must be greater than zero"));
    }
    Ok(())
}

/// Durations in config files and variables: strings such as `"30s"`, `"500ms"` or `"2m"`.
/// A bad value is answered with an example, since `30` alone is the usual mistake.
pub mod duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub const EXAMPLE: &str = "write a duration like \"30s\", \"500ms\" or \"2m\"";

    pub fn parse(s: &str) -> Result<Duration, String> {
        humantime::parse_duration(s.trim())
            .map_err(|e| format!("{s:?} is not a duration ({e}); {EXAMPLE}"))
    }

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&humantime::format_duration(*d))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        /// A number where a string belongs (`lease_ttl = 30`) gets the same hint.
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Text(String),
            Number(f64),
        }
        match Raw::deserialize(d) {
            Ok(Raw::Text(s)) => parse(&s).map_err(D::Error::custom),
            Ok(Raw::Number(n)) => Err(D::Error::custom(format!("{n} has no unit; {EXAMPLE}"))),
            Err(_) => Err(D::Error::custom(EXAMPLE)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Default, Serialize, Deserialize)]
    #[serde(deny_unknown_fields, default)]
    struct Demo {
        demo: DemoSection,
    }

    #[derive(Debug, Default, Serialize, Deserialize)]
    #[serde(deny_unknown_fields, default)]
    struct DemoSection {
        #[serde(with = "duration")]
        wait: Duration,
    }

    fn load_wait(value: &str) -> Result<Duration, String> {
        let mut flags = Flags::new();
        flags.set("demo.wait", Some(value));
        load::<Demo>(&["demo"], None, flags)
            .map(|l| l.value.demo.wait)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn a_bad_duration_is_answered_with_an_example() {
        assert_eq!(load_wait("1m 30s"), Ok(Duration::from_secs(90)));
        for bad in ["30", "thirty", "3x"] {
            let msg = load_wait(bad).expect_err(bad);
            assert!(
                msg.contains("demo.wait") && msg.contains("\"30s\""),
                "{bad}: {msg}"
            );
        }
        let mut flags = Flags::new();
        flags.set("demo.wait", Some(30));
        let msg = load::<Demo>(&["demo"], None, flags)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            msg.contains("has no unit") && msg.contains("\"30s\""),
            "{msg}"
        );
    }
}
