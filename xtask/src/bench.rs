//! `cargo xtask bench`: boots the bench image under `-icount shift=0,align=off,sleep=off`,
//! where the virtual counter advances one tick per executed instruction, and turns the
//! `bench NAME MEDIAN MIN MAX UNIT` lines VM 0 prints into a table with targets and
//! `target/bench/bench.json`. `--compare OLD.json` prints ratios against an earlier run. The
//! main SMMU rows are measured a second time with the SMMU forced non-coherent
//! (`smmu_coherent=0`) and printed beside the coherent ones (`NAME_noncoherent`, and the ratio).
//!
//! Then the Linux rows: Debian's kernel with the same initramfs, disk and command line booted
//! four times under `-icount`, natively (QEMU alone, its real SMMU given to Linux) and as the
//! host under the hypervisor (on the emulated SMMU), each in strict and in passthrough DMA
//! mode; `/init` (`tests/linux/init/bench.sh`, [`crate::initscript::bench_files`]) reports
//! when userspace started and the instructions of `dd` runs of 4 KiB direct reads and writes,
//! counted by the PMU (`tests/linux/icount.c`).
//!
//! Then the Linux guest's: the same measurement in a Linux guest1 (one CPU, CPU 2) whose disk's
//! DMA goes through the paravirtual IOMMU driver (`smmu_pviommu`: one INVALIDATE hypercall per
//! strict unmap), the host powering off at once (`tests/linux/init/guest-bench.sh`), against the
//! same kernel natively with guest1's CPU and RAM and against the host's trap-and-emulate EL2
//! figure ([`guest_figures`]). `--only guest` runs these and the host's strict run alone.

use crate::images;
use crate::tools::root;
use crate::{elf, qemu, Opts};
use std::fmt::Write as _;

/// One figure.
#[derive(Clone, Debug, PartialEq)]
pub struct Figure {
    /// Name.
    pub name: String,
    /// Median (or the value, for derived figures).
    pub value: f64,
    /// Unit.
    pub unit: String,
    /// Minimum over the repetitions.
    pub min: f64,
    /// Maximum over the repetitions.
    pub max: f64,
}

/// A target: the figure must be at most (or at least) `limit`.
struct Target {
    name: &'static str,
    limit: f64,
    at_most: bool,
}

const TARGETS: &[Target] = &[
    Target { name: "null_hypercall", limit: 150.0, at_most: true },
    Target { name: "set_ste_identity", limit: 2500.0, at_most: true },
    Target { name: "set_ste_nested", limit: 2500.0, at_most: true },
    Target { name: "clear_ste", limit: 2500.0, at_most: true },
    Target { name: "inval_marginal_per_cmd", limit: 60.0, at_most: true },
    Target { name: "inval_batching_ratio", limit: 8.0, at_most: false },
    Target { name: "resume_1", limit: 6000.0, at_most: true },
    Target { name: "resume_1000_over_1", limit: 1.10, at_most: true },
    Target { name: "pm_on_over_off_inval16", limit: 1.02, at_most: true },
    Target { name: "heap_bytes_per_stream", limit: 128.0, at_most: true },
    Target { name: "vsmmu_prod_1", limit: 1500.0, at_most: true },
    Target { name: "vsmmu_prod_marginal_per_cmd", limit: 60.0, at_most: true },
    Target { name: "vsmmu_flood_longest_access", limit: 200_000.0, at_most: true },
    Target { name: "linux_strict_read_4k_hyp_over_native", limit: 1.20, at_most: true },
    Target { name: "linux_strict_write_4k_hyp_over_native", limit: 1.20, at_most: true },
    Target { name: "linux_strict_read_4k_2dd_hyp_over_native", limit: 1.20, at_most: true },
    Target { name: "linux_strict_write_4k_2dd_hyp_over_native", limit: 1.20, at_most: true },
    Target { name: "linux_hyp_strict_read_4k_el2", limit: 4000.0, at_most: true },
    Target { name: "linux_hyp_strict_write_4k_el2", limit: 4000.0, at_most: true },
    Target { name: "linux_hyp_strict_read_4k_el2_2dd_over_1dd", limit: 1.10, at_most: true },
    Target { name: "linux_hyp_strict_write_4k_el2_2dd_over_1dd", limit: 1.10, at_most: true },
    Target { name: "linux_passthrough_read_4k_hyp_over_native", limit: 1.05, at_most: true },
    Target { name: "linux_passthrough_write_4k_hyp_over_native", limit: 1.05, at_most: true },
    Target { name: "linux_boot_hyp_over_native", limit: 1.10, at_most: true },
    Target { name: "pv_over_trap_el2_per_strict_io", limit: 0.60, at_most: true },
];

/// Parses the bench lines of a serial log.
pub fn parse(log: &str) -> Vec<Figure> {
    let mut out = Vec::new();
    for line in log.lines() {
        let Some(pos) = line.find("bench ") else { continue };
        let w: Vec<&str> = line[pos + 6..].split_whitespace().collect();
        if w.len() != 5 {
            continue;
        }
        let nums: Option<Vec<f64>> = w[1..4].iter().map(|s| s.parse().ok()).collect();
        if let Some(n) = nums {
            out.push(Figure {
                name: w[0].into(),
                value: n[0],
                min: n[1],
                max: n[2],
                unit: w[4].into(),
            });
        }
    }
    out
}

fn get(figs: &[Figure], name: &str) -> Option<f64> {
    figs.iter().find(|f| f.name == name).map(|f| f.value)
}

fn derived(name: &str, value: f64, unit: &str) -> Figure {
    Figure { name: name.into(), value, unit: unit.into(), min: value, max: value }
}

/// The ratio figure `name` = `num` over `den` (each a figure's name and value, if it exists),
/// into `ratios`; or into `missing`, saying which inputs it needs. Returns the two values used.
fn push_ratio(
    ratios: &mut Vec<Figure>,
    missing: &mut Vec<Unavailable>,
    name: String,
    (num, a): (&str, Option<f64>),
    (den, b): (&str, Option<f64>),
) -> Option<(f64, f64)> {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => {
            ratios.push(derived(&name, a / b, "x"));
            Some((a, b))
        }
        _ => {
            missing.push(Unavailable { name, why: format!("needs both {num} and {den}") });
            None
        }
    }
}

/// Adds the figures computed from others (each only when its inputs exist).
pub fn derive(figs: &mut Vec<Figure>) {
    if let (Some(b1), Some(b256)) = (get(figs, "inval_batch_1"), get(figs, "inval_batch_256")) {
        figs.push(derived("inval_marginal_per_cmd", (b256 - b1) / 255.0, "instructions"));
    }
    if let (Some(b256), Some(single)) =
        (get(figs, "inval_batch_256"), get(figs, "inval_256_single_calls"))
    {
        figs.push(derived("inval_batching_ratio", single / b256, "x"));
    }
    if let (Some(p1), Some(p64)) = (get(figs, "vsmmu_prod_1"), get(figs, "vsmmu_prod_64")) {
        figs.push(derived("vsmmu_prod_marginal_per_cmd", (p64 - p1) / 63.0, "instructions"));
    }
    if let (Some(r1), Some(r1000)) = (get(figs, "resume_1"), get(figs, "resume_1000")) {
        figs.push(derived("resume_1000_over_1", r1000 / r1, "x"));
    }
    if let (Some(on), Some(off)) = (get(figs, "inval_batch_16"), get(figs, "inval_batch_16_pm_off"))
    {
        figs.push(derived("pm_on_over_off_inval16", on / off, "x"));
    }
}

