//! `cargo xtask mutants`: mutation testing of the hypervisor's safety code with cargo-mutants
//! (configuration in `.cargo/mutants.toml`), and `cargo xtask fuzz`: a longer run of the
//! hypercall fuzzer and the emulated-SMMU fuzzer than `cargo test` makes.
//!
//! A surviving mutant is either a gap in the tests or a change that cannot alter behaviour
//! (an equivalent mutant). The equivalent ones are listed, each with its reason, in
//! `hyp/mutants-equivalent.txt`; any other survivor fails the run.

use crate::tools::root;
use crate::Opts;
use std::process::Command;

/// cargo-mutants version this project was checked with.
const MUTANTS_VERSION: &str = "27.1.0";

fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

fn ensure_installed(opts: &Opts) -> Result<(), String> {
    let ok = Command::new(cargo())
        .args(["mutants", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if ok {
        return Ok(());
    }
    let args = ["install", "--locked", "cargo-mutants", "--version", MUTANTS_VERSION];
    println!("mutants: cargo-mutants is missing: cargo {}", args.join(" "));
    if opts.verbose {
        println!("+ {} {}", cargo(), args.join(" "));
    }
    let st = Command::new(cargo()).args(args).status().map_err(|e| e.to_string())?;
    if st.success() {
        Ok(())
    } else {
        Err(format!("installing cargo-mutants failed; run: cargo {}", args.join(" ")))
    }
}

/// A mutant's description without its line and column (which move with every edit).
pub fn key(line: &str) -> String {
    let mut parts = line.splitn(4, ':');
    let file = parts.next().unwrap_or("");
    let _line = parts.next();
    let _col = parts.next();
    format!("{file}:{}", parts.next().unwrap_or("").trim())
}

/// The equivalent mutants: `key # reason` lines.
pub fn equivalents(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let (k, why) = l.split_once(" # ")?;
            Some((k.trim().to_string(), why.trim().to_string()))
        })
        .collect()
}

/// The `exclude_globs` list of `.cargo/mutants.toml` (test code, never mutated), for a
/// `--file` run, which leaves the configuration out.
pub fn exclude_globs(config: &str) -> Vec<String> {
    globs(config, "exclude_globs")
}

