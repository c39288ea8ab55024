//! # jitgate
//!
//! A just-in-time authorization gateway for AI agents that use tools over MCP.
//! Agents connect to jitgate as an MCP server; jitgate connects to the real
//! (downstream) MCP servers as a client and re-exposes only the tools that
//! platform teams registered in tool manifests, namespaced `server__tool`.
//!
//! ## The flow of one call
//!
//! 1. [`identity`]: the agent's identity token (HTTP bearer or stdio identity
//!    file) is verified against the approved issuers and mapped to its
//!    [`agent`] file.
//! 2. [`gateway`]: `tools/list` shows the agent only tools that are in a
//!    [`manifest`], whose live definition matches its pin, and that the agent
//!    may use. `tools/call` goes through [`gateway::authorize`], the single
//!    authorization point; nothing else forwards.
//! 3. [`downstream`]: the call is forwarded to the supervised downstream
//!    server with its credentials injected, a timeout, and cancellation.
//!
//! ## Module map
//!
//! | module | owns |
//! |---|---|
//! | [`config`] | the gateway config file |
//! | [`manifest`] | tool manifests and definition pins |
//! | [`agent`] | agent files |
//! | [`identity`] | agent identity tokens |
//! | [`issuer_keys`] | issuers' verification keys: JWKS, discovery, SPIFFE bundles, pinned algorithms |
//! | [`approver`] | approvers' (people's) credentials, kept apart from agents' |
//! | [`policy`] | Cedar schema, entity/context mapping, decisions, plan invariants |
//! | [`store`] | tasks, tokens, revocations, approvals, break-glass, quarantine |
//! | [`token`] | capability tokens: mint, verify, consume, constraints |
//! | [`jws`], [`keys`] | compact JWS (EdDSA) and key files |
//! | [`dpop`] | DPoP proofs of key possession (RFC 9449) |
//! | [`downstream`] | supervised MCP clients to downstream servers |
//! | [`gateway`] | the MCP server handler and the authorization point |
//! | [`http`] | the streamable HTTP front end |
//! | [`stdio`] | the stdio front end with message limits |
//! | [`cli`] | the command line |
#![forbid(unsafe_code)]

pub mod agent;
pub mod approver;
pub mod audit;
pub mod baseline;
pub mod canonical;
pub mod cli;
pub mod clock;
pub mod config;
pub mod constraints;
pub mod downstream;
pub mod fuzzing;
pub mod dpop;
pub mod gateway;
pub mod http;
pub mod identity;
pub mod issuer_keys;
pub mod jws;
pub mod keys;
pub mod login;
pub mod manifest;
pub mod metrics;
pub mod notify;
pub mod policy;
pub mod source;
pub mod store;
pub mod telemetry;
pub mod token;
pub mod trace;
pub mod stdio;
pub mod taint;
