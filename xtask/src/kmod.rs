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

/// The test module that sends SGIs to the CPUs the host does not own (`tests/linux/sgi/`).
pub const SGI_MODULE: &str = "sgi_to_others";

/// Builds `sgi_to_others.ko` like [`build_module`].
pub fn build_sgi_module(opts: &Opts, abi: &str) -> Result<PathBuf, String> {
    build_kmod(opts, abi, &root().join("tests/linux/sgi"), "sgi", SGI_MODULE)
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

/// How the module maps each hypervisor status to an errno (the table in its source and in the
/// README): (status, errno name, errno value on arm64 Linux).
pub const ERRNO_MAP: &[(HypError, &str, i32)] = &[
    (HypError::NotSupported, "EOPNOTSUPP", 95),
    (HypError::InvalidParameter, "EINVAL", 22),
    (HypError::InvalidAddress, "EFAULT", 14),
    (HypError::NotOwned, "EPERM", 1),
    (HypError::ForbiddenField, "EPERM", 1),
    (HypError::ReservedField, "EINVAL", 22),
    (HypError::BadConfig, "EINVAL", 22),
    (HypError::BadCommand, "EPERM", 1),
    (HypError::DeviceError, "EIO", 5),
    (HypError::Refused, "EBUSY", 16),
];

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

/// Names of the module's tests, in the order `/init` runs them.
pub const TESTS: &[&str] = &[
    "kmod_loads_and_finds_the_hypervisor",
    "kmod_vm_table",
    "kmod_devices",
    "kmod_smmu_counters",
    "kmod_events",
    "kmod_errors_map_to_errno",
    "kmod_pm_status_and_vote",
    "kmod_vote_cycle_with_disk_io",
    "kmod_power_loss_injection",
    "kmod_unload_and_refusal",
];

/// The shell functions of the module's tests (POSIX sh for busybox; each prints why it failed).
pub fn script(f: &Facts) -> String {
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
        ERRNO_MAP.iter().map(|(e, _, n)| format!("{}:-{n}", e.code())).collect();
    // The selftest's checks: 11, and one more where PM_INJECT_LOSS is not available.
    let selftest_checks = if f.inject { 11 } else { 12 };
    let inject_word = if f.inject { "" } else { "not " };
    format!(
        r#"
H=/sys/hypervisor/{MODULE}
KO=/lib/modules/{MODULE}.ko

kmod_loads_and_finds_the_hypervisor() {{
    insmod $KO selftest=1 || {{ echo "insmod $KO failed"; return 1; }}
    want="{MODULE}: SMMU-owning hypervisor, ABI {abi}: this is VM {id} ({name}) of {vm_count}, {ndev} PCI functions, PM_INJECT_LOSS {inject_word}available"
    dmesg | grep -qF "$want" || {{ echo "no '$want' in dmesg: $(dmesg | grep {MODULE})"; return 1; }}
    [ "$(cat $H/abi_version)" = {abi} ] || {{ echo "abi_version $(cat $H/abi_version)"; return 1; }}
    [ "$(cat $H/vm_id)" = {id} ] || {{ echo "vm_id $(cat $H/vm_id)"; return 1; }}
}}

kmod_vm_table() {{
    [ "$(cat $H/vms/count)" = {vm_count} ] || {{ echo "vms/count $(cat $H/vms/count)"; return 1; }}
    got=$(ls $H/vms | tr '\n' ' ')
    [ "$got" = "{vms_ls} count peak_running " ] || {{ echo "vms/: $got"; return 1; }}
    own=$H/vms/{id}
    for kv in state=running name={name} cpu={cpu} mem_base={mem_base:#x} mem_size={mem_size:#x}; do
        k=${{kv%%=*}}
        [ "$(cat $own/$k)" = "${{kv#*=}}" ] || {{ echo "vms/{id}/$k is '$(cat $own/$k)', not '${{kv#*=}}'"; return 1; }}
    done
    for v in {vms_list}; do
        case "$(cat $H/vms/$v/state)" in running|stopped|not-started) ;; *) echo "vms/$v/state: $(cat $H/vms/$v/state)"; return 1;; esac
        case "$(cat $H/vms/$v/vote)" in need-on|allow-off) ;; *) echo "vms/$v/vote: $(cat $H/vms/$v/vote)"; return 1;; esac
        if [ $v != {id} ] && [ -e $H/vms/$v/name ]; then echo "vms/$v/name exists: VM_INFO only describes the caller"; return 1; fi
    done
    p=$(cat $H/vms/peak_running)
    [ "$p" -ge 1 ] && [ "$p" -le {vm_count} ] || {{ echo "peak_running $p"; return 1; }}
}}

