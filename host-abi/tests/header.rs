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

/// The `pub const NAME: TY` of `pub mod MODULE { ... }` in `src/FILE`.
fn consts_of(file: &str, module: &str, ty: &str) -> Vec<String> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src").join(file);
    let src = std::fs::read_to_string(&path).unwrap();
    let start = src.find(&format!("pub mod {module} {{")).unwrap_or_else(|| panic!("{module}"));
    src[start..]
        .lines()
        .skip(1)
        .take_while(|l| *l != "}")
        .filter_map(|l| l.trim().strip_prefix("pub const ")?.strip_suffix(";"))
        .filter_map(|l| Some(l.split_once(&format!(": {ty} "))?.0.to_string()))
        .collect()
}

#[test]
fn header_has_every_smmu_field_register_and_error() {
    let h = rendered();
    let mut checked = 0;
    for (module, prefix) in [("cmd", "CMD"), ("ste", "STE"), ("cd", "CD"), ("evt", "EVT")] {
        let names = consts_of("smmu/mod.rs", module, "Field");
        assert!(names.len() > 10, "{module}: {names:?}");
        for n in names {
            for part in ["WORD", "SHIFT", "MASK"] {
                let def = format!("#define SMMU_HYP_{prefix}_{n}_{part} ");
                assert!(h.contains(&def), "the header has no {def}");
            }
            checked += 1;
        }
    }
    for (module, ty, prefix) in [("off", "usize", "REG"), ("cerror", "u32", "CERROR")] {
        let names = consts_of("smmu/regs.rs", module, ty);
        assert!(names.len() > 3, "{module}: {names:?}");
        for n in names {
            let def = format!("#define SMMU_HYP_{prefix}_{n} ");
            assert!(h.contains(&def), "the header has no {def}");
            checked += 1;
        }
    }
    assert_eq!(checked, 23 + 34 + 45 + 11 + 36 + 4);
}

/// Compiles `body` (C11, after the header as rendered now) with the host's C compiler.
fn compiles_with_the_header(body: &str) {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("smmu_hyp_encodings");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("smmu_hyp.h"), rendered()).unwrap();
    let src = dir.join("encodings.c");
    std::fs::write(&src, format!("#include \"smmu_hyp.h\"\n{body}")).unwrap();
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let out = Command::new(&cc)
        .args(["-std=c11", "-Wall", "-Werror", "-fsyntax-only"])
        .arg(&src)
        .output()
        .unwrap_or_else(|e| panic!("cannot run C compiler `{cc}`: {e}"));
    assert!(
        out.status.success(),
        "{body}\ndoes not compile:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn c_macros_encode_as_the_rust_builders_do() {
    use host_abi::smmu::{Cd, Command as Cmd, EventRecord, Ste, SteConfig};
    let mut asserts = String::new();
    let mut check = |c: &str, rust: u64| {
        asserts += &format!("_Static_assert(({c}) == 0x{rust:016x}ull, \"{c}\");\n");
    };
    let prep = |f: &str, v: &str| format!("SMMU_HYP_FIELD_PREP(SMMU_HYP_{f}, {v})");
    let c = Cmd::cfgi_ste(0x1234);
    check(&format!("SMMU_HYP_OP_CFGI_STE | {}", prep("CMD_SID", "0x1234")), c.0[0]);
    check(&prep("CMD_LEAF", "1"), c.0[1]);
    check("SMMU_HYP_OP_CFGI_STE_RANGE", Cmd::cfgi_all().0[0]);
    check(&prep("CMD_RANGE", "31"), Cmd::cfgi_all().0[1]);
    let c = Cmd::tlbi_nh_va(2, 5, 0x1234_5000);
    check(
        &format!("SMMU_HYP_OP_TLBI_NH_VA | {} | {}", prep("CMD_VMID", "2"), prep("CMD_ASID", "5")),
        c.0[0],
    );
    check(&format!("{} | {}", prep("CMD_LEAF", "1"), prep("CMD_ADDR", "0x12345")), c.0[1]);
    check(
        &format!("SMMU_HYP_OP_TLBI_S12_VMALL | {}", prep("CMD_VMID", "2")),
        Cmd::tlbi_s12_vmall(2).0[0],
    );
    check("SMMU_HYP_OP_TLBI_EL2_ALL", Cmd::tlbi_el2_all().0[0]);
    check("SMMU_HYP_OP_SYNC", Cmd::sync().0[0]);
    let s = Ste::default().with_v(1).with_config(SteConfig::S1).with_s1_context_ptr(0x4600_1000);
    check(
        &format!(
            "{} | {} | (0x46001000ull & SMMU_HYP_STE_S1_CONTEXT_PTR_MASK)",
            prep("STE_V", "1"),
            prep("STE_CONFIG", "SMMU_HYP_STE_CONFIG_S1")
        ),
        s.0[0],
    );
    let cd = Cd::default().with_t0sz(25).with_ips(1).with_asid(7).with_v(1).with_aa64(1);
    check(
        &["CD_T0SZ, 25", "CD_IPS, 1", "CD_ASID, 7", "CD_V, 1", "CD_AA64, 1"]
            .map(|a| format!("SMMU_HYP_FIELD_PREP(SMMU_HYP_{a})"))
            .join(" | "),
        cd.0[0],
    );
    let e = EventRecord([0x0000_0018_0000_0010, 1 << 39, 0x5000, 0]);
    check("SMMU_HYP_FIELD_GET(SMMU_HYP_EVT_SID, 0x0000001800000010ull)", e.sid().into());
    check("SMMU_HYP_FIELD_GET(SMMU_HYP_EVT_TYPE, 0x0000001800000010ull)", e.event_type().into());
    check("SMMU_HYP_EVT_F_TRANSLATION", e.event_type().into());
    check("SMMU_HYP_FIELD_GET(SMMU_HYP_EVT_S2, 1ull << 39)", e.stage2().into());
    check("SMMU_HYP_EVT_S2_WORD", 1);
    compiles_with_the_header(&asserts);
}

/// `smmu_hyp_errno()`, compiled and run: each error's errno as `header::errno` says, 0 for a
/// success, `-EPROTO` for a code the header does not know.
#[test]
fn c_errno_mapping_is_the_one_table() {
    use host_abi::header::errno;
    use host_abi::HypError;
    let mut checks = String::from("\tif (smmu_hyp_errno(0) || smmu_hyp_errno(7)) return 1;\n");
    checks += "\tif (smmu_hyp_errno(-99) != -EPROTO) return 2;\n";
    for e in HypError::ALL {
        checks += &format!(
            "\tif (smmu_hyp_errno(SMMU_HYP_ERR_{}) != -{}) return 3;\n",
            e.name(),
            errno(e)
        );
    }
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("smmu_hyp_errno");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("smmu_hyp.h"), rendered()).unwrap();
    let src = dir.join("errno.c");
    std::fs::write(
        &src,
        format!("#include \"smmu_hyp.h\"\nint main(void)\n{{\n{checks}\treturn 0;\n}}\n"),
    )
    .unwrap();
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let bin = dir.join("errno");
    let out = Command::new(&cc)
        .args(["-std=c11", "-Wall", "-Werror", "-o"])
        .arg(&bin)
        .arg(&src)
        .output()
        .unwrap_or_else(|e| panic!("cannot run C compiler `{cc}`: {e}"));
    assert!(out.status.success(), "does not compile:\n{}", String::from_utf8_lossy(&out.stderr));
    let run = Command::new(&bin).status().unwrap();
    assert!(run.success(), "smmu_hyp_errno() disagrees with header::errno: {run}");
}
