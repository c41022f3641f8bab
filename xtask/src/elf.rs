//! Turns an AArch64 ELF64 executable into a flat image: every PT_LOAD segment placed at its
//! physical address minus the lowest one, file bytes followed by zeros up to its memory size.
//! (No objcopy is available here, and QEMU's loader needs a raw file to place one image at
//! several addresses.)

const PT_LOAD: u32 = 1;
const EM_AARCH64: u16 = 183;
/// Refuse images larger than this (a VM has 32 MiB).
const MAX_IMAGE: u64 = 16 << 20;

fn u16_at(b: &[u8], o: usize) -> Result<u16, String> {
    b.get(o..o + 2).map(|s| u16::from_le_bytes([s[0], s[1]])).ok_or_else(|| "truncated ELF".into())
}
fn u32_at(b: &[u8], o: usize) -> Result<u32, String> {
    b.get(o..o + 4)
        .map(|s| u32::from_le_bytes(s.try_into().unwrap()))
        .ok_or_else(|| "truncated ELF".into())
}
fn u64_at(b: &[u8], o: usize) -> Result<u64, String> {
    b.get(o..o + 8)
        .map(|s| u64::from_le_bytes(s.try_into().unwrap()))
        .ok_or_else(|| "truncated ELF".into())
}

/// The flat image of `elf`.
pub fn flatten(elf: &[u8]) -> Result<Vec<u8>, String> {
    if elf.get(0..4) != Some(b"\x7fELF") {
        return Err("not an ELF file".into());
    }
    if elf[4] != 2 || elf[5] != 1 {
        return Err("not a little-endian ELF64 file".into());
    }
    if u16_at(elf, 18)? != EM_AARCH64 {
        return Err("not an AArch64 ELF file".into());
    }
    let phoff = u64_at(elf, 32)? as usize;
    let phentsize = u16_at(elf, 54)? as usize;
    let phnum = u16_at(elf, 56)? as usize;
    let mut segs = Vec::new();
    for i in 0..phnum {
        let p = phoff + i * phentsize;
        if u32_at(elf, p)? != PT_LOAD {
            continue;
        }
        let offset = u64_at(elf, p + 8)?;
        let paddr = u64_at(elf, p + 24)?;
        let filesz = u64_at(elf, p + 32)?;
        let memsz = u64_at(elf, p + 40)?;
        if filesz > memsz || offset.checked_add(filesz).is_none_or(|e| e > elf.len() as u64) {
            return Err(format!("bad PT_LOAD segment {i}"));
        }
        if memsz > 0 {
            segs.push((paddr, offset, filesz, memsz));
        }
    }
    let base = segs.iter().map(|s| s.0).min().ok_or("no PT_LOAD segment")?;
    let end = segs.iter().map(|s| s.0 + s.3).max().unwrap_or(base);
    if end - base > MAX_IMAGE {
        return Err(format!("image spans {:#x} bytes", end - base));
    }
    let mut out = vec![0u8; (end - base) as usize];
    for (paddr, offset, filesz, _) in segs {
        let at = (paddr - base) as usize;
        out[at..at + filesz as usize]
            .copy_from_slice(&elf[offset as usize..(offset + filesz) as usize]);
    }
    Ok(out)
}

/// (bytes loaded from the file, bytes of memory occupied) over all PT_LOAD segments.
pub fn load_sizes(elf: &[u8]) -> Result<(u64, u64), String> {
    if elf.get(0..4) != Some(b"\x7fELF") {
        return Err("not an ELF file".into());
    }
    let phoff = u64_at(elf, 32)? as usize;
    let phentsize = u16_at(elf, 54)? as usize;
    let (mut file, mut mem) = (0, 0);
    for i in 0..u16_at(elf, 56)? as usize {
        let p = phoff + i * phentsize;
        if u32_at(elf, p)? == PT_LOAD {
            file += u64_at(elf, p + 32)?;
            mem += u64_at(elf, p + 40)?;
        }
    }
    Ok((file, mem))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal ELF64 with the given (paddr, data, memsz) PT_LOAD segments.
    fn make_elf(segs: &[(u64, &[u8], u64)], machine: u16) -> Vec<u8> {
        let phoff = 64usize;
        let data_off = phoff + 56 * segs.len();
        let mut e = vec![0u8; data_off];
        e[0..4].copy_from_slice(b"\x7fELF");
        e[4] = 2;
        e[5] = 1;
        e[18..20].copy_from_slice(&machine.to_le_bytes());
        e[32..40].copy_from_slice(&(phoff as u64).to_le_bytes());
        e[54..56].copy_from_slice(&56u16.to_le_bytes());
        e[56..58].copy_from_slice(&(segs.len() as u16).to_le_bytes());
        let mut off = data_off;
        for (i, (paddr, data, memsz)) in segs.iter().enumerate() {
            let p = phoff + i * 56;
            e[p..p + 4].copy_from_slice(&PT_LOAD.to_le_bytes());
            e[p + 8..p + 16].copy_from_slice(&(off as u64).to_le_bytes());
            e[p + 24..p + 32].copy_from_slice(&paddr.to_le_bytes());
            e[p + 32..p + 40].copy_from_slice(&(data.len() as u64).to_le_bytes());
            e[p + 40..p + 48].copy_from_slice(&memsz.to_le_bytes());
            off += data.len();
        }
        for (_, data, _) in segs {
            e.extend_from_slice(data);
        }
        e
    }

    #[test]
    fn segments_are_placed_and_bss_zeroed() {
        let elf = make_elf(&[(0x1000, b"abcd", 4), (0x1010, b"xy", 8)], EM_AARCH64);
        let flat = flatten(&elf).unwrap();
        assert_eq!(flat.len(), 0x18);
        assert_eq!(&flat[0..4], b"abcd");
        assert_eq!(&flat[4..0x10], &[0; 12]);
        assert_eq!(&flat[0x10..0x12], b"xy");
        assert_eq!(&flat[0x12..], &[0; 6]);
    }

    #[test]
    fn bad_inputs_are_refused() {
        assert!(flatten(b"nope").is_err());
        assert!(flatten(&make_elf(&[(0, b"a", 1)], 62)).unwrap_err().contains("AArch64"));
        assert!(flatten(&make_elf(&[], EM_AARCH64)).unwrap_err().contains("PT_LOAD"));
        let mut bad = make_elf(&[(0, b"abcd", 4)], EM_AARCH64);
        bad[64 + 32] = 0xff; // filesz beyond the file
        assert!(flatten(&bad).is_err());
    }
}