kmod_devices() {{
    [ "$(cat $H/devices/count)" = {ndev} ] || {{ echo "devices/count $(cat $H/devices/count)"; return 1; }}
    got=""
    matched=0
    linux_mem=0
    for d in $H/devices/[0-9]*; do
        a=$(cat $d/pci_addr)
        got="$got$a $(cat $d/vendor) $(cat $d/device) $(cat $d/stream_id);"
        r=/sys/bus/pci/devices/0000:$a/resource
        # Linux's memory BARs (IORESOURCE_MEM, 0x200) among lines 1..6 of its resource file.
        linux_mem=$((linux_mem + $(head -6 $r | while read s e fl; do [ $((fl & 0x200)) != 0 ] && echo; done | wc -l)))
        while read i ipa size; do
            set -- $(sed -n "$((i + 1))p" $r)
            [ $(($3 & 0x200)) != 0 ] || continue
            [ $(($1)) = $((ipa)) ] && [ $(($2 - $1 + 1)) = $((size)) ] || {{ echo "$a BAR$i: hypervisor $ipa+$size, Linux $1-$2"; return 1; }}
            matched=$((matched + 1))
        done < $d/bars
    done
    got=$(echo "$got" | tr ';' '\n' | grep . | sort | tr '\n' ';')
    [ "$got" = "{devices};" ] || {{ echo "devices: $got"; return 1; }}
    [ $matched = $linux_mem ] && [ $matched -gt 0 ] || {{ echo "$matched memory BARs match Linux's, which has $linux_mem"; return 1; }}
}}

kmod_smmu_counters() {{
    got=$(ls $H/smmu | tr '\n' ' ')
    [ "$got" = "{smmu_ls} " ] || {{ echo "smmu/: $got"; return 1; }}
    for f in {smmu_list}; do
        v=$(cat $H/smmu/$f) || return 1
        case "$v" in ''|*[!0-9]*) echo "smmu/$f: '$v'"; return 1;; esac
        eval "s_$f=$v"
    done
    [ $s_commands -ge $s_syncs ] || {{ echo "commands $s_commands < syncs $s_syncs"; return 1; }}
    [ $s_events_routed -le $s_events ] || {{ echo "events routed $s_events_routed > taken $s_events"; return 1; }}
    [ $s_ste_writes -gt 0 ] && [ $s_heap_in_use -gt 0 ] || {{ echo "ste_writes $s_ste_writes heap_in_use $s_heap_in_use"; return 1; }}
    [ $(cat $H/smmu/commands) -ge $s_commands ] || {{ echo "commands went down"; return 1; }}
}}

kmod_events() {{
    i=0
    while :; do
        out=$(cat $H/events) || {{ echo "reading events failed"; return 1; }}
        set -- $(echo "$out" | head -1)
        [ "$1 $3 $5 $7" = "records pending lost_notices dropped" ] || {{ echo "events header: $(echo "$out" | head -1)"; return 1; }}
        n=$2
        pending=$4
        [ $n -le {event_max} ] && [ $(echo "$out" | wc -l) = $((n + 1)) ] || {{ echo "$n records, $(echo "$out" | wc -l) lines"; return 1; }}
        bad=$(echo "$out" | tail -n +2 | grep -cvE '^sid=0x[0-9a-f]+ type=0x[0-9a-f]{{2}}( [0-9a-f]{{16}}){{4}}$')
        [ $bad = 0 ] || {{ echo "malformed records: $out"; return 1; }}
        [ $pending = 0 ] && break
        i=$((i + 1))
        [ $i -lt 64 ] || {{ echo "events never drained ($pending pending)"; return 1; }}
    done
}}

