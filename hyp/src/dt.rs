//! Reads the facts the hypervisor cross-checks from the flattened device tree QEMU passes
//! (memory, CPUs, PCIe ECAM and windows, SMMU, UART). The check itself is
//! [`platform::Board::check_against`].

use fdt::Fdt;
use platform::{DtFacts, MemRange};

/// Why the device tree could not be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DtError {
    /// Not a valid flattened device tree (bad magic, size or structure).
    Invalid,
}

impl core::fmt::Display for DtError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("no valid flattened device tree")
    }
}

/// Size of a DTB from its header (`totalsize`, big-endian at offset 4), if the magic is right.
pub fn blob_size(header: &[u8; 8]) -> Option<usize> {
    if header[0..4] != [0xd0, 0x0d, 0xfe, 0xed] {
        return None;
    }
    Some(u32::from_be_bytes([header[4], header[5], header[6], header[7]]) as usize)
}

fn first_reg(fdt: &Fdt<'_>, compatible: &str) -> Option<MemRange> {
    let node = fdt.find_compatible(&[compatible])?;
    let r = node.reg()?.next()?;
    Some(MemRange::new(r.starting_address as u64, r.size.unwrap_or(0) as u64))
}

/// The `eventq` and `gerror` SPIs of the `arm,smmu-v3` node: `interrupts` holds three cells
/// per interrupt (type 0 = SPI, number, flags), in the order of `interrupt-names`.
fn smmu_irqs(fdt: &Fdt<'_>) -> Option<platform::SmmuIrqs> {
    let node = fdt.find_compatible(&["arm,smmu-v3"])?;
    let cells = node.property("interrupts")?.value;
    let names = node.property("interrupt-names")?.value;
    let spi = |name: &str| -> Option<u32> {
        let i = names.split(|&b| b == 0).position(|n| n == name.as_bytes())?;
        let c = cells.get(i * 12..i * 12 + 12)?;
        (be_u32(&c[0..4]) == 0).then(|| be_u32(&c[4..8]))
    };
    Some(platform::SmmuIrqs { eventq: spi("eventq")?, gerror: spi("gerror")? })
}

fn be_u32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

fn be_u64(b: &[u8]) -> u64 {
    ((be_u32(&b[0..4]) as u64) << 32) | be_u32(&b[4..8]) as u64
}

/// PCI address-space codes (bits 25:24 of the first cell of a PCI address).
const PCI_SPACE_IO: u32 = 0b01;
/// 32-bit memory space.
const PCI_SPACE_MEM32: u32 = 0b10;

/// The window of a PCI host bridge `ranges` property in address space `space`: entries of
/// (3-cell PCI address, 2-cell CPU address, 2-cell size), as CPU address and size.
fn pci_window(ranges: &[u8], space: u32) -> Option<MemRange> {
    ranges.chunks_exact(28).find_map(|e| {
        let code = (be_u32(&e[0..4]) >> 24) & 3;
        (code == space).then(|| MemRange::new(be_u64(&e[12..20]), be_u64(&e[20..28])))
    })
}

/// Options for this run, from `/chosen/bootargs` (QEMU's `-append`), space separated:
/// `gbpa_reset=abort|bypass` (what the simulated SMMU power domain resets GBPA to; default
/// abort), `pm_inject=1` (let VMs inject power losses, for tests), `pm=off`,
/// `bench_streams=N` and `host_vsmmu=1` (benchmarks), `smmu_coherent=0|1`, `guests_off=1`
/// (the guests power off without waiting for the host).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BootOptions {
    /// GBPA after power-on (default: the board's `smmu_gbpa_reset`).
    pub gbpa_reset: platform::power::GbpaReset,
    /// Fault injection allowed.
    pub pm_inject: bool,
    /// Power management enabled (`pm=off` disables it: the benchmark's baseline).
    pub pm: bool,
    /// Extra device-less stream IDs for VM 0, from [`BENCH_STREAM_BASE`] (`bench_streams=N`).
    pub bench_streams: u32,
    /// A bare-metal host gets the emulated SMMU a Linux host gets (`host_vsmmu=1`: the
    /// benchmark measures its command path).
    pub host_vsmmu: bool,
    /// The SMMU is driven as coherent (default: the board's `smmu_coherent`;
    /// `smmu_coherent=0` forces the non-coherent path, cache maintenance and non-cacheable
    /// walks, on a coherent board; `smmu_coherent=1` on a non-coherent one is refused at boot
    /// unless the SMMU reports coherent access).
    pub smmu_coherent: bool,
    /// The guests power off once their own tests are done, without waiting for the host
    /// (`guests_off=1`: `BootInfo` flag `BOOT_FLAG_GUESTS_OFF`), so that the host runs on with
    /// every guest off.
    pub guests_off: bool,
}

/// First stream ID of the benchmark's device-less streams.
pub const BENCH_STREAM_BASE: u32 = 0x1000;

