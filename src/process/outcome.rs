//! How a run ended, in the user's terms: the exit code hydra returns and the lines it prints
//! (a failed set-up step, an exec failure, an OOM kill, refused forks).

use super::exec::exec_failure_code;
use super::launch::LaunchPlan;
use super::stage::{errno_text, Stage, StepError};
use super::supervise::Ended;
use crate::cgroups::Events;
use crate::config::units::format_size;
use crate::config::Limits;

/// The result of one virtual process.
#[derive(Debug, PartialEq)]
pub struct Outcome {
    pub code: i32,
    /// Lines for stderr, without the `hydra: <name>: ` prefix.
    pub messages: Vec<String>,
}

/// What the failed step was doing, in words.
pub fn describe(plan: &LaunchPlan, error: &StepError) -> String {
    let index = usize::from(error.index);
    match error.stage {
        Stage::WaitSupervisor => "waiting for the supervisor".into(),
        Stage::Stdio => "attaching stdio".into(),
        Stage::Setsid => "creating a session".into(),
        Stage::CgroupJoin => "joining the cgroup".into(),
        Stage::CgroupNamespace => "entering a cgroup namespace".into(),
        Stage::Hostname => "setting the hostname".into(),
        Stage::Loopback => "bringing up lo".into(),
        Stage::MakePrivate => "making mounts private".into(),
        Stage::LayerTmpfs => "mounting the writable layer".into(),
        Stage::LayerDirs => "creating the writable layer".into(),
        Stage::Overlay => "mounting the root overlay".into(),
        Stage::OpenRoot => "opening the new root".into(),
        Stage::DevNull => "checking the host's /dev/null".into(),
        Stage::Mount => plan
            .mounts
            .ops
            .get(index)
            .map_or_else(|| "mounting".into(), |op| op.describe()),
        Stage::PivotRoot => "pivot_root into the new root".into(),
        Stage::DetachOldRoot => "detaching the host's root".into(),
        Stage::ReadOnlyRoot => "making / read-only".into(),
        Stage::CloseFds => "closing inherited file descriptors".into(),
        Stage::PassFds => "passing the IPC file descriptors".into(),
        Stage::Workdir => format!(
            "changing to working directory {}",
            plan.workdir.path.to_string_lossy()
        ),
        Stage::Rlimit => plan.rlimits.get(index).map_or_else(
            || "setting a resource limit".into(),
            |r| format!("setting {} {}", r.flag, r.value),
        ),
        Stage::Priority => "setting the priority".into(),
        Stage::Groups => "setting supplementary groups".into(),
        Stage::SetGid => format!("switching to group {}", plan.privileges.identity.gid),
        Stage::SetUid => format!("switching to user {}", plan.privileges.identity.uid),
        Stage::Capabilities => "dropping capabilities".into(),
        Stage::NoNewPrivs => "setting no_new_privs".into(),
        Stage::Landlock => "applying the Landlock ruleset".into(),
        Stage::Seccomp => "installing the seccomp filter".into(),
        Stage::Terminal => "attaching the terminal".into(),
        Stage::SignalMask => "resetting the signal mask".into(),
        Stage::Fork => "forking the command".into(),
        Stage::Exec => format!(
            "exec {}",
            plan.exec
                .argv
                .strings()
                .first()
                .map_or_else(String::new, |a| a.to_string_lossy().into_owned())
        ),
    }
}

/// Decides the exit code and the messages.
pub fn decide(plan: &LaunchPlan, ended: &Ended, events: Events, limits: &Limits) -> Outcome {
    let mut messages = Vec::new();
    let mut code = ended.code;
    if let Some(failure) = &ended.failure {
        messages.push(format!(
            "{}: {}",
            describe(plan, failure),
            errno_text(failure.errno)
        ));
        code = if failure.stage == Stage::Exec {
            exec_failure_code(failure.errno)
        } else {
            125
        };
    }
    let killed = ended.signal == Some(libc::SIGKILL) || ended.code == 128 + libc::SIGKILL;
    if events.oom_kills > 0 && killed {
        let limit = limits.memory.map_or_else(
            || "no limit".to_string(),
            |m| format!("limit {}", format_size(m)),
        );
        messages.push(format!("killed: out of memory ({limit})"));
        code = 137;
    }
    if events.pids_max_hits > 0 {
        let max = limits.pids.map_or_else(String::new, |p| format!(" ({p})"));
        messages.push(format!(
            "pids limit{max} reached: {} fork(s) refused",
            events.pids_max_hits
        ));
    }
    Outcome { code, messages }
}