/// The main SMMU rows measured again with the SMMU forced non-coherent: SET_STE (identity,
/// nested), CLEAR_STE, INVALIDATE of 1, 16 and 256 commands, the emulated SMMU's PROD write
/// with 1 and 64 commands.
pub const NONCOHERENT_ROWS: [&str; 9] = [
    "set_ste_identity",
    "set_ste_nested",
    "clear_ste",
    "inval_batch_1",
    "inval_batch_16",
    "inval_batch_256",
    // With PM on, the bench's SMMU is suspended and INVALIDATE is elided (nothing to clean):
    // with PM off, each batch reaches the command queue and is cleaned.
    "inval_batch_16_pm_off",
    "vsmmu_prod_1",
    "vsmmu_prod_64",
];

/// Puts the non-coherent run's figure of each of [`NONCOHERENT_ROWS`] right after its coherent
/// one, as `NAME_noncoherent`, followed by their ratio `NAME_nc_over_c`.
pub fn beside(figs: &mut Vec<Figure>, noncoherent: &[Figure]) {
    for name in NONCOHERENT_ROWS {
        let (Some(at), Some(nc)) =
            (figs.iter().position(|f| f.name == name), noncoherent.iter().find(|f| f.name == name))
        else {
            continue;
        };
        let coherent = figs[at].value;
        let ratio = derived(
            &format!("{name}_nc_over_c"),
            if coherent != 0.0 { nc.value / coherent } else { f64::NAN },
            "x",
        );
        figs.insert(at + 1, Figure { name: format!("{name}_noncoherent"), ..nc.clone() });
        figs.insert(at + 2, ratio);
    }
}

/// "met", "NOT met" or "" for a figure without a target.
fn verdict(f: &Figure) -> (&'static str, Option<f64>) {
    match TARGETS.iter().find(|t| t.name == f.name) {
        None => ("", None),
        Some(t) => {
            let met = if t.at_most { f.value <= t.limit } else { f.value >= t.limit };
            (if met { "met" } else { "NOT met" }, Some(t.limit))
        }
    }
}

/// The JSON file (an array of flat objects; written by hand, no serde needed).
pub fn to_json(figs: &[Figure]) -> String {
    let mut s = String::from("[\n");
    for (i, f) in figs.iter().enumerate() {
        let (v, t) = verdict(f);
        let target = t.map_or("null".into(), |t| format!("{t}"));
        let pass = match v {
            "met" => "true",
            "NOT met" => "false",
            _ => "null",
        };
        let _ = write!(
            s,
            "  {{\"name\": \"{}\", \"value\": {}, \"unit\": \"{}\", \"min\": {}, \"max\": {}, \"target\": {target}, \"pass\": {pass}}}",
            f.name, f.value, f.unit, f.min, f.max
        );
        s.push_str(if i + 1 < figs.len() { ",\n" } else { "\n" });
    }
    s.push_str("]\n");
    s
}

/// [`to_json`], with a `"value": null` entry and the reason for every figure not measured.
pub fn to_json_with_missing(figs: &[Figure], missing: &[Unavailable]) -> String {
    let s = to_json(figs);
    if missing.is_empty() {
        return s;
    }
    // Reopen the array: drop the closing bracket.
    let mut s = s.trim_end().trim_end_matches(']').trim_end().to_string();
    for (i, m) in missing.iter().enumerate() {
        if !figs.is_empty() || i > 0 {
            s.push(',');
        }
        let why = m.why.replace('\\', "\\\\").replace('"', "\\\"");
        let _ = write!(s, "\n  {{\"name\": \"{}\", \"value\": null, \"why\": \"{why}\"}}", m.name);
    }
    s.push_str("\n]\n");
    s
}

/// Reads (name, value) pairs back from a file written by [`to_json`].
pub fn from_json(text: &str) -> Vec<(String, f64)> {
    let mut out = Vec::new();
    for line in text.lines() {
        let field = |key: &str| -> Option<&str> {
            let start = line.find(&format!("\"{key}\": "))? + key.len() + 4;
            let rest = &line[start..];
            let end = rest.find([',', '}']).unwrap_or(rest.len());
            Some(rest[..end].trim().trim_matches('"'))
        };
        if let (Some(n), Some(v)) = (field("name"), field("value").and_then(|v| v.parse().ok())) {
            out.push((n.to_string(), v));
        }
    }
    out
}

/// The table printed on the console.
pub fn table(figs: &[Figure], old: Option<&[(String, f64)]>) -> String {
    let mut s = format!(
        "{:<44} {:>12} {:>10} {:>10} {:<13} {:>9}  {}\n",
        "figure", "median", "min", "max", "unit", "target", ""
    );
    for f in figs {
        let (v, t) = verdict(f);
        let t = t.map_or(String::new(), |t| format!("{t}"));
        let _ = write!(
            s,
            "{:<44} {:>12.2} {:>10} {:>10} {:<13} {:>9}  {v}",
            f.name, f.value, f.min, f.max, f.unit, t
        );
        if let Some(o) = old.and_then(|o| o.iter().find(|(n, _)| *n == f.name)) {
            if o.1 != 0.0 {
                let _ = write!(s, "  ({:.3}x of before)", f.value / o.1);
            }
        }
        s.push('\n');
    }
    s
}

struct RunLog {
    log: String,
}

/// The hypercall figures: the bench image as every VM, with PM on, then off, then on with the
/// SMMU forced non-coherent, PM on and off (its main SMMU rows beside the coherent ones,
/// [`beside`]).
fn hypercalls(opts: &Opts, imgs: &images::Images) -> Result<Vec<Figure>, String> {
    let bench = imgs.guest("bench")?;
    let run = |append: &str| -> Result<(Vec<Figure>, String), String> {
        let launch = qemu::Launch {
            hyp: &imgs.hyp,
            guest: bench,
            host: qemu::Host::Bare,
            guest1: None,
            disk: &imgs.disk,
            null_disk: None,
            append: append.to_string(),
            extra: vec!["-icount".into(), "shift=0,align=off,sleep=off".into()],
            tag: "bench".into(),
            trace: false,
        };
        let out = qemu::run(&launch, opts, 600, opts.verbose)?;
        out.verdict()?;
        if !out.log.contains("bench done") {
            return Err(format!("the bench image did not finish; see {}", out.log_path.display()));
        }
        Ok((parse(&out.log).into_iter().filter(|f| f.name != "done").collect(), out.log))
    };
    // Main run: PM enabled, 1000 device-less streams for VM 0.
    let (mut figs, log) = run("bench_streams=1000 host_vsmmu=1")?;
    if opts.only.as_deref() == Some("smmu") {
        // The flood's figure is the manifest's host's (below), not that of this run's host
        // with 1000 device-less streams, each refreshed once per access: left out.
        figs.retain(|f| f.name != "vsmmu_flood_longest_access");
        derive(&mut figs);
        return Ok(figs);
    }
    // Baseline: PM disabled; only the invalidation fast path is taken from it.
    let (off, _) = run("pm=off host_vsmmu=1")?;
    // With PM off the batches are submitted (with PM on the bench's SMMU is suspended): one
    // command in memory and in registers, as a paravirtual driver's strict unmap sends it.
    for name in ["inval_batch_16", "inval_batch_1", "inval_inline_1"] {
        if let Some(f) = off.iter().find(|f| f.name == name) {
            figs.push(Figure { name: format!("{name}_pm_off"), ..f.clone() });
        }
    }
    // The flood's figure is the host's as the manifest makes it (its own streams, not the
    // main run's 1000 device-less ones: each access refreshes each host stream once).
    figs.retain(|f| f.name != "vsmmu_flood_longest_access");
    figs.extend(off.into_iter().filter(|f| f.name == "vsmmu_flood_longest_access"));
    // The main run again with the SMMU driven as non-coherent (`smmu_coherent=0`): the main
    // SMMU rows beside their coherent figures. QEMU's SMMU is coherent, so this measures the
    // cost of the non-coherent path's instructions (cleans, invalidates), not of the memory
    // traffic a real non-coherent SMMU would add.
    let (mut nc, _) =
        run(&format!("bench_streams=1000 host_vsmmu=1{}", crate::linux::smmu_option(false)))?;
    let (nc_off, _) = run(&format!("pm=off host_vsmmu=1{}", crate::linux::smmu_option(false)))?;
    if let Some(f) = nc_off.iter().find(|f| f.name == "inval_batch_16") {
        nc.push(Figure { name: "inval_batch_16_pm_off".into(), ..f.clone() });
    }
    beside(&mut figs, &nc);
    let out = RunLog { log };
    let hyp_elf = std::fs::read(&imgs.hyp).map_err(|e| e.to_string())?;
    let (file_bytes, mem_bytes) = elf::load_sizes(&hyp_elf)?;
    figs.push(derived("hyp_image_loaded_bytes", file_bytes as f64, "bytes"));
    figs.push(derived("hyp_image_memory_bytes", mem_bytes as f64, "bytes"));
    if let Some(n) = out.log.lines().find_map(|l| {
        l.split("heap after boot: ").nth(1)?.split_whitespace().next()?.parse::<f64>().ok()
    }) {
        figs.push(derived("heap_after_boot", n, "bytes"));
    }
    derive(&mut figs);
    Ok(figs)
}

