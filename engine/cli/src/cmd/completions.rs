//! `haifu completions SHELL` and `haifu man`: shell completions and man
//! pages, generated from the same clap definitions that parse the
//! arguments, so they never disagree with `--help`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Prints the completion script on stdout. Install it where your shell \
looks (the .deb does this):

  haifu completions bash > /usr/share/bash-completion/completions/haifu
  haifu completions zsh  > /usr/share/zsh/vendor-completions/_haifu
  haifu completions fish > /usr/share/fish/vendor_completions.d/haifu.fish"
)]
pub(crate) struct CompletionArgs {
    /// The shell.
    #[arg(value_enum)]
    shell: clap_complete::Shell,
}

#[derive(Debug, clap::Args)]
#[command(after_help = "Without --out, prints haifu(1) on stdout (view it with \
`haifu man | man -l -`). With --out DIR, writes one page per command into DIR: haifu.1, \
haifu-master.1, haifu-ca-issue.1, ... (the .deb installs them in /usr/share/man/man1).")]
pub(crate) struct ManArgs {
    /// Write every page into this folder instead.
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
}

pub(crate) fn completions(args: CompletionArgs, mut cli: clap::Command) -> Result<ExitCode> {
    clap_complete::generate(args.shell, &mut cli, "haifu", &mut std::io::stdout());
    Ok(ExitCode::SUCCESS)
}

pub(crate) fn man(args: ManArgs, cli: clap::Command) -> Result<ExitCode> {
    match args.out {
        Some(dir) => {
            std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
            clap_mangen::generate_to(cli, &dir)
                .with_context(|| format!("writing man pages into {}", dir.display()))?;
        }
        None => clap_mangen::Man::new(cli).render(&mut std::io::stdout())?,
    }
    Ok(ExitCode::SUCCESS)
}
