//! `hydra keygen`: a key pair for encrypted images (X25519 + ML-KEM-768, combined as X-Wing),
//! or with `--aes` a 32-byte AES key file.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use crate::image::keys::public_path;
use crate::image::{AesKey, PrivateKey};

#[derive(Debug, Args)]
pub struct KeygenArgs {
    /// The private key file to write (mode 0600); the public key goes to KEY.pub.
    #[arg(short, long, value_name = "KEY")]
    pub output: PathBuf,
    /// Write a random 32-byte AES key (for `image pack --encrypt aes --key-file KEY`) instead.
    #[arg(long)]
    pub aes: bool,
}

pub fn run(args: KeygenArgs) -> anyhow::Result<i32> {
    let shown = args.output.display();
    if args.aes {
        let key = AesKey::generate().context("generating an AES key")?;
        key.write(&args.output)
            .with_context(|| format!("writing {shown}"))?;
        println!("key id {}: wrote the AES key {shown}", key.id());
    } else {
        let key = PrivateKey::generate().context("generating a key pair")?;
        let public = public_path(&args.output);
        key.write_pair(&args.output)
            .with_context(|| format!("writing {shown} and {}", public.display()))?;
        println!(
            "key id {}: wrote the private key {shown} and the public key {}",
            key.id(),
            public.display()
        );
    }
    Ok(0)
}