kmod_errors_map_to_errno() {{
    out=$(cat $H/selftest) || {{ echo "reading selftest failed"; return 1; }}
    [ $(echo "$out" | wc -l) = {selftest_checks} ] || {{ echo "$(echo "$out" | wc -l) checks: $out"; return 1; }}
    failed=$(echo "$out" | grep -v ': ok$')
    [ -z "$failed" ] || {{ echo "$failed"; return 1; }}
    # Every (status, errno) pair is the documented one.
    echo "$out" | sed -n 's/.*: status \(-[0-9]*\) errno \(-[0-9]*\): ok$/\1:\2/p' | while read pair; do
        case " {errno_pairs} " in *" $pair "*) ;; *) echo "status:errno $pair is not in the table"; exit 1;; esac
    done || return 1
    for s in -4 -5 -6 -9 -3 -1; do
        echo "$out" | grep -q ": status $s errno" || {{ echo "no check returned status $s"; return 1; }}
    done
}}

kmod_pm_status_and_vote() {{
    P=$H/pm
    got=$(ls $P | tr '\n' ' ')
    [ "$got" = "{pm_ls} " ] || {{ echo "pm/: $got"; return 1; }}
    for f in {pm_numbers}; do
        case "$(cat $P/$f)" in ''|*[!0-9]*) echo "pm/$f: '$(cat $P/$f)'"; return 1;; esac
    done
    [ "$(cat $P/vm_count)" = {vm_count} ] && [ "$(cat $P/gbpa_reset)" = {gbpa} ] && [ "$(cat $P/power)" = on ] || {{ echo "vm_count $(cat $P/vm_count) gbpa_reset $(cat $P/gbpa_reset) power $(cat $P/power)"; return 1; }}
    case "$(cat $P/refusal)" in none|waiting-for-votes|bypass-reset-with-dma|disabled) ;; *) echo "refusal $(cat $P/refusal)"; return 1;; esac
    [ "$(cat $P/vote)" = need-on ] && [ "$(cat $P/last_vote)" = none ] || {{ echo "vote $(cat $P/vote), last $(cat $P/last_vote)"; return 1; }}
    # A word that is not a vote is refused before any call: -EINVAL.
    err=$( (echo maybe > $P/vote) 2>&1 ) && {{ echo "the vote 'maybe' was accepted"; return 1; }}
    case "$err" in *"Invalid argument"*) ;; *) echo "vote 'maybe': $err"; return 1;; esac
    [ "$(cat $P/last_vote)" = none ] || {{ echo "a refused vote reached the hypervisor"; return 1; }}
    # The guests leave allow-off votes once their own PM test is done: wait (bounded) for them, so
    # that this VM's vote neither races their test nor is the last one by chance.
    i=0
    while [ $(($(cat $P/votes_allow_off) & {others_mask})) != {others_mask} ] && [ $i -lt 300 ]; do sleep 0.1; i=$((i + 1)); done
    s0=$(cat $P/suspends)
    r0=$(cat $P/resumes)
    echo allow-off > $P/vote || {{ echo "allow-off refused"; return 1; }}
    [ "$(cat $P/vote)" = allow-off ] && [ "$(cat $H/vms/{id}/vote)" = allow-off ] || {{ echo "vote reads $(cat $P/vote) after allow-off"; return 1; }}
    [ $(($(cat $P/votes_allow_off) & {self_bit})) != 0 ] || {{ echo "votes_allow_off $(cat $P/votes_allow_off)"; return 1; }}
    dma=$(cat $P/dma_streams)
    lv=$(cat $P/last_vote)
    case "$lv" in
    "power off refusal none dma_streams $dma")
        [ "$(cat $P/power)" = off ] && [ $(cat $P/suspends) = $((s0 + 1)) ] || {{ echo "after a power-off vote: power $(cat $P/power), suspends $s0 -> $(cat $P/suspends)"; return 1; }}
        [ $(($(cat $P/votes_allow_off) & {all_mask})) = {all_mask} ] || {{ echo "powered off without every vote"; return 1; }}
        off=1 ;;
    "power on refusal waiting-for-votes dma_streams $dma"|"power on refusal bypass-reset-with-dma dma_streams $dma")
        off=0 ;;
    *) echo "last_vote after allow-off: $lv (dma_streams $dma)"; return 1;;
    esac
    echo need-on > $P/vote || {{ echo "need-on refused"; return 1; }}
    [ "$(cat $P/vote)" = need-on ] && [ "$(cat $P/power)" = on ] || {{ echo "after need-on: vote $(cat $P/vote), power $(cat $P/power)"; return 1; }}
    [ "$(cat $P/last_vote)" = "power on refusal none dma_streams $dma" ] || {{ echo "last_vote after need-on: $(cat $P/last_vote)"; return 1; }}
    [ $(cat $P/resumes) = $((r0 + off)) ] || {{ echo "resumes $r0 -> $(cat $P/resumes) (power-off: $off)"; return 1; }}
    [ -e $P/inject_loss ] && [ {inject} = 0 ] && {{ echo "inject_loss exists although FEATURES refuses PM_INJECT_LOSS"; return 1; }}
    echo "host: smmu_hyp: the host's allow-off vote $( [ $off = 1 ] && echo 'powered the SMMU off (every VM allowed)' || echo 'was not the last one')" > /dev/console
}}

