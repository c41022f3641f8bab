//! `cargo xtask`: set-up check, image builds, the QEMU demo and the test run.
//!
//! ```text
//! cargo xtask setup            install what is missing (Debian rustc-web, lld, QEMU 10, and the
//!                              Linux host's arm64 kernel and busybox)
//! cargo xtask build            build the hypervisor and the guest images
//! cargo xtask run              the demo: boot the hypervisor with the demo image in every VM
//! cargo xtask run --host linux Debian's Linux as the host VM beside the two bare-metal guests
//!   ... --guest1 linux         guest1 runs the same Debian kernel too (its own tree, PL011 console)
//!   ... --shell                its console on this terminal: a busybox shell, smmu_hyp loaded
//!   ... --stress               the stress run (concurrent DMA, power cycles, CPU hotplug)
//! cargo xtask test             host unit tests, then the integration runs under QEMU (three
//!                              with the bare-metal host, Linux-host runs; one of each with the
//!                              SMMU forced non-coherent)
//! cargo xtask bench            instruction counts under -icount: the hypercall paths, then
//!                              Linux's boot and 4 KiB disk I/O under the hypervisor against
//!                              native
//! cargo xtask model            the invariant explorer, deeper than `cargo test` runs it
//! cargo xtask mutants          mutation testing of the safety code (cargo-mutants)
//! cargo xtask fuzz             a long run of the hypercall and emulated-SMMU fuzzers
//! ```
//! Options: `--verbose` (show every command, shell-quoted so it can be pasted, including the QEMU
//! command line), `--timeout SECS` (run/test), `--gbpa-reset abort|bypass` (run: the SMMU power
//! domain's GBPA reset value), `--host bare|linux` (run: what VM 0 is), `--guest1 bare|linux` (run: what guest1 is), `--shell`, `--stress` (run
//! --host linux: the shell, the stress run), `--smmu-noncoherent` (run:
//! the hypervisor drives the SMMU as non-coherent, `smmu_coherent=0`, and the Linux host's tree
//! has no `dma-coherent` on it), `--guests-off` (run, Linux host: every guest powers off first,
//! then the host checks that its SMMU's events still reach it), `--compare OLD.json`
//! (bench), `--only hypercalls|smmu|linux|guest` (bench: one part; `smmu` is the hypercall part's first run alone, coherent with PM on, for quick comparisons; `guest` the Linux guest's I/O through the paravirtual IOMMU with the host's strict run it is compared with), `--depth N` (model), `--jobs N` and `--file PATH` (mutants), `--cases N` (fuzz).

mod bench;
mod cpio;
mod elf;
mod images;
mod initscript;
mod kmod;
mod linux;
mod mutants;
mod qemu;
mod report;
mod setup;
mod shell;
mod tools;

use std::process::ExitCode;

const USAGE: &str = "usage: cargo xtask <setup|build|run|test|bench|model|mutants|fuzz> \
     [--verbose] [--timeout SECS] [--compare OLD.json] [--only hypercalls|smmu|linux|guest] [--depth N] \
     [--gbpa-reset abort|bypass] [--smmu-noncoherent] [--guests-off] \
     [--host bare|linux] [--guest1 bare|linux] [--shell|--stress] [--jobs N] [--file PATH] [--cases N]";

/// What runs as the host VM in `run`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum HostKind {
    /// The bare-metal image (the default).
    #[default]
    Bare,
    /// Debian's Linux kernel with a busybox initramfs.
    Linux,
}

/// Options shared by the subcommands.
#[derive(Clone, Debug, Default)]
pub struct Opts {
    /// Print every command before running it.
    pub verbose: bool,
    /// QEMU timeout in seconds (run/test).
    pub timeout: Option<u64>,
    /// An earlier bench.json to compare with (bench).
    pub compare: Option<String>,
    /// Exploration depth (model).
    pub depth: Option<usize>,
    /// SMMU GBPA reset value for `run` (`abort` or `bypass`).
    pub gbpa_reset: Option<String>,
    /// The host VM for `run`.
    pub host: HostKind,
    /// `run`: guest1 is a Linux guest (Debian's kernel, `linux::guest`) instead of the
    /// bare-metal image.
    pub guest1_linux: bool,
    /// `run`: force the non-coherent SMMU path (`smmu_coherent=0`, the host's tree without
    /// `dma-coherent` on the SMMU).
    pub smmu_noncoherent: bool,
    /// `run --host linux`: an interactive shell on the host's console instead of its tests.
    pub shell: bool,
    /// `run --host linux`: the stress run instead of the host's tests.
    pub stress: bool,
    /// `run --host linux`: the guests power off first (`linux::Variant::GuestsOff`).
    pub guests_off: bool,
    /// Parallel jobs (mutants).
    pub jobs: Option<usize>,
    /// Only this file (mutants).
    pub file: Option<String>,
    /// Call sequences (fuzz).
    pub cases: Option<u64>,
    /// Only this part of the bench (`hypercalls` or `linux`).
    pub only: Option<String>,
}

