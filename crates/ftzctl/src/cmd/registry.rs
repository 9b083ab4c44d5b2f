//! `ftzctl registry`: federation registry files, offline (zone authorities).

use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::Subcommand;
use ftz_core::{Clock, Registry, SystemClock};
use ftzctl::{
    output::{Format, emit},
    registry_file,
};
use serde_json::json;

#[derive(Debug, Subcommand)]
pub enum RegistryCommand {
    /// Describe a registry file: zones, keys, validity, signatures.
    Show { file: PathBuf },
    /// Add (or replace) your authority's signature.
    Sign {
        file: PathBuf,
        /// The authority's Ed25519 key (PEM PKCS#8).
        #[arg(long)]
        key: PathBuf,
        /// Write here instead of in place.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Start the next version of a registry: version + 1, signatures removed, for the
    /// authorities to co-sign.
    Next {
        file: PathBuf,
        #[arg(long)]
        out: PathBuf,
        #[arg(long)]
        quorum: Option<u32>,
        /// New validity from now, in days.
        #[arg(long)]
        valid_days: Option<i64>,
    },
}

pub fn run(cmd: RegistryCommand, fmt: Format) -> Result<()> {
    match cmd {
        RegistryCommand::Show { file } => {
            let reg = Registry::parse(registry_file::read(&file)?)?;
            let (text, value) = registry_file::describe(&reg);
            emit(fmt, || text, || value);
        }
        RegistryCommand::Sign { file, key, out } => {
            ftzctl::signed_file::sign(
                &file,
                &key,
                out.as_deref(),
                |env| Ok(Registry::parse(env.clone()).map(|_| ())?),
                fmt,
            )?;
        }
        RegistryCommand::Next { file, out, quorum, valid_days } => {
            let env = registry_file::read(&file)?;
            let next = registry_file::next_version(&env, SystemClock.now_ms(), quorum, valid_days)?;
            let reg = Registry::parse(next.clone())?;
            if out.exists() {
                bail!("{} exists; choose a new file", out.display());
            }
            registry_file::write(&out, &next)?;
            emit(
                fmt,
                || {
                    format!(
                        "wrote unsigned registry v{} to {}; each authority now runs `ftzctl registry sign`\n",
                        reg.version(),
                        out.display()
                    )
                },
                || json!({"file": out, "version": reg.version()}),
            );
        }
    }
    Ok(())
}
