//! Reading results: cargo's `test result:` lines for host unit tests, and the guest harness
//! lines (`[vm] test NAME ... ok|FAILED: reason`, `[vm] N passed, M failed`) for each VM.

use crate::Opts;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

/// Host unit-test totals.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct HostTotals {
    /// Tests passed.
    pub passed: u64,
    /// Tests failed.
    pub failed: u64,
    /// Whether `cargo test` succeeded.
    pub ok: bool,
}

/// Sums cargo's `test result: ok. 8 passed; 0 failed; ...` lines.
pub fn sum_cargo_results(text: &str) -> (u64, u64) {
    let mut passed = 0;
    let mut failed = 0;
    for line in text.lines() {
        let Some(rest) = line.trim().strip_prefix("test result: ") else { continue };
        for part in rest.split(['.', ';']) {
            let mut w = part.split_whitespace();
            match (w.next().and_then(|n| n.parse::<u64>().ok()), w.next()) {
                (Some(n), Some("passed")) => passed += n,
                (Some(n), Some("failed")) => failed += n,
                _ => {}
            }
        }
    }
    (passed, failed)
}

/// Runs `cargo test --workspace` with the cargo that runs xtask, streaming its output.
pub fn host_unit_tests(opts: &Opts) -> Result<HostTotals, String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(&cargo);
    cmd.current_dir(crate::tools::root()).args(["test", "--workspace", "--color", "never"]);
    if opts.verbose {
        println!("+ {cargo} test --workspace");
    }
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("cannot run {cargo}: {e}"))?;
    let mut text = String::new();
    for line in BufReader::new(child.stdout.take().expect("piped")).lines().map_while(Result::ok) {
        println!("{line}");
        text.push_str(&line);
        text.push('\n');
    }
    let status = child.wait().map_err(|e| e.to_string())?;
    let (passed, failed) = sum_cargo_results(&text);
    Ok(HostTotals { passed, failed, ok: status.success() })
}

/// The VM names, from the manifest.
pub fn vm_names() -> Vec<String> {
    platform::qemu_virt::MANIFEST.vms.iter().map(|v| v.name.to_string()).collect()
}

/// One VM's results.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct VmResult {
    /// VM name.
    pub name: String,
    /// Names of tests that passed.
    pub ok: Vec<String>,
    /// (name, reason) of tests that failed.
    pub failed: Vec<(String, String)>,
    /// The VM's own summary line, if it printed one.
    pub summary: Option<(u64, u64)>,
}

/// All VMs' results.
#[derive(Debug, Default)]
pub struct GuestReport {
    /// By VM, in manifest order.
    pub vms: Vec<VmResult>,
}

fn parse_summary(s: &str) -> Option<(u64, u64)> {
    let (p, rest) = s.split_once(" passed, ")?;
    let f = rest.strip_suffix(" failed")?;
    Some((p.trim().parse().ok()?, f.trim().parse().ok()?))
}

impl GuestReport {
    /// Parses a serial log.
    pub fn parse(log: &str, names: &[String]) -> Self {
        let mut vms: Vec<VmResult> =
            names.iter().map(|n| VmResult { name: n.clone(), ..Default::default() }).collect();
        for line in log.lines() {
            let line = line.trim_end();
            let Some(rest) = line.strip_prefix('[') else { continue };
            let Some((name, text)) = rest.split_once("] ") else { continue };
            let Some(vm) = vms.iter_mut().find(|v| v.name == name) else { continue };
            if let Some(t) = text.strip_prefix("test ") {
                if let Some(n) = t.strip_suffix(" ... ok") {
                    vm.ok.push(n.to_string());
                } else if let Some((n, why)) = t.split_once(" ... FAILED") {
                    vm.failed.push((n.to_string(), why.trim_start_matches(':').trim().to_string()));
                }
            } else if let Some(s) = parse_summary(text) {
                vm.summary = Some(s);
            }
        }
        Self { vms }
    }

    /// Guest tests passed.
    pub fn passed(&self) -> u64 {
        self.vms.iter().map(|v| v.ok.len() as u64).sum()
    }

    /// Guest tests failed.
    pub fn failed(&self) -> u64 {
        self.vms.iter().map(|v| v.failed.len() as u64).sum()
    }

    /// Everything wrong besides failed tests: a missing summary, a summary that disagrees with
    /// the test lines, a VM that ran no test.
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        for v in &self.vms {
            match v.summary {
                None => p.push(format!("vm {}: no `N passed, M failed` summary", v.name)),
                Some((sp, sf)) if sp != v.ok.len() as u64 || sf != v.failed.len() as u64 => p.push(format!(
                    "vm {}: summary says {sp} passed, {sf} failed but {} ok and {} FAILED lines were printed",
                    v.name,
                    v.ok.len(),
                    v.failed.len()
                )),
                Some(_) if v.ok.is_empty() && v.failed.is_empty() => {
                    p.push(format!("vm {}: ran no test", v.name))
                }
                Some(_) => {}
            }
        }
        p
    }

    /// A short per-VM table, failures listed.
    pub fn table(&self) -> String {
        let mut s = String::from("guest results:\n");
        for v in &self.vms {
            let summary = match v.summary {
                Some((p, f)) => format!("{p} passed, {f} failed"),
                None => "no summary".into(),
            };
            s.push_str(&format!(
                "  {:<8} {:>3} ok {:>3} FAILED   ({summary})\n",
                v.name,
                v.ok.len(),
                v.failed.len()
            ));
            for (n, why) in &v.failed {
                s.push_str(&format!("           FAILED {n}: {why}\n"));
            }
        }
        s
    }
}

/// One check xtask makes on a run's whole log (what no VM can see for itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogCheck {
    /// Its name.
    pub name: &'static str,
    /// Why it failed, if it did.
    pub result: Result<(), String>,
}

/// The host's second CPU as the hypervisor saw it: started by the host's PSCI `CPU_ON` (entered
/// at the context it gave, not at the kernel's image), turned off by its `CPU_OFF` (the hotplug
/// test), then started again, in that order.
pub fn second_cpu_check(log: &str) -> LogCheck {
    let cpu = platform::qemu_virt::MANIFEST.vms[0].cpus.first + 1;
    let on = format!("cpu {cpu}: entering vm host (VMID 1) at EL1, entry ");
    let off = format!("vm host: cpu {cpu} off (PSCI CPU_OFF");
    let events: Vec<char> = log
        .lines()
        .filter_map(|l| {
            if l.contains(&on) && l.contains("PSCI CPU_ON context") {
                Some('+')
            } else if l.contains(&off) {
                Some('-')
            } else {
                None
            }
        })
        .collect();
    let seen: String = events.iter().collect();
    LogCheck {
        name: "host_second_cpu_started_stopped_and_restarted_by_psci",
        result: if seen.starts_with("+-+") {
            Ok(())
        } else {
            Err(format!(
                "cpu {cpu}: expected CPU_ON, CPU_OFF, CPU_ON (+-+) in the hypervisor's log, saw \"{seen}\""
            ))
        },
    }
}

/// The stress run's CPU hotplug as the hypervisor saw it: as many `CPU_OFF`s of the host's
/// second CPU as the host's hotplug workload counted off/on cycles (its
/// `host: stress: hotplug: N off/on cycles` line), and one `CPU_ON` entry more (Linux's
/// start-up).
pub fn stress_hotplug_check(log: &str) -> LogCheck {
    let cpu = platform::qemu_virt::MANIFEST.vms[0].cpus.first + 1;
    let cycles = log.lines().find_map(|l| {
        l.split("host: stress: hotplug: ").nth(1)?.split_whitespace().next()?.parse::<usize>().ok()
    });
    let offs = log
        .lines()
        .filter(|l| l.contains(&format!("vm host: cpu {cpu} off (PSCI CPU_OFF")))
        .count();
    let ons = log
        .lines()
        .filter(|l| {
            l.contains(&format!("cpu {cpu}: entering vm host (VMID 1) at EL1, entry "))
                && l.contains("PSCI CPU_ON context")
        })
        .count();
    LogCheck {
        name: "stress_hotplug_cycles_seen_by_the_hypervisor",
        result: match cycles {
            None => Err("no `host: stress: hotplug: N off/on cycles` line".into()),
            Some(n) if n > 0 && offs == n && ons == n + 1 => Ok(()),
            Some(n) => Err(format!(
                "the host counted {n} off/on cycles of CPU {cpu}; the hypervisor saw {offs} CPU_OFFs and {ons} CPU_ON entries"
            )),
        },
    }
}

