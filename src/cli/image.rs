//! `hydra image pack|unpack|inspect`: `.hcon` images (docs/hcon-format.md).

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Args, Subcommand, ValueEnum};

use crate::image::{self, AesKey, PackOptions, Protection, PublicKey, UnlockKey};

#[derive(Debug, Args)]
pub struct ImageArgs {
    #[command(subcommand)]
    pub command: ImageCommand,
}

#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Pack a root filesystem directory into a .hcon image.
    Pack(PackArgs),
    /// Verify (and decrypt) an image and unpack it into a new directory.
    Unpack(UnpackArgs),
    /// Show an image's format, encryption, recipients, sizes and digest (no key needed).
    Inspect(InspectArgs),
    /// Verify (and decrypt) every chunk of an image, writing nothing.
    Verify(VerifyArgs),
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The image.
    pub file: PathBuf,
    /// The private key (from `hydra keygen`) or AES key file of an encrypted image.
    #[arg(long, value_name = "KEY")]
    pub key: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum EncryptArg {
    None,
    Aes,
    #[value(name = "kyber_aes")]
    KyberAes,
}

#[derive(Debug, Args)]
pub struct PackArgs {
    /// The root filesystem to pack.
    pub dir: PathBuf,
    /// The image file to write.
    #[arg(short, long, value_name = "FILE.hcon")]
    pub output: PathBuf,
    /// none; aes (with --key-file); kyber_aes (with --recipient). Default: what the key options
    /// imply, else none.
    #[arg(long, value_enum)]
    pub encrypt: Option<EncryptArg>,
    /// A public key (KEY.pub from `hydra keygen`) to encrypt for; repeat for several.
    #[arg(long, value_name = "KEY.pub")]
    pub recipient: Vec<PathBuf>,
    /// A 32-byte AES key file (raw, or 64 hex digits) for --encrypt aes.
    #[arg(long, value_name = "KEY")]
    pub key_file: Option<PathBuf>,
    /// Compressed bytes per chunk: 4K to 16M.
    #[arg(long, value_name = "SIZE", value_parser = parse_chunk_size)]
    pub chunk_size: Option<u32>,
    /// zstd compression level.
    #[arg(long, default_value_t = 3, value_parser = clap::value_parser!(i32).range(1..=19))]
    pub level: i32,
}

