//! `l2announcer standalone`: fixed addresses on interfaces chosen by pattern, from flags or a
//! YAML file, without Kubernetes.

use std::{net::IpAddr, path::Path, time::Duration};

use regex::Regex;
use serde::Deserialize;

use crate::{announcer::Group, dataplane::XdpModeSetting};

/// The YAML configuration file.
///
/// ```yaml
/// xdpMode: auto            # auto | native | generic
/// metricsAddr: 0.0.0.0:9470
/// garpCount: 3
/// garpInterval: 1s
/// garpRefresh: 60s         # optional
/// livenessTimeout: 5s
/// groups:
///   - interfaces: ["^eno1$"]
///     ips: [192.168.3.150, "2001:db8::150"]
/// ```
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Config {
    pub xdp_mode: Option<XdpModeSetting>,
    pub metrics_addr: Option<std::net::SocketAddr>,
    pub garp_count: Option<u32>,
    #[serde(default, with = "humantime_opt")]
    pub garp_interval: Option<Duration>,
    #[serde(default, with = "humantime_opt")]
    pub garp_refresh: Option<Duration>,
    #[serde(default, with = "humantime_opt")]
    pub liveness_timeout: Option<Duration>,
    #[serde(default)]
    pub groups: Vec<GroupConfig>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GroupConfig {
    pub interfaces: Vec<String>,
    pub ips: Vec<IpAddr>,
}

/// Errors in the configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Parse {
        path: String,
        #[source]
        source: serde_yaml::Error,
    },
    #[error("interface pattern {pattern:?}: {source}")]
    Pattern {
        pattern: String,
        #[source]
        source: regex::Error,
    },
    #[error("nothing to announce: give --interface and --ip, or --config with groups")]
    Empty,
    #[error("--ip given without --interface")]
    NoInterface,
    #[error("a group has no interfaces or no ips")]
    EmptyGroup,
}

impl Config {
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        serde_yaml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.display().to_string(),
            source,
        })
    }
}

/// Compiles the patterns of every group; the flags' group (if any) comes first.
pub fn groups(
    flag_interfaces: &[String],
    flag_ips: &[IpAddr],
    config: &Config,
) -> Result<Vec<Group>, ConfigError> {
    let mut out = Vec::new();
    if !flag_ips.is_empty() || !flag_interfaces.is_empty() {
        if flag_interfaces.is_empty() {
            return Err(ConfigError::NoInterface);
        }
        if flag_ips.is_empty() {
            return Err(ConfigError::EmptyGroup);
        }
        out.push(group(flag_interfaces, flag_ips)?);
    }
    for g in &config.groups {
        if g.interfaces.is_empty() || g.ips.is_empty() {
            return Err(ConfigError::EmptyGroup);
        }
        out.push(group(&g.interfaces, &g.ips)?);
    }
    if out.is_empty() {
        return Err(ConfigError::Empty);
    }
    Ok(out)
}

fn group(patterns: &[String], ips: &[IpAddr]) -> Result<Group, ConfigError> {
    let interfaces = patterns
        .iter()
        .map(|p| {
            Regex::new(p).map_err(|source| ConfigError::Pattern {
                pattern: p.clone(),
                source,
            })
        })
        .collect::<Result<_, _>>()?;
    Ok(Group {
        interfaces,
        ips: ips.to_vec(),
    })
}

/// Durations written as `500ms`, `1s`, `2m`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .map(|i| s.split_at(i))
        .unwrap_or((s, "s"));
    let n: f64 = num.parse().map_err(|_| format!("bad duration {s:?}"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("bad duration unit in {s:?} (ms, s, m, h)")),
    };
    if !secs.is_finite() || secs < 0.0 {
        return Err(format!("bad duration {s:?}"));
    }
    Ok(Duration::from_secs_f64(secs))
}

mod humantime_opt {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let s: Option<String> = Option::deserialize(d)?;
        s.map(|s| super::parse_duration(&s).map_err(serde::de::Error::custom))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_config_with_groups() {
        let c: Config = serde_yaml::from_str(
            "xdpMode: generic\ngarpInterval: 500ms\ngroups:\n  - interfaces: ['^eno1$']\n    ips: [192.168.3.150, '2001:db8::1']\n  - interfaces: [eno2]\n    ips: [192.168.4.150]\n",
        )
        .unwrap();
        assert_eq!(c.xdp_mode, Some(XdpModeSetting::Generic));
        assert_eq!(c.garp_interval, Some(Duration::from_millis(500)));
        let g = groups(&[], &[], &c).unwrap();
        assert_eq!(g.len(), 2);
        assert_eq!(g[0].ips.len(), 2);
    }

    #[test]
    fn bad_input_is_a_clear_error() {
        assert!(
            serde_yaml::from_str::<Config>("groups: [{interfaces: [x], ips: [300.1.1.1]}]")
                .is_err()
        );
        assert!(serde_yaml::from_str::<Config>("bogus: 1").is_err());
        let c = Config::default();
        assert!(matches!(groups(&[], &[], &c), Err(ConfigError::Empty)));
        assert!(matches!(
            groups(&[], &["192.0.2.1".parse().unwrap()], &c),
            Err(ConfigError::NoInterface)
        ));
        assert!(matches!(
            groups(&["(".into()], &["192.0.2.1".parse().unwrap()], &c),
            Err(ConfigError::Pattern { .. })
        ));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("1 fortnight").is_err());
    }
}
