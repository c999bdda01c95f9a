//! `hydra gc`: removes what crashed or killed hydra processes left behind.

use clap::Args;

#[derive(Debug, Args)]
pub struct GcArgs {}

pub fn run(_args: GcArgs) -> anyhow::Result<i32> {
    for name in crate::kernel::gc::collect_all() {
        println!("removed {name}");
    }
    Ok(0)
}