#[derive(Debug, Args)]
pub struct UnpackArgs {
    /// The image.
    pub file: PathBuf,
    /// The directory to create (it must not exist).
    #[arg(short, long, value_name = "DIR")]
    pub output: PathBuf,
    /// The private key (from `hydra keygen`) or AES key file of an encrypted image.
    #[arg(long, value_name = "KEY")]
    pub key: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct InspectArgs {
    /// The image.
    pub file: PathBuf,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

fn parse_chunk_size(text: &str) -> Result<u32, String> {
    let bytes = crate::config::units::parse_size(text).map_err(|e| e.to_string())?;
    u32::try_from(bytes)
        .ok()
        .filter(|b| (image::MIN_CHUNK_SIZE..=image::MAX_CHUNK_SIZE).contains(b))
        .ok_or_else(|| format!("chunk size '{text}' is not between 4K and 16M"))
}

pub fn run(args: ImageArgs) -> anyhow::Result<i32> {
    match args.command {
        ImageCommand::Pack(a) => pack(a),
        ImageCommand::Unpack(a) => unpack(a),
        ImageCommand::Verify(a) => verify(a),
        ImageCommand::Inspect(a) => inspect(a),
    }
}

fn protection(args: &PackArgs) -> anyhow::Result<Protection> {
    let implied = match (args.recipient.is_empty(), &args.key_file) {
        (true, None) => EncryptArg::None,
        (false, None) => EncryptArg::KyberAes,
        (true, Some(_)) => EncryptArg::Aes,
        (false, Some(_)) => {
            bail!("--recipient (kyber_aes) and --key-file (aes) exclude each other")
        }
    };
    let mode = args.encrypt.unwrap_or(implied);
    match mode {
        EncryptArg::None if implied == EncryptArg::None => Ok(Protection::None),
        EncryptArg::Aes => {
            let Some(path) = args
                .key_file
                .as_ref()
                .filter(|_| implied == EncryptArg::Aes)
            else {
                bail!("--encrypt aes takes --key-file KEY (and no --recipient)");
            };
            Ok(Protection::Aes(AesKey::load(path)?))
        }
        EncryptArg::KyberAes => {
            if implied != EncryptArg::KyberAes {
                bail!("--encrypt kyber_aes takes at least one --recipient KEY.pub (and no --key-file)");
            }
            if args.recipient.len() > image::MAX_RECIPIENTS {
                bail!("at most {} recipients", image::MAX_RECIPIENTS);
            }
            let keys = args
                .recipient
                .iter()
                .map(|p| PublicKey::load(p))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(Protection::KyberAes(keys))
        }
        EncryptArg::None => bail!("--encrypt none takes neither --recipient nor --key-file"),
    }
}

fn pack(args: PackArgs) -> anyhow::Result<i32> {
    let protection = protection(&args)?;
    let mut bar = Bar::new("packing");
    let mut progress = |done, total| bar.update(done, total);
    let mut opts = PackOptions::new(protection);
    opts.level = args.level;
    if let Some(size) = args.chunk_size {
        opts.chunk_size = size;
    }
    if Bar::wanted() {
        opts.progress = Some(&mut progress);
    }
    let result = image::pack(&args.dir, &args.output, opts);
    bar.clear();
    result.with_context(|| {
        format!(
            "packing {} into {}",
            args.dir.display(),
            args.output.display()
        )
    })?;
    Ok(0)
}

fn unpack(args: UnpackArgs) -> anyhow::Result<i32> {
    let what = || format!("unpacking {}", args.file.display());
    let key = args
        .key
        .as_deref()
        .map(UnlockKey::load)
        .transpose()
        .with_context(what)?;
    let mut bar = Bar::new("unpacking");
    let mut progress = |done, total| bar.update(done, total);
    let progress: Option<image::Progress> = if Bar::wanted() {
        Some(&mut progress)
    } else {
        None
    };
    let result = image::unpack_with(&args.file, &args.output, key.as_ref(), progress);
    bar.clear();
    result.with_context(what)?;
    Ok(0)
}

fn verify(args: VerifyArgs) -> anyhow::Result<i32> {
    let digest = image::verify(&args.file, args.key.as_deref())
        .with_context(|| format!("verifying {}", args.file.display()))?;
    println!("{}: verified, {digest}", args.file.display());
    Ok(0)
}

fn inspect(args: InspectArgs) -> anyhow::Result<i32> {
    let info = image::inspect(&args.file)
        .with_context(|| format!("inspecting {}", args.file.display()))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&info)?);
        return Ok(0);
    }
    let recipients = if info.recipients.is_empty() {
        "-".to_owned()
    } else {
        let list: Vec<String> = info
            .recipients
            .iter()
            .map(|r| format!("{} ({})", r.key_id, kind_name(r.kind)))
            .collect();
        list.join(", ")
    };
    println!("format:      hcon v{}", info.format_version);
    println!("encryption:  {}", info.encryption);
    println!("recipients:  {recipients}");
    println!("compression: {}", info.compression);
    println!(
        "chunks:      {} of up to {}",
        info.chunks,
        human(u64::from(info.chunk_size))
    );
    println!("entries:     {}", info.entries);
    println!(
        "archive:     {} ({} bytes)",
        human(info.archive_bytes),
        info.archive_bytes
    );
    println!(
        "compressed:  {} ({} bytes)",
        human(info.compressed_bytes),
        info.compressed_bytes
    );
    println!(
        "file:        {} ({} bytes)",
        human(info.file_bytes),
        info.file_bytes
    );
    println!("image id:    {}", info.image_id);
    println!("digest:      {}", info.digest);
    Ok(0)
}

fn kind_name(kind: image::RecipientKind) -> &'static str {
    match kind {
        image::RecipientKind::Aes => "aes",
        image::RecipientKind::XWing => "x-wing",
    }
}

fn human(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// A one-line progress bar on stderr, drawn only when stderr is a terminal, at most ten times
/// a second, and erased at the end (so that an error line stands alone).
struct Bar {
    label: &'static str,
    last: Option<Instant>,
    drawn: bool,
}

impl Bar {
    fn new(label: &'static str) -> Bar {
        Bar {
            label,
            last: None,
            drawn: false,
        }
    }

    fn wanted() -> bool {
        std::io::stderr().is_terminal()
    }

    fn update(&mut self, done: u64, total: u64) {
        if self
            .last
            .is_some_and(|t| t.elapsed() < Duration::from_millis(100))
        {
            return;
        }
        self.last = Some(Instant::now());
        let fraction = if total == 0 {
            1.0
        } else {
            done as f64 / total as f64
        };
        let width = 30;
        let filled = ((fraction * width as f64) as usize).min(width);
        let mut err = std::io::stderr().lock();
        let _ = write!(
            err,
            "\r\x1b[K{} [{}{}] {:3.0}% {} / {}",
            self.label,
            "#".repeat(filled),
            " ".repeat(width - filled),
            fraction * 100.0,
            human(done),
            human(total)
        );
        let _ = err.flush();
        self.drawn = true;
    }

    fn clear(&mut self) {
        if self.drawn {
            let mut err = std::io::stderr().lock();
            let _ = write!(err, "\r\x1b[K");
            let _ = err.flush();
            self.drawn = false;
        }
    }
}