/// Runs the benchmarks (`--only` one part).
pub fn run(opts: &Opts) -> Result<(), String> {
    let imgs = images::build(opts)?;
    let only = opts.only.as_deref();
    let mut figs = Vec::new();
    if only != Some("linux") && only != Some("guest") {
        figs = hypercalls(opts, &imgs)?;
    }
    let (mut missing, mut notes) = (Vec::new(), Vec::new());
    if only != Some("hypercalls") && only != Some("smmu") {
        // `--only guest`: the Linux guest's runs and the host's strict run under the
        // hypervisor they are compared with.
        let [native, guest] = linux_guest(opts, &imgs);
        let (linux_figs, m, n) = linux(opts, &imgs, only == Some("guest"));
        figs.extend(linux_figs);
        missing = m;
        notes = n;
        if let Ok(g) = &guest {
            if let Some(i) = &g.iommu {
                notes.push(format!("guest1: disk's IOMMU domain and command line: {i}"));
            }
            // Its driver's count against the hypervisor's (which also counts what the driver
            // made after its last reading: the fault poller's EVENT_READs while the lines are
            // printed).
            if let (Some(d), Some(h)) = (g.driver_calls, g.guest1_calls) {
                notes.push(format!(
                    "guest1: its driver counted {d} hypercalls by its last reading, the \
                     hypervisor {h} of guest1's over the whole run"
                ));
            }
        }
        let (g, m) = guest_figures(&native, &guest, &figs);
        figs.extend(g);
        missing.extend(m);
    }
    let old = match &opts.compare {
        Some(p) => Some(from_json(&std::fs::read_to_string(p).map_err(|e| format!("{p}: {e}"))?)),
        None => None,
    };
    println!("{}", table(&figs, old.as_deref()));
    for m in &missing {
        let target = TARGETS
            .iter()
            .find(|t| t.name == m.name)
            .map_or(String::new(), |t| format!(" (target {})", t.limit));
        println!("{:<44} not available ({}){target}", m.name, m.why);
    }
    for n in &notes {
        println!("note: {n}");
    }
    let dir = root().join("target/bench");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let path = dir.join("bench.json");
    std::fs::write(&path, to_json_with_missing(&figs, &missing)).map_err(|e| e.to_string())?;
    println!("written: {}", path.display());
    Ok(())
}

// ---- Linux: the host's I/O and boot under the hypervisor against native ----

/// The bench's disk: QEMU's `null-co` driver of this size (see [`qemu::Launch::null_disk`]).
const LINUX_DISK_SIZE: u64 = 8 << 20;

/// One `icount run dd` of one boot.
#[derive(Clone, Debug, PartialEq)]
pub struct IoSample {
    /// `read` or `write`.
    pub op: String,
    /// Blocks moved.
    pub blocks: u64,
    /// Instructions at every level, then at EL2, EL1, EL0.
    pub insns: [u64; 4],
    /// Virtual counter ticks over the same span (time: includes idle warps).
    pub cntvct: u64,
}

/// What one Linux bench boot printed.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LinuxRun {
    /// Virtual counter at userspace entry.
    pub boot: Option<u64>,
    /// The kernel's idle time at userspace entry (`/proc/uptime`, seconds).
    pub boot_idle: Option<String>,
    /// Why the I/O could not be measured.
    pub unavailable: Option<String>,
    /// The disk's IOMMU group type and the command line.
    pub iommu: Option<String>,
    /// The module's refusal (native runs).
    pub module: Option<String>,
    /// The samples, in order.
    pub samples: Vec<IoSample>,
    /// (op, SMMU commands, SYNCs, I/Os) over each op's runs, under the hypervisor.
    pub smmu: Vec<(String, u64, u64, u64)>,
    /// `/init` got to its end.
    pub done: bool,
    /// Every 4 KiB I/O `/init` made on the disk (`linuxbench ios N`).
    pub ios_total: Option<u64>,
    /// Under the hypervisor, from its closing line of the host's emulated-SMMU counters:
    /// trapped register accesses, CMDQ_PROD writes, CMDQ_CONS reads over the whole run.
    pub traps: Option<[u64; 3]>,
    /// A Linux guest1's paravirtual IOMMU driver: (op, hypercalls, INVALIDATE calls, I/Os)
    /// over each op's runs (its `hypercalls` and `invalidates` parameters before and after).
    pub hypercalls: Vec<(String, u64, u64, u64)>,
    /// The hypervisor's count of guest1's hypercalls over the whole run (its `vm guest1
    /// stopped (...) after N hypercalls` line).
    pub guest1_calls: Option<u64>,
    /// The driver's own count of its hypercalls at its last reading.
    pub driver_calls: Option<u64>,
    /// Lines that did not parse (an `icount` error, for instance).
    pub errors: Vec<String>,
}

fn num(w: &[&str], key: &str) -> Option<u64> {
    w.windows(2).find(|p| p[0] == key).and_then(|p| p[1].parse().ok())
}

