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
        KeysCommand::Generate(a) => {
            let pair = KeyPair::generate().map_err(|e| CliError::Identity(e.to_string()))?;
            pair.save_new(&a.out).map_err(|e| CliError::Identity(e.to_string()))?;
            let doc = serde_json::to_string_pretty(&jwks(&[pair.public()])).unwrap_or_default();
            if let Some(p) = a.jwks_out {
                std::fs::write(&p, &doc).map_err(|e| CliError::Other(format!("cannot write {}: {e}", p.display())))?;
            }
            eprintln!("wrote private key {} (kid {}); public key:", a.out.display(), pair.kid);
            println!("{doc}");
            Ok(())
        }
    }
}
