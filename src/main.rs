//! The `hydra` binary: parse the command line, run, exit with the right code.

fn main() {
    hydra::process::stdio::ensure_open();
    std::process::exit(hydra::cli::main());
}