/// The checks of the run where the Linux host panics (`panic=-1`): PSCI SYSTEM_RESET stopped
/// the host, and only the host: the guests ran on and stopped by themselves.
pub fn linux_panic_checks(log: &str) -> Vec<LogCheck> {
    let reset = position(log, "vm host stopped (SYSTEM_RESET");
    let later = |needle: &str| match (reset, position(log, needle)) {
        (Some(h), Some(g)) => g > h,
        _ => false,
    };
    vec![LogCheck {
        name: "host_panic_resets_only_the_host",
        result: if !log.contains("Kernel panic - not syncing") {
            Err("the host kernel did not panic".into())
        } else if reset.is_none() {
            Err("the host was not stopped by PSCI SYSTEM_RESET".into())
        } else if !(later("vm guest1 stopped (SYSTEM_OFF)")
            && later("vm guest2 stopped (SYSTEM_OFF)"))
        {
            Err("the guests did not run on after the host's reset".into())
        } else {
            Ok(())
        },
    }]
}

/// The checks of the run whose host tree gives the host every redistributor: the hypervisor
/// refused it with the reason, before any VM ran, and QEMU ended by itself.
pub fn bad_tree_checks(log: &str) -> Vec<LogCheck> {
    let refused = log.lines().find(|l| {
        l.contains("refusing to boot Linux: its device tree disagrees with the manifest")
            && l.contains("GIC registers")
    });
    vec![LogCheck {
        name: "host_tree_disagreeing_with_the_manifest_is_refused",
        result: if refused.is_none() {
            Err("no refusal naming the GIC registers".into())
        } else if log.contains("entering vm") || log.contains("[host]") {
            Err("a VM was entered anyway".into())
        } else if !log.contains("hyp: PANIC") {
            Err("the hypervisor did not stop".into())
        } else {
            Ok(())
        },
    }]
}

/// The host's `poweroff` stopped the host alone: each of `guests` ran on and stopped by
/// itself (PSCI SYSTEM_OFF) after it. A Linux guest1 is left out (its `/init` may well finish
/// before the host's tests; [`linux_guest_checks`] checks its own SYSTEM_OFF).
pub fn host_poweroff_check(log: &str, guests: &[&str]) -> LogCheck {
    let host_off = position(log, "vm host stopped (SYSTEM_OFF)");
    let later = |needle: &str| match (host_off, position(log, needle)) {
        (Some(h), Some(g)) => g > h,
        _ => false,
    };
    LogCheck {
        name: "host_poweroff_stops_only_the_host",
        result: if host_off.is_none() {
            Err("the host did not stop with SYSTEM_OFF".into())
        } else if !guests.iter().all(|g| later(&format!("vm {g} stopped (SYSTEM_OFF)"))) {
            Err("the guests did not run on (and stop by themselves) after the host's poweroff"
                .into())
        } else {
            Ok(())
        },
    }
}

/// The checks of a run with a Linux guest1: the hypervisor checked its tree and entered it as
/// Linux, its `/init` printed its first line through the emulated PL011 (a `[guest1]` line),
/// and its `poweroff` stopped it alone with PSCI SYSTEM_OFF (after that line, and with the
/// other VMs still to stop or stopped on their own).
pub fn linux_guest_checks(log: &str) -> Vec<LogCheck> {
    let hello = format!("[guest1] {}", crate::linux::guest::HELLO);
    let tree = log
        .lines()
        .any(|l| l.contains("vm guest1: device tree at") && l.contains("matches the manifest"));
    let entered = log.lines().any(|l| l.contains("entering vm guest1") && l.contains("(Linux"));
    let said = position(log, &hello);
    let off = position(log, "vm guest1 stopped (SYSTEM_OFF)");
    // Its paravirtual IOMMU driver's calls: CALL_UID, REVISION and at least one SET_STE.
    let calls = log
        .lines()
        .find_map(|l| l.split("vm guest1 stopped (").nth(1))
        .and_then(|r| r.split(" after ").nth(1))
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse::<u64>().ok());
    vec![
        LogCheck {
            name: "linux_guest_tree_checked_and_entered",
            result: match (tree, entered) {
                (true, true) => Ok(()),
                (false, _) => Err("no `vm guest1: device tree ... matches the manifest`".into()),
                (true, false) => Err("guest1 was not entered as Linux".into()),
            },
        },
        LogCheck {
            name: "linux_guest_console_lines_are_guest1s",
            result: if said.is_some() { Ok(()) } else { Err(format!("no `{hello}` line")) },
        },
        LogCheck {
            name: "linux_guest_made_its_iommu_hypercalls",
            result: match calls {
                Some(n) if n >= 3 => Ok(()),
                Some(n) => {
                    Err(format!("guest1 made {n} hypercalls: its IOMMU driver attached nothing"))
                }
                None => Err("no `vm guest1 stopped (...) after N hypercalls` line".into()),
            },
        },
        LogCheck {
            name: "linux_guest_powers_off_alone_with_psci",
            result: match (said, off) {
                (Some(s), Some(o)) if o > s => Ok(()),
                (_, None) => Err("no `vm guest1 stopped (SYSTEM_OFF)`".into()),
                _ => Err("guest1 stopped before its /init ran".into()),
            },
        },
    ]
}

/// The SMMU's own view of a Linux guest1's unload (QEMU's trace): the DMA its edu makes once
/// `smmu_pviommu` is gone (to its device tree's header, `linux::guest::UNLOADED_DMA_OFFSET`
/// bytes in) met an aborting STE (`smmuv3_translate_abort`, no event), and no translation of
/// its stream ever reached that address.
pub fn linux_guest_unload_check(trace: &str) -> LogCheck {
    let (sid, addr) = crate::linux::guest::unloaded_dma();
    let sid_is = |l: &str| l.split_whitespace().any(|w| w == format!("sid={sid:#x}"));
    let at = |l: &str| {
        l.split_whitespace().any(|w| {
            // `iova=0x..` in a translation, `iova:0x..` in an abort.
            w.split_once(['=', ':']).is_some_and(|(k, v)| {
                k == "iova" && u64::from_str_radix(v.trim_start_matches("0x"), 16) == Ok(addr)
            })
        })
    };
    let seen = |event: &str| trace.lines().any(|l| l.starts_with(event) && sid_is(l) && at(l));
    LogCheck {
        name: "linux_guest_unloaded_stream_aborts",
        result: match (seen("smmuv3_translate_abort"), seen("smmuv3_translate_success")) {
            (true, false) => Ok(()),
            (_, true) => {
                Err(format!("stream {sid:#x} translated {addr:#x} after its driver was unloaded"))
            }
            (false, false) => Err(format!(
                "no smmuv3_translate_abort of stream {sid:#x} at {addr:#x} (the DMA after unload)"
            )),
        },
    }
}

fn position(log: &str, needle: &str) -> Option<usize> {
    log.find(needle)
}

/// The checks of a Linux-host run: the hypervisor checked the host's tree before entering it;
/// every `devmem` the host's tests expect to fail was a stage-2 fault the hypervisor logged (not
/// a refusal by the kernel); the distributor filter refused and logged the host's writes to
/// interrupts not its own, and none of their configuration changed ([`gicd_checks`]); the
/// host's `poweroff` stopped only the host.
pub fn linux_checks(log: &str, faults: &[u64], spi: u32) -> Vec<LogCheck> {
    let mut v = Vec::new();
    let tree = position(log, "matches the manifest: RAM");
    let entry = position(log, "cpu 0: entering vm host");
    v.push(LogCheck {
        name: "host_tree_checked_before_entry",
        result: match (tree, entry) {
            (Some(t), Some(e)) if t < e => Ok(()),
            _ => Err("no device-tree check before the host was entered".into()),
        },
    });
    let missing: Vec<String> = faults
        .iter()
        .filter(|a| !log.contains(&format!("vm host: stage-2 fault at IPA {a:#x} ")))
        .map(|a| format!("{a:#x}"))
        .collect();
    v.push(LogCheck {
        name: "host_devmem_faults_were_stage2_faults",
        result: if missing.is_empty() {
            Ok(())
        } else {
            Err(format!("no stage-2 fault logged for {}", missing.join(", ")))
        },
    });
    v.extend(gicd_checks(log, spi));
    v.push(second_cpu_check(log));
    v.push(host_poweroff_check(log, &["guest1", "guest2"]));
    v.push(LogCheck {
        name: "host_smmu_driver_drove_the_emulated_smmu",
        result: emulated_smmu_counters(log).and_then(|c| {
            if c.commands == 0 || c.syncs == 0 {
                Err(format!(
                    "the host's driver sent {} commands, {} CMD_SYNCs",
                    c.commands, c.syncs
                ))
            } else if c.stes_shadowed < HOST_STREAMS {
                Err(format!(
                    "{} STEs shadowed: the host's {HOST_STREAMS} streams were not all configured",
                    c.stes_shadowed
                ))
            } else {
                Ok(())
            }
        }),
    });
    let missing: Vec<&str> = HOST_ATTACK_REFUSALS
        .iter()
        .filter(|(needle, _)| !log.contains(needle))
        .map(|(_, what)| *what)
        .collect();
    // 2,000 illegal commands (`illegal-flood`) and the single one before: one line. A VM
    // chooses how often it provokes a refusal, not how much the hypervisor logs.
    let illegal_lines =
        log.lines().filter(|l| l.contains("stopped its command queue (CMDQ_CONS.ERR 1)")).count();
    v.push(LogCheck {
        name: "host_illegal_command_flood_logged_once",
        result: if illegal_lines == 1 {
            Ok(())
        } else {
            Err(format!("{illegal_lines} log lines for the host's illegal commands, not 1"))
        },
    });
    v.push(LogCheck {
        name: "host_smmu_attacks_refused_and_logged",
        result: if missing.is_empty() {
            Ok(())
        } else {
            Err(format!("the hypervisor did not log refusing {}", missing.join(", ")))
        },
    });
    v
}

