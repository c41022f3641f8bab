//! The Linux host's packages: Debian's arm64 kernel (pinned) and static busybox, fetched with
//! `apt-get download` and unpacked under `target/linux/` by `cargo xtask setup`.

use crate::tools::{linux_dir, sh};
use crate::Opts;
use std::path::PathBuf;

/// The kernel this project pins: `linux-image-<ABI>-arm64-unsigned` from bookworm-backports.
/// If the archive has moved on (backports keeps only the newest 6.12), setup takes the current
/// `linux-image-arm64` of bookworm-backports instead and says so.
pub const PINNED_ABI: &str = "6.12.95+deb12";
/// The kernel series the tests are written for.
pub const SERIES: &str = "6.12.";
/// The busybox package (static, arm64).
pub const BUSYBOX_PKG: &str = "busybox-static:arm64";

fn kernel_pkg(abi: &str) -> String {
    format!("linux-image-{abi}-arm64-unsigned:arm64")
}

/// What setup fetched: the kernel ABI name and the files used.
#[derive(Clone, Debug)]
pub struct Artifacts {
    /// E.g. `6.12.95+deb12`.
    pub abi: String,
    /// The package versions, as recorded by setup.
    pub versions: String,
    /// The arm64 `Image`.
    pub image: PathBuf,
    /// `lib/modules/<release>`.
    pub modules: PathBuf,
    /// The static busybox.
    pub busybox: PathBuf,
}

/// The fetched files, if setup has run.
pub fn artifacts() -> Option<Artifacts> {
    let d = linux_dir();
    let versions = std::fs::read_to_string(d.join("VERSION")).ok()?;
    let abi = versions.lines().next()?.trim().to_string();
    let release = format!("{abi}-arm64");
    let a = Artifacts {
        image: d.join(format!("kernel/boot/vmlinuz-{release}")),
        modules: d.join(format!("kernel/lib/modules/{release}")),
        busybox: d.join("busybox/bin/busybox"),
        versions,
        abi,
    };
    (a.image.exists() && a.modules.exists() && a.busybox.exists()).then_some(a)
}

/// The shell commands that fetch and unpack the kernel and busybox (what setup runs as root;
/// printed when it cannot).
pub fn fetch_commands(abi: &str) -> Vec<String> {
    let d = linux_dir();
    let debs = d.join("debs");
    vec![
        "dpkg --add-architecture arm64".into(),
        "apt-get update".into(),
        format!(
            "mkdir -p {0} && cd {0} && apt-get download {1} {BUSYBOX_PKG}",
            debs.display(),
            kernel_pkg(abi)
        ),
        format!(
            "dpkg-deb -x {}/linux-image-{abi}-arm64-unsigned_*.deb {}/kernel",
            debs.display(),
            d.display()
        ),
        format!("dpkg-deb -x {}/busybox-static_*.deb {}/busybox", debs.display(), d.display()),
    ]
}

/// The ABI name of the kernel `linux-image-arm64` depends on in bookworm-backports, from
/// `apt-cache depends` output ("Depends: linux-image-6.12.95+deb12-arm64:arm64").
pub fn abi_from_depends(text: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let dep = l.trim().strip_prefix("Depends: linux-image-")?;
        let abi = dep.split(':').next()?.strip_suffix("-arm64")?;
        abi.starts_with(SERIES).then(|| abi.to_string())
    })
}

/// Whether `apt-cache policy` output offers a candidate.
pub fn has_candidate(policy: &str) -> bool {
    policy.lines().any(|l| {
        l.trim()
            .strip_prefix("Candidate:")
            .is_some_and(|c| !c.trim().is_empty() && c.trim() != "(none)")
    })
}

/// Fetches and unpacks the kernel and busybox (as root: adds the arm64 architecture).
pub fn fetch(opts: &Opts) -> Result<Artifacts, String> {
    let foreign = sh("dpkg --print-foreign-architectures", None, opts.verbose)?;
    if !foreign.lines().any(|l| l.trim() == "arm64") {
        println!("setup: dpkg --add-architecture arm64 && apt-get update");
        sh("dpkg --add-architecture arm64", None, opts.verbose)?;
        sh("apt-get update", None, opts.verbose)?;
    }
    let policy = |pkg: &str| sh(&format!("apt-cache policy {pkg}"), None, opts.verbose);
    let mut abi = PINNED_ABI.to_string();
    if !has_candidate(&policy(&kernel_pkg(&abi))?) {
        sh("apt-get update", None, opts.verbose)?;
        if !has_candidate(&policy(&kernel_pkg(&abi))?) {
            let deps = sh(
                "apt-cache depends -t bookworm-backports linux-image-arm64:arm64",
                None,
                opts.verbose,
            )?;
            abi = abi_from_depends(&deps).ok_or_else(|| {
                format!(
                    "neither {} nor a 6.12 linux-image-arm64 in bookworm-backports is available:\n{deps}",
                    kernel_pkg(PINNED_ABI)
                )
            })?;
            println!(
                "setup: NOTE: the pinned kernel {PINNED_ABI} is no longer in the archive; using {abi} \
                 (update PINNED_ABI in xtask/src/linux/debs.rs)"
            );
        }
    }
    let d = linux_dir();
    let debs = d.join("debs");
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&debs).map_err(|e| format!("{}: {e}", debs.display()))?;
    println!("setup: apt-get download {} {BUSYBOX_PKG}", kernel_pkg(&abi));
    sh(&format!("apt-get download {} {BUSYBOX_PKG}", kernel_pkg(&abi)), Some(&debs), opts.verbose)?;
    let mut versions = vec![abi.clone()];
    for e in std::fs::read_dir(&debs).map_err(|e| e.to_string())?.flatten() {
        let p = e.path();
        let name = p.file_name().unwrap_or_default().to_string_lossy().into_owned();
        let target = if name.starts_with("linux-image") { "kernel" } else { "busybox" };
        sh(
            &format!("dpkg-deb -x {} {}", p.display(), d.join(target).display()),
            None,
            opts.verbose,
        )?;
        versions.push(name);
    }
    versions.sort_by_key(|v| !v.starts_with(SERIES));
    std::fs::write(d.join("VERSION"), versions.join("\n") + "\n").map_err(|e| e.to_string())?;
    artifacts()
        .ok_or_else(|| format!("the packages did not contain the expected files ({})", d.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_the_backports_kernel() {
        let deps = "linux-image-arm64:arm64\n  Depends: linux-image-6.12.95+deb12-arm64:arm64\n";
        assert_eq!(abi_from_depends(deps).as_deref(), Some("6.12.95+deb12"));
        assert_eq!(abi_from_depends("  Depends: linux-image-6.1.0-9-arm64:arm64\n"), None);
        assert!(has_candidate("foo:\n  Installed: (none)\n  Candidate: 6.12.95-1~bpo12+1\n"));
        assert!(!has_candidate("foo:\n  Installed: (none)\n  Candidate: (none)\n"));
        assert!(!has_candidate(""));
    }
}
