//! The Linux host's own programs, built as a distribution would build them: the `smmu_hyp`
//! kernel module (`host-abi/linux/`, the host kernel's side of the hypercall ABI) against the
//! Debian kernel's own headers, with `-Werror`, and the static userspace helpers
//! (`tests/linux/icount.c`, the bench's instruction counter; `tests/linux/smmu-attack.c`, which
//! takes the SMMU's encodings from the same generated header) with the same cross compiler.
//!
//! What it needs (installed by `cargo xtask setup`, see [`commands`]):
//! - `gcc-aarch64-linux-gnu` (GCC 12: `aarch64-linux-gnu-gcc-12` is the compiler the headers
//!   name, the one Debian built the kernel with) and `libc6-dev-arm64-cross` (static programs);
//! - `linux-kbuild-<ABI>` (Multi-Arch: foreign: the amd64 build tools for arm64 modules) and
//!   `linux-headers-<ABI>-common` (architecture-independent), both installable on amd64;
//! - `linux-headers-<ABI>-arm64:arm64`, which depends on an arm64 `gcc-12` and so cannot be
//!   installed here: it is `apt-get download`ed and unpacked under `target/linux/headers/`, with
//!   its relative `scripts` link pointed at the installed kbuild.

use crate::initscript::{InitFiles, Lib, Params};
use crate::tools::root;
use crate::Opts;
use host_abi::HypError;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The cross compiler the Debian headers name (`CC = $(CROSS_COMPILE)gcc-12`).
pub const CROSS_GCC: &str = "aarch64-linux-gnu-gcc-12";
/// `CROSS_COMPILE` for kbuild.
const CROSS_COMPILE: &str = "aarch64-linux-gnu-";
/// The static C library the helper links against.
const STATIC_LIBC: &str = "/usr/aarch64-linux-gnu/lib/libc.a";
/// The module's name (`<name>.ko`, `/sys/hypervisor/<name>`).
pub const MODULE: &str = "smmu_hyp";

/// Debian packages installed with apt for kernel `abi`.
pub fn apt_packages(abi: &str) -> Vec<String> {
    vec![
        "gcc-aarch64-linux-gnu".into(),
        "libc6-dev-arm64-cross".into(),
        "make".into(),
        format!("linux-kbuild-{abi}"),
        format!("linux-headers-{abi}-common"),
    ]
}

/// Where the arm64 headers package is unpacked.
pub fn headers_root() -> PathBuf {
    crate::tools::linux_dir().join("headers")
}

/// The kernel build directory of kernel `abi` (what `make -C` is given).
pub fn headers_dir(abi: &str) -> PathBuf {
    headers_root().join(format!("usr/src/linux-headers-{abi}-arm64"))
}

fn kbuild_dir(abi: &str) -> PathBuf {
    PathBuf::from(format!("/usr/lib/linux-kbuild-{abi}"))
}

fn runs(cmd: &str, args: &[&str]) -> bool {
    Command::new(cmd).args(args).output().is_ok_and(|o| o.status.success())
}

/// What is missing to build for kernel `abi`, in words (empty: nothing).
pub fn missing(abi: &str) -> Vec<String> {
    let mut m = Vec::new();
    if !runs(CROSS_GCC, &["--version"]) {
        m.push(format!("{CROSS_GCC} (gcc-aarch64-linux-gnu)"));
    }
    if !Path::new(STATIC_LIBC).exists() {
        m.push(format!("{STATIC_LIBC} (libc6-dev-arm64-cross)"));
    }
    if !runs("make", &["--version"]) {
        m.push("make".into());
    }
    if !kbuild_dir(abi).join("scripts").exists() {
        m.push(format!("{} (linux-kbuild-{abi})", kbuild_dir(abi).display()));
    }
    if !Path::new(&format!("/usr/src/linux-headers-{abi}-common/Makefile")).exists() {
        m.push(format!("/usr/src/linux-headers-{abi}-common (linux-headers-{abi}-common)"));
    }
    let h = headers_dir(abi);
    // `scripts` must resolve (to the installed kbuild) for the headers to be usable.
    if !h.join("Module.symvers").exists() || !h.join("scripts/Makefile.build").exists() {
        m.push(format!("{} (linux-headers-{abi}-arm64, unpacked)", h.display()));
    }
    m
}