/// What the hypervisor logs when it refuses the host's attacks on the emulated SMMU
/// (`smmu-attack reprogram`, on the host's edu stream 0x10), and what each is.
const HOST_ATTACK_REFUSALS: [(&str, &str); 6] = [
    (
        "vm host: the context descriptors of its STE for stream 0x10 refused",
        "the CDs the SMMU cannot walk",
    ),
    ("vm host: its STE for stream 0x10 refused (FORBIDDEN_FIELD", "the stage-2 STE"),
    ("vm host: its STE for stream 0x10 refused (BAD_CONFIG", "the CD tables outside its RAM"),
    ("vm host: its STE for stream 0x10 is not in its RAM", "the stream tables outside its RAM"),
    ("stopped its command queue (CMDQ_CONS.ERR 1)", "the illegal command"),
    ("stopped its command queue (CMDQ_CONS.ERR 2)", "the command queue outside its RAM"),
];

/// The real SMMU's interrupts reached the hypervisor at EL2: its summary counts event-queue
/// interrupts (every run with tests makes the SMMU record faults).
pub fn smmu_irqs_check(log: &str) -> LogCheck {
    let result = log
        .lines()
        .find_map(|l| l.split("SMMU interrupts taken at EL2: ").nth(1))
        .ok_or_else(|| "no SMMU interrupt summary in the log".to_string())
        .and_then(|rest| {
            let n: u64 = rest
                .split_whitespace()
                .next()
                .and_then(|w| w.parse().ok())
                .ok_or_else(|| format!("cannot read `{rest}`"))?;
            if n == 0 {
                Err("no event-queue interrupt reached EL2".into())
            } else {
                Ok(())
            }
        });
    LogCheck { name: "smmu_event_interrupts_reach_el2", result }
}

/// One `SMMU work on cpu N (VM's): ...` line of the hypervisor's closing summary.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SmmuWork {
    /// The CPU.
    pub cpu: u32,
    /// The VM it belongs to.
    pub vm: String,
    /// Event-queue interrupts it took at EL2.
    pub eventq_irqs: u64,
    /// Event records it took off the real SMMU's queue.
    pub records: u64,
    /// Of those, records of the host's streams.
    pub host_records: u64,
}

/// The per-CPU SMMU work lines of the log.
pub fn smmu_work(log: &str) -> Vec<SmmuWork> {
    log.lines()
        .filter_map(|l| {
            let rest = l.split("SMMU work on cpu ").nth(1)?;
            let (cpu, rest) = rest.split_once(" (")?;
            let (vm, rest) = rest.split_once("'s): ")?;
            let nums: Vec<u64> =
                rest.split(|c: char| !c.is_ascii_digit()).filter_map(|w| w.parse().ok()).collect();
            match nums[..] {
                [eventq_irqs, _gerror, records, _own, host_records] => Some(SmmuWork {
                    cpu: cpu.parse().ok()?,
                    vm: vm.to_string(),
                    eventq_irqs,
                    records,
                    host_records,
                }),
                _ => None,
            }
        })
        .collect()
}

/// Fault records one `smmu-attack dma` to one address makes (4 bytes, then a page: QEMU's edu
/// faults once per 4 bytes): the host's flood.
pub const HOST_FLOOD_RECORDS: u64 = 1 + 1024;

/// Most records one guest call takes off the SMMU's queue (`service::DRAIN_PER_ENTRY`).
const DRAIN_PER_ENTRY: u64 = 256;

/// Where the SMMU's interrupts were served and a host-made flood was paid (the hypervisor's
/// per-CPU SMMU work lines): the host's CPUs took event-queue interrupts and at least one flood's
/// worth of the host's records, and the guests' CPUs took no SMMU interrupt (while the host
/// runs, the SMMU's interrupts go to its CPUs; in these runs nothing faults after the host
/// stopped). A guest's own SMMU calls drain the queue too (at most [`DRAIN_PER_ENTRY`] records
/// a call, whoever's): the guests' CPUs took at most that many of the host's records each time
/// they happened to call during the host's flood, which this check bounds by one call's worth
/// per guest CPU, and none at all with `guests_off` (they are off before the host's flood).
pub fn smmu_work_check(log: &str, guests_off: bool) -> LogCheck {
    let work = smmu_work(log);
    let (host, guests): (Vec<_>, Vec<_>) = work.iter().partition(|w| w.vm == "host");
    let sum = |ws: &[&SmmuWork], f: fn(&SmmuWork) -> u64| ws.iter().map(|w| f(w)).sum::<u64>();
    let (host_paid, guests_paid) =
        (sum(&host, |w| w.host_records), sum(&guests, |w| w.host_records));
    let guest_bound = if guests_off { 0 } else { DRAIN_PER_ENTRY * guests.len() as u64 };
    let result = if host.is_empty() || guests.is_empty() {
        Err(format!(
            "no per-CPU SMMU work lines for the host and the guests ({} lines)",
            work.len()
        ))
    } else if sum(&host, |w| w.eventq_irqs) == 0 {
        Err("the host's CPUs took no SMMU event interrupt".into())
    } else if host_paid < HOST_FLOOD_RECORDS {
        Err(format!(
            "the host's CPUs took {host_paid} of the host's event records, fewer than its flood ({HOST_FLOOD_RECORDS})"
        ))
    } else if let Some(g) = guests.iter().find(|w| w.eventq_irqs != 0) {
        Err(format!("guest CPU {} ({}) took {} SMMU interrupts", g.cpu, g.vm, g.eventq_irqs))
    } else if guests_paid > guest_bound {
        Err(format!(
            "the guests' CPUs took {guests_paid} of the host's event records (bound {guest_bound}; the host's took {host_paid})"
        ))
    } else {
        Ok(())
    };
    LogCheck { name: "smmu_interrupts_and_the_hosts_flood_paid_by_its_cpus", result }
}

/// The checks of the run where every guest powers off first: both guests stopped by
/// themselves (`SYSTEM_OFF`) before the host did, and the SMMU's work was the host's CPUs'
/// ([`smmu_work_check`]).
pub fn guests_off_checks(log: &str) -> Vec<LogCheck> {
    let host = position(log, "vm host stopped (SYSTEM_OFF");
    let before_host = |needle: &str| match (position(log, needle), host) {
        (Some(g), Some(h)) => g < h,
        _ => false,
    };
    vec![
        LogCheck {
            name: "every_guest_powered_off_before_the_host",
            result: if host.is_none() {
                Err("the host did not power off".into())
            } else if !(before_host("vm guest1 stopped (SYSTEM_OFF)")
                && before_host("vm guest2 stopped (SYSTEM_OFF)"))
            {
                Err("a guest was still running when the host stopped".into())
            } else {
                Ok(())
            },
        },
        smmu_irqs_check(log),
        smmu_work_check(log, true),
    ]
}

/// The hypervisor's log of a run that forces the non-coherent SMMU path (`smmu_coherent=0`):
/// it says it drives the SMMU as non-coherent, it cleaned every VM's DMA stage-2 tables before
/// any STE named them, and, with a Linux host (`linux_host`), the host's emulated SMMU is
/// non-coherent (no IDR0.COHACC) and its tree has no `dma-coherent` on the SMMU. (What the host
/// itself sees is its own test, `smmu_coherency_is_the_hypervisors`.)
pub fn noncoherent_checks(log: &str, vms: &[String], linux_host: bool) -> Vec<LogCheck> {
    let has = |what: &str| log.lines().any(|l| l.contains(what));
    let driven = if has("SMMU driven as non-coherent") {
        Ok(())
    } else {
        Err("no \"SMMU driven as non-coherent\" in the boot options line".to_string())
    };
    let missing: Vec<&String> = vms
        .iter()
        .filter(|v| {
            !log.lines().any(|l| {
                l.contains(&format!("vm {v}: DMA stage-2 tables"))
                    && l.contains("cleaned to the point of coherency")
            })
        })
        .collect();
    let cleaned = if missing.is_empty() {
        Ok(())
    } else {
        Err(format!("no clean of the DMA stage-2 tables of {missing:?}"))
    };
    let mut checks = vec![
        LogCheck { name: "hypervisor_drives_the_smmu_as_non_coherent", result: driven },
        LogCheck { name: "dma_stage2_tables_cleaned_for_the_non_coherent_smmu", result: cleaned },
    ];
    if linux_host {
        // One line of the host's holding every one of `needles`.
        let host = |what: &str, needles: &[&str]| {
            if log.lines().any(|l| l.contains("vm host: ") && needles.iter().all(|n| l.contains(n)))
            {
                Ok(())
            } else {
                Err(format!("no line saying the host's {what} ({needles:?})"))
            }
        };
        let idr0 = format!("IDR0 {:#010x}", host_abi::smmu::regs::emulated_idr0(false));
        checks.push(LogCheck {
            name: "host_emulated_smmu_is_non_coherent",
            result: host(
                "emulated SMMU is non-coherent",
                &["emulated SMMU (", &idr0, "non-coherent: its structures"],
            ),
        });
        checks.push(LogCheck {
            name: "host_tree_smmu_not_dma_coherent",
            result: host(
                "tree has no dma-coherent SMMU",
                &["its emulated SMMU (not dma-coherent)"],
            ),
        });
    }
    checks
}