impl LinuxRun {
    /// Reads the `linuxbench` lines of a log.
    pub fn parse(log: &str) -> Self {
        let mut r = LinuxRun::default();
        let mut last_sample = "";
        for line in log.lines() {
            if let Some((_, rest)) = line.split_once(crate::report::EMULATED_SMMU_COUNTERS) {
                let w: Vec<&str> = rest.split_whitespace().collect();
                let key = |k: &str| {
                    w.iter().find_map(|p| p.strip_prefix(k)?.strip_prefix('=')?.parse().ok())
                };
                if let (Some(a), Some(p), Some(c)) =
                    (key("accesses"), key("prod_writes"), key("cons_reads"))
                {
                    r.traps = Some([a, p, c]);
                }
                continue;
            }
            if let Some((_, rest)) = line.split_once("vm guest1 stopped (") {
                r.guest1_calls = rest
                    .split_once(" after ")
                    .and_then(|(_, n)| n.split_whitespace().next()?.parse().ok());
                continue;
            }
            let Some(at) = line.find("linuxbench ") else { continue };
            let rest = line[at + "linuxbench ".len()..].trim();
            let w: Vec<&str> = rest.split_whitespace().collect();
            match w.first().copied() {
                Some("boot") => {
                    r.boot = w.get(1).and_then(|v| v.parse().ok());
                    r.boot_idle = w.get(3).map(|s| s.to_string());
                }
                Some("done") => r.done = true,
                Some("ios") => r.ios_total = w.get(1).and_then(|v| v.parse().ok()),
                Some("unavailable") => r.unavailable = Some(rest["unavailable ".len()..].into()),
                Some("iommu") => r.iommu = Some(rest["iommu ".len()..].into()),
                Some("module") => r.module = Some(rest["module ".len()..].into()),
                Some("note") => r.errors.push(rest.into()),
                Some(what @ ("smmu" | "hypercalls")) => {
                    let v: Vec<Option<u64>> = w[2..].iter().map(|x| x.parse().ok()).collect();
                    let row = match v[..] {
                        [Some(a0), Some(b0), Some(a1), Some(b1), Some(ios)]
                            if a1 >= a0 && b1 >= b0 =>
                        {
                            if what == "hypercalls" {
                                r.driver_calls = Some(a1);
                            }
                            Some((w[1].to_string(), a1 - a0, b1 - b0, ios))
                        }
                        _ => None,
                    };
                    match (what, row) {
                        ("smmu", Some(row)) => r.smmu.push(row),
                        (_, Some(row)) => r.hypercalls.push(row),
                        // The guest's driver did not say (a missing parameter): not a figure.
                        ("hypercalls", None) => r.errors.push(rest.into()),
                        _ => {}
                    }
                }
                Some(op @ ("read" | "write" | "read2" | "write2")) => {
                    // Two runs never count the same instructions: a repeated line is the
                    // console's doing, and the samples can no longer be trusted to pair.
                    if rest == last_sample {
                        r.errors.push(format!("the console repeated a line: {rest}"));
                    }
                    last_sample = rest;
                    let sample = (|| {
                        Some(IoSample {
                            op: op.into(),
                            blocks: w.get(1)?.parse().ok()?,
                            insns: [
                                num(&w, "instructions")?,
                                num(&w, "el2")?,
                                num(&w, "el1")?,
                                num(&w, "el0")?,
                            ],
                            cntvct: num(&w, "cntvct")?,
                        })
                    })();
                    match sample {
                        Some(s) => r.samples.push(s),
                        None => r.errors.push(rest.into()),
                    }
                }
                _ => {}
            }
        }
        r
    }

    /// Per 4 KiB of `op`: for each pair of runs (N blocks, then 2N), (I(2N) - I(N)) / N, at
    /// every level and per level. `None` without a complete pair.
    pub fn per_block(&self, op: &str) -> Option<[Vec<f64>; 4]> {
        let s: Vec<&IoSample> = self.samples.iter().filter(|x| x.op == op).collect();
        let mut out: [Vec<f64>; 4] = Default::default();
        for pair in s.chunks_exact(2) {
            let (a, b) = (pair[0], pair[1]);
            if b.blocks != 2 * a.blocks || a.blocks == 0 {
                return None;
            }
            for (i, v) in out.iter_mut().enumerate() {
                v.push((b.insns[i] as f64 - a.insns[i] as f64) / a.blocks as f64);
            }
        }
        (!out[0].is_empty()).then_some(out)
    }
}

/// The I/O the bench's `/init` measures: the op of its `linuxbench OP BLOCKS ...` lines, and the
/// name of its figure (`linux_MACHINE_MODE_NAME`): one `dd`, then two at once (the blocks they
/// moved together).
pub const LINUX_OPS: [(&str, &str); 4] = [
    ("read", "read_4k"),
    ("write", "write_4k"),
    ("read2", "read_4k_2dd"),
    ("write2", "write_4k_2dd"),
];

/// Median, min and max of `v` (not empty).
pub fn summary(v: &[f64]) -> (f64, f64, f64) {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    let median =
        if v.len() % 2 == 1 { v[v.len() / 2] } else { (v[v.len() / 2 - 1] + v[v.len() / 2]) / 2.0 };
    (median, v[0], v[v.len() - 1])
}

/// A figure that could not be measured, and why.
#[derive(Clone, Debug, PartialEq)]
pub struct Unavailable {
    /// The figure's name.
    pub name: String,
    /// Why.
    pub why: String,
}

/// The Linux figures of the four boots: `runs` is (machine, mode, result of the boot).
pub fn linux_figures(
    runs: &[(&str, &str, Result<LinuxRun, String>)],
) -> (Vec<Figure>, Vec<Unavailable>, Vec<String>) {
    let mut figs = Vec::new();
    let mut missing = Vec::new();
    let mut notes = Vec::new();
    let why_of = |r: &Result<LinuxRun, String>| -> Option<String> {
        match r {
            Err(e) => Some(e.clone()),
            Ok(run) if run.unavailable.is_some() => run.unavailable.clone(),
            Ok(run) if !run.done => Some("the bench's /init did not finish".into()),
            Ok(run) if !run.errors.is_empty() => Some(run.errors.join("; ")),
            Ok(_) => None,
        }
    };
    for (machine, mode, r) in runs {
        let prefix = format!("linux_{machine}_{mode}");
        if let Ok(run) = r {
            if *mode == "strict" {
                match run.boot {
                    Some(b) => {
                        figs.push(derived(&format!("linux_{machine}_boot"), b as f64, "virtual-ns"))
                    }
                    None => missing.push(Unavailable {
                        name: format!("linux_{machine}_boot"),
                        why: "no boot line".into(),
                    }),
                }
                if let Some(idle) = run.boot_idle.as_deref().filter(|i| *i != "0.00") {
                    notes.push(format!("{machine}: the kernel was idle {idle} s before userspace"));
                }
            }
            if let Some(m) = &run.module {
                notes.push(format!("{machine} {mode}: {m}"));
            }
            if let Some(i) = &run.iommu {
                notes.push(format!("{machine} {mode}: disk's IOMMU domain and command line: {i}"));
            }
        }
        for (op, suffix) in LINUX_OPS {
            let name = format!("{prefix}_{suffix}");
            let per =
                r.as_ref().ok().filter(|_| why_of(r).is_none()).and_then(|run| run.per_block(op));
            let Some(per) = per else {
                missing.push(Unavailable {
                    name,
                    why: why_of(r).unwrap_or_else(|| format!("no complete pair of {op} runs")),
                });
                continue;
            };
            // Under the hypervisor, I/O that traps (SMMU commands) must show EL2 instructions:
            // if the PMU did not count EL2 (MDCR_EL2.HPMD set, say), the figure would be low.
            let smmu_cmds = r
                .as_ref()
                .ok()
                .and_then(|run| run.smmu.iter().find(|x| x.0 == op))
                .map_or(0, |x| x.1);
            if *machine == "hyp" && smmu_cmds > 0 && summary(&per[1]).0 <= 0.0 {
                missing.push(Unavailable {
                    name,
                    why: "the host's PMU counted no EL2 instruction although its I/O trapped \
                          (EL2 counting prohibited?)"
                        .into(),
                });
                continue;
            }
            let (m, lo, hi) = summary(&per[0]);
            figs.push(Figure {
                name: name.clone(),
                value: m,
                unit: "instructions".into(),
                min: lo,
                max: hi,
            });
            for (i, level) in [(1, "el2"), (2, "el1"), (3, "el0")] {
                if level == "el2" && *machine == "native" {
                    continue;
                }
                let (m, lo, hi) = summary(&per[i]);
                figs.push(Figure {
                    name: format!("{name}_{level}"),
                    value: m,
                    unit: "instructions".into(),
                    min: lo,
                    max: hi,
                });
            }
            if let Ok(run) = r {
                if let Some((_, c, sy, ios)) = run.smmu.iter().find(|x| x.0 == op) {
                    if *ios > 0 {
                        figs.push(derived(
                            &format!("{name}_smmu_commands"),
                            *c as f64 / *ios as f64,
                            "per-4k",
                        ));
                        figs.push(derived(
                            &format!("{name}_smmu_syncs"),
                            *sy as f64 / *ios as f64,
                            "per-4k",
                        ));
                    }
                }
            }
        }
    }
    // The ratios, wherever both sides exist.
    let mut ratios = Vec::new();
    for mode in ["strict", "passthrough"] {
        for (_, op) in LINUX_OPS {
            let name = format!("linux_{mode}_{op}_hyp_over_native");
            let (h, n) = (format!("linux_hyp_{mode}_{op}"), format!("linux_native_{mode}_{op}"));
            let (hv, nv) = (get(&figs, &h), get(&figs, &n));
            push_ratio(&mut ratios, &mut missing, name, (&h, hv), (&n, nv));
        }
    }
    // Trapped accesses to the emulated SMMU per 4 KiB I/O (over the whole run: the boot's few
    // hundred accesses are included, so these are upper bounds by a fraction of a percent).
    for (machine, mode, r) in runs {
        if let Ok(LinuxRun { traps: Some(t), ios_total: Some(ios), .. }) = r {
            if *machine == "hyp" && *ios > 0 {
                for (i, what) in ["traps", "prod_writes", "cons_reads"].iter().enumerate() {
                    figs.push(derived(
                        &format!("linux_hyp_{mode}_smmu_{what}_per_io"),
                        t[i] as f64 / *ios as f64,
                        "per-4k",
                    ));
                }
            }
        }
    }
    // The hypervisor's cost per 4 KiB with two dd's at once against one, in strict mode.
    for op in ["read", "write"] {
        let name = format!("linux_hyp_strict_{op}_4k_el2_2dd_over_1dd");
        let (two, one) =
            (format!("linux_hyp_strict_{op}_4k_2dd_el2"), format!("linux_hyp_strict_{op}_4k_el2"));
        let (tv, ov) = (get(&figs, &two), get(&figs, &one));
        push_ratio(&mut ratios, &mut missing, name, (&two, tv), (&one, ov));
    }
    let (h, n) = ("linux_hyp_boot", "linux_native_boot");
    let (hv, nv) = (get(&figs, h), get(&figs, n));
    push_ratio(&mut ratios, &mut missing, "linux_boot_hyp_over_native".into(), (h, hv), (n, nv));
    figs.extend(ratios);
    (figs, missing, notes)
}

