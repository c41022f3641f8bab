//! The Linux runs' `/init` as the initramfs carries it: checked-in shell scripts
//! (`tests/linux/init/*.sh`, embedded with `include_str!` so the build reads nothing at run
//! time) and, per run, a generated parameters file (`/etc/hyp-test.env`: shell variable
//! assignments of what xtask computes) that they source; the bench's `/init`; and the check of
//! all of them (`sh -n`, `shellcheck` when installed, every variable they use set). What the
//! Linux runs (`linux`, `kmod`) and the bench (`bench`) put in their initramfs, with nothing of
//! theirs.

use std::fmt::Display;
use std::path::Path;
use std::process::{Command, Stdio};

/// Where the parameters file goes in the initramfs (paths here are the archive's: no leading
/// `/`).
pub const PARAMS_PATH: &str = "etc/hyp-test.env";
/// Where the scripts `/init` sources go in the initramfs.
pub const LIB_DIR: &str = "lib/hyp-test";

/// A script `/init` sources, from `/lib/hyp-test/NAME`.
#[derive(Clone, Copy, Debug)]
pub struct Lib {
    /// Its file name (as in `tests/linux/init/`).
    pub name: &'static str,
    /// Its text.
    pub text: &'static str,
}

/// The start of every test run's `/init`: busybox's applets, /proc, /sys, /dev, a quiet
/// console for the test lines, and the test runner `run NAME COMMAND...` (one line per test,
/// the command's output as the reason when it fails, counted for the summary).
pub const COMMON: Lib =
    Lib { name: "common.sh", text: include_str!("../../tests/linux/init/common.sh") };

/// The bench's `/init`.
const BENCH: &str = include_str!("../../tests/linux/init/bench.sh");

/// What the host's and guest1's bench `/init`s share: the run's start, the disk, the warm-up,
/// one measured `dd`, the lines kept and printed at the end.
pub const BENCH_LIB: Lib =
    Lib { name: "benchlib.sh", text: include_str!("../../tests/linux/init/benchlib.sh") };

/// The values a run's scripts are given, in the order set: one `NAME='value'` line each.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Params(Vec<(&'static str, String)>);

impl Params {
    /// Sets `name` (a shell variable name, upper case, set once) to `value`.
    pub fn set(&mut self, name: &'static str, value: impl Display) -> &mut Self {
        assert!(
            !name.is_empty()
                && !name.starts_with(|c: char| c.is_ascii_digit())
                && name.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'),
            "{name}: not an upper-case shell variable name"
        );
        assert!(self.get(name).is_none(), "{name} set twice");
        self.0.push((name, value.to_string()));
        self
    }

    /// The value of `name`, if set.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str())
    }

    /// The names set.
    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.0.iter().map(|(n, _)| *n)
    }

    /// The parameters file: a comment, then one assignment per line, each value single-quoted
    /// (so it is the value as is: no expansion, no word splitting when assigned).
    pub fn render(&self) -> String {
        let mut s = String::from(
            "# shellcheck shell=sh\n# What this run's tests expect, written by xtask (sourced by /init).\n",
        );
        for (n, v) in &self.0 {
            s.push_str(&format!("{n}='{}'\n", v.replace('\'', r"'\''")));
        }
        s
    }
}

/// A run's `/init` and what it sources.
#[derive(Clone, Debug)]
pub struct InitFiles {
    /// `/init` (checked in).
    pub init: &'static str,
    /// The scripts it sources from [`LIB_DIR`] (checked in).
    pub libs: Vec<Lib>,
    /// What it sources from [`PARAMS_PATH`] (generated).
    pub params: Params,
}

impl InitFiles {
    /// Every file with its path in the initramfs: `init`, the parameters, the scripts.
    pub fn files(&self) -> Vec<(String, String)> {
        let mut v = vec![
            ("init".to_string(), self.init.to_string()),
            (PARAMS_PATH.to_string(), self.params.render()),
        ];
        v.extend(self.libs.iter().map(|l| (format!("{LIB_DIR}/{}", l.name), l.text.to_string())));
        v
    }