/// The distributor filter's lines in the hypervisor's log (`vm host: GIC distributor: ...`):
/// the refusals Linux's own `gic_dist_init` runs into (CTLR, the enables, every other SPI's
/// IROUTER) and the host test's `SETSPI` of INTID `spi` (the first of its kind: Linux never
/// writes SETSPI); the audit when the host stopped (every interrupt not its own kept its
/// configuration); and no interrupt of the host's reaching a guest's CPU.
pub fn gicd_checks(log: &str, spi: u32) -> Vec<LogCheck> {
    const P: &str = "vm host: GIC distributor: ";
    let wanted = [
        (format!("{P}its write of "), " to CTLR ignored"),
        (format!("{P}its write to ISENABLER/ICENABLER of INTID "), "(not its interrupt) ignored"),
        (format!("{P}its write to IROUTER of INTID "), "(not its interrupt) ignored"),
        (format!("{P}its write to SETSPI/CLRSPI of INTID {spi} "), "(not its interrupt) ignored"),
    ];
    let missing: Vec<String> = wanted
        .iter()
        .filter(|(start, end)| !log.lines().any(|l| l.contains(start.as_str()) && l.contains(end)))
        .map(|(start, end)| format!("\"{}...{end}\"", &start[P.len()..]))
        .collect();
    let changed = log.lines().find(|l| l.contains(P) && l.contains("changed while it ran"));
    let no_handler = log.lines().find(|l| l.contains("has no handler at EL2"));
    vec![
        LogCheck {
            name: "host_gicd_writes_to_others_interrupts_refused",
            result: if missing.is_empty() {
                Ok(())
            } else {
                Err(format!("no refusal logged: {}", missing.join(", ")))
            },
        },
        LogCheck {
            name: "host_could_not_change_others_interrupts",
            result: match changed {
                Some(l) => Err(l.trim().to_string()),
                None if log.contains(&format!("{P}every interrupt not its own")) => Ok(()),
                None => Err("no distributor audit when the host stopped".into()),
            },
        },
        LogCheck {
            name: "host_interrupts_reached_no_guest_cpu",
            result: match no_handler {
                Some(l) => Err(l.trim().to_string()),
                None => Ok(()),
            },
        },
    ]
}

/// The host's PCI functions behind the SMMU (edu, serial, disk): the stock driver gives each a
/// default domain, so at least this many STEs are shadowed.
const HOST_STREAMS: u64 = 3;

/// The emulated SMMU's counters, from the hypervisor's summary when the host stops.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct EmulatedSmmuCounters {
    /// Commands the host queued.
    pub commands: u64,
    /// CMD_SYNCs completed.
    pub syncs: u64,
    /// STEs installed as shadow STEs.
    pub stes_shadowed: u64,
    /// STEs refused.
    pub stes_refused: u64,
    /// CMD_SYNC MSIs written into the host's memory.
    pub msi_writes: u64,
    /// CMD_SYNCs refused for their MSI address.
    pub msi_refused: u64,
    /// CMDQ_CONS reads.
    pub cons_reads: u64,
    /// Accesses' worth of a host queue the hypervisor's own interrupt consumed.
    pub continued_async: u64,
}

/// The `flood-msi` test (2^17 - 1 entries after a lone MSI SYNC, the last a CMD_SYNC whose MSI
/// the host waits for without reading CMDQ_CONS) finished because the hypervisor went on by
/// itself: its own interrupt consumed what the PROD write's access (at most 256 commands) left,
/// at most one access's worth (256) each, so at least (2^17 - 1 - 256) / 256 of them.
pub fn msi_continuation_check(log: &str) -> LogCheck {
    const AT_LEAST: u64 = ((1 << 17) - 1 - 256u64).div_ceil(256);
    LogCheck {
        name: "host_msi_flood_continued_by_the_hypervisors_interrupt",
        result: emulated_smmu_counters(log).and_then(|c| {
            if c.continued_async >= AT_LEAST {
                Ok(())
            } else {
                Err(format!(
                    "{} continuations by the hypervisor's interrupt, fewer than {AT_LEAST}",
                    c.continued_async
                ))
            }
        }),
    }
}

/// The MSI SYNCs the host test `flood-msi` (smmu-attack) writes itself: one alone, one at the
/// flood's end.
const TEST_MSI_SYNCS: u64 = 2;

/// How the host's driver completed its CMD_SYNCs (the emulated SMMU advertises MSIs): with its
/// SMMU coherent, Linux's MSI polling (CS = SIG_IRQ, the MSI written into the SYNC's own entry,
/// which it polls instead of CMDQ_CONS), so MSIs were written beyond the test's own
/// ([`TEST_MSI_SYNCS`]); non-coherent, Linux does not poll MSIs (`ARM_SMMU_OPT_MSIPOLL` needs
/// coherency) and only the test's were; and no MSI was refused.
pub fn sync_completion_check(log: &str, coherent: bool) -> LogCheck {
    LogCheck {
        name: if coherent {
            "host_cmd_syncs_completed_by_msi"
        } else {
            "host_cmd_syncs_completed_by_cons_when_non_coherent"
        },
        result: emulated_smmu_counters(log).and_then(|c| match (coherent, c.msi_writes) {
            _ if c.msi_refused != 0 => Err(format!("{} MSIs refused", c.msi_refused)),
            (true, n) if n <= TEST_MSI_SYNCS => Err(format!(
                "{n} MSIs written, the test's own {TEST_MSI_SYNCS} at most ({} CMD_SYNCs, {} \
                 CMDQ_CONS reads): Linux did not poll MSIs",
                c.syncs, c.cons_reads
            )),
            (false, n) if n != TEST_MSI_SYNCS => Err(format!(
                "{n} MSIs written on a non-coherent SMMU, not the test's own {TEST_MSI_SYNCS}"
            )),
            _ => Ok(()),
        }),
    }
}

/// What precedes the hypervisor's machine-readable line of the host's emulated-SMMU counters
/// (`KEY=VALUE` pairs, one per counter, separated by spaces), logged when the host stops.
pub const EMULATED_SMMU_COUNTERS: &str = "vm host: emulated SMMU counters: ";

/// Parses `vm host: emulated SMMU counters: commands=N syncs=M ...` by key; a missing key, a
/// pair that is not `KEY=NUMBER` or a key given twice is an error that says so.
pub fn emulated_smmu_counters(log: &str) -> Result<EmulatedSmmuCounters, String> {
    let (line, rest) = log
        .lines()
        .find_map(|l| Some((l, l.split_once(EMULATED_SMMU_COUNTERS)?.1)))
        .ok_or_else(|| format!("no `{}` line in the log", EMULATED_SMMU_COUNTERS.trim_end()))?;
    let mut pairs: Vec<(&str, u64)> = Vec::new();
    for pair in rest.split_whitespace() {
        let (key, value) = pair.split_once('=').ok_or_else(|| {
            format!("emulated-SMMU counters: `{pair}` is not KEY=VALUE in: {line}")
        })?;
        let value = value
            .parse()
            .map_err(|_| format!("emulated-SMMU counters: `{pair}` is not a number in: {line}"))?;
        if pairs.iter().any(|(k, _)| *k == key) {
            return Err(format!("emulated-SMMU counters: `{key}` given twice in: {line}"));
        }
        pairs.push((key, value));
    }
    let get = |key: &str| {
        pairs
            .iter()
            .find(|(k, _)| *k == key)
            .map(|&(_, v)| v)
            .ok_or_else(|| format!("emulated-SMMU counters: no `{key}=` in: {line}"))
    };
    Ok(EmulatedSmmuCounters {
        commands: get("commands")?,
        syncs: get("syncs")?,
        stes_shadowed: get("stes_shadowed")?,
        stes_refused: get("stes_refused")?,
        msi_writes: get("msi_writes")?,
        msi_refused: get("msi_refused")?,
        cons_reads: get("cons_reads")?,
        continued_async: get("continued_async")?,
    })
}

/// QEMU trace events xtask asks for in the integration runs (QEMU's own view, independent of
/// what the hypervisor reports about itself).
pub const TRACE_EVENTS: [&str; 7] = [
    "smmuv3_write_mmio",
    "smmuv3_translate_bypass",
    "smmuv3_translate_disable",
    "smmuv3_translate_success",
    "smmuv3_translate_abort",
    "smmuv3_get_cd",
    "pl011_write",
];