# The SMMU powers off only when every VM allows it: the guests allow, the host keeps doing disk
# I/O (its vote need-on) and power stays on; it stops using its devices and allows too: off;
# it needs the SMMU again: on, and what it wrote reads back through the SMMU.
kmod_vote_cycle_with_disk_io() {{
    P=$H/pm
    [ $(($(cat $P/votes_allow_off) & {others_mask})) = {others_mask} ] || {{ echo "the guests' allow-off votes are not there ($(cat $P/votes_allow_off))"; return 1; }}
    [ "$(cat $P/vote)" = need-on ] && [ "$(cat $P/power)" = on ] || {{ echo "vote $(cat $P/vote), power $(cat $P/power) at the start"; return 1; }}
    s0=$(cat $P/suspends)
    r0=$(cat $P/resumes)
    # 4 x 64 KiB from 2.5 MiB on (no other test writes there).
    dd if=/dev/urandom of=/tmp/cycle bs=65536 count=1 2>/dev/null
    for i in 0 1 2 3; do
        dd if=/tmp/cycle of=/dev/vda bs=65536 seek=$((40 + i)) count=1 oflag=direct conv=fsync 2>/dev/null || {{ echo "write $i failed"; return 1; }}
        [ "$(cat $P/power)" = on ] || {{ echo "power went off during the host's I/O"; return 1; }}
    done
    [ "$(cat $P/suspends)" = $s0 ] || {{ echo "suspends $s0 -> $(cat $P/suspends) while the host needed the SMMU"; return 1; }}
    # It stops using its devices: nothing in flight, nothing cached; then it allows power-off.
    sync
    echo 3 > /proc/sys/vm/drop_caches
    echo allow-off > $P/vote || {{ echo "allow-off refused"; return 1; }}
    if [ {gbpa} = abort ]; then
        [ "$(cat $P/power)" = off ] && [ "$(cat $P/suspends)" = $((s0 + 1)) ] || {{ echo "every VM allows, yet power $(cat $P/power), suspends $s0 -> $(cat $P/suspends)"; return 1; }}
    else
        [ "$(cat $P/power)" = on ] && [ "$(cat $P/refusal)" = bypass-reset-with-dma ] || {{ echo "a bypass-reset platform powered off: $(cat $P/power) $(cat $P/refusal)"; return 1; }}
    fi
    echo need-on > $P/vote || {{ echo "need-on refused"; return 1; }}
    [ "$(cat $P/power)" = on ] || {{ echo "power $(cat $P/power) after need-on"; return 1; }}
    [ {gbpa} != abort ] || [ "$(cat $P/resumes)" = $((r0 + 1)) ] || {{ echo "resumes $r0 -> $(cat $P/resumes)"; return 1; }}
    want=$(md5sum < /tmp/cycle)
    for i in 0 1 2 3; do
        got=$(dd if=/dev/vda bs=65536 skip=$((40 + i)) count=1 iflag=direct 2>/dev/null | md5sum)
        [ "$got" = "$want" ] || {{ echo "block $i reads differently after the power cycle"; return 1; }}
    done
    echo "host: smmu_hyp: disk I/O kept the SMMU on; every VM allowing powered it off ($(cat $P/suspends) suspends); the host's need-on brought it back and its data read back" > /dev/console
}}

