//! The YAML file as serde reads it: the keys DESIGN.md documents, each value with the line and
//! column it came from (`Spanned`), nothing interpreted yet. Scalars are kept as text — a
//! number or boolean in the file arrives as it was written (`8080`, `0.5`, `1.0`, `yes`) — so
//! that `validate` can parse them with messages that say what was expected.
//!
//! Every mapping rejects unknown keys, so a misspelt key is an error naming the allowed ones.
//! A key given with no value (`cpu:`) counts as absent.

use std::fmt;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_saphyr::Spanned;

/// A scalar as written, with its position.
pub type Text = Spanned<String>;

/// A list of scalars, with the position of the list.
pub type TextList = Spanned<Vec<Text>>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileRaw {
    pub version: Option<Text>,
    pub container: Option<Spanned<ContainerRaw>>,
    pub security: Option<Spanned<SecurityRaw>>,
    pub isolation: Option<Spanned<IsolationRaw>>,
    pub resources: Option<Spanned<ResourcesRaw>>,
    pub processes: Option<Spanned<Vec<Spanned<ProcessRaw>>>>,
    pub volumes: Option<Spanned<Vec<Spanned<VolumeRaw>>>>,
    pub ipc: Option<Spanned<IpcRaw>>,
    /// `networks: {NAME: [process, ...]}`.
    pub networks: Option<Spanned<Entries<TextList>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContainerRaw {
    pub name: Option<Text>,
    /// A `.hcon` image file.
    pub path: Option<Text>,
    /// A root filesystem directory.
    pub rootfs: Option<Text>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecurityRaw {
    pub encryption: Option<Text>,
    pub security_level: Option<Text>,
    pub key: Option<Text>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IsolationRaw {
    pub mode: Option<Text>,
    pub ports: Option<Spanned<Vec<Spanned<PortRaw>>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortRaw {
    pub internal: Option<Text>,
    pub external: Option<Text>,
    pub protocol: Option<Text>,
    pub process: Option<Text>,
    pub host_ip: Option<Text>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourcesRaw {
    pub max_memory: Option<Text>,
    pub max_cpu: Option<Text>,
    pub max_pids: Option<Text>,
    pub max_files: Option<Text>,
    pub max_file_size: Option<Text>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProcessRaw {
    pub name: Option<Text>,
    pub command: Option<Spanned<Command>>,
    pub count: Option<Text>,
    pub env: Option<Spanned<Env>>,
    pub limits: Option<Spanned<LimitsRaw>>,
    pub priority: Option<Text>,
    pub restart: Option<Text>,
    pub depends_on: Option<TextList>,
    pub user: Option<Text>,
    pub workdir: Option<Text>,
    pub read_only: Option<Text>,
    pub healthcheck: Option<Spanned<HealthcheckRaw>>,
    pub volumes: Option<TextList>,
    pub egress: Option<Text>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsRaw {
    pub memory: Option<Text>,
    pub cpu: Option<Text>,
    pub pids: Option<Text>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HealthcheckRaw {
    pub command: Option<Spanned<Command>>,
    pub interval: Option<Text>,
    pub timeout: Option<Text>,
    pub retries: Option<Text>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VolumeRaw {
    pub name: Option<Text>,
    pub size: Option<Text>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IpcRaw {
    pub channels: Option<Spanned<Vec<Spanned<ChannelRaw>>>>,
    pub shared_memory: Option<Spanned<Vec<Spanned<SharedMemoryRaw>>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChannelRaw {
    pub name: Option<Text>,
    pub capacity: Option<Text>,
    pub max_message: Option<Text>,
    pub senders: Option<TextList>,
    pub receivers: Option<TextList>,
    /// `reply: true`: request/reply, one reply queue per sender instance.
    pub reply: Option<Text>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SharedMemoryRaw {
    pub name: Option<Text>,
    pub size: Option<Text>,
    pub processes: Option<TextList>,
}

/// What a value turned out to be when it is not what a key accepts. Kept rather than failing
/// inside serde so that `validate` reports it at the value's own position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Found {
    Number,
    Boolean,
    Nothing,
    Scalar,
    Mapping,
}

impl Found {
    pub fn describe(self) -> &'static str {
        match self {
            Found::Number => "a number",
            Found::Boolean => "a boolean",
            Found::Nothing => "nothing",
            Found::Scalar => "a single value",
            Found::Mapping => "a mapping",
        }
    }
}

/// `command:` — one string (split into words later) or a list of words.
#[derive(Debug)]
pub enum Command {
    Line(String),
    Words(Vec<Text>),
    Invalid(Found),
}

impl<'de> Deserialize<'de> for Command {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct CommandVisitor;
        impl<'de> Visitor<'de> for CommandVisitor {
            type Value = Command;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a command line or a list of words")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Command, E> {
                Ok(Command::Line(v.to_string()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Command, A::Error> {
                let mut words = Vec::new();
                while let Some(word) = seq.next_element::<Text>()? {
                    words.push(word);
                }
                Ok(Command::Words(words))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Command, A::Error> {
                skip_map(map)?;
                Ok(Command::Invalid(Found::Mapping))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Command, E> {
                Ok(Command::Invalid(Found::Boolean))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Command, E> {
                Ok(Command::Invalid(Found::Number))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Command, E> {
                Ok(Command::Invalid(Found::Number))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Command, E> {
                Ok(Command::Invalid(Found::Number))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Command, E> {
                Ok(Command::Invalid(Found::Nothing))
            }
            fn visit_none<E: de::Error>(self) -> Result<Command, E> {
                Ok(Command::Invalid(Found::Nothing))
            }
        }
        deserializer.deserialize_any(CommandVisitor)
    }
}

/// `env:` — a mapping `NAME: value` or a list of `NAME=value` strings. A value written as
/// nothing (`NAME:`) or a list entry without `=` takes its value from hydra's environment.
#[derive(Debug)]
pub enum Env {
    Map(Vec<(Text, Spanned<Option<String>>)>),
    List(Vec<Text>),
    Invalid(Found),
}

impl<'de> Deserialize<'de> for Env {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct EnvVisitor;
        impl<'de> Visitor<'de> for EnvVisitor {
            type Value = Env;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a mapping NAME: value or a list of NAME=value")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Env, A::Error> {
                let mut pairs = Vec::new();
                while let Some(key) = map.next_key::<Text>()? {
                    let value = map.next_value::<Spanned<Option<String>>>()?;
                    pairs.push((key, value));
                }
                Ok(Env::Map(pairs))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Env, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element::<Text>()? {
                    items.push(item);
                }
                Ok(Env::List(items))
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<Env, E> {
                Ok(Env::Invalid(Found::Scalar))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Env, E> {
                Ok(Env::Invalid(Found::Boolean))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Env, E> {
                Ok(Env::Invalid(Found::Number))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Env, E> {
                Ok(Env::Invalid(Found::Number))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Env, E> {
                Ok(Env::Invalid(Found::Number))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Env, E> {
                Ok(Env::Map(Vec::new()))
            }
            fn visit_none<E: de::Error>(self) -> Result<Env, E> {
                Ok(Env::Map(Vec::new()))
            }
        }
        deserializer.deserialize_any(EnvVisitor)
    }
}

/// A mapping whose keys are names chosen by the user (`networks: {backend: [...]}`), in file
/// order, each key with its position.
#[derive(Debug)]
pub struct Entries<V>(pub Vec<(Text, V)>);

impl<'de, V: Deserialize<'de>> Deserialize<'de> for Entries<V> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct EntriesVisitor<V>(std::marker::PhantomData<V>);
        impl<'de, V: Deserialize<'de>> Visitor<'de> for EntriesVisitor<V> {
            type Value = Entries<V>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a mapping NAME: value")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Entries<V>, A::Error> {
                let mut entries = Vec::new();
                while let Some(key) = map.next_key::<Text>()? {
                    entries.push((key, map.next_value::<V>()?));
                }
                Ok(Entries(entries))
            }
        }
        deserializer.deserialize_map(EntriesVisitor(std::marker::PhantomData))
    }
}

/// Reads and drops the rest of a mapping.
fn skip_map<'de, A: MapAccess<'de>>(mut map: A) -> Result<(), A::Error> {
    while map
        .next_entry::<de::IgnoredAny, de::IgnoredAny>()?
        .is_some()
    {}
    Ok(())
}
