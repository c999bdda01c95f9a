//! `hydra run` with a terminal on stdin: the process gets a pty from its own devpts, as its
//! controlling terminal, sized like hydra's; output comes back through hydra.

mod common;

use common::*;
use std::process::Command;

/// Runs `hydra run ... -- sh -c SCRIPT` under `script(1)`, which gives it a terminal.
fn under_a_terminal(label: &str, extra: &[&str], script: &str) -> String {
    require_root();
    let name = unique_name(label);
    let mut words = vec![
        hydra_bin().display().to_string(),
        "run".into(),
        "--rootfs".into(),
        rootfs().display().to_string(),
        "--name".into(),
        name.clone(),
    ];
    words.extend(extra.iter().map(|s| s.to_string()));
    words.extend(["--".into(), "sh".into(), "-c".into(), script.into()]);
    let quoted: Vec<String> = words
        .iter()
        .map(|w| format!("'{}'", w.replace('\'', r"'\''")))
        .collect();
    let command = format!("stty cols 91 rows 17; {}", quoted.join(" "));
    let out = Command::new("timeout")
        .args(["30", "script", "-qec", &command, "/dev/null"])
        .output()
        .expect("running script(1)");
    let text = String::from_utf8_lossy(&out.stdout).replace('\r', "");
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_host_clean(&name, std::path::Path::new("/run/hydra"));
    text
}

#[test]
fn a_terminal_on_stdin_gives_the_process_its_own_pty() {
    let text = under_a_terminal("tty", &[], "tty; stty size; ls -l /proc/self/fd/0");
    assert!(text.contains("/dev/pts/0"), "{text}");
    assert!(
        text.contains("17 91"),
        "the pty is not sized like the terminal\n{text}"
    );
}

#[test]
fn the_pty_works_without_init_too() {
    let text = under_a_terminal("tty-noinit", &["--no-init"], "tty; echo $$");
    assert!(text.contains("/dev/pts/0"), "{text}");
    assert!(text.lines().any(|l| l.trim() == "1"), "{text}");
}
