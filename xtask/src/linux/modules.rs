//! The kernel modules the initramfs carries: found in the unpacked kernel package, their
//! dependencies read from each module's `.modinfo`, decompressed with `xz`.

use super::debs::Artifacts;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Kernel modules the initramfs carries (with their dependencies), decompressed.
pub const MODULES: &[&str] = &["virtio_blk", "uio_pci_generic"];

/// Module file name (`.ko.xz`) to module name: `-` and `_` are the same to the kernel.
fn module_name(file: &str) -> String {
    file.trim_end_matches(".xz").trim_end_matches(".ko").replace('-', "_")
}

fn find_modules(dir: &Path, out: &mut Vec<PathBuf>) {
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                find_modules(&p, out);
            } else if p.to_string_lossy().ends_with(".ko.xz") {
                out.push(p);
            }
        }
    }
}

/// The `depends=` list of a module's `.modinfo`.
pub fn module_depends(ko: &[u8]) -> Vec<String> {
    let key = b"\0depends=";
    let Some(at) = ko.windows(key.len()).position(|w| w == key) else { return Vec::new() };
    let rest = &ko[at + key.len()..];
    let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
    String::from_utf8_lossy(&rest[..end])
        .split(',')
        .filter(|s| !s.is_empty())
        .map(|s| s.replace('-', "_"))
        .collect()
}

fn xz_decompress(p: &Path) -> Result<Vec<u8>, String> {
    let out = Command::new("xz")
        .arg("-dc")
        .arg(p)
        .output()
        .map_err(|e| format!("cannot run xz (install xz-utils): {e}"))?;
    if !out.status.success() {
        return Err(format!("xz -dc {} failed", p.display()));
    }
    Ok(out.stdout)
}

/// The modules `wanted` and their dependencies, decompressed, dependencies first.
pub fn modules(art: &Artifacts, wanted: &[&str]) -> Result<Vec<(String, Vec<u8>)>, String> {
    let mut files = Vec::new();
    find_modules(&art.modules.join("kernel"), &mut files);
    let mut out: Vec<(String, Vec<u8>)> = Vec::new();
    fn add(
        name: &str,
        files: &[PathBuf],
        out: &mut Vec<(String, Vec<u8>)>,
        depth: usize,
    ) -> Result<(), String> {
        if out.iter().any(|(n, _)| n == name) {
            return Ok(());
        }
        if depth > 16 {
            return Err(format!("module dependency loop at {name}"));
        }
        let path = files
            .iter()
            .find(|p| module_name(&p.file_name().unwrap_or_default().to_string_lossy()) == name)
            .ok_or_else(|| format!("kernel module {name} not found in the kernel package"))?;
        let ko = xz_decompress(path)?;
        for dep in module_depends(&ko) {
            add(&dep, files, out, depth + 1)?;
        }
        out.push((name.to_string(), ko));
        Ok(())
    }
    for m in wanted {
        add(m, &files, &mut out, 0)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_module_dependencies() {
        let ko = b"\x7fELF...\0license=GPL\0depends=uio,foo-bar\0intree=Y\0";
        assert_eq!(module_depends(ko), ["uio", "foo_bar"]);
        assert!(module_depends(b"\0depends=\0").is_empty());
        assert!(module_depends(b"nothing").is_empty());
        assert_eq!(module_name("uio_pci_generic.ko.xz"), "uio_pci_generic");
        assert_eq!(module_name("virtio-blk.ko.xz"), "virtio_blk");
    }
}