impl Default for BootOptions {
    fn default() -> Self {
        Self {
            gbpa_reset: platform::power::GbpaReset::Abort,
            pm_inject: false,
            pm: true,
            bench_streams: 0,
            host_vsmmu: false,
            smmu_coherent: true,
            guests_off: false,
        }
    }
}

impl BootOptions {
    /// Parses a bootargs string; unknown words are returned through `unknown`.
    pub fn parse(args: &str, unknown: &mut dyn FnMut(&str)) -> Self {
        Self::parse_for(args, platform::power::GbpaReset::Abort, true, unknown)
    }

    /// Parses a bootargs string over the board's defaults.
    pub fn parse_for(
        args: &str,
        board_gbpa_reset: platform::power::GbpaReset,
        board_coherent: bool,
        unknown: &mut dyn FnMut(&str),
    ) -> Self {
        let mut o =
            Self { gbpa_reset: board_gbpa_reset, smmu_coherent: board_coherent, ..Self::default() };
        for w in args.split_whitespace() {
            match w.split_once('=') {
                Some(("gbpa_reset", v)) => match platform::power::GbpaReset::parse(v) {
                    Some(r) => o.gbpa_reset = r,
                    None => unknown(w),
                },
                Some(("pm_inject", "1")) => o.pm_inject = true,
                Some(("pm_inject", "0")) => o.pm_inject = false,
                Some(("pm", "off")) => o.pm = false,
                Some(("pm", "on")) => o.pm = true,
                Some(("host_vsmmu", "1")) => o.host_vsmmu = true,
                Some(("smmu_coherent", "0")) => o.smmu_coherent = false,
                Some(("smmu_coherent", "1")) => o.smmu_coherent = true,
                Some(("guests_off", "1")) => o.guests_off = true,
                Some(("bench_streams", n)) => match n.parse::<u32>() {
                    Ok(n) if n <= 4096 => o.bench_streams = n,
                    _ => unknown(w),
                },
                _ => unknown(w),
            }
        }
        o
    }
}

/// `/chosen/bootargs`, if any.
pub fn bootargs(blob: &[u8]) -> Option<&str> {
    Fdt::new(blob).ok()?.chosen().bootargs()
}