/// What QEMU's trace of one run shows about the SMMU.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct TraceFindings {
    /// The first device write of the run (SMMU or UART), as traced.
    pub first_device_write: Option<String>,
    /// Transactions the SMMU let through untranslated: STE bypass, or SMMU disabled with GBPA
    /// bypass.
    pub untranslated: Vec<String>,
    /// SMMU register writes seen.
    pub smmu_writes: u64,
    /// Successful translations seen.
    pub translations: u64,
    /// Successful translations whose output is not in the RAM of the VM owning the stream
    /// (or from a stream no VM owns).
    pub escapes: Vec<String>,
    /// Context descriptors the SMMU fetched.
    pub cd_fetches: u64,
    /// CD fetches from anywhere but a VM's shadow CDs (a CD the hypervisor did not write).
    pub foreign_cds: Vec<String>,
}

/// Whether `addr` is inside some VM's shadow CDs (the pages only the hypervisor writes).
fn in_shadow_cds(addr: u64) -> bool {
    platform::qemu_virt::MANIFEST.vms.iter().any(|v| v.shadow_cds().contains_range(addr, 64))
}

/// The RAM of the VM owning stream `sid` (the manifest's PCI functions: stream ID = requester
/// ID), if any.
fn owner_ram(sid: u32) -> Option<platform::MemRange> {
    platform::qemu_virt::MANIFEST
        .vms
        .iter()
        .find(|v| v.devices.iter().any(|d| d.rid() == sid))
        .map(|v| v.mem)
}

/// `sid` and `translated` of a `smmuv3_translate_success` line.
fn translation(line: &str) -> Option<(u32, u64)> {
    let hex = |key: &str| -> Option<u64> {
        let v = line.split(key).nth(1)?.split_whitespace().next()?;
        u64::from_str_radix(v.trim_start_matches("0x"), 16).ok()
    };
    Some((hex("sid=")? as u32, hex("translated=")?))
}

impl TraceFindings {
    /// Reads a trace log (QEMU's `-D` file with the events of [`TRACE_EVENTS`]).
    pub fn parse(text: &str) -> Self {
        let mut f = TraceFindings::default();
        for line in text.lines() {
            let line = line.trim();
            let is_write = line.starts_with("smmuv3_write_mmio") || line.starts_with("pl011_write");
            if is_write && f.first_device_write.is_none() {
                f.first_device_write = Some(line.to_string());
            }
            if line.starts_with("smmuv3_write_mmio") {
                f.smmu_writes += 1;
            }
            if line.starts_with("smmuv3_translate_bypass")
                || line.starts_with("smmuv3_translate_disable")
            {
                f.untranslated.push(line.to_string());
            }
            if line.starts_with("smmuv3_get_cd") {
                f.cd_fetches += 1;
                let addr = line
                    .split("addr:")
                    .nth(1)
                    .and_then(|v| v.split_whitespace().next())
                    .and_then(|v| u64::from_str_radix(v.trim_start_matches("0x"), 16).ok());
                if !addr.is_some_and(in_shadow_cds) {
                    f.foreign_cds.push(line.to_string());
                }
            }
            if line.starts_with("smmuv3_translate_success") {
                f.translations += 1;
                let inside = translation(line).is_some_and(|(sid, pa)| {
                    owner_ram(sid).is_some_and(|ram| ram.contains_range(pa, 1))
                });
                if !inside {
                    f.escapes.push(line.to_string());
                }
            }
        }
        f
    }

    /// The very first device write is SMMU_GBPA (offset 0x44) with ABORT (bit 20) and UPDATE.
    pub fn first_write_is_gbpa_abort(&self) -> Result<(), String> {
        let Some(l) = &self.first_device_write else {
            return Err("no device write in the trace".into());
        };
        let field = |name: &str| -> Option<u64> {
            let rest = l.split(name).nth(1)?.trim_start();
            let v = rest.split(|c: char| c.is_whitespace() || c == '(').next()?;
            u64::from_str_radix(v.trim_start_matches("0x"), 16).ok()
        };
        let ok = l.starts_with("smmuv3_write_mmio")
            && field("addr:") == Some(0x44)
            && field("val:").is_some_and(|v| v & (1 << 20) != 0 && v & (1 << 31) != 0);
        if ok {
            Ok(())
        } else {
            Err(format!("the first device write is `{l}`, not SMMU_GBPA.ABORT"))
        }
    }

    /// Every translation QEMU made landed in the RAM of the VM that owns the stream.
    pub fn translations_stay_in_the_owners_ram(&self) -> Result<(), String> {
        match self.escapes.first() {
            None => Ok(()),
            Some(l) => Err(format!(
                "{} of {} translations left their VM's RAM, the first: `{l}`",
                self.escapes.len(),
                self.translations
            )),
        }
    }

    /// Every context descriptor the SMMU fetched was one the hypervisor wrote: none came from
    /// a VM's own CD table.
    pub fn cds_are_the_hypervisors(&self) -> Result<(), String> {
        match self.foreign_cds.first() {
            None => Ok(()),
            Some(l) => Err(format!(
                "{} of {} CD fetches were not from the hypervisor's shadow CDs, the first: `{l}`",
                self.foreign_cds.len(),
                self.cd_fetches
            )),
        }
    }

