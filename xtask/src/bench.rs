//! `cargo xtask bench`: boots the bench image under `-icount shift=0,align=off,sleep=off`,
//! where the virtual counter advances one tick per executed instruction, and turns the
//! `bench NAME MEDIAN MIN MAX UNIT` lines VM 0 prints into a table with targets and
//! `target/bench/bench.json`. `--compare OLD.json` prints ratios against an earlier run.

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
        "{:<28} {:>12} {:>10} {:>10} {:<13} {:>9}  {}\n",
        "figure", "median", "min", "max", "unit", "target", ""
    );
    for f in figs {
        let (v, t) = verdict(f);
        let t = t.map_or(String::new(), |t| format!("{t}"));
        let _ = write!(
            s,
            "{:<28} {:>12.2} {:>10} {:>10} {:<13} {:>9}  {v}",
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

/// Runs the benchmarks.
pub fn run(opts: &Opts) -> Result<(), String> {
    let imgs = images::build(opts)?;
    let bench = imgs.guest("bench")?;
    let run = |append: &str| -> Result<(Vec<Figure>, String), String> {
        let launch = qemu::Launch {
            hyp: &imgs.hyp,
            guest: bench,
            host: qemu::Host::Bare,
            disk: &imgs.disk,
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
    // Baseline: PM disabled; only the invalidation fast path is taken from it.
    let (off, _) = run("pm=off host_vsmmu=1")?;
    if let Some(f) = off.into_iter().find(|f| f.name == "inval_batch_16") {
        figs.push(Figure { name: "inval_batch_16_pm_off".into(), ..f });
    }
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
    let old = match &opts.compare {
        Some(p) => Some(from_json(&std::fs::read_to_string(p).map_err(|e| format!("{p}: {e}"))?)),
        None => None,
    };
    println!("{}", table(&figs, old.as_deref()));
    let dir = root().join("target/bench");
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let path = dir.join("bench.json");
    std::fs::write(&path, to_json(&figs)).map_err(|e| e.to_string())?;
    println!("written: {}", path.display());
    Ok(())
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
    fn json_round_trip_and_compare() {
        let f = parse(LOG);
        let back = from_json(&to_json(&f));
        assert_eq!(back[0], ("null_hypercall".to_string(), 278.0));
        assert_eq!(back.len(), 4);
        let t = table(&f, Some(&[("null_hypercall".to_string(), 139.0)]));
        assert!(t.contains("(2.000x of before)"));
    }
}
