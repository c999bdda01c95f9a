//! IPC between virtual processes: only through channels the YAML declares. A channel is a
//! bounded multi-producer/multi-consumer message queue in a sealed memfd (`queue`), a
//! shared-memory region is a plain sealed memfd (`memfd`); request/reply runs over queues
//! (`rpc`). The IpcManager creates them at `up` and hands each fd only to the processes listed
//! for it, at a stable fd number announced in `HYDRA_IPC_<NAME>`.

pub mod manager;
pub mod memfd;
pub mod queue;
pub mod rpc;

/// The environment variable that announces channel or region `name`'s fd: `HYDRA_IPC_` and the
/// name in capitals, with `-` and `.` as `_` (`jobs-in` → `HYDRA_IPC_JOBS_IN`).
pub fn env_name(name: &str) -> String {
    let mut out = String::from("HYDRA_IPC_");
    out.extend(name.chars().map(|c| match c {
        '-' | '.' => '_',
        c => c.to_ascii_uppercase(),
    }));
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn env_names_are_capitals_and_underscores() {
        assert_eq!(super::env_name("jobs-in"), "HYDRA_IPC_JOBS_IN");
        assert_eq!(super::env_name("a.b_c"), "HYDRA_IPC_A_B_C");
    }
}