/// The shell commands that install everything for kernel `abi` (run as root by setup; printed
/// when it cannot).
pub fn commands(abi: &str) -> Vec<String> {
    let root = headers_root();
    let debs = crate::tools::linux_dir().join("headers-deb");
    vec![
        "apt-get update".into(),
        format!("DEBIAN_FRONTEND=noninteractive apt-get install -y {}", apt_packages(abi).join(" ")),
        format!(
            "rm -rf {0} {1} && mkdir -p {0} && cd {0} && apt-get download linux-headers-{abi}-arm64:arm64",
            debs.display(),
            root.display()
        ),
        format!("dpkg-deb -x {}/linux-headers-{abi}-arm64_*_arm64.deb {}", debs.display(), root.display()),
        // The package's `scripts` and `tools` are relative links to ../../lib/linux-kbuild-ABI.
        format!(
            "mkdir -p {0}/usr/lib && ln -sfn /usr/lib/linux-kbuild-{abi} {0}/usr/lib/linux-kbuild-{abi}",
            root.display()
        ),
    ]
}

/// Installs what is missing for kernel `abi` (as root).
pub fn install(opts: &Opts, abi: &str) -> Result<(), String> {
    for c in commands(abi) {
        println!("setup: {c}");
        crate::tools::sh(&c, None, opts.verbose)?;
    }
    let still = missing(abi);
    if still.is_empty() {
        Ok(())
    } else {
        Err(format!("still missing after installing: {}", still.join(", ")))
    }
}

/// Copies `from` to `to` unless `to` already has the same bytes (so make sees no change).
fn sync_file(from: &Path, to: &Path) -> Result<(), String> {
    let bytes = std::fs::read(from).map_err(|e| format!("{}: {e}", from.display()))?;
    if std::fs::read(to).ok().as_deref() != Some(&bytes[..]) {
        std::fs::write(to, &bytes).map_err(|e| format!("{}: {e}", to.display()))?;
    }
    Ok(())
}

fn run_checked(mut cmd: Command, what: &str, verbose: bool) -> Result<String, String> {
    if verbose {
        let args: Vec<String> = cmd.get_args().map(|a| a.to_string_lossy().into_owned()).collect();
        println!("+ {}", crate::qemu::shell_line(&cmd.get_program().to_string_lossy(), &args));
    }
    let out = cmd.output().map_err(|e| format!("cannot run {what}: {e}"))?;
    let text =
        format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    if !out.status.success() {
        return Err(format!("{what} failed ({}):\n{}", out.status, text.trim()));
    }
    Ok(text)
}

/// Whether build output contains a warning (compiler or modpost): the build must be clean.
pub fn has_warning(text: &str) -> bool {
    text.lines().any(|l| l.contains("warning:") || l.contains("WARNING:"))
}

/// Builds `smmu_hyp.ko` for kernel `abi` in `target/linux/kmod/` (sources copied there so the
/// source tree stays clean; kbuild rebuilds only what changed). `-Werror` is in its Kbuild;
/// a modpost warning fails the build too.
pub fn build_module(opts: &Opts, abi: &str) -> Result<PathBuf, String> {
    build_kmod(opts, abi, &root().join("host-abi/linux"), "kmod", MODULE)
}

/// A Linux guest's paravirtual IOMMU driver (`host-abi/linux/pviommu/`).
pub const PVIOMMU_MODULE: &str = "smmu_pviommu";

/// Builds `smmu_pviommu.ko` like [`build_module`].
pub fn build_pviommu_module(opts: &Opts, abi: &str) -> Result<PathBuf, String> {
    build_kmod(opts, abi, &root().join("host-abi/linux/pviommu"), "pviommu", PVIOMMU_MODULE)
}

/// The test module that sends SGIs to the CPUs the host does not own (`tests/linux/sgi/`).
pub const SGI_MODULE: &str = "sgi_to_others";