    /// No transaction went through untranslated.
    pub fn never_untranslated(&self) -> Result<(), String> {
        match self.untranslated.first() {
            None => Ok(()),
            Some(l) => Err(format!(
                "{} untranslated transaction(s) in QEMU's trace, the first: `{l}`",
                self.untranslated.len()
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn work_line(cpu: u32, vm: &str, irqs: u64, records: u64, host: u64) -> String {
        format!(
            "hyp: INFO  SMMU work on cpu {cpu} ({vm}'s): {irqs} event-queue and 0 global-error interrupts, {records} event records taken off the SMMU's queue (7 of its VM's, {host} of the host's)\n"
        )
    }

    #[test]
    fn smmu_work_lines_are_read_and_judged() {
        let log = |g1_irqs: u64, g2_host: u64, host_records: u64| {
            work_line(0, "host", 50, host_records + 640, host_records)
                + &work_line(1, "host", 0, 0, 0)
                + &work_line(2, "guest1", g1_irqs, 80, 0)
                + &work_line(3, "guest2", 0, 96, g2_host)
        };
        let w = smmu_work(&log(0, 0, 3075));
        assert_eq!(w.len(), 4);
        assert_eq!(
            w[3],
            SmmuWork { cpu: 3, vm: "guest2".into(), eventq_irqs: 0, records: 96, host_records: 0 }
        );
        assert_eq!((w[0].records, w[0].host_records), (3715, 3075));
        assert!(smmu_work_check(&log(0, 0, 3075), true).result.is_ok());
        // A guest's CPU served an SMMU interrupt: the old routing.
        assert!(smmu_work_check(&log(3, 0, 3075), false).result.is_err());
        // A guest's CPU drained some of the host's records: bounded while it runs beside the
        // host (its own calls poll the queue), none when the guests are off first.
        assert!(smmu_work_check(&log(0, 16, 3075), false).result.is_ok());
        assert!(smmu_work_check(&log(0, 513, 3075), false).result.is_err());
        assert!(smmu_work_check(&log(0, 16, 3075), true).result.is_err());
        // The host's flood not paid by its CPUs.
        assert!(smmu_work_check(&log(0, 0, HOST_FLOOD_RECORDS - 1), true).result.is_err());
        assert!(smmu_work_check(&log(0, 0, HOST_FLOOD_RECORDS), true).result.is_ok());
        assert!(smmu_work_check("", false).result.is_err());
    }

    #[test]
    fn the_stress_hotplug_count_is_the_hypervisors() {
        let on = "hyp: INFO  cpu 1: entering vm host (VMID 1) at EL1, entry 0x45ce5498, PSCI CPU_ON context 0x0\n";
        let off = "hyp: INFO  vm host: cpu 1 off (PSCI CPU_OFF; the VM keeps its other CPUs)\n";
        let said = |n: u32| format!("[host] host: stress: hotplug: {n} off/on cycles of CPU 1\n");
        let log = format!("{on}{off}{on}{off}{on}{}", said(2));
        assert_eq!(stress_hotplug_check(&log).result, Ok(()));
        assert!(stress_hotplug_check(&format!("{on}{off}{on}{}", said(2))).result.is_err());
        assert!(stress_hotplug_check(&format!("{on}{off}{on}{off}{on}{}", said(3)))
            .result
            .is_err());
        assert!(stress_hotplug_check(&format!("{on}{}", said(0))).result.is_err());
        assert!(stress_hotplug_check(&format!("{on}{off}{on}")).result.is_err());
    }

    #[test]
    fn smmu_irq_summary_is_read() {
        let ok = "hyp: INFO  SMMU interrupts taken at EL2: 22 event queue, 0 global error\n";
        assert_eq!(smmu_irqs_check(ok).result, Ok(()));
        assert!(smmu_irqs_check(&ok.replace("22", "0")).result.is_err());
        assert!(smmu_irqs_check("hyp: INFO  all VMs stopped").result.is_err());
    }

    #[test]
    fn emulated_smmu_summary_is_read() {
        let log = "hyp: INFO  vm host: emulated SMMU: 26 commands (12 CMD_SYNCs completed after the real SYNC, 0 stopped the queue), 13 STEs shadowed (1 refused), 0 events delivered (0 discarded: its queue full or disabled), 0 accesses to unimplemented registers\n\
hyp: INFO  vm host: emulated SMMU counters: commands=26 syncs=12 stes_shadowed=13 stes_refused=1 cds_refused=0 events_delivered=0 events_discarded=0 command_errors=0 unknown_accesses=0 ste_installs_failed=0 notices_unlogged=0 budget_stops=0 continued=0 msi_writes=5 msi_refused=0 cons_reads=2 continued_async=600\n";
        assert_eq!(
            emulated_smmu_counters(log),
            Ok(EmulatedSmmuCounters {
                commands: 26,
                syncs: 12,
                stes_shadowed: 13,
                stes_refused: 1,
                msi_writes: 5,
                msi_refused: 0,
                cons_reads: 2,
                continued_async: 600,
            })
        );
        assert_eq!(msi_continuation_check(log).result, Ok(()));
        let few = log.replace("continued_async=600", "continued_async=510");
        assert!(msi_continuation_check(&few).result.unwrap_err().contains("fewer than 511"));
        let enough = log.replace("continued_async=600", "continued_async=511");
        assert_eq!(msi_continuation_check(&enough).result, Ok(()));
        assert_eq!(sync_completion_check(log, true).result, Ok(()));
        assert!(sync_completion_check(log, false).result.unwrap_err().contains("5 MSIs written"));
        // Non-coherent: the flood-msi test's own two SYNCs only.
        let test_only = log.replace("msi_writes=5", "msi_writes=2");
        assert!(sync_completion_check(&test_only, true)
            .result
            .unwrap_err()
            .contains("Linux did not poll MSIs"));
        assert_eq!(sync_completion_check(&test_only, false).result, Ok(()));
        let none = log.replace("msi_writes=5", "msi_writes=0");
        assert!(sync_completion_check(&none, false).result.unwrap_err().contains("not the test's"));
        let refused = log.replace("msi_refused=0", "msi_refused=1");
        assert!(sync_completion_check(&refused, true).result.is_err());
        // By key, in any order; keys xtask does not know are fine.
        let reordered = "hyp: INFO  vm host: emulated SMMU counters: new=7 stes_refused=1 stes_shadowed=13 syncs=12 commands=26 cons_reads=2 msi_refused=0 msi_writes=5 continued_async=600";
        assert_eq!(emulated_smmu_counters(reordered), emulated_smmu_counters(log));
        let err = |log: &str| emulated_smmu_counters(log).unwrap_err();
        assert!(
            err(&reordered.replace("syncs=12 ", "")).contains("no `syncs=` in: hyp: INFO  vm host")
        );
        assert!(
            err(&reordered.replace("syncs=12", "syncs=x")).contains("`syncs=x` is not a number")
        );
        assert!(
            err(&reordered.replace("syncs=12", "syncs 12")).contains("`syncs` is not KEY=VALUE")
        );
        assert!(err(&format!("{reordered} syncs=1")).contains("`syncs` given twice"));
        // The prose line alone is not read.
        assert_eq!(
            err(log.lines().next().unwrap()),
            "no `vm host: emulated SMMU counters:` line in the log"
        );
        assert!(emulated_smmu_counters("nothing").is_err());
        let checks = linux_checks(log, &[], 100);
        let c = checks.iter().find(|c| c.name == "host_smmu_driver_drove_the_emulated_smmu");
        assert_eq!(c.unwrap().result, Ok(()));
    }

    #[test]
    fn the_hypervisors_own_counters_line_is_read() {
        let c = hyp::iommu::emulated::EmulatedCounters {
            commands: 26,
            syncs: 12,
            stes_shadowed: 13,
            stes_refused: 1,
            continued: 9,
            msi_writes: 4,
            cons_reads: 3,
            continued_async: 7,
            ..Default::default()
        };
        let log = format!("hyp: INFO  {EMULATED_SMMU_COUNTERS}{c}\n");
        assert_eq!(
            emulated_smmu_counters(&log),
            Ok(EmulatedSmmuCounters {
                commands: 26,
                syncs: 12,
                stes_shadowed: 13,
                stes_refused: 1,
                msi_writes: 4,
                msi_refused: 0,
                cons_reads: 3,
                continued_async: 7,
            })
        );
        // Every counter (all u64), each once as KEY=VALUE (the parser refuses a repeated key).
        let counters = core::mem::size_of::<hyp::iommu::emulated::EmulatedCounters>() / 8;
        assert_eq!(c.to_string().split(' ').count(), counters, "{c}");
        assert!(c.to_string().split(' ').all(|p| p.split_once('=').is_some()), "{c}");
    }

    const LOG: &str = "\
hyp: INFO  booting
[host] test abi_version ... ok
[guest1] test abi_version ... ok
[guest1] test isolation ... FAILED: write to 0x44000000 did not fault
[host] test isolation ... ok
[host] 2 passed, 0 failed
[guest1] 1 passed, 1 failed
[guest9] test x ... ok
hyp: INFO  all VMs stopped
";

    fn names() -> Vec<String> {
        vec!["host".into(), "guest1".into(), "guest2".into()]
    }

    #[test]
    fn per_vm_results_and_problems() {
        let r = GuestReport::parse(LOG, &names());
        assert_eq!(r.passed(), 3);
        assert_eq!(r.failed(), 1);
        assert_eq!(r.vms[1].failed[0].1, "write to 0x44000000 did not fault");
        assert_eq!(r.vms[0].summary, Some((2, 0)));
        let p = r.problems();
        assert_eq!(p.len(), 1);
        assert!(p[0].contains("guest2") && p[0].contains("no"));
        assert!(r.table().contains("FAILED isolation"));
    }

    #[test]
    fn summary_must_match_lines() {
        let r = GuestReport::parse(
            "[host] test a ... ok\n[host] 2 passed, 0 failed\n",
            &["host".into()],
        );
        assert!(r.problems()[0].contains("summary says 2 passed"));
        let r = GuestReport::parse("[host] 0 passed, 0 failed\n", &["host".into()]);
        assert!(r.problems()[0].contains("ran no test"));
    }

    #[test]
    fn linux_run_checks() {
        let good = "\
hyp: INFO  vm host: device tree at 0x53e00000 (3000 bytes) matches the manifest: RAM 0x44000000+0x10000000
hyp: INFO  cpu 0: entering vm host (VMID 1) at EL1
hyp: INFO  cpu 1: entering vm host (VMID 1) at EL1, entry 0x45ce5498, PSCI CPU_ON context 0x0 (Linux: it drives the GIC, IMO/FMO clear)
hyp: INFO  vm host: cpu 1 off (PSCI CPU_OFF; the VM keeps its other CPUs)
hyp: INFO  cpu 1: entering vm host (VMID 1) at EL1, entry 0x45ce5498, PSCI CPU_ON context 0x0 (Linux: it drives the GIC, IMO/FMO clear)
hyp: WARN  vm host: stage-2 fault at IPA 0x54000000 (FAR 0x0, PC 0x1): ESR=...
hyp: WARN  vm host: its STE for stream 0x10 refused (FORBIDDEN_FIELD (-5)): the stream is blocked
hyp: WARN  vm host: its STE for stream 0x10 refused (BAD_CONFIG (-7)): the stream is blocked
hyp: WARN  vm host: its STE for stream 0x10 is not in its RAM (stream table or level-1 descriptor outside it): the stream is blocked
hyp: WARN  vm host: the context descriptors of its STE for stream 0x10 refused (BAD_CONFIG (-8)): the stream is blocked
hyp: WARN  vm host: its SMMU command 0x0000000200000028 0x0000000000000000 stopped its command queue (CMDQ_CONS.ERR 1): illegal here
hyp: WARN  vm host: its SMMU command 0x0000000000000000 0x0000000000000000 stopped its command queue (CMDQ_CONS.ERR 2): the queue entry is outside its RAM
hyp: WARN  vm host: GIC distributor: its write of 0x0 to CTLR ignored (the hypervisor owns affinity routing and the group enables) (logged once per register)
hyp: WARN  vm host: GIC distributor: its write to ISENABLER/ICENABLER of INTID 32 (not its interrupt) ignored (logged once per register)
hyp: WARN  vm host: GIC distributor: its write to IROUTER of INTID 32 (not its interrupt) ignored (logged once per register)
hyp: WARN  vm host: GIC distributor: its write to SETSPI/CLRSPI of INTID 100 (not its interrupt) ignored (logged once per register)
hyp: INFO  vm host: GIC distributor: every interrupt not its own (INTIDs 32..287 but 35..38, 272, 273) kept its enable, group, trigger, priority and route while it ran
hyp: INFO  vm host: emulated SMMU: 26 commands (12 CMD_SYNCs completed after the real SYNC, 0 stopped the queue), 3 STEs shadowed (0 refused), 0 events delivered
hyp: INFO  vm host: emulated SMMU counters: commands=26 syncs=12 stes_shadowed=3 stes_refused=0 msi_writes=9 msi_refused=0 cons_reads=1 continued_async=0
hyp: INFO  vm host stopped (SYSTEM_OFF) after 0 hypercalls
hyp: INFO  vm guest2 stopped (SYSTEM_OFF) after 1 hypercalls
hyp: INFO  vm guest1 stopped (SYSTEM_OFF) after 1 hypercalls
";
        let c = linux_checks(good, &[0x5400_0000], 100);
        assert!(c.iter().all(|x| x.result.is_ok()), "{c:?}");
        let c = linux_checks(good, &[0x5400_0000, 0x5600_0000], 100);
        assert_eq!(c[1].result, Err("no stage-2 fault logged for 0x56000000".into()));
        // 0x5400_0000 must not match a fault at 0x54000000c (prefix).
        let c =
            linux_checks(&good.replace("IPA 0x54000000 ", "IPA 0x540000000 "), &[0x5400_0000], 100);
        assert!(c[1].result.is_err());
        let by_name = |c: &[LogCheck], name: &str| {
            c.iter().find(|x| x.name == name).unwrap_or_else(|| panic!("{name}")).result.clone()
        };
        let refused = "host_gicd_writes_to_others_interrupts_refused";
        let e = by_name(&linux_checks(good, &[], 101), refused).unwrap_err();
        assert_eq!(e, "no refusal logged: \"its write to SETSPI/CLRSPI of INTID 101 ...(not its interrupt) ignored\"");
        let no_route = good.replace("to IROUTER", "to IGROUPR");
        assert!(by_name(&linux_checks(&no_route, &[], 100), refused).is_err());
        let no_ctlr = good.replace("to CTLR", "to STATUSR");
        assert!(by_name(&linux_checks(&no_ctlr, &[], 100), refused).is_err());
        let audit = "host_could_not_change_others_interrupts";
        let changed = good.replace(
            "hyp: INFO  vm host: GIC distributor: every",
            "hyp: WARN  vm host: GIC distributor: the ISENABLER/ICENABLER of INTID 106, not its interrupt, changed while it ran\nhyp: INFO  vm host: GIC distributor: every",
        );
        assert!(by_name(&linux_checks(&changed, &[], 100), audit)
            .unwrap_err()
            .contains("INTID 106"));
        let no_audit = good.replace("every interrupt not its own", "nothing");
        assert!(by_name(&linux_checks(&no_audit, &[], 100), audit).is_err());
        let taken = format!("{good}hyp: WARN  cpu 1 (vm guest1): interrupt SPI (INTID 100) has no handler at EL2: disabled\n");
        assert!(by_name(&linux_checks(&taken, &[], 100), "host_interrupts_reached_no_guest_cpu")
            .is_err());
        let early = good.replace("vm guest2 stopped", "vm guest2 x").replace(
            "hyp: INFO  vm host stopped",
            "hyp: INFO  vm guest2 stopped (SYSTEM_OFF)\nhyp: INFO  vm host stopped",
        );
        assert!(
            by_name(&linux_checks(&early, &[], 100), "host_poweroff_stops_only_the_host").is_err(),
            "guest2 stopped first"
        );
        let cpu1 = "host_second_cpu_started_stopped_and_restarted_by_psci";
        let never_off = good.replace("cpu 1 off (PSCI CPU_OFF", "cpu 1 x");
        let e = by_name(&linux_checks(&never_off, &[], 100), cpu1).unwrap_err();
        assert!(e.ends_with("saw \"++\""), "{e}");
        let at_image = good.replace("PSCI CPU_ON context", "device tree");
        assert!(by_name(&linux_checks(&at_image, &[], 100), cpu1).is_err());
        let unchecked = good.replace("matches the manifest", "was not checked");
        assert!(linux_checks(&unchecked, &[], 100)[0].result.is_err());
        let no_stes = good.replace("stes_shadowed=3", "stes_shadowed=2");
        let smmu = "host_smmu_driver_drove_the_emulated_smmu";
        assert!(by_name(&linux_checks(&no_stes, &[], 100), smmu).is_err());
        let no_syncs = good.replace("syncs=12", "syncs=0");
        assert!(by_name(&linux_checks(&no_syncs, &[], 100), smmu).is_err());
        let no_line = good.replace("emulated SMMU counters", "emulated SMMU figures");
        assert!(by_name(&linux_checks(&no_line, &[], 100), smmu).is_err());
        let accepted = good.replace("refused (BAD_CONFIG", "accepted (BAD_CONFIG");
        let r = by_name(&linux_checks(&accepted, &[], 100), "host_smmu_attacks_refused_and_logged");
        assert!(r.as_ref().unwrap_err().contains("the CD tables outside its RAM"), "{r:?}");
    }

    #[test]
    fn bad_tree_check() {
        let good = "hyp: ERROR vm host: refusing to boot Linux: its device tree disagrees with the \
                    manifest: GIC registers [..] are not the distributor and the host CPU's redistributor\n\
                    hyp: PANIC vm host: refusing to boot Linux\n";
        assert_eq!(bad_tree_checks(good)[0].result, Ok(()));
        assert!(bad_tree_checks(&good.replace("GIC registers", "memory nodes"))[0].result.is_err());
        let entered = format!("{good}hyp: INFO  cpu 0: entering vm host\n");
        assert!(bad_tree_checks(&entered)[0].result.is_err());
        assert!(bad_tree_checks(&good.replace("hyp: PANIC", "hyp: INFO"))[0].result.is_err());
    }

    #[test]
    fn linux_panic_check() {
        let good = "[host] [    3.1] Kernel panic - not syncing: sysrq triggered crash\n\
                    hyp: INFO  vm host stopped (SYSTEM_RESET: stopped, not restarted)\n\
                    hyp: INFO  vm guest1 stopped (SYSTEM_OFF)\nhyp: INFO  vm guest2 stopped (SYSTEM_OFF)\n";
        assert_eq!(linux_panic_checks(good)[0].result, Ok(()));
        assert!(linux_panic_checks(&good.replace("SYSTEM_RESET", "crash"))[0].result.is_err());
        assert!(linux_panic_checks(&good.replace("Kernel panic", "no"))[0].result.is_err());
        let guests_first = "[host] Kernel panic - not syncing\nhyp: INFO  vm guest1 stopped (SYSTEM_OFF)\n\
                            hyp: INFO  vm guest2 stopped (SYSTEM_OFF)\nhyp: INFO  vm host stopped (SYSTEM_RESET)\n";
        assert!(linux_panic_checks(guests_first)[0].result.is_err());
    }

    #[test]
    fn qemu_trace_findings() {
        let good = "smmuv3_write_mmio addr: 0x44 val:0x80101000 size: 0x4(0)\n\
                    pl011_write addr 0x000 value 0x00000068 reg DR\n\
                    smmuv3_write_mmio addr: 0x20 val:0x0 size: 0x4(0)\n";
        let f = TraceFindings::parse(good);
        assert_eq!(f.first_write_is_gbpa_abort(), Ok(()));
        assert_eq!(f.never_untranslated(), Ok(()));
        assert_eq!(f.smmu_writes, 2);
        // The UART first, GBPA without ABORT, another register: all refused.
        for bad in [
            "pl011_write addr 0x000 value 0x00000068 reg DR\nsmmuv3_write_mmio addr: 0x44 val:0x80101000 size: 0x4(0)\n",
            "smmuv3_write_mmio addr: 0x44 val:0x80001000 size: 0x4(0)\n",
            "smmuv3_write_mmio addr: 0x44 val:0x00101000 size: 0x4(0)\n",
            "smmuv3_write_mmio addr: 0x20 val:0x0 size: 0x4(0)\n",
            "",
        ] {
            assert!(TraceFindings::parse(bad).first_write_is_gbpa_abort().is_err(), "{bad}");
        }
        let bypass = "smmuv3_translate_bypass smmuv3-iommu-memory-region-16-2 sid=0x10 bypass iova:0x44000000 is_write=1\n";
        let f = TraceFindings::parse(&(good.to_string() + bypass));
        assert!(f.never_untranslated().unwrap_err().contains("1 untranslated"));
        let f = TraceFindings::parse(
            "smmuv3_translate_disable x sid=0x18 bypass (smmu disabled) iova:0x0 is_write=0\n",
        );
        assert!(f.never_untranslated().is_err());
    }

    #[test]
    fn cd_fetches_must_be_the_hypervisors_shadow_cds() {
        // QEMU's `smmuv3_get_cd` (the CD's address, after stage 2 when nested).
        let ok = "smmuv3_get_cd CD addr: 0x5bffe000\nsmmuv3_get_cd CD addr: 0x53ffd040\n";
        let f = TraceFindings::parse(ok);
        assert_eq!((f.cd_fetches, f.cds_are_the_hypervisors()), (2, Ok(())));
        for bad in [
            "smmuv3_get_cd CD addr: 0x54026000\n",  // guest1's own CD table
            "smmuv3_get_cd CD addr: 0x5bffdfc0\n",  // just below its shadow CDs
            "smmuv3_get_cd CD addr: 0x4020_0000\n", // unreadable
        ] {
            let e = TraceFindings::parse(bad).cds_are_the_hypervisors().unwrap_err();
            assert!(e.contains("1 of 1 CD fetches"), "{e}");
        }
    }

    #[test]
    fn translations_are_judged_by_the_stream_owner() {
        // Stream 0x18 is guest1's edu (slot 3), RAM 0x54000000+128 MiB; 0x10 the host's.
        let line = |sid: u32, pa: u64| {
            format!("smmuv3_translate_success smmuv3-iommu-memory-region-24-3 sid={sid:#x} iova=0x1000 translated={pa:#x} perm=0x3 stage=3\n")
        };
        let ok = line(0x18, 0x5400_1000) + &line(0x10, 0x4400_0000);
        let f = TraceFindings::parse(&ok);
        assert_eq!(f.translations, 2);
        assert_eq!(f.translations_stay_in_the_owners_ram(), Ok(()));
        for bad in [
            line(0x18, 0x5c00_0000), // guest2's RAM
            line(0x18, 0x53ff_ffff), // just below its RAM
            line(0x10, 0x4020_0000), // the hypervisor's image
            line(0x99, 0x5400_1000), // nobody's stream
            "smmuv3_translate_success x sid=0x18 iova=0x0 translated=zz perm=0x3 stage=3\n".into(),
        ] {
            let f = TraceFindings::parse(&(ok.clone() + &bad));
            let e = f.translations_stay_in_the_owners_ram().unwrap_err();
            assert!(e.starts_with("1 of 3 translations"), "{e}");
        }
    }

    #[test]
    fn a_linux_guest1_unload_is_judged_from_the_trace() {
        let (sid, addr) = crate::linux::guest::unloaded_dma();
        let abort = format!("smmuv3_translate_abort smmuv3-iommu-memory-region-24-2 sid={sid:#x} abort on iova:{addr:#x} is_write=0\n");
        let success = format!("smmuv3_translate_success x sid={sid:#x} iova={addr:#x} translated={addr:#x} perm=0x3 stage=2\n");
        let other =
            format!("smmuv3_translate_abort x sid=0x38 abort on iova:{addr:#x} is_write=0\n");
        assert!(linux_guest_unload_check(&abort).result.is_ok());
        assert!(linux_guest_unload_check(&(abort.clone() + &success)).result.is_err());
        assert!(linux_guest_unload_check(&other).result.is_err());
        assert!(linux_guest_unload_check("").result.is_err());
    }

    #[test]
    fn a_linux_guest1_run_is_judged_from_its_lines() {
        let good = "hyp: INFO  vm guest1: device tree at 0x5be00000 (2784 bytes) matches the manifest: RAM\n\
                    hyp: INFO  cpu 2: entering vm guest1 (VMID 2) at EL1, entry 0x54000000, device tree 0x5be00000 (Linux: it drives the GIC)\n\
                    [guest1] Linux guest: /init reached\n\
                    hyp: INFO  vm host stopped (SYSTEM_OFF) on cpu 0\n\
                    hyp: INFO  vm guest1 stopped (SYSTEM_OFF) on cpu 2 after 3 hypercalls, 0 injected faults\n\
                    hyp: INFO  vm guest2 stopped (SYSTEM_OFF) on cpu 3\n";
        assert!(linux_guest_checks(good).iter().all(|c| c.result.is_ok()));
        let failed = |log: &str| -> Vec<&'static str> {
            linux_guest_checks(log)
                .into_iter()
                .filter(|c| c.result.is_err())
                .map(|c| c.name)
                .collect()
        };
        let unchecked = good.replace("matches the manifest", "was not checked");
        assert_eq!(failed(&unchecked), ["linux_guest_tree_checked_and_entered"]);
        let bare = good.replace("(Linux: it drives", "(bare: ");
        assert_eq!(failed(&bare), ["linux_guest_tree_checked_and_entered"]);
        // The line must be guest1's, through its console.
        let other = good.replace("[guest1] Linux guest", "[guest2] Linux guest");
        assert_eq!(
            failed(&other),
            ["linux_guest_console_lines_are_guest1s", "linux_guest_powers_off_alone_with_psci"]
        );
        let reset =
            good.replace("vm guest1 stopped (SYSTEM_OFF)", "vm guest1 stopped (SYSTEM_RESET");
        assert_eq!(failed(&reset), ["linux_guest_powers_off_alone_with_psci"]);
        // Stopped before its /init spoke.
        let early = "hyp: INFO  vm guest1 stopped (SYSTEM_OFF) on cpu 2 after 3 hypercalls\n"
            .to_string()
            + &good.replace(
                "vm guest1 stopped (SYSTEM_OFF) on cpu 2 after 3 hypercalls, 0 injected faults\n",
                "",
            );
        assert_eq!(failed(&early), ["linux_guest_powers_off_alone_with_psci"]);
        // The host's poweroff check: guest1 may stop first when it is Linux, guest2 may not.
        let g1_first = good
            .replace("hyp: INFO  vm guest1 stopped (SYSTEM_OFF) on cpu 2 after 3 hypercalls, 0 injected faults\n", "")
            .replace("[guest1] Linux", "hyp: INFO  vm guest1 stopped (SYSTEM_OFF)\n[guest1] Linux");
        assert_eq!(g1_first.matches("vm guest1 stopped").count(), 1);
        assert!(host_poweroff_check(&g1_first, &["guest2"]).result.is_ok());
        assert!(host_poweroff_check(&g1_first, &["guest1", "guest2"]).result.is_err());
        let g2_first = good
            .replace("vm guest2 stopped (SYSTEM_OFF) on cpu 3\n", "")
            .replace("[guest1] Linux", "hyp: INFO  vm guest2 stopped (SYSTEM_OFF)\n[guest1] Linux");
        assert!(host_poweroff_check(&g2_first, &["guest2"]).result.is_err());
    }

    #[test]
    fn cargo_result_lines() {
        let t = "test result: ok. 8 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out; finished in 0.00s\n\
                 test result: FAILED. 3 passed; 2 failed; 0 ignored\nnoise 5 passed\n";
        assert_eq!(sum_cargo_results(t), (11, 2));
    }

    #[test]
    fn a_non_coherent_run_is_judged_from_the_hypervisors_lines() {
        let vms = vm_names();
        let idr0 = host_abi::smmu::regs::emulated_idr0(false);
        let mut log = String::from(
            "hyp: boot options: SMMU power domain resets GBPA to Abort, power-loss injection off, SMMU driven as non-coherent (cache maintenance, non-cacheable walks)\n",
        );
        for v in &vms {
            log.push_str(&format!(
                "hyp: vm {v}: DMA stage-2 tables (0x40300000+0x4000) cleaned to the point of coherency for the non-coherent SMMU (built once, never changed)\n"
            ));
        }
        let bare = noncoherent_checks(&log, &vms, false);
        assert_eq!(bare.len(), 2);
        assert!(
            bare.iter().all(|c| c.result.is_ok()),
            "{:?}",
            bare.iter().map(|c| &c.result).collect::<Vec<_>>()
        );
        let linux = noncoherent_checks(&log, &vms, true);
        assert_eq!(
            linux.iter().filter(|c| c.result.is_err()).count(),
            2,
            "the host's lines missing"
        );
        log.push_str(&format!(
            "hyp: vm host: emulated SMMU (IDR0 {idr0:#010x}, IDR1 0x00000008, non-coherent: its structures read after DC CIVAC, its event records cleaned) for its streams [0x10]\n\
             hyp: vm host: device tree at 0x53e00000 (4000 bytes) matches the manifest: RAM 0x44000000+0x10000000, CPUs 0..=1 (PSCI), GICD + their redistributors, PCIe, its emulated SMMU (not dma-coherent), no ITS/PL011\n"
        ));
        assert!(noncoherent_checks(&log, &vms, true).iter().all(|c| c.result.is_ok()));
        // A coherent run's lines, or one VM's clean missing: failed.
        let coherent = log.replace("driven as non-coherent", "driven as coherent");
        assert!(noncoherent_checks(&coherent, &vms, true)[0].result.is_err());
        let one_missing = log.replace(&format!("vm {}: DMA stage-2", vms[1]), "x");
        let c = noncoherent_checks(&one_missing, &vms, true);
        assert!(c[1].result.as_ref().unwrap_err().contains(&vms[1]));
        let coherent_idr0 = log.replace(&format!("IDR0 {idr0:#010x}"), "IDR0 0x0d44101b");
        assert!(noncoherent_checks(&coherent_idr0, &vms, true)[2].result.is_err());
    }
}
