//! `jitgate serve`: run the gateway.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use clap::Args;
use rmcp::ServiceExt as _;
use tokio_util::sync::CancellationToken;

use super::{CliError, Deployment};
use crate::clock::SystemClock;
use crate::downstream::DownstreamSet;
use crate::gateway::{IdentityFile, IdentitySource, Session, Shared};
use crate::approver::ApproverVerifier;
use crate::identity::IdentityVerifier;
use crate::token::Keyring;

/// Default HTTP listen address: loopback only.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7420";

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The gateway config file.
    #[arg(long, env = "JITGATE_CONFIG")]
    pub config: PathBuf,
    /// Serve streamable HTTP at http://ADDR/mcp (default 127.0.0.1:7420).
    #[arg(long, conflicts_with = "stdio")]
    pub listen: Option<SocketAddr>,
    /// Serve one agent over stdin/stdout instead of HTTP.
    #[arg(long)]
    pub stdio: bool,
    /// With --stdio: file holding the agent's identity JWT; re-read when it changes.
    #[arg(long, requires = "stdio")]
    pub identity_file: Option<PathBuf>,
    /// This replica's name behind a load balancer (1-32 letters, digits or
    /// '-', unique per replica): its handshake-era session ids begin with
    /// `NAME.`, so the load balancer sends each session's requests to the
    /// replica that holds it (see deploy/nginx.conf).
    #[arg(long, value_parser = parse_replica, conflicts_with = "stdio")]
    pub replica: Option<String>,
}

/// A replica name as session ids carry it.
fn parse_replica(name: &str) -> Result<String, String> {
    let ok = (1..=32).contains(&name.len()) && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    if ok { Ok(name.to_owned()) } else { Err(format!("{name:?}: a replica name is 1-32 letters, digits or '-' (it begins every session id this replica hands out)")) }
}

pub async fn run(args: ServeArgs) -> Result<(), CliError> {
    let kind = if args.stdio { "stdio" } else { "http" };
    let shared = start(&args.config, kind).await?;
    let result = if args.stdio {
        let Some(path) = args.identity_file else {
            shared.shutdown.cancel();
            return Err(CliError::Identity(
                "--stdio needs --identity-file PATH: the file with the agent's identity JWT (mint one with `jitgate identity mint --out PATH`)".into(),
            ));
        };
        serve_stdio(shared.clone(), path).await
    } else {
        if let Some(addr) = shared.config.metrics.listen {
            let listener = match tokio::net::TcpListener::bind(addr).await {
                Ok(l) => l,
                Err(e) => {
                    shared.shutdown.cancel();
                    return Err(CliError::Other(format!("cannot listen for metrics on {addr}: {e}; change [metrics] listen")));
                }
            };
            let bound = listener.local_addr().map_err(|e| CliError::Other(e.to_string()))?;
            eprintln!("jitgate metrics on http://{bound}/metrics");
            let shared = shared.clone();
            tokio::spawn(async move {
                if let Err(e) = crate::http::metrics::serve(shared, listener).await {
                    tracing::error!(error = %e, "the metrics endpoint stopped");
                }
            });
        }
        let addr = args.listen.unwrap_or_else(|| DEFAULT_LISTEN.parse().unwrap_or(SocketAddr::from(([127, 0, 0, 1], 7420))));
        serve_http(shared.clone(), addr, args.replica.as_deref()).await
    };
    shared.shutdown.cancel();
    end_own_sessions(&shared).await;
    // Sign the audit chain's head so that truncation after this run shows.
    crate::gateway::maintenance::checkpoint(&shared).await;
    result
}

/// This process stops: the handshake-era sessions it served cannot go on
/// anywhere else, so what they hold is revoked, with the reason on record
/// (the store writes each revocation's record with it).
/// Sessionless authority and other processes' sessions are untouched.
async fn end_own_sessions(shared: &Shared) {
    let (store, id, now) = (shared.store.clone(), shared.instance.clone(), shared.clock.now_unix());
    match tokio::task::spawn_blocking(move || store.end_instance(&id, crate::gateway::INSTANCE_STOPPED, now)).await {
        Ok(Ok(revoked)) => {
            tracing::info!(instance = %shared.instance, sessions = revoked.len(), "stopped; revoked the sessions this process served");
        }
        Ok(Err(e)) => tracing::error!(error = %e, "cannot record the end of this gateway's sessions; they lapse with its lease"),
        Err(e) => tracing::error!(error = %e, "session clean-up task failed"),
    }
}

