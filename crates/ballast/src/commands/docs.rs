//! `ballast completions` and `ballast man`: shell completion scripts
//! (clap_complete) and man pages (clap_mangen), both made from the one
//! clap definition, `Cli::command()`, so they cannot drift from what ballast
//! accepts. They read no config and reach no host or engine.

use std::path::{Path, PathBuf};

use clap::CommandFactory;
use clap_mangen::roff::{bold, roman, Roff};
use clap_mangen::Man;

use ballast_core::{Error, Result};

use crate::cli::{Cli, Shell};
use crate::exit::Exit;
use crate::output::Printer;

/// Prints the completion script for `shell`.
pub fn completions(shell: Shell, out: &Printer) -> Result<()> {
    let (name, generator) = match shell {
        Shell::Bash => ("bash", clap_complete::Shell::Bash),
        Shell::Zsh => ("zsh", clap_complete::Shell::Zsh),
        Shell::Fish => ("fish", clap_complete::Shell::Fish),
    };
    let mut cmd = Cli::command();
    let bin = cmd.get_name().to_string();
    let mut script = Vec::new();
    clap_complete::generate(generator, &mut cmd, bin, &mut script);
    let script = String::from_utf8(script).expect("clap_complete writes UTF-8");
    out.result(
        &serde_json::json!({"shell": name, "script": script}),
        &script,
    );
    Ok(())
}

/// Prints the man page of `ballast`, or with `dir` writes one page per
/// command into it.
pub fn man(dir: Option<&Path>, out: &Printer) -> Result<()> {
    let top = command();
    let Some(dir) = dir else {
        let text = page(&man_page(top));
        out.result(&serde_json::json!({"page": text}), &text);
        return Ok(());
    };
    let step = "write the man pages";
    let failed = |path: &Path, e: std::io::Error| {
        Error::failed(step, format_args!("{}: {e}", path.display()))
            .hint("give --dir a directory you can write to")
    };
    std::fs::create_dir_all(dir).map_err(|e| failed(dir, e))?;
    let mut written: Vec<PathBuf> = Vec::new();
    let mut queue = vec![top];
    while let Some(cmd) = queue.pop() {
        queue.extend(cmd.get_subcommands().filter(|c| !c.is_hide_set()).cloned());
        let man = man_page(cmd);
        let path = dir.join(man.get_filename());
        std::fs::write(&path, page(&man)).map_err(|e| failed(&path, e))?;
        written.push(path);
    }
    written.sort();
    out.result(
        &serde_json::json!({"dir": dir, "pages": written}),
        &format!(
            "wrote {} man pages to {} (ballast.1 and one per command)\n\
             read one with `man -l {}`",
            written.len(),
            dir.display(),
            dir.join("ballast-deploy.1").display()
        ),
    );
    Ok(())
}

/// The command tree the pages describe: built, so every subcommand knows
/// its full name ("ballast lock status"), and without the `help`
/// subcommand, which needs no page.
fn command() -> clap::Command {
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    cmd
}

/// The page of `cmd`, every one saying it is ballast's (clap_mangen would
/// name a subcommand's page's source after the subcommand alone).
fn man_page(cmd: clap::Command) -> Man {
    Man::new(cmd).source(format!("ballast {}", env!("CARGO_PKG_VERSION")))
}

/// One command's page: what clap_mangen renders, with an EXIT STATUS
/// section from the exit code table before VERSION (where man-pages(7)
/// puts it).
fn page(man: &Man) -> String {
    let mut roff = Vec::new();
    man.render(&mut roff)
        .expect("rendering to memory cannot fail");
    let mut page = String::from_utf8(roff).expect("clap_mangen writes UTF-8");
    let exit_status = exit_status();
    match page.find("\n.SH VERSION\n") {
        Some(at) => page.insert_str(at + 1, &exit_status),
        None => page.push_str(&exit_status),
    }
    page
}

/// The EXIT STATUS section, as roff lines to put inside a rendered page.
fn exit_status() -> String {
    let mut roff = Roff::new();
    roff.control("SH", ["EXIT STATUS"]);
    for e in Exit::ALL {
        roff.control("TP", []);
        roff.text([bold(e.code().to_string())]);
        roff.text([roman(e.meaning())]);
    }
    // `render` escapes apostrophes the way the page's preamble (which an
    // empty document renders to) defines them; the page has it already.
    let preamble = Roff::new().render();
    let text = roff.render();
    text.strip_prefix(&preamble).unwrap_or(&text).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_top_page_has_every_exit_code_before_version() {
        let text = page(&man_page(command()));
        let status = text.find(".SH \"EXIT STATUS\"").expect(&text);
        let version = text.find(".SH VERSION").expect(&text);
        assert!(status < version, "{text}");
        for e in Exit::ALL {
            assert!(
                text.contains(&format!(".TP\n\\fB{}\\fR\n", e.code())),
                "{text}"
            );
        }
        assert_eq!(text.matches(".ds Aq").count(), 2, "one preamble: {text}");
        assert!(!text.contains("ballast-help"), "{text}");
    }
}
