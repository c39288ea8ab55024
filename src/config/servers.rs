//! `[[servers]]`: the registered downstream servers and their transport overrides.

#[allow(unused_imports)]
use super::*;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(in crate::config) struct RawServer {
    pub(in crate::config) manifest: Spanned<PathBuf>,
    #[serde(default = "yes")]
    pub(in crate::config) enabled: bool,
    pub(in crate::config) command: Option<String>,
    pub(in crate::config) args: Option<Vec<String>>,
    pub(in crate::config) cwd: Option<PathBuf>,
    pub(in crate::config) url: Option<String>,
    #[serde(default)]
    pub(in crate::config) env: BTreeMap<String, String>,
}

pub(in crate::config) fn yes() -> bool {
    true
}

/// A registered downstream server: its manifest plus deployment overrides.
#[derive(Debug, Clone)]
pub struct ServerEntry {
    pub manifest: PathBuf,
    pub enabled: bool,
    pub overrides: TransportOverride,
}

/// Deployment-specific ways to reach a server, overriding the manifest's transport.
#[derive(Debug, Clone, Default)]
pub struct TransportOverride {
    pub command: Option<String>,
    pub args: Option<Vec<String>>,
    /// Working directory for a spawned server (resolved against the config's directory).
    pub cwd: Option<PathBuf>,
    pub url: Option<String>,
    pub env: BTreeMap<String, String>,
}

pub(in crate::config) fn validate_server(file: &SourceFile, raw: RawServer) -> Result<ServerEntry, SourceError> {
    if raw.url.is_some() && raw.command.is_some() {
        return Err(file.error_at(Some(raw.manifest.span()), "a server entry may override `command` or `url`, not both"));
    }
    Ok(ServerEntry {
        manifest: file.resolve(raw.manifest.get_ref()),
        enabled: raw.enabled,
        overrides: TransportOverride {
            command: raw.command,
            args: raw.args,
            cwd: raw.cwd.map(|c| file.resolve(&c)),
            url: raw.url,
            env: raw.env,
        },
    })
}
