//! Shell completions and manual pages for both binaries, made from their
//! clap definitions (so they cannot drift from the real options):
//! `cutover completions bash`, `cutover man --dir DIR`, and the same for
//! `cutover-agent`. The packages ship them (packaging/).

use std::path::Path;

pub use clap_complete::Shell;

/// The completion script of `cmd` for `shell`.
pub fn completions(mut cmd: clap::Command, shell: Shell) -> String {
    let name = cmd.get_name().to_string();
    let mut out = Vec::new();
    clap_complete::generate(shell, &mut cmd, name, &mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// `NAME completions SHELL`: prints the script (`print!`: a closed pipe
/// ends quietly, exit 141, as everywhere in the CLIs).
pub fn print_completions(cmd: clap::Command, shell: Shell) {
    print!("{}", completions(cmd, shell));
}

/// `NAME man --dir DIR`: writes the pages and says how many.
pub fn write_man_pages(cmd: clap::Command, dir: &Path) -> Result<(), String> {
    let files = man_pages(cmd, dir)
        .map_err(|e| format!("writing manual pages into {}: {e}", dir.display()))?;
    println!("wrote {} manual pages into {}", files.len(), dir.display());
    Ok(())
}

/// Writes the manual pages of `cmd` into `dir`: `NAME.1`, and
/// `NAME-SUB.1` for each subcommand (and theirs). Returns the files.
pub fn man_pages(cmd: clap::Command, dir: &Path) -> std::io::Result<Vec<std::path::PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let mut written = Vec::new();
    write_page(cmd, dir, &mut written)?;
    Ok(written)
}

fn write_page(
    cmd: clap::Command,
    dir: &Path,
    written: &mut Vec<std::path::PathBuf>,
) -> std::io::Result<()> {
    let name = cmd.get_display_name().unwrap_or(cmd.get_name()).to_string();
    let mut buf = Vec::new();
    clap_mangen::Man::new(cmd.clone()).render(&mut buf)?;
    let path = dir.join(format!("{name}.1"));
    crate::fsutil::write_atomic(&path, &buf, 0o644)?;
    written.push(path);
    for sub in cmd.get_subcommands() {
        if sub.is_hide_set() || sub.get_name() == "help" {
            continue;
        }
        let sub = sub
            .clone()
            .display_name(format!("{name}-{}", sub.get_name()))
            .bin_name(format!("{name} {}", sub.get_name()));
        write_page(sub, dir, written)?;
    }
    Ok(())
}

/// Differences between the manual pages and completions `cmd` makes now
/// and those kept in `packaging/` (which the packages ship): a test calls
/// it so that they cannot go stale. Empty: up to date.
pub fn stale_in(cmd: clap::Command, packaging: &Path) -> Vec<String> {
    let name = cmd.get_name().to_string();
    let mut stale = Vec::new();
    let fresh = tempfile_dir();
    let made = match man_pages(cmd.clone(), &fresh) {
        Ok(m) => m,
        Err(e) => return vec![format!("cannot render the manual pages: {e}")],
    };
    let kept = packaging.join("man").join(&name);
    let mut kept_names: Vec<String> = std::fs::read_dir(&kept)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    kept_names.sort();
    let mut made_names: Vec<String> = made
        .iter()
        .map(|p| {
            p.file_name()
                .unwrap_or_default()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    made_names.sort();
    if kept_names != made_names {
        stale.push(format!(
            "{}: pages {kept_names:?}, expected {made_names:?}",
            kept.display()
        ));
    }
    for f in &made {
        let file = f.file_name().unwrap_or_default();
        if std::fs::read(f).ok() != std::fs::read(kept.join(file)).ok() {
            stale.push(kept.join(file).display().to_string());
        }
    }
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        let path = packaging
            .join("completions")
            .join(format!("{name}.{shell}"));
        if std::fs::read_to_string(&path).ok().as_deref() != Some(&completions(cmd.clone(), shell))
        {
            stale.push(path.display().to_string());
        }
    }
    let _ = std::fs::remove_dir_all(&fresh);
    stale
}

fn tempfile_dir() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!(
        "cutover-cli-docs-{}-{}",
        std::process::id(),
        crate::time::now_ms()
    ));
    let _ = std::fs::create_dir_all(&d);
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmd() -> clap::Command {
        clap::Command::new("tool")
            .about("A tool.")
            .arg(clap::Arg::new("flag").long("flag").help("A flag."))
            .subcommand(
                clap::Command::new("run")
                    .about("Runs.")
                    .subcommand(clap::Command::new("fast").about("Fast.")),
            )
    }

    #[test]
    fn a_page_per_command_and_completions_naming_the_options() {
        let dir = tempfile::tempdir().unwrap();
        let files = man_pages(cmd(), dir.path()).unwrap();
        let names: Vec<String> = files
            .iter()
            .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["tool.1", "tool-run.1", "tool-run-fast.1"]);
        let page = std::fs::read_to_string(&files[0]).unwrap();
        assert!(
            page.contains(".TH tool 1") && page.contains("A flag."),
            "{page}"
        );
        let script = completions(cmd(), Shell::Bash);
        assert!(
            script.contains("--flag") && script.contains("run"),
            "{script}"
        );
    }
}