/// Builds `sgi_to_others.ko` like [`build_module`].
pub fn build_sgi_module(opts: &Opts, abi: &str) -> Result<PathBuf, String> {
    build_kmod(opts, abi, &root().join("tests/linux/sgi"), "sgi", SGI_MODULE)
}

/// The test module that makes the PSCI calls naming CPUs the host does not own
/// (`tests/linux/psci/`).
pub const PSCI_MODULE: &str = "psci_checks";

/// Builds `psci_checks.ko` like [`build_module`].
pub fn build_psci_module(opts: &Opts, abi: &str) -> Result<PathBuf, String> {
    build_kmod(opts, abi, &root().join("tests/linux/psci"), "psci", PSCI_MODULE)
}

/// The test driver that makes the host's edu DMA through the kernel's DMA API
/// (`tests/linux/edu/`: the stress run's DMA-API workload, the shell's example).
pub const EDU_MODULE: &str = "edu_dma";

/// Builds `edu_dma.ko` like [`build_module`].
pub fn build_edu_module(opts: &Opts, abi: &str) -> Result<PathBuf, String> {
    build_kmod(opts, abi, &root().join("tests/linux/edu"), "edu", EDU_MODULE)
}

/// Builds module `name` (`name.c` and `Kbuild` in `src`) for kernel `abi` in
/// `target/linux/<dir>/`.
fn build_kmod(
    opts: &Opts,
    abi: &str,
    src: &Path,
    dir: &str,
    name: &str,
) -> Result<PathBuf, String> {
    let missing = missing(abi);
    if !missing.is_empty() {
        return Err(format!(
            "cannot build the {name} module: missing {}. Run `cargo xtask setup` (as root), or:\n  {}",
            missing.join(", "),
            commands(abi).join("\n  ")
        ));
    }
    let out = crate::tools::linux_dir().join(dir);
    std::fs::create_dir_all(&out).map_err(|e| format!("{}: {e}", out.display()))?;
    for f in [format!("{name}.c"), "Kbuild".to_string()] {
        sync_file(&src.join(&f), &out.join(&f))?;
    }
    let mut cmd = Command::new("make");
    cmd.arg("-C")
        .arg(headers_dir(abi))
        .arg(format!("M={}", out.display()))
        .arg("ARCH=arm64")
        .arg(format!("CROSS_COMPILE={CROSS_COMPILE}"))
        .arg(format!("SMMU_HYP_INCLUDE={}", root().join("host-abi/include").display()))
        .arg("modules");
    let text = run_checked(cmd, &format!("building the {name} module"), opts.verbose)?;
    if has_warning(&text) {
        return Err(format!("the {name} module built with warnings:\n{}", text.trim()));
    }
    let ko = out.join(format!("{name}.ko"));
    if !ko.exists() {
        return Err(format!("the build left no {}", ko.display()));
    }
    Ok(ko)
}

/// Builds the static helper `tests/linux/NAME.c` for the initramfs' `/bin/NAME`, with the ABI
/// header's directory on its include path (the SMMU's encodings come from `smmu_hyp.h`).
pub fn build_helper(opts: &Opts, name: &str) -> Result<PathBuf, String> {
    let src = root().join(format!("tests/linux/{name}.c"));
    let include = root().join("host-abi/include");
    let out = crate::tools::linux_dir().join(format!("bin/{name}"));
    let newer = |a: &Path, b: &Path| match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(a), Ok(b)) => a.modified().ok() > b.modified().ok(),
        _ => true,
    };
    if !newer(&src, &out) && !newer(&include.join("smmu_hyp.h"), &out) {
        return Ok(out);
    }
    if let Some(d) = out.parent() {
        std::fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
    }
    let mut cmd = Command::new(CROSS_GCC);
    cmd.args(["-static", "-O2", "-Wall", "-Wextra", "-Werror", "-I"]).arg(&include);
    cmd.arg("-o").arg(&out).arg(&src);
    let text = run_checked(cmd, &format!("building {}", src.display()), opts.verbose)?;
    if has_warning(&text) {
        return Err(format!("{} built with warnings:\n{}", src.display(), text.trim()));
    }
    Ok(out)
}