// ---- A Linux guest1's I/O through the paravirtual IOMMU against the host's trap path ----

/// The Linux guest's figures: `guest` is guest1's bench run (its `[guest1] linuxbench` lines),
/// `native` the same kernel on QEMU alone with guest1's CPUs and RAM (one CPU, 128 MiB, the
/// host's bench `/init`), `figs` the figures so far (the host's strict run under the
/// hypervisor, for the paravirtual-over-trap ratio, when it was measured).
pub fn guest_figures(
    native: &Result<LinuxRun, String>,
    guest: &Result<LinuxRun, String>,
    figs: &[Figure],
) -> (Vec<Figure>, Vec<Unavailable>) {
    let mut out = Vec::new();
    let mut missing = Vec::new();
    let usable = |r: &Result<LinuxRun, String>| -> Result<LinuxRun, String> {
        match r {
            Err(e) => Err(e.clone()),
            Ok(run) if run.unavailable.is_some() => {
                Err(run.unavailable.clone().unwrap_or_default())
            }
            Ok(run) if !run.done => Err("the bench's /init did not finish".into()),
            Ok(run) if !run.errors.is_empty() => Err(run.errors.join("; ")),
            Ok(run) => Ok(run.clone()),
        }
    };
    let mut both = (0u64, 0u64, 0u64);
    for op in ["read", "write"] {
        let native_name = format!("linux_native_1cpu_strict_{op}_4k");
        match usable(native).and_then(|r| r.per_block(op).ok_or(format!("no pair of {op} runs"))) {
            Ok(per) => {
                let (m, lo, hi) = summary(&per[0]);
                out.push(Figure {
                    name: native_name,
                    value: m,
                    unit: "instructions".into(),
                    min: lo,
                    max: hi,
                });
            }
            Err(why) => missing.push(Unavailable { name: native_name, why }),
        }
        let name = format!("linux_guest_strict_{op}_4k");
        let run = match usable(guest) {
            Ok(run) => run,
            Err(why) => {
                missing.push(Unavailable { name, why });
                continue;
            }
        };
        let Some(per) = run.per_block(op) else {
            missing.push(Unavailable { name, why: format!("no complete pair of {op} runs") });
            continue;
        };
        let calls = run.hypercalls.iter().find(|x| x.0 == op);
        // The guest's INVALIDATEs enter EL2 on its CPU: a PMU that counted no EL2 instruction
        // there (EL2 counting prohibited on CPU 2) would make the figure meaningless.
        if calls.is_some_and(|c| c.2 > 0) && summary(&per[1]).0 <= 0.0 {
            missing.push(Unavailable {
                name,
                why: "guest1's PMU counted no EL2 instruction although its I/O made hypercalls \
                      (EL2 counting prohibited on its CPU?)"
                    .into(),
            });
            continue;
        }
        for (i, suffix) in [(0, ""), (1, "_el2_per_io"), (2, "_el1"), (3, "_el0")] {
            let (m, lo, hi) = summary(&per[i]);
            out.push(Figure {
                name: format!("{name}{suffix}"),
                value: m,
                unit: "instructions".into(),
                min: lo,
                max: hi,
            });
        }
        match calls {
            Some((_, c, inv, ios)) if *ios > 0 => {
                out.push(derived(
                    &format!("{name}_hypercalls_per_io"),
                    *c as f64 / *ios as f64,
                    "per-4k",
                ));
                out.push(derived(
                    &format!("{name}_invalidates_per_io"),
                    *inv as f64 / *ios as f64,
                    "per-4k",
                ));
                both = (both.0 + c, both.1 + inv, both.2 + ios);
            }
            _ => missing.push(Unavailable {
                name: format!("{name}_hypercalls_per_io"),
                why: "no `linuxbench hypercalls` line".into(),
            }),
        }
    }
    if both.2 > 0 {
        out.push(derived("linux_guest_hypercalls_per_io", both.0 as f64 / both.2 as f64, "per-4k"));
        out.push(derived(
            "linux_guest_invalidates_per_io",
            both.1 as f64 / both.2 as f64,
            "per-4k",
        ));
    }
    let mut ratios = Vec::new();
    for op in ["read", "write"] {
        let name = format!("linux_guest_strict_{op}_4k_guest_over_native");
        let (g, n) =
            (format!("linux_guest_strict_{op}_4k"), format!("linux_native_1cpu_strict_{op}_4k"));
        let (gv, nv) = (get(&out, &g), get(&out, &n));
        push_ratio(&mut ratios, &mut missing, name, (&g, gv), (&n, nv));
    }
    // The paravirtual path's EL2 instructions per strict 4 KiB I/O over the host's
    // trap-and-emulate path's (the host's strict run, one `dd`): per op, and over both.
    let mut sums = (0.0, 0.0, 0);
    for op in ["read", "write"] {
        let name = format!("pv_over_trap_el2_per_strict_{op}");
        let (g, h) = (
            format!("linux_guest_strict_{op}_4k_el2_per_io"),
            format!("linux_hyp_strict_{op}_4k_el2"),
        );
        let (gv, hv) = (get(&out, &g), get(figs, &h));
        if let Some((g, h)) = push_ratio(&mut ratios, &mut missing, name, (&g, gv), (&h, hv)) {
            sums = (sums.0 + g, sums.1 + h, sums.2 + 1);
        }
    }
    let name = "pv_over_trap_el2_per_strict_io".to_string();
    if sums.2 == 2 {
        ratios.push(derived(&name, sums.0 / sums.1, "x"));
    } else {
        missing.push(Unavailable {
            name,
            why: "needs the guest's and the host's strict read and write EL2 figures".into(),
        });
    }
    out.extend(ratios);
    (out, missing)
}

