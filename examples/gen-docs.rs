//! Writes the man page and shell completions from the CLI definition, for the packages:
//!   cargo run --example gen-docs -- target/dist
//! → virtsync.1, virtsync.bash, _virtsync (zsh).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use clap::CommandFactory;

fn main() -> std::io::Result<()> {
    let dir = std::path::PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "target/dist".into()),
    );
    std::fs::create_dir_all(&dir)?;
    let cmd = virtsync::cli::Args::command();
    let mut man = Vec::new();
    clap_mangen::Man::new(cmd.clone()).render(&mut man)?;
    std::fs::write(dir.join("virtsync.1"), man)?;
    for (shell, file) in [
        (clap_complete::Shell::Bash, "virtsync.bash"),
        (clap_complete::Shell::Zsh, "_virtsync"),
    ] {
        let mut out = Vec::new();
        clap_complete::generate(shell, &mut cmd.clone(), "virtsync", &mut out);
        std::fs::write(dir.join(file), out)?;
    }
    println!(
        "wrote {}/{{virtsync.1,virtsync.bash,_virtsync}}",
        dir.display()
    );
    Ok(())
}