kmod_power_loss_injection() {{
    P=$H/pm
    if [ {inject} = 0 ]; then
        [ ! -e $P/inject_loss ] || {{ echo "inject_loss exists although FEATURES refuses PM_INJECT_LOSS"; return 1; }}
        return 0
    fi
    [ -e $P/inject_loss ] || {{ echo "no inject_loss although FEATURES offers PM_INJECT_LOSS"; return 1; }}
    err=$( (echo soon > $P/inject_loss) 2>&1 ) && {{ echo "inject_loss 'soon' was accepted"; return 1; }}
    case "$err" in *"Invalid argument"*) ;; *) echo "inject_loss 'soon': $err"; return 1;; esac
    # Nothing may DMA between the loss and the hypervisor noticing it (at its next SMMU register
    # access): the SMMU is back at its reset state, abort, and a virtio request whose DMA aborts
    # leaves QEMU's disk broken and Linux waiting. So the hypervisor must touch the SMMU first:
    # this VM's allow-off vote, the last one once the guests have left theirs, runs the suspend.
    [ $(($(cat $P/votes_allow_off) & {others_mask})) = {others_mask} ] || {{ echo "the guests' allow-off votes are not there ($(cat $P/votes_allow_off)): no way to make the hypervisor notice a loss before the disk's next DMA"; return 1; }}
    # 64 KiB at 3 MiB (sector 6144 on), which no other test writes: read before the loss.
    before=$(dd if=/dev/vda bs=65536 skip=48 count=1 iflag=direct 2>/dev/null | md5sum)
    label=$(dd if=/dev/vda bs=512 skip=6144 count=1 iflag=direct 2>/dev/null | head -n 1)
    [ "$label" = "smmu-hyp test disk sector 6144" ] || {{ echo "before the loss, sector 6144 reads '$label'"; return 1; }}
    l0=$(cat $P/losses)
    echo 0 > $P/inject_loss || {{ echo "injecting a loss failed"; return 1; }}
    echo allow-off > $P/vote || {{ echo "allow-off after the loss refused"; return 1; }}
    echo need-on > $P/vote || {{ echo "need-on after the loss refused"; return 1; }}
    [ "$(cat $P/losses)" = $((l0 + 1)) ] || {{ echo "losses $l0 -> $(cat $P/losses) after the loss and a power cycle"; return 1; }}
    [ "$(cat $P/power)" = on ] || {{ echo "power $(cat $P/power) after need-on"; return 1; }}
    # The disk's DMA translates again, to the right place.
    after=$(dd if=/dev/vda bs=65536 skip=48 count=1 iflag=direct 2>/dev/null | md5sum)
    [ "$after" = "$before" ] || {{ echo "after the loss, the same 64 KiB read differently"; return 1; }}
}}