/// The Linux guest's runs: guest1's bench (the host powers off at once, guest2 too) and the
/// same kernel natively with guest1's CPUs and RAM.
fn linux_guest(opts: &Opts, imgs: &images::Images) -> [Result<LinuxRun, String>; 2] {
    let variant = crate::linux::Variant::Bench { passthrough: false };
    println!(
        "Linux bench: guest1 (paravirtual IOMMU), strict ({})",
        crate::linux::guest::bootargs(false)
    );
    let guest = linux_boot(opts, imgs, crate::linux::Variant::GuestBench, Machine::Guest1);
    if let Err(e) = &guest {
        println!("Linux bench: guest1: {e}");
    }
    println!("Linux bench: native with guest1's CPU and RAM, strict ({})", variant.bootargs());
    let native = linux_boot(opts, imgs, variant, Machine::NativeLike(crate::linux::guest::GUEST));
    if let Err(e) = &native {
        println!("Linux bench: native like guest1: {e}");
    }
    [native, guest]
}

/// Boots Linux four times (native and under the hypervisor, strict and passthrough); with
/// `strict_hyp_only`, only under the hypervisor in strict mode (the guest part's reference).
fn linux(
    opts: &Opts,
    imgs: &images::Images,
    strict_hyp_only: bool,
) -> (Vec<Figure>, Vec<Unavailable>, Vec<String>) {
    let mut runs = Vec::new();
    for passthrough in [false, true] {
        let variant = crate::linux::Variant::Bench { passthrough };
        let mode = if passthrough { "passthrough" } else { "strict" };
        for machine in ["native", "hyp"] {
            if strict_hyp_only && (passthrough || machine == "native") {
                continue;
            }
            println!("Linux bench: {machine}, {mode} ({})", variant.bootargs());
            let m = if machine == "hyp" { Machine::Hyp } else { Machine::NativeLike(0) };
            let r = linux_boot(opts, imgs, variant, m);
            if let Err(e) = &r {
                println!("Linux bench: {machine}, {mode}: {e}");
            }
            runs.push((machine, mode, r));
        }
    }
    let (figs, mut missing, notes) = linux_figures(&runs);
    if strict_hyp_only {
        // Only what the strict run under the hypervisor can give: the rest was not run.
        missing.retain(|m| m.name.starts_with("linux_hyp_strict"));
    }
    (figs, missing, notes)
}

/// Where a Linux bench boot runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Machine {
    /// As the host under the hypervisor.
    Hyp,
    /// On QEMU alone, with the CPUs and RAM of the manifest's VM of this index.
    NativeLike(usize),
    /// As guest1 under the hypervisor (the host's `/init` powers off at once).
    Guest1,
}

