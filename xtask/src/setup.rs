//! Makes sure the machine can build the aarch64 images and run them: Debian's rustc-web with its
//! library source (for `-Zbuild-std`), rust-lld (lld-22), cpio and xz, QEMU >= 10 from
//! bookworm-backports (bookworm's own 7.2 has no SMMUv3 stage 2), and the Linux host's kernel
//! and busybox (arm64 packages fetched with `apt-get download` into `target/linux/`, see
//! `linux/debs.rs`), and what builds the host's kernel module and helpers against that kernel's own
//! headers (the arm64 cross compiler, kbuild, the headers: see `kmod.rs`). Installs what is
//! missing when run as root; otherwise prints the exact commands.

use crate::tools::{CARGO, QEMU, RUSTC};
use crate::Opts;
use std::path::Path;
use std::process::Command;

/// The library source `-Zbuild-std` needs.
const CORE_SRC: &str = "/usr/lib/rustlib/src/rust/library/core/src/lib.rs";
/// The linker.
const RUST_LLD: &str = "/usr/bin/rust-lld";
/// The apt source for bookworm-backports.
const BACKPORTS_FILE: &str = "/etc/apt/sources.list.d/bookworm-backports.sources";
const BACKPORTS_SOURCE: &str = "Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n";
/// Debian packages for the toolchain.
const TOOLCHAIN_PKGS: &[&str] =
    &["rustc-web", "cargo-web", "rust-web-src", "lld-22", "cpio", "xz-utils", "shellcheck"];
/// Oldest QEMU with SMMUv3 stage 2 and GBPA that this project was checked with.
const QEMU_MIN_MAJOR: u32 = 10;

/// What is missing.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Missing {
    /// Toolchain packages to install.
    pub toolchain: bool,
    /// QEMU to install from backports.
    pub qemu: bool,
    /// The backports apt source to add.
    pub backports_source: bool,
    /// The Linux host's kernel and busybox (`target/linux/`).
    pub linux: bool,
    /// What builds the host's kernel module for this kernel ABI (cross compiler, kbuild,
    /// headers).
    pub kmod: Option<String>,
}

impl Missing {
    fn any(&self) -> bool {
        self.toolchain || self.qemu || self.linux || self.kmod.is_some()
    }

    /// The shell commands that install what is missing, in order.
    pub fn commands(&self) -> Vec<String> {
        let mut c = Vec::new();
        if self.qemu && self.backports_source {
            c.push(format!(
                "printf '{}' > {BACKPORTS_FILE}",
                BACKPORTS_SOURCE.replace('\n', "\\n")
            ));
        }
        if self.any() {
            c.push("apt-get update".into());
        }
        if self.toolchain {
            c.push(format!(
                "DEBIAN_FRONTEND=noninteractive apt-get install -y {}",
                TOOLCHAIN_PKGS.join(" ")
            ));
        }
        if self.qemu {
            c.push("DEBIAN_FRONTEND=noninteractive apt-get install -y -t bookworm-backports qemu-system-arm".into());
        }
        if self.linux {
            c.extend(crate::linux::fetch_commands(crate::linux::PINNED_ABI));
        }
        if let Some(abi) = &self.kmod {
            c.extend(crate::kmod::commands(abi));
        }
        c
    }
}