    /// The upper-case variables the scripts use (`$NAME`, `${NAME...}`) that neither the
    /// parameters nor the scripts themselves set, and the parameters no script uses.
    pub fn unset_and_unused(&self) -> (Vec<String>, Vec<&'static str>) {
        let texts: Vec<&str> =
            std::iter::once(self.init).chain(self.libs.iter().map(|l| l.text)).collect();
        let mut used = Vec::new();
        let mut assigned = vec!["PATH".to_string()];
        for t in &texts {
            for line in t.lines().filter(|l| !l.trim_start().starts_with('#')) {
                used.extend(upper_names_after(line, '$', true));
                assigned.extend(upper_names_after(line, '=', false));
            }
        }
        let mut unset: Vec<String> = used
            .iter()
            .filter(|n| self.params.get(n).is_none() && !assigned.contains(n))
            .cloned()
            .collect();
        unset.sort();
        unset.dedup();
        let unused = self.params.names().filter(|n| !used.iter().any(|u| u == n)).collect();
        (unset, unused)
    }
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_uppercase() || c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'
}

/// Upper-case names in `line`: after `$` or `${` (`expanded`), or before `=` where an
/// assignment can start (at the start of the line or after a blank or `;`).
fn upper_names_after(line: &str, mark: char, expanded: bool) -> Vec<String> {
    let b: Vec<char> = line.chars().collect();
    let upper = |w: &str| {
        !w.is_empty()
            && !w.starts_with(|c: char| c.is_ascii_digit())
            && w.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
    };
    let mut out = Vec::new();
    for (i, &c) in b.iter().enumerate() {
        if c != mark {
            continue;
        }
        if expanded {
            let start = if b.get(i + 1) == Some(&'{') { i + 2 } else { i + 1 };
            let w: String =
                b[start.min(b.len())..].iter().take_while(|c| is_name_char(**c)).collect();
            if upper(&w) {
                out.push(w);
            }
        } else {
            let start = b[..i].iter().rposition(|c| !is_name_char(*c)).map_or(0, |p| p + 1);
            let w: String = b[start..i].iter().collect();
            let at_start = start == 0 || matches!(b[start - 1], ' ' | '\t' | ';');
            if at_start && upper(&w) {
                out.push(w);
            }
        }
    }
    out
}

/// Blocks per `dd` in the first run of each pair (the second moves twice as many): the figure
/// per 4 KiB is the difference over this many blocks, so what a run pays once (fork, exec,
/// open, dd's own start-up) cancels out.
pub const LINUX_IO_BLOCKS: u32 = 256;
/// Pairs of runs per operation (the figures are their median, min and max).
pub const LINUX_IO_REPS: u32 = 7;
/// The bench's `/init` (`tests/linux/init/bench.sh`): first the virtual counter at userspace
/// entry, then the kernel's modules (the disk binds at once), a warm-up, and
/// [`LINUX_IO_REPS`] pairs of `dd` runs of [`LINUX_IO_BLOCKS`] and twice as many 4 KiB direct
/// reads, then writes, each under `icount run`. Under the hypervisor the `smmu_hyp` module's
/// counters give the SMMU commands the I/O cost; natively the module must refuse to load (no
/// EL2), which is printed too.
pub fn bench_files(modules: &[String]) -> InitFiles {
    let (n, reps) = (LINUX_IO_BLOCKS, LINUX_IO_REPS);
    let mut p = Params::default();
    p.set("MODULES", modules.join(" "))
        .set("DISK_DEV", pci_dev(platform::qemu_virt::HOST_DISK_SLOT))
        .set("N", n)
        .set("N2", 2 * n)
        .set("REPS", reps)
        .set("IOS", reps * 3 * n);
    InitFiles { init: BENCH, libs: vec![BENCH_LIB], params: p }
}

/// The sysfs directory of function 0 of slot `slot` on bus 0.
pub fn pci_dev(slot: u8) -> String {
    format!("/sys/bus/pci/devices/0000:00:{slot:02x}.0")
}