/// The values on arm64 Linux of the errnos `smmu_hyp_errno()` returns
/// (`host_abi::header::errno`).
const ERRNO_VALUES: &[(&str, i32)] =
    &[("EPERM", 1), ("EIO", 5), ("EFAULT", 14), ("EBUSY", 16), ("EINVAL", 22), ("EOPNOTSUPP", 95)];

/// How the modules map each hypervisor status to an errno (`smmu_hyp_errno()` of the header,
/// generated from `host_abi::header::errno`): (status, errno value on arm64 Linux).
pub fn errno_map() -> Vec<(HypError, i32)> {
    HypError::ALL
        .iter()
        .map(|&e| {
            let name = host_abi::header::errno(e);
            let v = ERRNO_VALUES.iter().find(|(n, _)| *n == name).map_or(0, |&(_, v)| v);
            (e, v)
        })
        .collect()
}

/// The committed C header: the module's only source for the ABI, so the tests take the
/// structures' field names (one sysfs file each) from it too.
const HEADER: &str = include_str!("../../host-abi/include/smmu_hyp.h");

/// The field names of `struct NAME` in the header.
pub fn header_fields(header: &str, name: &str) -> Vec<String> {
    let start = format!("struct {name} {{");
    let Some(at) = header.find(&start) else { return Vec::new() };
    header[at + start.len()..]
        .lines()
        .take_while(|l| !l.starts_with("};"))
        .filter_map(|l| {
            let l = l.trim();
            let rest = l.strip_prefix("uint64_t ").or_else(|| l.strip_prefix("uint32_t "))?;
            Some(rest.split(';').next()?.trim().to_string())
        })
        .collect()
}

/// What the module's tests expect, from the ABI crate and the manifest.
pub struct Facts {
    /// `MAJOR.MINOR`.
    pub abi: String,
    /// The host VM.
    pub host: &'static platform::VmSpec,
    /// Number of VMs.
    pub vm_count: usize,
    /// The host's PCI functions: (address, vendor, device).
    pub functions: Vec<(platform::PciAddr, u16, u16)>,
    /// Whether the run lets the host inject power losses (`pm_inject=1`).
    pub inject: bool,
    /// The run's GBPA reset value (`abort` or `bypass`).
    pub gbpa_reset: &'static str,
}

/// The module's tests (`tests/linux/init/kmod.sh`, POSIX sh for busybox; each prints why it
/// failed), which the Linux host's `/init` sources and runs after its own.
pub const SCRIPT: Lib =
    Lib { name: "kmod.sh", text: include_str!("../../tests/linux/init/kmod.sh") };

/// What the module's tests expect, into the run's parameters.
pub fn params(f: &Facts, p: &mut Params) {
    let h = f.host;
    let vms: Vec<String> = (0..f.vm_count).map(|i| i.to_string()).collect();
    let others_mask = ((1u64 << f.vm_count) - 1) & !(1 << h.id);
    let mut devices: Vec<String> = f
        .functions
        .iter()
        .map(|(a, v, d)| format!("{a} 0x{v:04x} 0x{d:04x} {:#x}", a.rid()))
        .collect();
    devices.sort();
    let smmu_fields = header_fields(HEADER, "smmu_hyp_smmu_stats");
    let mut pm_files = header_fields(HEADER, "smmu_hyp_pm_status");
    pm_files.extend(["vote".to_string(), "last_vote".to_string()]);
    if f.inject {
        pm_files.push("inject_loss".into());
    }
    pm_files.sort();
    let pm_numbers: Vec<&String> = pm_files
        .iter()
        .filter(|n| {
            ![
                "power",
                "refusal",
                "votes_allow_off",
                "gbpa_reset",
                "vote",
                "last_vote",
                "inject_loss",
            ]
            .contains(&n.as_str())
        })
        .collect();
    let errno_pairs: Vec<String> =
        errno_map().iter().map(|(e, n)| format!("{}:-{n}", e.code())).collect();
    // The selftest's checks: 11, and one more where PM_INJECT_LOSS is not available.
    let selftest_checks = if f.inject { 11 } else { 12 };
    p.set("KMOD", MODULE)
        .set("KMOD_ABI", &f.abi)
        .set("VM_ID", h.id)
        .set("VM_NAME", h.name)
        .set("VM_CPU", h.first_cpu())
        .set("VM_MEM_BASE", format!("{:#x}", h.mem.base))
        .set("VM_MEM_SIZE", format!("{:#x}", h.mem.size))
        .set("VM_COUNT", f.vm_count)
        .set("VM_IDS", vms.join(" "))
        .set("KMOD_DEVICE_COUNT", f.functions.len())
        .set("KMOD_DEVICES", devices.join(";"))
        .set("SMMU_FILES", {
            let mut s = smmu_fields.clone();
            s.sort();
            s.join(" ")
        })
        .set("SMMU_FIELDS", smmu_fields.join(" "))
        .set("EVENT_READ_MAX", host_abi::EVENT_READ_MAX)
        .set("SELFTEST_CHECKS", selftest_checks)
        .set("ERRNO_PAIRS", errno_pairs.join(" "))
        .set("PM_FILES", pm_files.join(" "))
        .set("PM_NUMBERS", pm_numbers.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(" "))
        .set("GBPA_RESET", f.gbpa_reset)
        .set("OTHERS_MASK", others_mask)
        .set("SELF_BIT", 1u64 << h.id)
        .set("ALL_MASK", (1u64 << f.vm_count) - 1)
        .set("PM_INJECT", f.inject as u8);
}