kmod_unload_and_refusal() {{
    # Unloading withdraws an allow-off vote the module left.
    echo allow-off > $H/pm/vote || return 1
    rmmod {MODULE} || {{ echo "rmmod failed"; return 1; }}
    [ ! -e $H ] || {{ echo "$H still exists after rmmod"; return 1; }}
    # A function FEATURES does not report implemented: the module refuses to load, and says why.
    if insmod $KO require=0xc60000ff 2>/dev/null; then rmmod {MODULE}; echo "loaded although FEATURES refuses 0xc60000ff"; return 1; fi
    want="{MODULE}: FEATURES: required function 0xc60000ff is not implemented (status -1); not loading"
    dmesg | grep -qF "$want" || {{ echo "no '$want' in dmesg"; return 1; }}
    [ ! -e $H ] || {{ echo "$H exists after a refused load"; return 1; }}
    insmod $KO || {{ echo "reloading failed"; return 1; }}
    [ "$(cat $H/pm/vote)" = need-on ] || {{ echo "vote after unload and reload: $(cat $H/pm/vote)"; return 1; }}
}}

"#,
        abi = f.abi,
        id = h.id,
        name = h.name,
        cpu = h.cpu,
        mem_base = h.mem.base,
        mem_size = h.mem.size,
        vm_count = f.vm_count,
        ndev = f.functions.len(),
        vms_ls = vms.join(" "),
        vms_list = vms.join(" "),
        devices = devices.join(";"),
        smmu_ls = {
            let mut s = smmu_fields.clone();
            s.sort();
            s.join(" ")
        },
        smmu_list = smmu_fields.join(" "),
        event_max = host_abi::EVENT_READ_MAX,
        errno_pairs = errno_pairs.join(" "),
        pm_ls = pm_files.join(" "),
        pm_numbers = pm_numbers.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(" "),
        gbpa = f.gbpa_reset,
        others_mask = others_mask,
        self_bit = 1u64 << h.id,
        all_mask = (1u64 << f.vm_count) - 1,
        inject = f.inject as u8,
    )
}

/// `/init` of the native run (Linux on QEMU alone, no hypervisor): the module must refuse to
/// load, saying why, and the bench's instruction counter must work there (EL2 counted as 0;
/// QEMU implements the PMU's instruction event only under `-icount`).
pub fn native_script() -> String {
    format!(
        r#"#!/bin/sh
# Linux without the hypervisor, generated by xtask/src/kmod.rs.
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
{mounts}{run_fn}
kmod_refuses_without_a_hypervisor() {{
    if insmod /lib/modules/{MODULE}.ko 2>/dev/null; then rmmod {MODULE}; echo "loaded with no hypervisor below"; return 1; fi
    want="{MODULE}: the CPU implements no EL2 (ID_AA64PFR0_EL1.EL2 = 0): no hypervisor to call, HVC would be UNDEFINED; not loading"
    dmesg | grep -qF "$want" || {{ echo "no '$want' in dmesg: $(dmesg | grep {MODULE})"; return 1; }}
    [ ! -e /sys/hypervisor/{MODULE} ] || {{ echo "/sys/hypervisor/{MODULE} left behind"; return 1; }}
}}

pmu_counts_instructions() {{
    out=$(icount run true) || {{ echo "icount: $out"; return 1; }}
    set -- $out
    [ "$1 $3 $5 $7" = "instructions el2 el1 el0" ] || {{ echo "icount printed: $out"; return 1; }}
    [ "$2" -gt 10000 ] && [ "$4" = 0 ] && [ "$2" = $(($4 + $6 + $8)) ] || {{ echo "counts: $out"; return 1; }}
}}

run kmod_refuses_without_a_hypervisor kmod_refuses_without_a_hypervisor
run pmu_counts_instructions pmu_counts_instructions
echo "$passed passed, $failed failed"
poweroff -f
"#,
        mounts = crate::initscript::INIT_MOUNTS,
        run_fn = crate::initscript::INIT_RUN_FN,
    )
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
        for e in HypError::ALL {
            assert_eq!(ERRNO_MAP.iter().filter(|(x, _, _)| *x == e).count(), 1, "{e}");
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