/// The list of strings named `key` in `.cargo/mutants.toml`.
fn globs(config: &str, key: &str) -> Vec<String> {
    let Some(start) = config.find(key) else {
        return Vec::new();
    };
    let rest = &config[start..];
    let list = rest.find('[').and_then(|a| rest[a..].find(']').map(|b| &rest[a + 1..a + b]));
    list.unwrap_or("")
        .split(',')
        .map(|s| s.trim().trim_matches('"').to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

/// The host-facing filters: the model explorer (`smmu-model`) drives only the SMMU service and
/// never reaches them, so a `--file` run of one of them tests with the library's own tests
/// alone (running the model against each of their mutants would only add minutes).
const NOT_IN_MODEL: [&str; 5] = [
    "hyp/src/host/",
    "hyp/src/pci/",
    "hyp/src/dt.rs",
    "hyp/src/vm/psci.rs",
    "hyp/src/vm/inject.rs",
];

/// The packages whose tests judge the mutants of `file`.
pub fn test_packages(file: &str) -> &'static [&'static str] {
    if NOT_IN_MODEL.iter().any(|p| file.starts_with(p)) {
        &["hyp"]
    } else {
        &["hyp", "smmu-model"]
    }
}

/// The builds' RUSTFLAGS: the caller's and `--cfg mutants`, with which the driver's ordering
/// tokens can be made from nothing, so that cargo-mutants can take each barrier away on its own
/// and the tests must notice (`hyp/src/iommu/driver/order.rs`).
fn rustflags() -> String {
    match std::env::var("RUSTFLAGS") {
        Ok(f) if !f.trim().is_empty() => format!("{} --cfg mutants", f.trim()),
        _ => "--cfg mutants".into(),
    }
}

/// Runs cargo-mutants and judges the survivors.
pub fn run(opts: &Opts) -> Result<(), String> {
    ensure_installed(opts)?;
    let root = root();
    let out = root.join("target/mutants");
    let jobs = opts.jobs.unwrap_or(1).to_string();
    let mut args: Vec<String> =
        ["mutants", "--no-shuffle", "-j", &jobs, "-o"].map(String::from).to_vec();
    args.push(out.display().to_string());
    if let Some(f) = &opts.file {
        // Only this file: the configuration's globs would add the rest back.
        args.push("--no-config".into());
        for p in test_packages(f) {
            args.extend(["--test-package".into(), (*p).into()]);
        }
        let config = std::fs::read_to_string(root.join(".cargo/mutants.toml"))
            .map_err(|e| format!(".cargo/mutants.toml: {e}"))?;
        for e in exclude_globs(&config) {
            args.extend(["-e".into(), e]);
        }
        args.extend(["-f".into(), f.clone()]);
    }
    if opts.verbose {
        println!("+ RUSTFLAGS='{}' {} {}", rustflags(), cargo(), args.join(" "));
    }
    let start = std::time::Instant::now();
    // cargo-mutants exits non-zero when mutants survive: judged below.
    let _ = Command::new(cargo())
        .current_dir(&root)
        .env("RUSTFLAGS", rustflags())
        .args(&args)
        .status()
        .map_err(|e| e.to_string())?;
    let dir = out.join("mutants.out");
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap_or_default();
    let caught = read("caught.txt").lines().count();
    let missed: Vec<String> = read("missed.txt").lines().map(String::from).collect();
    let timeout = read("timeout.txt").lines().count();
    let unviable = read("unviable.txt").lines().count();
    let allowed = equivalents(
        &std::fs::read_to_string(root.join("hyp/mutants-equivalent.txt")).unwrap_or_default(),
    );
    let unexplained: Vec<&String> =
        missed.iter().filter(|m| !allowed.iter().any(|(k, _)| *k == key(m))).collect();
    let viable = caught + missed.len() + timeout;
    println!(
        "mutants: {caught} caught, {} missed ({} listed as equivalent), {timeout} timed out, {unviable} unviable, in {:.0} min",
        missed.len(),
        missed.len() - unexplained.len(),
        start.elapsed().as_secs_f64() / 60.0
    );
    if viable > 0 {
        println!(
            "mutation score: {:.1}% ({} of {viable} viable mutants caught or timed out; equivalent ones excluded: {:.1}%)",
            100.0 * (caught + timeout) as f64 / viable as f64,
            caught + timeout,
            100.0 * (caught + timeout) as f64 / (viable - (missed.len() - unexplained.len())).max(1) as f64
        );
    }
    for m in &unexplained {
        println!("missed: {m}");
    }
    if unexplained.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{} surviving mutant(s) neither caught nor listed in hyp/mutants-equivalent.txt",
            unexplained.len()
        ))
    }
}