/// Load everything and start the downstream supervisors.
pub async fn start(config_path: &std::path::Path, kind: &str) -> Result<Arc<Shared>, CliError> {
    let deployment = Deployment::load(config_path).map_err(CliError::Config)?;
    let Deployment { config, agents, manifests, policy } = deployment;
    crate::keys::create_private_dir(&config.state_dir)
        .map_err(|e| CliError::Other(format!("cannot create state directory {}: {e}", config.state_dir.display())))?;
    let clock: Arc<dyn crate::clock::Clock> = Arc::new(SystemClock);
    let learned = load_learned(&config, &agents)?;
    let mut identity = IdentityVerifier::new(&config.gateway_id, &config.identity, agents, clock.clone())
        .map_err(|e| CliError::Identity(e.to_string()))?;
    if let Some(oauth) = &config.oauth {
        identity.also_accept_audience(&oauth.resource);
    }
    let approvers = ApproverVerifier::new(&config, clock.clone()).map_err(|e| CliError::Identity(e.to_string()))?;
    let reviewers = ApproverVerifier::reviewers(&config, clock.clone()).map_err(|e| CliError::Identity(e.to_string()))?;
    let keyring = Keyring::load_or_init(&config.keys_dir()).map_err(|e| CliError::Identity(e.to_string()))?;
    let store = super::open_store_for_serving(&config)?;
    if matches!(config.store, crate::config::StoreConfig::Postgres { .. }) {
        signs_with_the_other_replicas_keys(store.as_ref(), &keyring, &config.keys_dir())?;
    }
    let instance = crate::gateway::new_instance_id();
    store
        .register_instance(&instance, kind, clock.now_unix(), crate::gateway::maintenance::lease_until(config.limits.instance_lease, clock.now_unix()))
        .map_err(|e| CliError::Other(e.to_string()))?;
    let login = match &config.ui_oidc {
        Some(c) => Some(Arc::new(crate::login::PeopleLogin::new(c.clone()).map_err(CliError::Identity)?)),
        None => None,
    };
    let shutdown = CancellationToken::new();
    spawn_signal_handler(shutdown.clone());
    let exchanger = match &config.token_exchange {
        Some(c) => Some(Arc::new(crate::downstream::TokenExchanger::new(c.clone()).map_err(CliError::Identity)?)),
        None => None,
    };
    let downstreams = DownstreamSet::start(manifests, &config.limits, exchanger, &shutdown);
    tracing::info!(gateway = %config.gateway_id, servers = downstreams.iter().count(), signing_key = %keyring.active().kid, "gateway starting");
    tracing::info!(dir = %policy.dir.display(), policies = policy.len(), "policy set loaded");
    let (keyring, _) = tokio::sync::watch::channel(Arc::new(keyring));
    let (policy, _) = tokio::sync::watch::channel(Arc::new(policy));
    let shared = Arc::new(Shared {
        config,
        downstreams,
        identity: Arc::new(identity),
        store,
        keyring,
        clock,
        inflight: Default::default(),
        shutdown,
        policy,
        approvers: Arc::new(approvers),
        reviewers: Arc::new(reviewers),
        login,
        learned,
        instance,
        listen_streams: Default::default(),
        agent_calls: Default::default(),
        seen_identities: Default::default(),
        identity_refusals: Default::default(),
    });
    tracing::info!(instance = %shared.instance, kind, "gateway instance registered");
    // Sessions of processes that died without stopping are dead: revoke them
    // now rather than when their lease is next checked.
    crate::gateway::maintenance::end_lapsed_instances(&shared).await;
    tokio::spawn(crate::gateway::maintenance::run(shared.clone()));
    start_notifications(&shared)?;
    spawn_policy_reload_on_sighup(shared.clone());
    start_key_refresh(&shared).await;
    Ok(shared)
}

/// Webhooks of `[notify]`: their secrets are read now, so a missing one
/// stops the start instead of every notification failing later.
fn start_notifications(shared: &Arc<Shared>) -> Result<(), CliError> {
    let names = shared.identity.agents().iter().map(|a| (a.id.clone(), a.name.clone())).collect();
    let notifier = crate::notify::Notifier::new(&shared.config.notify, &shared.config.gateway_id, shared.store.clone(), shared.clock.clone(), names)
        .map_err(|e| CliError::Other(format!("cannot start notifications: {e}; fix [[notify.webhooks]]")))?;
    if let Some(n) = notifier {
        tokio::spawn(n.run(shared.shutdown.clone()));
    }
    Ok(())
}

/// Replicas must sign with the same capability keys, or a token one of them
/// grants is refused by the next (`STATE/keys` per replica). The store's
/// latest signed audit checkpoint shows the key the deployment signs with:
/// a replica that does not hold it does not start. A fresh store has none.
fn signs_with_the_other_replicas_keys(store: &dyn crate::store::Store, keyring: &Keyring, keys_dir: &std::path::Path) -> Result<(), CliError> {
    let checkpoints = store.checkpoints().map_err(|e| CliError::Other(e.to_string()))?;
    let Some(last) = checkpoints.last() else { return Ok(()) };
    let kid = crate::jws::parse(&last.jws, 16 * 1024).ok().and_then(|j| j.kid().ok().map(str::to_owned));
    match kid {
        Some(kid) if keyring.public_key(&kid).is_none() => Err(CliError::Identity(format!(
            "the store's audit checkpoints are signed with capability key {kid}, which {} does not hold: every replica must sign with the same keys (a token one grants is refused by the others). Copy the keys directory from a running replica, or mount one shared directory, then start again",
            keys_dir.display()
        ))),
        _ => Ok(()),
    }
}