fn output(cmd: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(cmd).args(args).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Major version from "QEMU emulator version 10.0.2 (...)".
pub fn qemu_major(version_output: &str) -> Option<u32> {
    let rest = version_output.split("version ").nth(1)?;
    rest.split('.').next()?.trim().parse().ok()
}

/// Looks at the machine.
pub fn check() -> (Missing, Vec<String>) {
    let mut found = Vec::new();
    let mut m = Missing::default();
    let rustc = output(RUSTC, &["--version"]);
    let cargo = output(CARGO, &["--version"]);
    let toolchain_ok = rustc.is_some()
        && cargo.is_some()
        && Path::new(CORE_SRC).exists()
        && Path::new(RUST_LLD).exists()
        && output(RUST_LLD, &["-flavor", "gnu", "--version"]).is_some()
        && output("cpio", &["--version"]).is_some()
        && output("xz", &["--version"]).is_some();
    match &rustc {
        Some(v) => found.push(format!("aarch64 compiler: {}", v.trim())),
        None => found.push(format!("aarch64 compiler: {RUSTC} missing")),
    }
    m.toolchain = !toolchain_ok;
    let qemu = output(QEMU, &["--version"]);
    match qemu.as_deref().and_then(qemu_major) {
        Some(major) if major >= QEMU_MIN_MAJOR => {
            found.push(format!("QEMU: {}", qemu.unwrap_or_default().lines().next().unwrap_or("")))
        }
        other => {
            found.push(match other {
                Some(major) => format!("QEMU: version {major} is too old (need {QEMU_MIN_MAJOR}+)"),
                None => "QEMU: qemu-system-aarch64 missing".into(),
            });
            m.qemu = true;
            m.backports_source = !backports_configured();
        }
    }
    match crate::linux::artifacts() {
        Some(a) => found.push(format!(
            "Linux host: kernel {} (packages: {})",
            a.abi,
            a.versions.lines().skip(1).collect::<Vec<_>>().join(", ").replace("%3a", ":")
        )),
        None => {
            found.push(format!(
                "Linux host: kernel and busybox missing from {}",
                crate::tools::linux_dir().display()
            ));
            m.linux = true;
        }
    }
    let abi = crate::linux::artifacts().map_or(crate::linux::PINNED_ABI.to_string(), |a| a.abi);
    let kmod = crate::kmod::missing(&abi);
    if kmod.is_empty() {
        found.push(format!(
            "Linux host module build: {} with the {abi} arm64 headers in {}",
            crate::kmod::CROSS_GCC,
            crate::kmod::headers_dir(&abi).display()
        ));
    } else {
        found.push(format!("Linux host module build: missing {}", kmod.join(", ")));
        m.kmod = Some(abi);
    }
    (m, found)
}

fn backports_configured() -> bool {
    let mut texts = Vec::new();
    if let Ok(s) = std::fs::read_to_string("/etc/apt/sources.list") {
        texts.push(s);
    }
    if let Ok(dir) = std::fs::read_dir("/etc/apt/sources.list.d") {
        for e in dir.flatten() {
            let p = e.path();
            let ext = p.extension().and_then(|x| x.to_str()).unwrap_or("");
            if ext == "list" || ext == "sources" {
                if let Ok(s) = std::fs::read_to_string(&p) {
                    texts.push(s);
                }
            }
        }
    }
    texts.iter().any(|t| {
        t.lines().any(|l| !l.trim_start().starts_with('#') && l.contains("bookworm-backports"))
    })
}

fn is_root() -> bool {
    output("id", &["-u"]).is_some_and(|s| s.trim() == "0")
}

/// Checks, and installs what is missing (as root), or fails with the commands to run.
pub fn ensure(opts: &Opts) -> Result<(), String> {
    let (missing, found) = check();
    if !missing.any() {
        if opts.verbose {
            for f in &found {
                println!("setup: {f}");
            }
        }
        return Ok(());
    }
    for f in &found {
        println!("setup: {f}");
    }
    let cmds = missing.commands();
    if !is_root() {
        return Err(format!(
            "the aarch64 toolchain, QEMU or the Linux host's packages are missing and installing needs root. Run:\n  sudo sh -c '{}'",
            cmds.join(" && ")
        ));
    }
    if missing.qemu && missing.backports_source {
        println!("setup: adding {BACKPORTS_FILE}");
        std::fs::write(BACKPORTS_FILE, BACKPORTS_SOURCE)
            .map_err(|e| format!("cannot write {BACKPORTS_FILE}: {e}"))?;
    }
    let apt_cmds = Missing { linux: false, kmod: None, ..missing.clone() }.commands();
    let apt = missing.toolchain || missing.qemu;
    for c in
        apt_cmds.iter().filter(|c| apt && (c.starts_with("apt-get") || c.starts_with("DEBIAN")))
    {
        println!("setup: {c}");
        let status = Command::new("sh")
            .arg("-c")
            .arg(c)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .map_err(|e| format!("cannot run `{c}`: {e}"))?;
        if !status.success() {
            return Err(format!("`{c}` failed ({status})"));
        }
    }
    if missing.linux {
        let a = crate::linux::fetch(opts)?;
        println!(
            "setup: Linux host kernel {} fetched into {}",
            a.abi,
            crate::tools::linux_dir().display()
        );
    }
    // After the kernel: its ABI names the headers (and a new fetch clears target/linux).
    if let Some(a) = crate::linux::artifacts() {
        if !crate::kmod::missing(&a.abi).is_empty() {
            crate::kmod::install(opts, &a.abi)?;
        }
    }
    let (still, found) = check();
    for f in &found {
        println!("setup: {f}");
    }
    if still.any() {
        return Err(format!("still missing after installing: {still:?}"));
    }
    println!("setup: done");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qemu_versions() {
        assert_eq!(qemu_major("QEMU emulator version 10.0.2 (Debian 1:10.0.2+ds)\n"), Some(10));
        assert_eq!(qemu_major("QEMU emulator version 7.2.15\n"), Some(7));
        assert_eq!(qemu_major("garbage"), None);
    }

    #[test]
    fn install_commands_follow_what_is_missing() {
        let none = Missing::default();
        assert!(none.commands().is_empty());
        let all = Missing {
            toolchain: true,
            qemu: true,
            backports_source: true,
            linux: true,
            kmod: Some("6.12.95+deb12".into()),
        };
        let c = all.commands();
        assert!(c[0].contains(BACKPORTS_FILE));
        assert_eq!(c[1], "apt-get update");
        assert!(c[2].contains("rustc-web") && c[2].contains("lld-22") && c[2].contains("xz-utils"));
        assert!(c[3].contains("-t bookworm-backports qemu-system-arm"));
        assert_eq!(c[4], "dpkg --add-architecture arm64");
        assert!(c.iter().any(|x| x.contains("apt-get download linux-image-")
            && x.contains("-arm64-unsigned:arm64 busybox-static:arm64")));
        assert!(c.iter().any(|x| x.contains("apt-get install -y gcc-aarch64-linux-gnu")));
        assert!(c.iter().any(|x| x.contains("apt-get download linux-headers-6.12.95+deb12-arm64")));
        let q = Missing { qemu: true, ..Missing::default() };
        assert_eq!(q.commands().len(), 2);
        let l = Missing { linux: true, ..Missing::default() };
        assert!(l.commands().iter().any(|x| x.starts_with("dpkg-deb -x")));
    }
}
