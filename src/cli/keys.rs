//! `jitgate keys`: create signing key pairs.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::CliError;
use crate::keys::{KeyPair, jwks};

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create an Ed25519 key pair: the private JWK goes to --out (mode 0600),
    /// the public key is printed as a JWKS document for verifiers.
    Generate(GenerateArgs),
    /// Add a new capability signing key to the gateway's state directory. New
    /// tokens are signed with it (a running gateway picks it up within a
    /// second); older keys keep verifying the tokens they signed.
    Rotate(RotateArgs),
}

#[derive(Debug, Args)]
pub struct RotateArgs {
    /// The gateway config file.
    #[arg(long, env = "JITGATE_CONFIG")]
    pub config: PathBuf,
}

#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// Where to write the private key (refuses to overwrite).
    #[arg(long)]
    pub out: PathBuf,
    /// Also write the public JWKS document to this file.
    #[arg(long)]
    pub jwks_out: Option<PathBuf>,
}

pub fn run(cmd: KeysCommand) -> Result<(), CliError> {
    match cmd {
        KeysCommand::Rotate(a) => {
            let config = crate::config::Config::load(&a.config)?;
            let dir = config.keys_dir();
            std::fs::create_dir_all(&dir).map_err(|e| CliError::Other(format!("cannot create {}: {e}", dir.display())))?;
            let now = crate::clock::Clock::now_unix(&crate::clock::SystemClock);
            let key = crate::token::Keyring::add_key(&dir, now).map_err(|e| CliError::Identity(e.to_string()))?;
            let ring = crate::token::Keyring::load(&dir).map_err(|e| CliError::Identity(e.to_string()))?;
            eprintln!("added capability signing key {} in {}; {} key(s) verify", key.kid, dir.display(), ring.public_keys().len());
            outln!("{}", key.kid);
            Ok(())
        }
        KeysCommand::Generate(a) => {
            let pair = KeyPair::generate().map_err(|e| CliError::Identity(e.to_string()))?;
            pair.save_new(&a.out).map_err(|e| CliError::Identity(e.to_string()))?;
            let doc = serde_json::to_string_pretty(&jwks(&[pair.public()])).unwrap_or_default();
            if let Some(p) = a.jwks_out {
                std::fs::write(&p, &doc).map_err(|e| CliError::Other(format!("cannot write {}: {e}", p.display())))?;
            }
            eprintln!("wrote private key {} (kid {}); public key:", a.out.display(), pair.kid);
            outln!("{doc}");
            Ok(())
        }
    }
}