/// Fetch every issuer's remote key set once, all at once and each within
/// its fetch timeout, then keep each fresh in the background. A set that
/// cannot be fetched now is retried; its issuer's tokens are refused
/// meanwhile (`identity_keys_unavailable`, and `/healthz` says so).
async fn start_key_refresh(shared: &Arc<Shared>) {
    let sets = shared.remote_key_sets();
    let clock = shared.clock.clone();
    futures::future::join_all(sets.iter().map(|set| {
        let clock = clock.clone();
        async move { set.refresh(clock.as_ref()).await }
    }))
    .await;
    for set in sets {
        tokio::spawn(set.run(shared.clock.clone(), shared.shutdown.clone()));
    }
}

/// Learned baselines beside the agent files; a broken one stops the start.
fn load_learned(
    config: &crate::config::Config,
    agents: &crate::agent::AgentDirectory,
) -> Result<std::collections::HashMap<String, crate::baseline::profile::LearnedProfile>, CliError> {
    let mut learned = std::collections::HashMap::new();
    for agent in agents.iter() {
        if let Some(p) = crate::baseline::profile::LearnedProfile::load(&config.agents_dir, &agent.name).map_err(CliError::Other)? {
            tracing::info!(agent = %agent.name, intents = p.intents, transitions = p.transitions.len(), "learned baseline loaded");
            learned.insert(agent.id.clone(), p);
        }
    }
    Ok(learned)
}

async fn serve_http(shared: Arc<Shared>, addr: SocketAddr, replica: Option<&str>) -> Result<(), CliError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| CliError::Other(format!("cannot listen on {addr}: {e}; pick a free port with --listen")))?;
    let bound = listener.local_addr().map_err(|e| CliError::Other(e.to_string()))?;
    // Tests and scripts read this line to learn the port when --listen used port 0.
    eprintln!("jitgate listening on http://{bound}/mcp");
    crate::http::serve(shared, listener, replica).await.map_err(|e| CliError::Other(format!("HTTP server failed: {e}")))
}

async fn serve_stdio(shared: Arc<Shared>, identity_file: PathBuf) -> Result<(), CliError> {
    let file = Arc::new(IdentityFile::new(identity_file.clone()));
    // Refuse to start with an identity that does not verify: the agent's MCP
    // client would otherwise see a server whose every call fails.
    let agent = file
        .current(&shared.identity)
        .map_err(|e| CliError::Identity(format!("identity file {}: {e}", identity_file.display())))?;
    tracing::info!(agent = %agent.agent.name, "stdio session starting");
    let (rmcp_in, rmcp_out) = crate::stdio::guard(tokio::io::stdin(), tokio::io::stdout(), shared.config.limits.max_message_bytes);
    let session = Session::new(shared.clone(), IdentitySource::File(file));
    let running = session
        .serve((rmcp_in, rmcp_out))
        .await
        .map_err(|e| CliError::Other(format!("MCP session over stdio failed to start: {e}")))?;
    let shutdown = shared.shutdown.clone();
    tokio::select! {
        r = running.waiting() => { r.map_err(|e| CliError::Other(e.to_string()))?; }
        _ = shutdown.cancelled() => {}
    }
    Ok(())
}

/// `kill -HUP` reloads the policy set at once (it is also reloaded when its
/// files change).
fn spawn_policy_reload_on_sighup(shared: Arc<Shared>) {
    #[cfg(unix)]
    tokio::spawn(async move {
        let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else {
            tracing::warn!("cannot listen for SIGHUP; policies reload only when their files change");
            return;
        };
        loop {
            tokio::select! {
                _ = hup.recv() => {
                    tracing::info!("SIGHUP: reloading policies");
                    crate::gateway::maintenance::reload_policy(&shared, &mut None, true);
                }
                _ = shared.shutdown.cancelled() => return,
            }
        }
    });
    #[cfg(not(unix))]
    let _ = shared;
}

fn spawn_signal_handler(shutdown: CancellationToken) {
    tokio::spawn(async move {
        #[cfg(unix)]
        {
            let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate());
            match term {
                Ok(mut term) => {
                    tokio::select! {
                        _ = tokio::signal::ctrl_c() => {}
                        _ = term.recv() => {}
                        _ = shutdown.cancelled() => return,
                    }
                }
                Err(_) => {
                    tokio::select! {
                        _ = tokio::signal::ctrl_c() => {}
                        _ = shutdown.cancelled() => return,
                    }
                }
            }
        }
        #[cfg(not(unix))]
        {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = shutdown.cancelled() => return,
            }
        }
        tracing::info!("shutting down");
        shutdown.cancel();
    });
}
