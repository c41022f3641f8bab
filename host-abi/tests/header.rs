//! The committed C header must equal what the Rust definitions render, and must compile.

use std::path::PathBuf;
use std::process::Command;

fn rendered() -> String {
    let mut s = String::new();
    host_abi::header::render(&mut s).unwrap();
    s
}

fn header_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("include/smmu_hyp.h")
}

#[test]
fn committed_header_matches_rust_definitions() {
    let path = header_path();
    if std::env::var_os("SMMU_HYP_BLESS").is_some() {
        std::fs::write(&path, rendered()).unwrap();
    }
    let committed = std::fs::read_to_string(&path).expect("host-abi/include/smmu_hyp.h missing");
    assert!(
        committed == rendered(),
        "host-abi/include/smmu_hyp.h is out of date with the Rust ABI; \
         regenerate it with `SMMU_HYP_BLESS=1 cargo test -p host-abi --test header`"
    );
}

#[test]
fn header_compiles_with_its_static_asserts() {
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let out = Command::new(&cc)
        .args(["-std=c11", "-Wall", "-Werror", "-fsyntax-only", "-x", "c"])
        .arg(header_path())
        .output()
        .unwrap_or_else(|e| panic!("cannot run C compiler `{cc}`: {e}"));
    assert!(
        out.status.success(),
        "header does not compile:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