fn linux_boot(
    opts: &Opts,
    imgs: &images::Images,
    variant: crate::linux::Variant,
    machine: Machine,
) -> Result<LinuxRun, String> {
    let prepared = crate::linux::prepare(opts, variant)?;
    let (host, guest1) = match machine {
        Machine::Hyp => (qemu::Host::Linux(prepared.files.clone()), None),
        Machine::Guest1 => (
            qemu::Host::Linux(prepared.files.clone()),
            Some(crate::linux::guest::prepare_with(opts, &prepared.art, false, true)?),
        ),
        Machine::NativeLike(vm) => (
            qemu::Host::Native(qemu::NativeLinux {
                image: prepared.files.image.clone(),
                initrd: prepared.files.initrd.clone(),
                ram: platform::qemu_virt::MANIFEST.vms[vm].mem.size,
                cpus: platform::qemu_virt::MANIFEST.vms[vm].cpus.count,
            }),
            None,
        ),
    };
    let hyp = !matches!(machine, Machine::NativeLike(_));
    let launch = qemu::Launch {
        hyp: &imgs.hyp,
        guest: imgs.guest("bench")?,
        host,
        guest1,
        disk: &imgs.disk,
        null_disk: Some(LINUX_DISK_SIZE),
        append: if hyp { variant.hyp_append() } else { variant.bootargs() },
        // -seed: QEMU's random numbers (the kernel's seeds, RNDR) are the same every boot.
        // sleep=on: while every CPU waits for the disk, virtual time follows real time instead
        // of jumping to the next timer (with sleep=off each wait fired whatever timers came
        // next, adding their instructions to the I/O's). No instruction runs while idle either
        // way, and the figures are instruction counts (the PMU's), not virtual time.
        extra: ["-icount", "shift=0,align=off,sleep=on", "-seed", "1"].map(String::from).to_vec(),
        tag: match machine {
            Machine::Hyp => format!("{}-hyp", variant.tag()),
            Machine::Guest1 => variant.tag().to_string(),
            Machine::NativeLike(0) => format!("{}-native", variant.tag()),
            Machine::NativeLike(vm) => format!("{}-native-vm{vm}", variant.tag()),
        },
        trace: false,
    };
    let out = qemu::run(&launch, opts, 900, opts.verbose)?;
    if out.timed_out {
        return Err(format!(
            "QEMU timed out after {} s; see {}",
            out.timeout,
            out.log_path.display()
        ));
    }
    if hyp {
        out.verdict().map_err(|e| format!("{e}; see {}", out.log_path.display()))?;
    } else if !out.status.is_some_and(|s| s.success()) {
        return Err(format!("QEMU exited with {:?}; see {}", out.status, out.log_path.display()));
    }
    Ok(LinuxRun::parse(&out.log))
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = "[host] bench null_hypercall 278 278 280 instructions\n\
                       [host] bench inval_batch_1 1000 1000 1000 instructions\n\
                       [host] bench inval_batch_256 11200 11200 11200 instructions\n\
                       [host] bench inval_256_single_calls 256000 256000 256000 instructions\n\
                       [host] bench done\nnoise bench x\n";

    #[test]
    fn parse_derive_and_judge() {
        let mut f = parse(LOG);
        assert_eq!(f.len(), 4);
        assert_eq!(
            f[0],
            Figure {
                name: "null_hypercall".into(),
                value: 278.0,
                unit: "instructions".into(),
                min: 278.0,
                max: 280.0
            }
        );
        derive(&mut f);
        assert_eq!(get(&f, "inval_marginal_per_cmd"), Some(40.0));
        assert!((get(&f, "inval_batching_ratio").unwrap() - 22.857).abs() < 0.01);
        assert_eq!(verdict(&f[0]).0, "NOT met");
        assert_eq!(verdict(f.iter().find(|x| x.name == "inval_batching_ratio").unwrap()).0, "met");
        assert!(table(&f, None).contains("NOT met"));
    }

    #[test]
    fn non_coherent_rows_sit_beside_their_coherent_ones() {
        let mut f = parse(LOG);
        let nc =
            parse(&LOG.replace("inval_batch_1 1000 1000 1000", "inval_batch_1 1500 1400 1600"));
        beside(&mut f, &nc);
        let names: Vec<&str> = f.iter().map(|x| x.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "null_hypercall",
                "inval_batch_1",
                "inval_batch_1_noncoherent",
                "inval_batch_1_nc_over_c",
                "inval_batch_256",
                "inval_batch_256_noncoherent",
                "inval_batch_256_nc_over_c",
                "inval_256_single_calls",
            ],
            "only the listed rows, each right after its coherent figure"
        );
        assert_eq!((f[2].value, f[2].min, f[2].max), (1500.0, 1400.0, 1600.0));
        assert_eq!(get(&f, "inval_batch_1_nc_over_c"), Some(1.5));
        assert_eq!(get(&f, "inval_batch_256_nc_over_c"), Some(1.0));
        // A row the non-coherent run lacks is left alone.
        let mut g = parse(LOG);
        beside(&mut g, &[]);
        assert_eq!(g, parse(LOG));
    }

    const LINUX_LOG: &str = "[host] linuxbench boot 958740962 idle 0.00\n\
        [host] linuxbench iommu DMA console=ttyS0 iommu.strict=1\n\
        [host] linuxbench read 512 instructions 6000000 el2 1000000 el1 4000000 el0 1000000 cntvct 9\n\
        [host] linuxbench read 1024 instructions 11120000 el2 2024000 el1 7096000 el0 2000000 cntvct 9\n\
        [host] linuxbench read 512 instructions 6100000 el2 1000000 el1 4100000 el0 1000000 cntvct 9\n\
        [host] linuxbench read 1024 instructions 11300000 el2 2024000 el1 7276000 el0 2000000 cntvct 9\n\
        [host] linuxbench read 512 instructions 6000000 el2 1000000 el1 4000000 el0 1000000 cntvct 9\n\
        [host] linuxbench read 1024 instructions 11000000 el2 2024000 el1 6976000 el0 2000000 cntvct 9\n\
        [host] linuxbench smmu read 100 10 3172 1520 1536\n\
        [host] linuxbench write 512 icount: perf_event_open(instructions, cpu 0): No such device\n\
        [host] linuxbench done\n";

    #[test]
    fn linux_samples_pair_into_per_block_figures() {
        let r = LinuxRun::parse(LINUX_LOG);
        assert_eq!(r.boot, Some(958_740_962));
        assert_eq!(r.boot_idle.as_deref(), Some("0.00"));
        assert!(r.done && r.unavailable.is_none());
        assert_eq!(r.samples.len(), 6);
        assert_eq!(r.errors.len(), 1, "the icount error is kept: {:?}", r.errors);
        assert_eq!(r.smmu, vec![("read".to_string(), 3072, 1510, 1536)]);
        let per = r.per_block("read").unwrap();
        // (11.12M - 6M) / 512 = 10000, (11.3M - 6.1M) / 512 = 10156.25, (11M - 6M) / 512 = 9765.625
        assert_eq!(summary(&per[0]), (10000.0, 9765.625, 10156.25));
        assert_eq!(per[1], vec![2000.0; 3], "EL2 per block");
        assert!(r.per_block("write").is_none());
        let doubled = LinuxRun::parse(&format!("{LINUX_LOG}{}", LINUX_LOG.lines().nth(3).unwrap()));
        assert!(doubled.errors.iter().all(|e| !e.contains("repeated")), "not consecutive");
        let line = LINUX_LOG.lines().nth(2).unwrap();
        let doubled = LinuxRun::parse(&format!("{line}\n{line}\n"));
        assert!(doubled.errors.iter().any(|e| e.contains("the console repeated a line")));
        // Unpaired or wrongly paired samples give nothing.
        let odd = LinuxRun::parse(
            "linuxbench read 512 instructions 1 el2 0 el1 1 el0 0 cntvct 1\n\
             linuxbench read 512 instructions 2 el2 0 el1 2 el0 0 cntvct 1\n",
        );
        assert!(odd.per_block("read").is_none());
    }

    #[test]
    fn linux_figures_ratios_and_what_is_missing() {
        let native_log = LinuxRun::parse(&LINUX_LOG.replace(
            "linuxbench write 512 icount: perf_event_open(instructions, cpu 0): No such device\n",
            "",
        ));
        let native = native_log.clone();
        let mut hyp = native.clone();
        hyp.boot = Some(1_000_000_000);
        for s in hyp.samples.iter_mut() {
            s.insns[0] += s.blocks * 2000;
        }
        let runs = vec![
            ("native", "strict", Ok(native.clone())),
            ("hyp", "strict", Ok(hyp)),
            ("native", "passthrough", Ok(native)),
            ("hyp", "passthrough", Err("QEMU timed out".to_string())),
        ];
        let (figs, missing, _) = linux_figures(&runs);
        let v = |n: &str| get(&figs, n);
        assert_eq!(v("linux_native_strict_read_4k"), Some(10000.0));
        assert_eq!(v("linux_hyp_strict_read_4k"), Some(12000.0));
        assert_eq!(v("linux_strict_read_4k_hyp_over_native"), Some(1.2));
        assert_eq!(
            verdict(
                figs.iter().find(|f| f.name == "linux_strict_read_4k_hyp_over_native").unwrap()
            )
            .0,
            "met"
        );
        assert!((v("linux_boot_hyp_over_native").unwrap() - 1.0430).abs() < 0.001);
        assert!(v("linux_native_strict_read_4k_el2").is_none(), "no EL2 natively");
        assert_eq!(v("linux_hyp_strict_read_4k_el2"), Some(2000.0));
        assert_eq!(v("linux_hyp_strict_read_4k_smmu_commands"), Some(2.0));
        // Writes were never measured; the hypervisor's passthrough boot failed: said why.
        let why = |n: &str| missing.iter().find(|m| m.name == n).map(|m| m.why.clone());
        assert_eq!(why("linux_hyp_passthrough_read_4k").as_deref(), Some("QEMU timed out"));
        assert!(why("linux_passthrough_read_4k_hyp_over_native").unwrap().contains("needs both"));
        assert!(why("linux_native_strict_write_4k")
            .unwrap()
            .contains("no complete pair of write runs"));
        // A hypervisor run whose I/O trapped but whose PMU saw no EL2: not a figure.
        let mut blind = native_log.clone();
        for s in blind.samples.iter_mut() {
            s.insns[1] = 0;
        }
        let (f2, m2, _) = linux_figures(&[("hyp", "strict", Ok(blind))]);
        assert!(get(&f2, "linux_hyp_strict_read_4k").is_none());
        assert!(m2.iter().any(|m| m.name == "linux_hyp_strict_read_4k" && m.why.contains("EL2")));
        let json = to_json_with_missing(&figs, &missing);
        assert!(json.contains("\"name\": \"linux_hyp_passthrough_read_4k\", \"value\": null, \"why\": \"QEMU timed out\""));
        assert!(json.trim_end().ends_with(']') && !json.contains(",\n]"));
        assert_eq!(from_json(&json).len(), figs.len());
    }

    #[test]
    fn the_linux_script_measures_pairs() {
        let f = crate::initscript::bench_files(&["virtio_blk".to_string()]);
        let (s, p) = (f.init, &f.params);
        assert!(s.starts_with("#!/bin/sh\n"));
        assert!(
            s.contains("for n in $N $N2; do")
                && p.get("N") == Some("256")
                && p.get("N2") == Some("512")
        );
        // Each run measured by the shared library's `measure` (one dd, or two at once).
        let lib = crate::initscript::BENCH_LIB.text;
        assert!(s.contains("c=$(measure $op $n)") && f.libs.iter().any(|l| l.text == lib));
        assert!(lib.contains("icount run dd if=/dev/vda of=/dev/null bs=4096 count=\"$2\" iflag"));
        assert!(lib.contains("icount run dd if=/dev/zero of=/dev/vda bs=4096 count=\"$2\" oflag"));
        assert!(s.contains("insmod /lib/modules/$m.ko") && s.contains("for m in $MODULES;"));
        assert_eq!(p.get("MODULES"), Some("virtio_blk"));
        assert!(s.contains("g=$DISK_DEV/iommu_group/type"));
        assert!(p.get("DISK_DEV").is_some_and(|d| d.ends_with("0000:00:06.0")));
        assert!(s.trim_end().ends_with("done_"));
    }

    #[test]
    fn two_dds_and_the_traps_per_io() {
        let log = "[host] linuxbench read 256 instructions 6000000 el2 1000000 el1 4000000 el0 1000000 cntvct 9 cpus 2\n\
            [host] linuxbench read 512 instructions 11000000 el2 2000000 el1 7000000 el0 2000000 cntvct 9 cpus 2\n\
            [host] linuxbench read2 512 instructions 11000000 el2 2000000 el1 7000000 el0 2000000 cntvct 9 cpus 2\n\
            [host] linuxbench read2 1024 instructions 21000000 el2 4200000 el1 12800000 el0 4000000 cntvct 9 cpus 2\n\
            [host] linuxbench ios 2000\n\
            [host] linuxbench done\n\
            hyp: INFO  vm host: emulated SMMU counters: commands=26 accesses=9000 prod_writes=4000 cons_reads=10 x=1\n";
        let r = LinuxRun::parse(log);
        assert!(r.errors.is_empty(), "{:?}", r.errors);
        assert_eq!((r.ios_total, r.traps), (Some(2000), Some([9000, 4000, 10])));
        let (figs, _, _) = linux_figures(&[("hyp", "strict", Ok(r))]);
        let v = |n: &str| get(&figs, n);
        assert_eq!(v("linux_hyp_strict_read_4k"), Some(5000000.0 / 256.0));
        // Two dd's: (21M - 11M) / 512 blocks moved together.
        assert_eq!(v("linux_hyp_strict_read_4k_2dd"), Some(10000000.0 / 512.0));
        assert_eq!(v("linux_hyp_strict_read_4k_2dd_el2"), Some(2200000.0 / 512.0));
        let ratio = v("linux_hyp_strict_read_4k_el2_2dd_over_1dd").unwrap();
        assert!((ratio - (2200000.0 / 512.0) / (1000000.0 / 256.0)).abs() < 1e-9);
        assert_eq!(v("linux_hyp_strict_smmu_traps_per_io"), Some(4.5));
        assert_eq!(v("linux_hyp_strict_smmu_prod_writes_per_io"), Some(2.0));
        assert_eq!(v("linux_hyp_strict_smmu_cons_reads_per_io"), Some(0.005));
    }

    #[test]
    fn the_guest_against_native_and_the_host() {
        let guest_log = "[guest1] linuxbench boot 1000 idle 0.00\n\
            [guest1] linuxbench read 256 instructions 3000000 el2 500000 el1 2000000 el0 500000 cntvct 9 cpus 1\n\
            [guest1] linuxbench read 512 instructions 5560000 el2 1012000 el1 3548000 el0 1000000 cntvct 9 cpus 1\n\
            [guest1] linuxbench hypercalls read 100 40 5476 5416 5376\n\
            [guest1] linuxbench write 256 instructions 3000000 el2 500000 el1 2000000 el0 500000 cntvct 9 cpus 1\n\
            [guest1] linuxbench write 512 instructions 5816000 el2 1012000 el1 3804000 el0 1000000 cntvct 9 cpus 1\n\
            [guest1] linuxbench hypercalls write 5476 5416 10852 10792 5376\n\
            [guest1] linuxbench done\n";
        let guest = LinuxRun::parse(&format!(
            "{guest_log}hyp: INFO  vm guest1 stopped (SYSTEM_OFF) on cpu 2 after 10860 hypercalls, 0 injected faults\n"
        ));
        assert!(guest.errors.is_empty(), "{:?}", guest.errors);
        assert_eq!((guest.driver_calls, guest.guest1_calls), (Some(10852), Some(10860)));
        assert_eq!(guest.hypercalls[0], ("read".to_string(), 5376, 5376, 5376));
        let native =
            LinuxRun::parse(&guest_log.replace(" el2 500000 el1 2000000", " el2 0 el1 2500000"));
        let host = vec![
            derived("linux_hyp_strict_read_4k_el2", 4000.0, "instructions"),
            derived("linux_hyp_strict_write_4k_el2", 5000.0, "instructions"),
        ];
        let (f, missing) = guest_figures(&Ok(native), &Ok(guest.clone()), &host);
        assert!(missing.is_empty(), "{missing:?}");
        let v = |n: &str| get(&f, n).unwrap_or_else(|| panic!("{n}"));
        // (5.56M - 3M) / 256 = 10000; EL2 (1.012M - 0.5M) / 256 = 2000.
        assert_eq!(v("linux_guest_strict_read_4k"), 10000.0);
        assert_eq!(v("linux_guest_strict_read_4k_el2_per_io"), 2000.0);
        assert_eq!(v("linux_guest_strict_write_4k_el2_per_io"), 2000.0);
        assert_eq!(v("linux_native_1cpu_strict_read_4k"), 10000.0);
        assert_eq!(v("linux_guest_strict_read_4k_guest_over_native"), 1.0);
        assert_eq!(v("linux_guest_strict_read_4k_hypercalls_per_io"), 1.0);
        assert_eq!(v("linux_guest_hypercalls_per_io"), 1.0);
        assert_eq!(v("pv_over_trap_el2_per_strict_read"), 0.5);
        assert_eq!(v("pv_over_trap_el2_per_strict_write"), 0.4);
        // Over both: (2000 + 2000) / (4000 + 5000).
        assert!((v("pv_over_trap_el2_per_strict_io") - 4.0 / 9.0).abs() < 1e-12);
        let row = f.iter().find(|x| x.name == "pv_over_trap_el2_per_strict_io").unwrap();
        assert_eq!(verdict(row).0, "met");
        // Without the host's figures, or with a PMU blind to EL2: said why.
        let (_, m) = guest_figures(&Err("no".into()), &Ok(guest.clone()), &[]);
        assert!(m.iter().any(|x| x.name == "pv_over_trap_el2_per_strict_io"));
        assert!(m.iter().any(|x| x.name == "linux_native_1cpu_strict_read_4k" && x.why == "no"));
        let blind = LinuxRun::parse(&guest_log.replace(" el2 1012000 ", " el2 500000 "));
        let (f2, m2) = guest_figures(&Err("no".into()), &Ok(blind), &host);
        assert!(get(&f2, "linux_guest_strict_read_4k").is_none());
        assert!(m2.iter().any(|x| x.name == "linux_guest_strict_read_4k" && x.why.contains("EL2")));
        let bad =
            LinuxRun::parse(&guest_log.replace("hypercalls read 100 40", "hypercalls read - -"));
        assert!(!bad.errors.is_empty(), "a driver without its counters is not a figure");
    }

    #[test]
    fn json_round_trip_and_compare() {
        let f = parse(LOG);
        let back = from_json(&to_json(&f));
        assert_eq!(back[0], ("null_hypercall".to_string(), 278.0));
        assert_eq!(back.len(), 4);
        let t = table(&f, Some(&[("null_hypercall".to_string(), 139.0)]));
        assert!(t.contains("(2.000x of before)"));
    }
}