/// Whether `shellcheck` can be run.
pub fn shellcheck_installed() -> bool {
    Command::new("shellcheck")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// `sh -n` of `text` (the host's `sh`, dash on Debian): its complaint if it has one.
pub fn sh_n(text: &str) -> Result<(), String> {
    use std::io::Write;
    let mut child = Command::new("sh")
        .arg("-n")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run sh: {e}"))?;
    child
        .stdin
        .take()
        .ok_or("no stdin")?
        .write_all(text.as_bytes())
        .map_err(|e| format!("writing to sh -n: {e}"))?;
    let out = child.wait_with_output().map_err(|e| format!("sh -n: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim().to_string())
    }
}

/// The check of one run's (or several identical runs') `/init` and what it sources.
#[derive(Debug)]
pub struct ScriptCheck {
    /// What was checked (`/init of linux, ...`).
    pub name: String,
    /// Why it failed, if it did.
    pub result: Result<(), String>,
}

/// Checks a run's `/init` and what it sources: `sh -n` on each; every upper-case variable the
/// scripts use is set (by the parameters or the scripts) and every parameter is used; and,
/// with `shellcheck`, `shellcheck -S warning` on each, `/init` following what it sources. The
/// files are written under `dir` as the initramfs lays them out (for shellcheck, and to be
/// read).
pub fn check(files: &InitFiles, dir: &Path, shellcheck: bool) -> Result<(), String> {
    let mut why = Vec::new();
    let all = files.files();
    for (path, text) in &all {
        if let Err(e) = sh_n(text) {
            why.push(format!("sh -n /{path}: {e}"));
        }
    }
    let (unset, unused) = files.unset_and_unused();
    if !unset.is_empty() {
        why.push(format!("used but never set: {}", unset.join(" ")));
    }
    if !unused.is_empty() {
        why.push(format!("parameters no script uses: {}", unused.join(" ")));
    }
    let _ = std::fs::remove_dir_all(dir);
    for (path, text) in &all {
        let p = dir.join(path);
        if let Some(d) = p.parent() {
            std::fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
        }
        std::fs::write(&p, text).map_err(|e| format!("{}: {e}", p.display()))?;
    }
    if shellcheck {
        // `/init` with what it sources (its `# shellcheck source=` lines name them relative to
        // `dir`); the sourced files alone, where the parameters' variables are set elsewhere
        // (SC2154) and theirs are used elsewhere (SC2034).
        let mut runs = vec![vec!["-x".to_string(), "init".to_string()]];
        runs.extend(
            all.iter()
                .skip(1)
                .map(|(path, _)| vec!["-e".into(), "SC2034,SC2154".into(), path.clone()]),
        );
        for args in runs {
            let out = Command::new("shellcheck")
                .args(["-s", "sh", "-S", "warning", "-f", "gcc"])
                .args(&args)
                .current_dir(dir)
                .output()
                .map_err(|e| format!("cannot run shellcheck: {e}"))?;
            if !out.status.success() {
                why.push(format!(
                    "shellcheck {}: {}{}",
                    args.join(" "),
                    String::from_utf8_lossy(&out.stdout).trim(),
                    String::from_utf8_lossy(&out.stderr).trim()
                ));
            }
        }
    }
    if why.is_empty() {
        Ok(())
    } else {
        Err(why.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_quoted_values() {
        let mut p = Params::default();
        p.set("A", "x y").set("B", 0x10u32).set("C", "it's $HOME");
        assert_eq!(
            p.render().lines().skip(2).collect::<Vec<_>>(),
            ["A='x y'", "B='16'", r"C='it'\''s $HOME'"]
        );
        assert_eq!(p.get("B"), Some("16"));
        sh_n(&p.render()).unwrap();
        assert!(sh_n("if true; then\n").is_err());
    }

    #[test]
    #[should_panic(expected = "set twice")]
    fn a_parameter_is_set_once() {
        Params::default().set("A", 1).set("A", 2);
    }

    #[test]
    fn finds_unset_and_unused_names() {
        let mut p = Params::default();
        p.set("USED", 1).set("SPARE", 2);
        let f = InitFiles {
            init:
                "#!/bin/sh\n# $NOT_IN_A_COMMENT\nX=1; echo \"$USED ${X} ${TYPO%%.*} $lower $1\"\n",
            libs: vec![],
            params: p,
        };
        assert_eq!(f.unset_and_unused(), (vec!["TYPO".to_string()], vec!["SPARE"]));
        assert_eq!(upper_names_after("a=1 B=2 x$C=3;D=4", '=', false), ["B", "D"]);
    }

    #[test]
    fn the_bench_script_checks() {
        let f = bench_files(&["virtio_blk".to_string()]);
        let dir = crate::tools::root().join("target/xtask/unit-tests/init-bench");
        check(&f, &dir, false).unwrap();
    }
}