/// The native run's `/init` (`tests/linux/init/native.sh`: Linux on QEMU alone, no
/// hypervisor): the module must refuse to load, saying why, and the bench's instruction counter
/// must work there (EL2 counted as 0; QEMU implements the PMU's instruction event only under
/// `-icount`).
pub fn native_files() -> InitFiles {
    let mut p = Params::default();
    p.set("KMOD", MODULE);
    InitFiles {
        init: include_str!("../../tests/linux/init/native.sh"),
        libs: vec![crate::initscript::COMMON],
        params: p,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn install_commands_name_the_kernel() {
        let c = commands("6.12.95+deb12");
        assert_eq!(c[0], "apt-get update");
        assert!(c[1].contains("gcc-aarch64-linux-gnu") && c[1].contains("libc6-dev-arm64-cross"));
        assert!(c[1].contains("linux-kbuild-6.12.95+deb12 linux-headers-6.12.95+deb12-common"));
        assert!(c[2].contains("apt-get download linux-headers-6.12.95+deb12-arm64:arm64"));
        assert!(c[3].starts_with("dpkg-deb -x ") && c[3].contains("_arm64.deb"));
        assert!(c[4].contains("ln -sfn /usr/lib/linux-kbuild-6.12.95+deb12 "));
        assert!(headers_dir("6.12.95+deb12")
            .ends_with("target/linux/headers/usr/src/linux-headers-6.12.95+deb12-arm64"));
    }

    #[test]
    fn errno_table_covers_every_status() {
        let m = errno_map();
        assert_eq!(m.len(), HypError::ALL.len());
        for (e, v) in m {
            assert!(v > 0, "{e}: {} has no value", host_abi::header::errno(e));
        }
    }

    #[test]
    fn reads_structure_fields_from_the_header() {
        let s = header_fields(HEADER, "smmu_hyp_smmu_stats");
        assert_eq!(s.len(), core::mem::size_of::<host_abi::SmmuStats>() / 8);
        assert_eq!(s[0], "commands");
        assert_eq!(s.last().map(String::as_str), Some("global_errors"));
        let p = header_fields(HEADER, "smmu_hyp_pm_status");
        assert_eq!(p.first().map(String::as_str), Some("power"));
        assert!(p.contains(&"votes_allow_off".to_string()) && p.len() == 12);
        assert!(header_fields(HEADER, "no_such_struct").is_empty());
    }

    #[test]
    fn warnings_fail_the_build() {
        assert!(has_warning("x.c:3:1: warning: unused variable"));
        assert!(has_warning("WARNING: modpost: missing MODULE_DESCRIPTION()"));
        assert!(!has_warning("  CC [M]  smmu_hyp.o\n  LD [M]  smmu_hyp.ko\n"));
    }
}