/// Parses the DTB in `blob`.
pub fn parse(blob: &[u8]) -> Result<DtFacts, DtError> {
    let fdt = Fdt::new(blob).map_err(|_| DtError::Invalid)?;
    let memory = fdt
        .memory()
        .regions()
        .next()
        .map(|r| MemRange::new(r.starting_address as u64, r.size.unwrap_or(0) as u64));
    let pcie = fdt.find_compatible(&["pci-host-ecam-generic"]);
    let ranges = pcie.and_then(|n| n.property("ranges")).map(|p| p.value);
    Ok(DtFacts {
        memory,
        cpu_count: fdt.cpus().count() as u32,
        pcie_ecam: first_reg(&fdt, "pci-host-ecam-generic"),
        pcie_mmio32: ranges.and_then(|r| pci_window(r, PCI_SPACE_MEM32)),
        pcie_pio: ranges.and_then(|r| pci_window(r, PCI_SPACE_IO)),
        smmu: first_reg(&fdt, "arm,smmu-v3"),
        uart: first_reg(&fdt, "arm,pl011"),
        gic_its: first_reg(&fdt, "arm,gic-v3-its"),
        smmu_irqs: smmu_irqs(&fdt),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use platform::qemu_virt::{BOARD, QEMU_RAM_SIZE, RAM_BASE};

    /// The DTB QEMU 10.0 generates for the command line xtask uses
    /// (`-M virt,virtualization=on,gic-version=3,iommu=smmuv3,dumpdtb=...`, `-smp 4 -m 512M`).
    const QEMU_VIRT_DTB: &[u8] = include_bytes!("../testdata/qemu-virt.dtb");

    #[test]
    fn reads_qemu_virt_and_matches_the_board() {
        let facts = parse(QEMU_VIRT_DTB).unwrap();
        assert_eq!(facts.memory, Some(MemRange::new(RAM_BASE, QEMU_RAM_SIZE)));
        assert_eq!(facts.cpu_count, 4);
        assert_eq!(facts.smmu.unwrap().base, 0x0905_0000);
        assert_eq!(facts.uart.unwrap().base, 0x0900_0000);
        assert_eq!(facts.gic_its, Some(MemRange::new(0x0808_0000, 0x2_0000)));
        assert_eq!(facts.pcie_mmio32, Some(MemRange::new(0x1000_0000, 0x2eff_0000)));
        assert_eq!(facts.pcie_pio, Some(MemRange::new(0x3eff_0000, 0x1_0000)));
        assert_eq!(facts.smmu_irqs, Some(platform::SmmuIrqs { eventq: 74, gerror: 77 }));
        assert_eq!(BOARD.check_against(&facts), Ok(()));
    }

    #[test]
    fn boot_options() {
        use platform::power::GbpaReset;
        let mut bad = std::vec::Vec::new();
        let o = BootOptions::parse("gbpa_reset=bypass pm_inject=1 foo gbpa_reset=x", &mut |w| {
            bad.push(std::string::String::from(w))
        });
        assert_eq!(
            o,
            BootOptions {
                gbpa_reset: GbpaReset::Bypass,
                pm_inject: true,
                pm: true,
                bench_streams: 0,
                host_vsmmu: false,
                smmu_coherent: true,
                guests_off: false,
            }
        );
        assert!(BootOptions::parse("guests_off=1", &mut |_| {}).guests_off);
        assert!(!BootOptions::parse("guests_off=2", &mut |_| {}).guests_off);
        let o = BootOptions::parse("pm=off bench_streams=1000 host_vsmmu=1", &mut |_| {});
        assert!(!o.pm && o.host_vsmmu);
        assert_eq!(o.bench_streams, 1000);
        assert_eq!(bad, ["foo", "gbpa_reset=x"]);
        assert_eq!(BootOptions::parse("", &mut |_| {}), BootOptions::default());
    }

    /// The board's GBPA reset value is the default, the last word wins, and every word
    /// understood is not reported as unknown.
    #[test]
    fn boot_options_over_the_boards_defaults() {
        use platform::power::GbpaReset;
        let mut bad = std::vec::Vec::new();
        let mut note = |w: &str| bad.push(std::string::String::from(w));
        let o = BootOptions::parse_for("", GbpaReset::Bypass, true, &mut note);
        assert_eq!(o.gbpa_reset, GbpaReset::Bypass);
        assert!(o.smmu_coherent);
        // The board's coherency is the default; the option forces either way.
        assert!(!BootOptions::parse_for("", GbpaReset::Abort, false, &mut note).smmu_coherent);
        let o = BootOptions::parse_for("smmu_coherent=0", GbpaReset::Abort, true, &mut note);
        assert!(!o.smmu_coherent);
        let o = BootOptions::parse_for("smmu_coherent=1", GbpaReset::Abort, false, &mut note);
        assert!(o.smmu_coherent);
        let o = BootOptions::parse_for("gbpa_reset=abort", GbpaReset::Bypass, true, &mut note);
        assert_eq!(o.gbpa_reset, GbpaReset::Abort);
        let o = BootOptions::parse_for(
            "pm_inject=1 pm_inject=0 pm=off pm=on",
            GbpaReset::Abort,
            true,
            &mut note,
        );
        assert!(!o.pm_inject && o.pm);
        let o = BootOptions::parse_for(
            "bench_streams=4096 bench_streams=4097",
            GbpaReset::Abort,
            true,
            &mut note,
        );
        assert_eq!(o.bench_streams, 4096);
        assert_eq!(bad, ["bench_streams=4097"]);
    }

    /// `/chosen/bootargs` as QEMU's `-append` puts it there; none in a blob that is no tree.
    #[test]
    fn bootargs_come_from_chosen() {
        let mut w = vm_fdt::FdtWriter::new().unwrap();
        let root = w.begin_node("").unwrap();
        let c = w.begin_node("chosen").unwrap();
        w.property_string("bootargs", "gbpa_reset=bypass pm_inject=1").unwrap();
        w.end_node(c).unwrap();
        w.end_node(root).unwrap();
        let blob = w.finish().unwrap();
        assert_eq!(bootargs(&blob), Some("gbpa_reset=bypass pm_inject=1"));
        assert_eq!(bootargs(&[0u8; 64]), None);
    }

    /// A bridge window above 4 GiB is read with its high halves (CPU address and size).
    #[test]
    fn pci_windows_keep_their_high_halves() {
        #[rustfmt::skip]
        let cells: [u32; 14] = [
            0x0100_0000, 0, 0, 0, 0x3eff_0000, 0, 0x1_0000,
            0x0200_0000, 0x1, 0x2, 0x81, 0x2345_6789, 0x7f, 0x1000,
        ];
        let bytes: std::vec::Vec<u8> = cells.iter().flat_map(|c| c.to_be_bytes()).collect();
        assert_eq!(pci_window(&bytes, PCI_SPACE_IO), Some(MemRange::new(0x3eff_0000, 0x1_0000)));
        assert_eq!(
            pci_window(&bytes, PCI_SPACE_MEM32),
            Some(MemRange::new(0x81_2345_6789, 0x7f_0000_1000))
        );
        assert_eq!(pci_window(&bytes, 0b11), None);
    }

    #[test]
    fn rejects_garbage() {
        assert_eq!(parse(&[0u8; 64]), Err(DtError::Invalid));
        // What the boot's fatal message says.
        assert_eq!(std::format!("{}", DtError::Invalid), "no valid flattened device tree");
        let mut h = [0u8; 8];
        h.copy_from_slice(&QEMU_VIRT_DTB[..8]);
        assert_eq!(blob_size(&h), Some(QEMU_VIRT_DTB.len()));
        assert_eq!(blob_size(&[0; 8]), None);
    }
}