/// A longer fuzzing run: `FUZZ_CASES` sequences for each fuzzer (every `fuzz::` test of the
/// hypervisor library: the hypercall boundary's, `hyp::hypercall_fuzz`, and the Linux host's emulated
/// SMMU's, `hyp::iommu::emulated::tests::fuzz`).
pub fn fuzz(opts: &Opts) -> Result<(), String> {
    let cases = opts.cases.unwrap_or(100_000);
    // `cargo test` always runs the same sequences; this run explores new ones, from a seed it
    // prints (or FUZZ_SEED's, to repeat a run).
    let seed = std::env::var("FUZZ_SEED").unwrap_or_else(|_| {
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH);
        format!("{:#x}", t.map(|d| d.as_nanos() as u64).unwrap_or(1))
    });
    println!(
        "fuzz: seed {seed} (FUZZ_SEED={seed} cargo xtask fuzz --cases {cases} repeats this run)"
    );
    let args = ["test", "--release", "-p", "hyp", "--lib", "fuzz::", "--", "--nocapture"];
    if opts.verbose {
        println!("+ FUZZ_CASES={cases} FUZZ_SEED={seed} {} {}", cargo(), args.join(" "));
    }
    let st = Command::new(cargo())
        .current_dir(root())
        .env("FUZZ_CASES", cases.to_string())
        .env("FUZZ_SEED", &seed)
        .args(args)
        .status()
        .map_err(|e| e.to_string())?;
    if st.success() {
        println!(
            "fuzz: {cases} random sequences for each fuzzer (hypercalls, emulated SMMU), seed {seed}, no property violated"
        );
        Ok(())
    } else {
        Err(format!(
            "the fuzzer found a violation with seed {seed} (the minimal failing sequence is printed above: add it to the corpus)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_run_excludes_what_the_configuration_excludes() {
        let config = std::fs::read_to_string(root().join(".cargo/mutants.toml")).unwrap();
        let e = exclude_globs(&config);
        for t in [
            "hyp/src/iommu/soft/fake.rs",
            "hyp/src/iommu/service/tests.rs",
            "hyp/src/iommu/emulated/tests/**/*.rs",
            "hyp/src/hypercall_fuzz.rs",
        ] {
            assert!(e.iter().any(|g| g == t), "{t} not in {e:?}");
        }
        assert!(e.iter().all(|g| g.starts_with("hyp/src/") && g.ends_with(".rs")), "{e:?}");
    }

    #[test]
    fn the_host_facing_filters_are_mutation_tested() {
        let config = std::fs::read_to_string(root().join(".cargo/mutants.toml")).unwrap();
        let e = globs(&config, "examine_globs");
        for f in [
            "hyp/src/host/**/*.rs",
            "hyp/src/pci/**/*.rs",
            "hyp/src/dt.rs",
            "hyp/src/vm/psci.rs",
            "hyp/src/vm/inject.rs",
            "hyp/src/iommu/**/*.rs",
        ] {
            assert!(e.iter().any(|g| g == f), "{f} not in {e:?}");
        }
        // Every glob names files that exist (a renamed file would silently drop out).
        for g in &e {
            let path = g.split("/**").next().unwrap();
            assert!(root().join(path).exists(), "{g}: {path} does not exist");
        }
    }

    #[test]
    fn the_model_tests_only_the_smmu_code() {
        assert_eq!(test_packages("hyp/src/vm/psci.rs"), ["hyp"]);
        assert_eq!(test_packages("hyp/src/host/pci_filter.rs"), ["hyp"]);
        assert_eq!(test_packages("hyp/src/iommu/service/power.rs"), ["hyp", "smmu-model"]);
        assert_eq!(test_packages("hyp/src/iommu/validate.rs"), ["hyp", "smmu-model"]);
        // The model reaches none of them: it uses no module of theirs.
        for f in std::fs::read_dir(root().join("hyp/model/src")).unwrap() {
            let text = std::fs::read_to_string(f.unwrap().path()).unwrap();
            for m in ["host", "pci", "dt", "vm::psci", "vm::inject"] {
                assert!(!text.contains(&format!("hyp::{m}")), "the model uses hyp::{m}");
            }
        }
    }

    #[test]
    fn survivors_are_matched_without_line_numbers() {
        let m = "hyp/src/iommu/pm.rs:42:9: replace == with != in decide";
        assert_eq!(key(m), "hyp/src/iommu/pm.rs:replace == with != in decide");
        let list = "# comment\nhyp/src/iommu/pm.rs:replace == with != in decide # both branches return the same\n";
        let e = equivalents(list);
        assert_eq!(e.len(), 1);
        assert_eq!(e[0].0, key(m));
        assert_eq!(e[0].1, "both branches return the same");
    }
}