fn parse(args: &[String]) -> Result<(String, Opts), String> {
    let mut opts = Opts::default();
    let mut cmd = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--verbose" | "-v" => opts.verbose = true,
            "--smmu-noncoherent" => opts.smmu_noncoherent = true,
            "--shell" => opts.shell = true,
            "--stress" => opts.stress = true,
            "--guests-off" => opts.guests_off = true,
            "--timeout" => {
                let v = it.next().ok_or("--timeout needs a number of seconds")?;
                opts.timeout = Some(v.parse().map_err(|_| format!("bad --timeout value `{v}`"))?);
            }
            "--gbpa-reset" => {
                let v = it.next().ok_or("--gbpa-reset needs abort or bypass")?;
                if v != "abort" && v != "bypass" {
                    return Err(format!("--gbpa-reset: `{v}` is neither abort nor bypass"));
                }
                opts.gbpa_reset = Some(v.clone());
            }
            "--host" => {
                opts.host = match it.next().map(String::as_str) {
                    Some("bare") => HostKind::Bare,
                    Some("linux") => HostKind::Linux,
                    Some(v) => return Err(format!("--host: `{v}` is neither bare nor linux")),
                    None => return Err("--host needs bare or linux".into()),
                };
            }
            "--guest1" => {
                opts.guest1_linux = match it.next().map(String::as_str) {
                    Some("bare") => false,
                    Some("linux") => true,
                    Some(v) => return Err(format!("--guest1: `{v}` is neither bare nor linux")),
                    None => return Err("--guest1 needs bare or linux".into()),
                };
            }
            "--depth" => {
                let v = it.next().ok_or("--depth needs a number")?;
                opts.depth = Some(v.parse().map_err(|_| format!("bad --depth value `{v}`"))?);
            }
            "--jobs" | "-j" => {
                let v = it.next().ok_or("--jobs needs a number")?;
                opts.jobs = Some(v.parse().map_err(|_| format!("bad --jobs value `{v}`"))?);
            }
            "--file" => opts.file = Some(it.next().ok_or("--file needs a path")?.clone()),
            "--cases" => {
                let v = it.next().ok_or("--cases needs a number")?;
                opts.cases = Some(v.parse().map_err(|_| format!("bad --cases value `{v}`"))?);
            }
            "--only" => {
                let v = it.next().ok_or("--only needs hypercalls, smmu, linux or guest")?;
                if !["hypercalls", "smmu", "linux", "guest"].contains(&v.as_str()) {
                    return Err(format!("--only: `{v}` is none of hypercalls, smmu, linux, guest"));
                }
                opts.only = Some(v.clone());
            }
            "--compare" => {
                opts.compare = Some(it.next().ok_or("--compare needs a bench.json path")?.clone());
            }
            "-h" | "--help" | "help" => return Err(String::new()),
            s if s.starts_with('-') => return Err(format!("unknown option `{s}`")),
            s if cmd.is_none() => cmd = Some(s.to_string()),
            s => return Err(format!("unexpected argument `{s}`")),
        }
    }
    let cmd = cmd.ok_or("no subcommand given")?;
    if opts.shell && (cmd != "run" || opts.host != HostKind::Linux || opts.smmu_noncoherent) {
        return Err("--shell goes with `run --host linux` (and nothing else)".into());
    }
    if opts.stress && (cmd != "run" || opts.host != HostKind::Linux || opts.smmu_noncoherent) {
        return Err("--stress goes with `run --host linux` (and nothing else)".into());
    }
    if opts.guest1_linux && (cmd != "run" || opts.host != HostKind::Linux || opts.shell) {
        return Err("--guest1 linux goes with `run --host linux` (not --shell)".into());
    }
    Ok((cmd, opts))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (cmd, opts) = match parse(&args) {
        Ok(x) => x,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("xtask: {e}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let result = match cmd.as_str() {
        "setup" => setup::ensure(&opts).map(|()| {
            // What is installed, the Linux host's pinned kernel version included.
            for f in setup::check().1 {
                println!("setup: {f}");
            }
        }),
        "build" => setup::ensure(&opts).and_then(|()| images::build(&opts).map(|_| ())),
        "run" => setup::ensure(&opts).and_then(|()| run(&opts)),
        "test" => setup::ensure(&opts).and_then(|()| test(&opts)),
        "bench" => setup::ensure(&opts).and_then(|()| bench::run(&opts)),
        "model" => model(&opts),
        "mutants" => mutants::run(&opts),
        "fuzz" => mutants::fuzz(&opts),
        other => Err(format!("unknown subcommand `{other}`\n{USAGE}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The host-side SMMU model: explores every sequence of events up to `--depth` (default 6)
/// for both GBPA reset values and checks the invariant in every reachable state.
fn model(opts: &Opts) -> Result<(), String> {
    use platform::power::GbpaReset;
    let depth = opts.depth.unwrap_or(6);
    let mut ok = true;
    for reset in [GbpaReset::Abort, GbpaReset::Bypass] {
        let start = std::time::Instant::now();
        let r = smmu_model::explore(depth, reset);
        println!(
            "depth {depth}: {} ({:.1} s)",
            smmu_model::describe(&r, reset),
            start.elapsed().as_secs_f64()
        );
        ok &= r.violation.is_none();
    }
    if ok {
        Ok(())
    } else {
        Err("the invariant does not hold".into())
    }
}

fn run(opts: &Opts) -> Result<(), String> {
    let imgs = images::build(opts)?;
    if opts.shell {
        return shell_run(&imgs, opts);
    }
    if opts.host == HostKind::Linux {
        let variant = if opts.smmu_noncoherent {
            linux::Variant::NonCoherent
        } else if opts.stress {
            linux::Variant::Stress
        } else if opts.guests_off {
            linux::Variant::GuestsOff
        } else {
            linux::Variant::Tests
        };
        let timeout = if variant == linux::Variant::Stress { 300 } else { 180 };
        let out = linux_run(&imgs, opts, opts.timeout.unwrap_or(timeout), variant)?;
        let names = report::vm_names();
        let guest = report::GuestReport::parse(&out.log, &names);
        println!("\n{}", guest.table());
        let mut failed = guest.failed();
        for c in &out.checks {
            match &c.result {
                Ok(()) => println!("xtask check {} ... ok", c.name),
                Err(why) => {
                    println!("xtask check {} ... FAILED: {why}", c.name);
                    failed += 1;
                }
            }
        }
        out.verdict()?;
        return if failed == 0 { Ok(()) } else { Err(format!("{failed} failed")) };
    }
    let demo = imgs.guest("demo")?;
    let launch = qemu::Launch {
        hyp: &imgs.hyp,
        guest: demo,
        host: qemu::Host::Bare,
        guest1: None,
        disk: &imgs.disk,
        null_disk: None,
        append: format!(
            "gbpa_reset={}{}",
            opts.gbpa_reset.as_deref().unwrap_or("abort"),
            linux::smmu_option(platform::qemu_virt::BOARD.smmu_coherent && !opts.smmu_noncoherent)
        ),
        extra: vec![],
        tag: "run".into(),
        trace: false,
    };
    let out = qemu::run(&launch, opts, opts.timeout.unwrap_or(120), true)?;
    out.verdict()
}

/// The Linux-host run: Debian's kernel as VM 0 (its initramfs runs the host's tests), the
/// guest-tests image in the guests (which see `BootInfo.flags` say the host is Linux and skip
/// what needs a cooperating host).
fn linux_run(
    imgs: &images::Images,
    opts: &Opts,
    timeout: u64,
    variant: linux::Variant,
) -> Result<qemu::RunOutput, String> {
    // The stress run's guest1 is always Linux, in passthrough: a Linux guest's identity
    // domains from boot, its unload and reload, all while the host is under its heaviest load.
    let guest1 = if variant == linux::Variant::Stress {
        Some(true)
    } else {
        opts.guest1_linux.then_some(false)
    };
    linux_run_with(imgs, opts, timeout, variant, guest1)
}

/// [`linux_run`], guest1 a Linux guest too if `linux_guest1` is `Some(passthrough)`
/// (`linux::guest`; booted with `iommu.passthrough=1` if `passthrough`).
fn linux_run_with(
    imgs: &images::Images,
    opts: &Opts,
    timeout: u64,
    variant: linux::Variant,
    linux_guest1: Option<bool>,
) -> Result<qemu::RunOutput, String> {
    let prepared = linux::prepare(opts, variant)?;
    println!(
        "Linux host: {} (packages: {}); initramfs {} bytes; command line \"{}\"",
        prepared.art.abi,
        prepared.art.versions.lines().skip(1).collect::<Vec<_>>().join(", ").replace("%3a", ":"),
        std::fs::metadata(&prepared.files.initrd).map_or(0, |m| m.len()),
        variant.bootargs()
    );
    let mut launch = linux_launch(imgs, &prepared, variant)?;
    if let Some(passthrough) = linux_guest1 {
        launch.guest1 = Some(linux::guest::prepare(opts, &prepared.art, passthrough)?);
        // The stress run is the only one: its log keeps its name.
        if variant != linux::Variant::Stress {
            launch.tag = format!("{}-guest1", launch.tag);
        }
        println!(
            "Linux guest1: the same kernel; command line \"{}\"",
            linux::guest::bootargs(passthrough)
        );
    }
    let mut out = qemu::run(&launch, opts, timeout, true)?;
    out.checks = match variant {
        linux::Variant::Tests | linux::Variant::Passthrough | linux::Variant::NonCoherent => {
            let mut c = report::linux_checks(
                &out.log,
                &prepared
                    .facts
                    .faults
                    .iter()
                    .map(|(a, _)| *a)
                    .chain([prepared.facts.moved_bar])
                    .collect::<Vec<_>>(),
                linux::TEST_SPI,
            );
            c.push(report::smmu_irqs_check(&out.log));
            c.push(report::smmu_work_check(&out.log, false));
            c.push(report::sync_completion_check(&out.log, variant.smmu_coherent()));
            c.push(report::msi_continuation_check(&out.log));
            if !variant.smmu_coherent() {
                c.extend(report::noncoherent_checks(&out.log, &report::vm_names(), true));
            }
            c
        }
        linux::Variant::GuestsOff => report::guests_off_checks(&out.log),
        linux::Variant::Panic => report::linux_panic_checks(&out.log),
        linux::Variant::BadTree => report::bad_tree_checks(&out.log),
        linux::Variant::Stress => {
            let mut c = vec![report::second_cpu_check(&out.log), report::smmu_irqs_check(&out.log)];
            c.push(report::stress_hotplug_check(&out.log));
            c
        }
        linux::Variant::Bench { .. }
        | linux::Variant::GuestBench
        | linux::Variant::Native
        | linux::Variant::Shell => Vec::new(),
    };
    if launch.guest1.is_some() {
        // guest1 is Linux: only guest2 must outlive the host's poweroff.
        let off = report::host_poweroff_check(&out.log, &["guest2"]);
        for c in out.checks.iter_mut().filter(|c| c.name == off.name) {
            c.result = off.result.clone();
        }
        out.checks.extend(report::linux_guest_checks(&out.log));
        let trace = std::fs::read_to_string(&out.trace_path).unwrap_or_default();
        out.checks.push(report::linux_guest_unload_check(&trace));
    }
    Ok(out)
}

/// The Linux host's launch of `variant`, the guests running their tests.
fn linux_launch<'a>(
    imgs: &'a images::Images,
    prepared: &linux::Prepared,
    variant: linux::Variant,
) -> Result<qemu::Launch<'a>, String> {
    Ok(qemu::Launch {
        hyp: &imgs.hyp,
        guest: imgs.guest("guest-tests")?,
        host: qemu::Host::Linux(prepared.files.clone()),
        guest1: None,
        disk: &imgs.disk,
        null_disk: None,
        append: variant.hyp_append(),
        extra: vec![],
        tag: variant.tag().into(),
        trace: true,
    })
}

/// `run --host linux --shell`: the host's console on this terminal (see [`shell`]).
fn shell_run(imgs: &images::Images, opts: &Opts) -> Result<(), String> {
    let variant = linux::Variant::Shell;
    let prepared = linux::prepare(opts, variant)?;
    let launch = linux_launch(imgs, &prepared, variant)?;
    println!(
        "xtask: the Linux host's console is this terminal: `poweroff` ends the run, Ctrl-A x \
         ends QEMU at once. The hypervisor's and the guests' lines go to {}.",
        shell::serial_log(&launch).display()
    );
    let out = shell::run(&launch, opts, 0, shell::Input::Terminal)?;
    let guest = report::GuestReport::parse(&out.log, &report::vm_names()[1..]);
    println!("\n{}", guest.table());
    let host_off = out.log.contains("vm host stopped (SYSTEM_OFF)");
    println!(
        "xtask: {}; the hypervisor's log: {}",
        if host_off {
            "the host powered off (PSCI SYSTEM_OFF)"
        } else {
            "the host did not power off (QEMU's escape?)"
        },
        out.log_path.display()
    );
    if host_off {
        out.verdict()
    } else {
        Ok(())
    }
}

/// The scripted shell (`cargo xtask test`): the commands a user would type, and what each must
/// print; then `poweroff`.
fn shell_smoke_script() -> (String, Vec<(&'static str, String)>) {
    let abi = format!("{}.{}", host_abi::ABI_VERSION_MAJOR, host_abi::ABI_VERSION_MINOR);
    let script = [
        "echo smoke $((6 * 7))",
        "cat /sys/hypervisor/smmu_hyp/abi_version",
        "dd if=/dev/vda bs=512 skip=4097 count=1 iflag=direct 2>/dev/null | head -n 1",
        "poweroff",
    ]
    .map(|c| format!("{c}\n"))
    .concat();
    let expect = vec![
        ("shell_runs_what_is_typed", "smoke 42".to_string()),
        ("shell_has_smmu_hyp_loaded", abi),
        ("shell_reads_the_disk_through_the_smmu", "smmu-hyp test disk sector 4097".to_string()),
    ];
    (script, expect)
}

/// The scripted shell run and its checks: each command's output on a console line of its own,
/// and `poweroff` stopping the host with PSCI SYSTEM_OFF before the guests.
fn shell_smoke_run(imgs: &images::Images, opts: &Opts) -> Result<qemu::RunOutput, String> {
    let variant = linux::Variant::Shell;
    let prepared = linux::prepare(opts, variant)?;
    let launch = linux_launch(imgs, &prepared, variant)?;
    let (script, expect) = shell_smoke_script();
    let mut out =
        shell::run(&launch, opts, opts.timeout.unwrap_or(120), shell::Input::Script(script))?;
    let console: Vec<&str> =
        out.log.lines().filter_map(|l| l.strip_prefix(qemu::HOST_PREFIX)).collect();
    for (name, want) in expect {
        let result = if console.iter().any(|l| l.trim() == want) {
            Ok(())
        } else {
            Err(format!("no console line `{want}`"))
        };
        out.checks.push(report::LogCheck { name, result });
    }
    let off = out.log.find("vm host stopped (SYSTEM_OFF)");
    let later = |n: &str| matches!((off, out.log.find(n)), (Some(h), Some(g)) if g > h);
    out.checks.push(report::LogCheck {
        name: "shell_poweroff_stops_the_host",
        result: if off.is_none() {
            Err("the host did not stop with PSCI SYSTEM_OFF".into())
        } else if !(later("vm guest1 stopped") && later("vm guest2 stopped")) {
            Err("the guests did not run on after the host's poweroff".into())
        } else {
            Ok(())
        },
    });
    Ok(out)
}

/// Debian's kernel with the host's initramfs on QEMU alone (no hypervisor; see
/// `linux::Variant::Native`).
fn native_run(imgs: &images::Images, opts: &Opts) -> Result<qemu::RunOutput, String> {
    let variant = linux::Variant::Native;
    let prepared = linux::prepare(opts, variant)?;
    let launch = qemu::Launch {
        hyp: &imgs.hyp,
        guest: imgs.guest("guest-tests")?,
        host: qemu::Host::Native(qemu::NativeLinux {
            image: prepared.files.image.clone(),
            initrd: prepared.files.initrd.clone(),
            ram: platform::qemu_virt::MANIFEST.vms[0].mem.size,
            cpus: platform::qemu_virt::MANIFEST.vms[0].cpus.count,
        }),
        guest1: None,
        disk: &imgs.disk,
        null_disk: None,
        append: variant.bootargs(),
        // QEMU's PMU counts instructions only under -icount (the run checks the bench's counter).
        extra: ["-icount", "shift=0,align=off,sleep=on"].map(String::from).to_vec(),
        tag: variant.tag().into(),
        trace: false,
    };
    qemu::run(&launch, opts, opts.timeout.unwrap_or(120), true)
}

/// The integration runs: the platform whose SMMU power domain resets GBPA to abort (with
/// power-loss injection allowed), and the worst legal one, whose GBPA resets to bypass.
const RUNS: [(&str, &str); 2] = [
    ("GBPA resets to abort", "gbpa_reset=abort pm_inject=1"),
    ("GBPA resets to bypass", "gbpa_reset=bypass pm_inject=1"),
];

/// The bare-metal run with the SMMU forced non-coherent: the abort run's options with
/// `smmu_coherent=0` (the whole guest suite, its DMA through tables the hypervisor cleaned).
fn noncoherent_bare_run() -> (&'static str, String) {
    ("SMMU forced non-coherent", format!("{}{}", RUNS[0].1, linux::smmu_option(false)))
}

fn test(opts: &Opts) -> Result<(), String> {
    let host = report::host_unit_tests(opts)?;
    let imgs = images::build(opts)?;
    let tests = imgs.guest("guest-tests")?;
    let mut guest_passed = 0;
    let mut guest_failed = 0;
    let mut problems = Vec::new();
    let mut logs = Vec::new();
    let mut timings = Vec::new();
    let mut trace_checks = 0;
    // Every /init the Linux runs (and the bench) put in their initramfs, before any boots.
    let shellcheck = initscript::shellcheck_installed();
    println!(
        "\n=== the Linux runs' /init scripts: sh -n{} ===",
        if shellcheck { ", shellcheck" } else { "" }
    );
    if !shellcheck {
        println!(
            "script check: shellcheck is not installed, so sh -n only (apt-get install shellcheck)"
        );
    }
    let mut script_checks = 0;
    match linux::init::check_every_init(shellcheck) {
        Ok(results) => {
            for c in results {
                match c.result {
                    Ok(()) => {
                        println!("script check: {} ... ok", c.name);
                        script_checks += 1;
                    }
                    Err(e) => {
                        println!("script check: {} ... FAILED: {e}", c.name);
                        problems.push(format!("script check: {}: {e}", c.name));
                    }
                }
            }
        }
        Err(e) => problems.push(format!("script check: {e}")),
    }
    let mut account =
        |what: &str, out: &qemu::RunOutput, problems: &mut Vec<String>, host: bool| {
            // QEMU's own trace is the judge of two properties no test inside a VM can see:
            // what the very first device write was, and whether any DMA went through
            // untranslated.
            let findings = std::fs::read_to_string(&out.trace_path)
                .map(|t| report::TraceFindings::parse(&t))
                .unwrap_or_else(|e| {
                    problems.push(format!("{what}: {}: {e}", out.trace_path.display()));
                    report::TraceFindings::default()
                });
            for (name, r) in [
                ("first device write is SMMU_GBPA.ABORT", findings.first_write_is_gbpa_abort()),
                ("no untranslated DMA in QEMU's SMMU trace", findings.never_untranslated()),
                (
                    "every translation QEMU made lands in the stream owner's RAM",
                    findings.translations_stay_in_the_owners_ram(),
                ),
                (
                    "every CD QEMU fetched is a hypervisor-written shadow CD",
                    findings.cds_are_the_hypervisors(),
                ),
            ] {
                match r {
                    Ok(()) => {
                        println!("trace check: {name} ... ok");
                        trace_checks += 1;
                    }
                    Err(e) => {
                        println!("trace check: {name} ... FAILED: {e}");
                        problems.push(format!("{what}: {e}"));
                    }
                }
            }
            let names: Vec<String> =
                report::vm_names().into_iter().skip(if host { 0 } else { 1 }).collect();
            let guest = report::GuestReport::parse(&out.log, &names);
            println!();
            println!("{what}: {}", guest.table());
            guest_passed += guest.passed();
            guest_failed += guest.failed();
            for c in &out.checks {
                match &c.result {
                    Ok(()) => {
                        println!("xtask check {} ... ok", c.name);
                        guest_passed += 1;
                    }
                    Err(why) => {
                        println!("xtask check {} ... FAILED: {why}", c.name);
                        guest_failed += 1;
                    }
                }
            }
            problems.extend(guest.problems().into_iter().map(|p| format!("{what}: {p}")));
            if let Err(e) = out.verdict() {
                problems.push(format!("{what}: {e}"));
            }
            logs.push(out.log_path.clone());
            timings.push(format!("{what}: {:.0} s", out.seconds));
        };
    let noncoherent = noncoherent_bare_run();
    for (what, bootargs) in RUNS.iter().map(|(w, a)| (*w, a.to_string())).chain([noncoherent]) {
        println!("\n=== integration run: {what} (-append \"{bootargs}\") ===");
        let launch = qemu::Launch {
            hyp: &imgs.hyp,
            guest: tests,
            host: qemu::Host::Bare,
            guest1: None,
            disk: &imgs.disk,
            null_disk: None,
            append: bootargs.to_string(),
            extra: vec![],
            tag: if bootargs.contains("bypass") {
                "bypass"
            } else if bootargs.contains("smmu_coherent=0") {
                "noncoherent"
            } else {
                "abort"
            }
            .into(),
            trace: true,
        };
        let mut out = qemu::run(&launch, opts, opts.timeout.unwrap_or(300), true)?;
        out.checks.push(report::smmu_irqs_check(&out.log));
        if bootargs.contains("smmu_coherent=0") {
            out.checks.extend(report::noncoherent_checks(&out.log, &report::vm_names(), false));
        }
        account(what, &out, &mut problems, true);
    }
    // Linux as the host: its tests; then a host kernel that panics (only the guests report).
    for (what, variant) in [
        ("Linux host", linux::Variant::Tests),
        ("Linux host, iommu.passthrough=1", linux::Variant::Passthrough),
        ("Linux host, SMMU forced non-coherent", linux::Variant::NonCoherent),
        ("Linux host, every guest off", linux::Variant::GuestsOff),
        ("Linux host panics", linux::Variant::Panic),
        ("Linux host under stress, a Linux guest1 in passthrough", linux::Variant::Stress),
    ] {
        println!("\n=== integration run: {what} ===");
        // Under stress, guest1's Linux boots and runs its tests beside the host's load.
        let timeout = if variant == linux::Variant::Stress { 300 } else { 180 };
        match linux_run(&imgs, opts, opts.timeout.unwrap_or(timeout), variant) {
            Ok(out) => account(what, &out, &mut problems, variant != linux::Variant::Panic),
            Err(e) => problems.push(format!("{what}: {e}")),
        }
    }
    // The same kernel as guest1 too (`run --host linux --guest1 linux`): its own tree, PCI
    // functions, interrupts and PL011 console, its `/init` tests as `[guest1]` lines.
    let what = "Linux host and a Linux guest1";
    println!("\n=== integration run: {what} ===");
    match linux_run_with(
        &imgs,
        opts,
        opts.timeout.unwrap_or(240),
        linux::Variant::Tests,
        Some(false),
    ) {
        Ok(out) => account(what, &out, &mut problems, true),
        Err(e) => problems.push(format!("{what}: {e}")),
    }
    // The interactive shell, its input scripted: it answers, and `poweroff` ends the run.
    println!("\n=== integration run: Linux host shell (scripted input) ===");
    match shell_smoke_run(&imgs, opts) {
        Ok(out) => account("Linux host shell", &out, &mut problems, false),
        Err(e) => problems.push(format!("Linux host shell: {e}")),
    }
    // The same kernel and initramfs on QEMU alone: no EL2, so the module must refuse to load.
    println!("\n=== integration run: Linux without the hypervisor ===");
    match native_run(&imgs, opts) {
        Ok(out) => {
            let r = report::GuestReport::parse(&out.log, &["host".to_string()]);
            println!("Linux without the hypervisor: {}", r.table());
            guest_passed += r.passed();
            guest_failed += r.failed();
            problems.extend(r.problems().into_iter().map(|p| format!("native Linux: {p}")));
            if !out.status.is_some_and(|s| s.success()) || out.timed_out {
                problems.push(format!(
                    "native Linux: QEMU did not power off cleanly ({:?})",
                    out.status
                ));
            }
            logs.push(out.log_path.clone());
            timings.push(format!("Linux without the hypervisor: {:.0} s", out.seconds));
        }
        Err(e) => problems.push(format!("native Linux: {e}")),
    }
    // A host tree that disagrees with the manifest: the hypervisor must refuse it (it stops
    // with the reason before any VM runs, so no summary and a `hyp: PANIC` line are expected).
    println!("\n=== integration run: Linux host with a wrong device tree ===");
    match linux_run(&imgs, opts, 60, linux::Variant::BadTree) {
        Ok(out) => {
            for c in &out.checks {
                match &c.result {
                    Ok(()) => println!("xtask check {} ... ok", c.name),
                    Err(why) => println!("xtask check {} ... FAILED: {why}", c.name),
                }
                if c.result.is_ok() {
                    guest_passed += 1;
                } else {
                    guest_failed += 1;
                }
            }
            logs.push(out.log_path.clone());
            timings.push(format!("Linux host with a wrong device tree: {:.0} s", out.seconds));
        }
        Err(e) => problems.push(format!("Linux host with a wrong device tree: {e}")),
    }
    if host.failed > 0 || !host.ok {
        println!("host unit tests: {} passed, {} failed", host.passed, host.failed);
    }
    if !host.ok {
        problems.push("host unit tests failed".into());
    }
    for p in &problems {
        println!("problem: {p}");
    }
    // Every problem that is not already a failed test (a missing summary, a timeout, a panic,
    // host tests that did not build) counts as one failure, so the last line never hides it.
    let passed = host.passed + guest_passed + trace_checks + script_checks;
    let failed = host.failed + guest_failed + problems.len() as u64;
    for l in &logs {
        println!("log of a QEMU run: {}", l.display());
    }
    println!("QEMU run times: {}", timings.join(", "));
    println!("{passed} passed, {failed} failed");
    if problems.is_empty() && failed == 0 {
        Ok(())
    } else {
        Err(format!("{} problem(s), {failed} failed", problems.len()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn arguments() {
        let (c, o) = parse(&s(&["test", "--verbose", "--timeout", "9"])).unwrap();
        assert_eq!(c, "test");
        assert!(o.verbose);
        assert_eq!(o.timeout, Some(9));
        assert!(parse(&s(&["run", "--bogus"])).is_err());
        assert!(parse(&s(&[])).is_err());
        assert!(parse(&s(&["run", "--timeout", "x"])).is_err());
        assert_eq!(parse(&s(&["run", "--host", "linux"])).unwrap().1.host, HostKind::Linux);
        assert_eq!(parse(&s(&["run"])).unwrap().1.host, HostKind::Bare);
        assert!(parse(&s(&["run", "--host", "windows"])).is_err());
        assert!(parse(&s(&["run", "--smmu-noncoherent"])).unwrap().1.smmu_noncoherent);
        assert!(!parse(&s(&["run"])).unwrap().1.smmu_noncoherent);
        assert!(parse(&s(&["run", "--host", "linux", "--shell"])).unwrap().1.shell);
        assert!(!parse(&s(&["run", "--host", "linux"])).unwrap().1.shell);
        assert!(parse(&s(&["run", "--shell"])).is_err(), "the bare host has no shell");
        assert!(parse(&s(&["test", "--shell"])).is_err());
        assert!(parse(&s(&["run", "--host", "linux", "--shell", "--smmu-noncoherent"])).is_err());
        assert!(parse(&s(&["run", "--host", "linux", "--stress"])).unwrap().1.stress);
        assert!(parse(&s(&["run", "--stress"])).is_err());
        assert!(parse(&s(&["run", "--guests-off"])).unwrap().1.guests_off);
    }

    #[test]
    fn both_bare_runs_let_the_host_inject_power_losses() {
        // The guest tests inject losses on both platforms: on the bypass-reset one they must be
        // refused (and the trace shows no untranslated DMA right after each attempt), which only
        // means something if the hypervisor would otherwise allow them.
        let args: Vec<&str> = RUNS.iter().map(|(_, a)| *a).collect();
        assert_eq!(args, ["gbpa_reset=abort pm_inject=1", "gbpa_reset=bypass pm_inject=1"]);
        // The non-coherent run is the abort one forced non-coherent (QEMU's SMMU is coherent).
        assert_eq!(noncoherent_bare_run().1, "gbpa_reset=abort pm_inject=1 smmu_coherent=0");
    }
}
