//! The VM manifest: which VMs exist, their RAM and their CPUs.

use crate::{Board, MemRange};

/// Granule every VM memory range must be aligned to (2 MiB, so stage-2 can use blocks).
pub const VM_MEM_ALIGN: u64 = 2 << 20;
/// Size of the boot-info page at the top of each VM's RAM.
pub const BOOT_INFO_PAGE: u64 = 4096;
/// Largest number of VMs (bounded by the 64-bit `running_mask` of the ABI, and by the
/// hypervisor's one-bit-per-VM `u64` sets: the SMMU service's event and report masks, which
/// take `vm % 64` only to keep the shift defined).
pub const MAX_VMS: usize = 64;
/// Largest S1CDMax a VM's stage-1 STE may ask for (32 context descriptors), whatever the SMMU
/// supports.
pub const MAX_S1CDMAX: u8 = 5;
/// Bytes of shadow context descriptors the hypervisor keeps per stream: a whole CD table of the
/// largest size (64 bytes per CD).
pub const SHADOW_CD_BYTES_PER_STREAM: u64 = 64 << MAX_S1CDMAX;

/// Largest number of CPUs one VM may own (bounds the hypervisor's per-VM, per-CPU counters).
pub const MAX_VM_CPUS: u32 = 8;

/// The physical CPUs a VM owns: `count` consecutive linear indices from `first` (on `virt`,
/// index == `MPIDR.Aff0`). Consecutive, so that the VM's redistributor frames are one range
/// of the GIC's (a Linux host walks them as one region, `GICR_TYPER.Last` on its last CPU's).
/// Its first CPU is the one the hypervisor starts; the VM starts the others itself (PSCI
/// `CPU_ON`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cpus {
    /// The first (boot) CPU.
    pub first: u32,
    /// How many (1..=[`MAX_VM_CPUS`]).
    pub count: u32,
}

impl Cpus {
    /// CPU `cpu` alone.
    pub const fn one(cpu: u32) -> Self {
        Self { first: cpu, count: 1 }
    }

    /// `count` CPUs from `first`.
    pub const fn range(first: u32, count: u32) -> Self {
        Self { first, count }
    }

    /// Whether `cpu` is one of them.
    pub const fn contains(&self, cpu: u32) -> bool {
        cpu >= self.first && cpu - self.first < self.count
    }

    /// One past the last.
    pub const fn end(&self) -> u32 {
        self.first + self.count
    }

    /// Its place among them (0 for the first), if `cpu` is one of them.
    pub const fn index(&self, cpu: u32) -> Option<usize> {
        if self.contains(cpu) {
            Some((cpu - self.first) as usize)
        } else {
            None
        }
    }

    /// Whether the two sets share a CPU.
    pub const fn overlaps(&self, other: &Cpus) -> bool {
        self.first < other.end() && other.first < self.end()
    }

    /// The CPUs in ascending order.
    pub fn iter(&self) -> impl Iterator<Item = u32> {
        self.first..self.end()
    }
}

/// A PCI function on bus 0..255: its requester ID is its SMMU stream ID.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PciAddr {
    /// Bus number.
    pub bus: u8,
    /// Device (slot) number, 0..32.
    pub dev: u8,
    /// Function number, 0..8.
    pub func: u8,
}

impl PciAddr {
    /// Function `func` of device `dev` on bus 0.
    pub const fn slot(dev: u8, func: u8) -> Self {
        Self { bus: 0, dev, func }
    }

    /// The requester ID (bus << 8 | dev << 3 | func), which is the SMMU stream ID on `virt`.
    pub const fn rid(self) -> u32 {
        ((self.bus as u32) << 8) | ((self.dev as u32 & 0x1f) << 3) | (self.func as u32 & 7)
    }

    /// Whether the fields are in range.
    pub const fn is_valid(self) -> bool {
        self.dev < 32 && self.func < 8
    }
}

impl core::fmt::Display for PciAddr {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{:02x}:{:02x}.{}", self.bus, self.dev, self.func)
    }
}

/// One VM, as a manifest of this crate describes it: the only place a `VmSpec` can come from.
/// Outside this crate none can be written (the `sealed` field is private), copied (no `Clone`)
/// or changed (every one is reached through a shared reference into a manifest), so a
/// `&VmSpec` is one of the platform's VMs and what it says about that VM (its RAM above all)
/// is what the manifest says. Tests that need another shape of VM use the constructors behind
/// the `test-specs` feature.
///
/// ```
/// use platform::{qemu_virt::MANIFEST, VmSpec};
/// let g1: &'static VmSpec = &MANIFEST.vms[1];
/// assert_eq!((g1.id, g1.name), (1, "guest1"));
/// ```
///
/// None written outside this crate:
///
/// ```compile_fail
/// use platform::{MemRange, VmSpec};
/// let vm = VmSpec { id: 1, name: "x", mem: MemRange::new(0, 1 << 40), cpus: platform::Cpus::one(1), devices: &[] };
/// ```
///
/// none made from a manifest's either, by copy or by change:
///
/// ```compile_fail
/// let mut vm = platform::qemu_virt::MANIFEST.vms[1];
/// vm.mem = platform::MemRange::new(0, 1 << 40);
/// ```
///
/// ```compile_fail
/// let vm = platform::qemu_virt::MANIFEST.vms[1].clone();
/// ```
///
/// ```compile_fail
/// use platform::{qemu_virt::MANIFEST, MemRange, VmSpec};
/// let vm = VmSpec { mem: MemRange::new(0, 1 << 40), ..MANIFEST.vms[1] };
/// ```
#[derive(Debug, PartialEq, Eq)]
#[cfg_attr(test, derive(Clone))]
pub struct VmSpec {
    /// VM id; also its index in the manifest and its VMID + 1 (VMID 0 is never used for a VM).
    pub id: u32,
    /// Name for logs and the console prefix.
    pub name: &'static str,
    /// RAM, mapped at IPA == PA. The image is loaded at `mem.base` and entered there.
    pub mem: MemRange,
    /// The physical CPUs (linear indices, `MPIDR.Aff0` on `virt`) its vCPUs run on, one vCPU
    /// per CPU.
    pub cpus: Cpus,
    /// PCI functions assigned to this VM: their BARs are mapped in its stage-2 and their
    /// streams are its to attach.
    pub devices: &'static [PciAddr],
    /// Written only here.
    pub(crate) sealed: Sealed,
}

/// What keeps a [`VmSpec`] from being written outside this crate: a private field of a type
/// only this crate can name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Sealed;

impl VmSpec {
    /// A VM no manifest describes, for tests of code that takes a `VmSpec` (not for a
    /// hypervisor: its VMs come from its platform's manifest).
    #[cfg(any(test, feature = "test-specs"))]
    pub const fn for_tests(
        id: u32,
        name: &'static str,
        mem: MemRange,
        cpu: u32,
        devices: &'static [PciAddr],
    ) -> VmSpec {
        VmSpec { id, name, mem, cpus: Cpus::one(cpu), devices, sealed: Sealed }
    }

    /// This VM with other CPUs, for tests (see [`VmSpec::for_tests`]).
    #[cfg(any(test, feature = "test-specs"))]
    pub const fn with_cpus(&self, cpus: Cpus) -> VmSpec {
        VmSpec { cpus, ..*self }
    }

    /// This VM with other RAM, for tests (see [`VmSpec::for_tests`]).
    #[cfg(any(test, feature = "test-specs"))]
    pub const fn with_mem(&self, mem: MemRange) -> VmSpec {
        VmSpec { mem, ..*self }
    }

    /// Where the hypervisor writes the boot-info block: the last page of the VM's RAM.
    pub const fn boot_info_ipa(&self) -> u64 {
        self.mem.base + self.mem.size - BOOT_INFO_PAGE
    }

    /// The pages just below the boot-info page where the hypervisor keeps the shadow context
    /// descriptors of this VM's streams: part of its RAM at IPA == PA, so that its devices'
    /// stage 2 maps them (read-only) and the SMMU's CD fetches stay inside the VM's RAM, but
    /// absent from its CPU's stage 2 and never accepted as the VM's memory
    /// ([`VmSpec::holds`]). One table of [`SHADOW_CD_BYTES_PER_STREAM`] per PCI function (at
    /// least one), in whole pages.
    pub const fn shadow_cds(&self) -> MemRange {
        let streams = if self.devices.is_empty() { 1 } else { self.devices.len() as u64 };
        // Rounded up to whole pages with a mask (the page is a power of two): this is on the
        // path of every guest range checked ([`VmSpec::holds`]), where `div_ceil` cost a few
        // instructions more.
        const _: () = assert!(BOOT_INFO_PAGE.is_power_of_two());
        let size =
            (streams * SHADOW_CD_BYTES_PER_STREAM + BOOT_INFO_PAGE - 1) & !(BOOT_INFO_PAGE - 1);
        MemRange::new(self.boot_info_ipa() - size, size)
    }

    /// Whether `[ipa, ipa + len)` is memory the VM may hand the hypervisor: entirely inside its
    /// RAM and clear of its shadow CDs (a VM must never make the hypervisor read or write
    /// those as its own). Empty and wrapping ranges are not.
    pub const fn holds(&self, ipa: u64, len: u64) -> bool {
        if len == 0 || !self.mem.contains_range(ipa, len) {
            return false;
        }
        let s = self.shadow_cds();
        // Inside RAM (checked), so `ipa + len` does not wrap.
        ipa + len <= s.base || ipa >= s.end()
    }

    /// Entry point IPA: the first byte of RAM, where the image is loaded.
    pub const fn entry_ipa(&self) -> u64 {
        self.mem.base
    }

    /// Its first CPU: the one the hypervisor starts it on (what `BootInfo.cpu` and
    /// `VmInfo.cpu` say).
    pub const fn first_cpu(&self) -> u32 {
        self.cpus.first
    }

    /// The VMID of this VM's stage-2.
    pub const fn vmid(&self) -> u16 {
        self.id as u16 + 1
    }

    /// The PCI INTx lines its functions raise, as a mask of the board's four (bit `n`: the
    /// line of slot `n` modulo 4, INTA). Every function xtask attaches has one interrupt pin,
    /// INTA; a bridge without a root port wires slot `s`, pin A to line `s % 4` (the swizzle
    /// of `platform::linux::PCI_INTX_SPI_BASE`). The manifest refuses two VMs sharing a line,
    /// so each line has at most one owner, and only its owner may configure it in the
    /// distributor.
    pub const fn intx_lines(&self) -> u8 {
        let mut m = 0u8;
        let mut i = 0;
        while i < self.devices.len() {
            m |= 1 << (self.devices[i].dev % 4);
            i += 1;
        }
        m
    }
}

/// The list of VMs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Manifest {
    /// VMs in id order; VM 0 is the host.
    pub vms: &'static [VmSpec],
}

/// Why a manifest cannot be used on a board.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ManifestError {
    /// No VMs, or more than [`MAX_VMS`].
    Count(usize),
    /// VM at this index does not have id == index.
    Id(usize),
    /// VM memory is empty, misaligned, outside RAM, or overlaps the hypervisor.
    Memory(usize),
    /// Two VMs share memory.
    Overlap(usize, usize),
    /// VM's CPUs are none, too many, out of range or shared with another VM.
    Cpu(usize),
    /// A device of this VM is malformed or also assigned elsewhere.
    Device(usize),
    /// A PCI INTx line one of this VM's functions raises is also raised by another VM's (the
    /// line could not be given to one VM alone).
    Intx(usize),
}

impl core::fmt::Display for ManifestError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            ManifestError::Count(n) => write!(f, "manifest has {n} VMs (1..={MAX_VMS} allowed)"),
            ManifestError::Id(i) => write!(f, "VM at index {i} does not have id {i}"),
            ManifestError::Memory(i) => write!(
                f,
                "VM {i}: memory empty, not 2 MiB aligned, outside RAM or inside the hypervisor"
            ),
            ManifestError::Overlap(a, b) => write!(f, "VMs {a} and {b} share memory"),
            ManifestError::Cpu(i) => {
                write!(f, "VM {i}: CPUs none, more than {MAX_VM_CPUS}, out of range or not its own")
            }
            ManifestError::Device(i) => {
                write!(f, "VM {i}: a PCI device is malformed or assigned to two VMs")
            }
            ManifestError::Intx(i) => {
                write!(f, "VM {i}: a PCI INTx line its functions raise is another VM's too")
            }
        }
    }
}

impl Manifest {
    /// Checks the manifest against a board with `ram` of RAM.
    pub fn validate(&self, board: &Board, ram: MemRange) -> Result<(), ManifestError> {
        let n = self.vms.len();
        if n == 0 || n > MAX_VMS {
            return Err(ManifestError::Count(n));
        }
        for (i, vm) in self.vms.iter().enumerate() {
            if vm.id as usize != i {
                return Err(ManifestError::Id(i));
            }
            let m = vm.mem;
            if m.size < 2 * BOOT_INFO_PAGE
                || m.base % VM_MEM_ALIGN != 0
                || m.size % VM_MEM_ALIGN != 0
                || !ram.contains_range(m.base, m.size)
                || m.overlaps(&board.hyp)
            {
                return Err(ManifestError::Memory(i));
            }
            let c = vm.cpus;
            if c.count == 0
                || c.count > MAX_VM_CPUS
                || c.first.checked_add(c.count).is_none_or(|e| e > board.cpu_count)
            {
                return Err(ManifestError::Cpu(i));
            }
            for (k, d) in vm.devices.iter().enumerate() {
                let dup_here = vm.devices[..k].contains(d);
                let dup_before = self.vms[..i].iter().any(|o| o.devices.contains(d));
                if !d.is_valid() || dup_here || dup_before {
                    return Err(ManifestError::Device(i));
                }
            }
            for (j, other) in self.vms[..i].iter().enumerate() {
                if other.mem.overlaps(&m) {
                    return Err(ManifestError::Overlap(j, i));
                }
                if other.cpus.overlaps(&vm.cpus) {
                    return Err(ManifestError::Cpu(i));
                }
                if other.intx_lines() & vm.intx_lines() != 0 {
                    return Err(ManifestError::Intx(i));
                }
            }
        }
        Ok(())
    }

    /// The VM that owns physical CPU `cpu`, if any.
    pub fn vm_on_cpu(&self, cpu: u32) -> Option<&'static VmSpec> {
        self.vms.iter().find(|vm| vm.cpus.contains(cpu))
    }

    /// The VM a PCI function is assigned to, if any.
    pub fn owner_of_device(&self, addr: PciAddr) -> Option<&'static VmSpec> {
        self.vms.iter().find(|vm| vm.devices.contains(&addr))
    }

    /// The VM whose RAM contains `[addr, addr + len)`, if any.
    pub fn owner_of(&self, addr: u64, len: u64) -> Option<&'static VmSpec> {
        self.vms.iter().find(|vm| vm.mem.contains_range(addr, len))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::qemu_virt::{BOARD, MANIFEST, QEMU_RAM_SIZE, RAM_BASE};
    use crate::Board;

    const RAM: MemRange = MemRange::new(RAM_BASE, QEMU_RAM_SIZE);

    #[test]
    fn qemu_manifest_is_valid() {
        assert_eq!(MANIFEST.validate(&BOARD, RAM), Ok(()));
        assert!(MANIFEST.vms.len() >= 3, "host plus at least two guests");
        assert_eq!(MANIFEST.vms[0].name, "host");
        assert!(RAM_BASE + BOARD.ram_min_size >= MANIFEST.vms.last().unwrap().mem.end());
    }

    extern crate std;

    fn check(vms: &[VmSpec]) -> Result<(), ManifestError> {
        let vms = std::vec::Vec::from(vms).leak();
        Manifest { vms }.validate(&BOARD, RAM)
    }

    #[test]
    fn bad_manifests_are_refused() {
        const M: u64 = 2 << 20;
        assert_eq!(check(&[]), Err(ManifestError::Count(0)));
        assert_eq!(
            check(&[VmSpec {
                id: 1,
                name: "x",
                mem: MemRange::new(0x4400_0000, M),
                cpus: Cpus::one(0),
                devices: &[],
                sealed: Sealed,
            }]),
            Err(ManifestError::Id(0))
        );
        // Inside the hypervisor's memory.
        assert_eq!(
            check(&[VmSpec {
                id: 0,
                name: "x",
                mem: MemRange::new(0x4000_0000, M),
                cpus: Cpus::one(0),
                devices: &[],
                sealed: Sealed,
            }]),
            Err(ManifestError::Memory(0))
        );
        // Misaligned.
        assert_eq!(
            check(&[VmSpec {
                id: 0,
                name: "x",
                mem: MemRange::new(0x4410_0000, M),
                cpus: Cpus::one(0),
                devices: &[],
                sealed: Sealed,
            }]),
            Err(ManifestError::Memory(0))
        );
        // Outside RAM.
        assert_eq!(
            check(&[VmSpec {
                id: 0,
                name: "x",
                mem: MemRange::new(0x8000_0000, M),
                cpus: Cpus::one(0),
                devices: &[],
                sealed: Sealed,
            }]),
            Err(ManifestError::Memory(0))
        );
        assert_eq!(
            check(&[
                VmSpec {
                    id: 0,
                    name: "a",
                    mem: MemRange::new(0x4400_0000, 2 * M),
                    cpus: Cpus::one(0),
                    devices: &[],
                    sealed: Sealed,
                },
                VmSpec {
                    id: 1,
                    name: "b",
                    mem: MemRange::new(0x4420_0000, M),
                    cpus: Cpus::one(1),
                    devices: &[],
                    sealed: Sealed,
                },
            ]),
            Err(ManifestError::Overlap(0, 1))
        );
        assert_eq!(
            check(&[
                VmSpec {
                    id: 0,
                    name: "a",
                    mem: MemRange::new(0x4400_0000, M),
                    cpus: Cpus::one(1),
                    devices: &[],
                    sealed: Sealed,
                },
                VmSpec {
                    id: 1,
                    name: "b",
                    mem: MemRange::new(0x4600_0000, M),
                    cpus: Cpus::one(1),
                    devices: &[],
                    sealed: Sealed,
                },
            ]),
            Err(ManifestError::Cpu(1))
        );
        assert_eq!(
            check(&[VmSpec {
                id: 0,
                name: "a",
                mem: MemRange::new(0x4400_0000, M),
                cpus: Cpus::one(7),
                devices: &[],
                sealed: Sealed,
            }]),
            Err(ManifestError::Cpu(0))
        );
    }

    /// The host owns CPUs 0 and 1, each guest one of its own; every CPU of the board is
    /// someone's.
    #[test]
    fn qemu_cpu_layout() {
        let [host, g1, g2] = [&MANIFEST.vms[0], &MANIFEST.vms[1], &MANIFEST.vms[2]];
        assert_eq!(host.cpus, Cpus::range(0, 2));
        assert_eq!(host.first_cpu(), 0);
        assert_eq!((g1.cpus, g2.cpus), (Cpus::one(2), Cpus::one(3)));
        let owned: u32 = MANIFEST.vms.iter().map(|v| v.cpus.count).sum();
        assert_eq!(owned, BOARD.cpu_count, "every CPU of the board belongs to one VM");
    }

    #[test]
    fn cpu_sets() {
        let c = Cpus::range(2, 3);
        assert_eq!(c.iter().collect::<std::vec::Vec<_>>(), [2, 3, 4]);
        assert!(!c.contains(1) && c.contains(2) && c.contains(4) && !c.contains(5));
        assert_eq!(
            (c.index(2), c.index(4), c.index(5), c.index(0)),
            (Some(0), Some(2), None, None)
        );
        assert_eq!(c.end(), 5);
        assert!(c.overlaps(&Cpus::one(4)) && c.overlaps(&Cpus::range(0, 3)));
        assert!(!c.overlaps(&Cpus::range(0, 2)) && !c.overlaps(&Cpus::one(5)));
        assert!(!Cpus::one(u32::MAX).contains(0));
    }

    /// CPU sets that are empty, too large, past the board's CPUs or shared are refused.
    #[test]
    fn bad_cpu_sets_are_refused() {
        const M: u64 = 2 << 20;
        let vm = |id: u32, base: u64, cpus: Cpus| VmSpec {
            id,
            name: "x",
            mem: MemRange::new(base, M),
            cpus,
            devices: &[],
            sealed: Sealed,
        };
        let two = |a: Cpus, b: Cpus| check(&[vm(0, 0x4400_0000, a), vm(1, 0x4600_0000, b)]);
        assert_eq!(two(Cpus::range(0, 2), Cpus::one(2)), Ok(()));
        assert_eq!(two(Cpus::range(0, 2), Cpus::one(1)), Err(ManifestError::Cpu(1)), "shared");
        assert_eq!(two(Cpus::one(1), Cpus::range(0, 2)), Err(ManifestError::Cpu(1)), "shared");
        assert_eq!(two(Cpus::range(0, 0), Cpus::one(2)), Err(ManifestError::Cpu(0)), "none");
        assert_eq!(two(Cpus::range(0, 5), Cpus::one(2)), Err(ManifestError::Cpu(0)), "past");
        assert_eq!(two(Cpus::one(0), Cpus::range(3, 2)), Err(ManifestError::Cpu(1)), "past");
        assert_eq!(two(Cpus::one(0), Cpus::range(u32::MAX, 2)), Err(ManifestError::Cpu(1)));
        let many = Board { cpu_count: 64, ..BOARD };
        let vms = std::vec![vm(0, 0x4400_0000, Cpus::range(0, MAX_VM_CPUS + 1))].leak();
        assert_eq!(Manifest { vms }.validate(&many, RAM), Err(ManifestError::Cpu(0)), "too many");
        let vms = std::vec![vm(0, 0x4400_0000, Cpus::range(0, MAX_VM_CPUS))].leak();
        assert_eq!(Manifest { vms }.validate(&many, RAM), Ok(()));
    }

    #[test]
    fn shadow_cds_sit_below_the_boot_info_page_and_are_not_the_vms() {
        let [host, g1, _] = [&MANIFEST.vms[0], &MANIFEST.vms[1], &MANIFEST.vms[2]];
        // Three functions of 2 KiB each: two pages; two functions: one page.
        assert_eq!(host.shadow_cds(), MemRange::new(host.mem.end() - 0x3000, 0x2000));
        assert_eq!(g1.shadow_cds(), MemRange::new(0x5bff_e000, 0x1000));
        assert_eq!(g1.shadow_cds().end(), g1.boot_info_ipa());
        let s = g1.shadow_cds();
        assert!(g1.holds(g1.mem.base, s.base - g1.mem.base), "everything below it");
        assert!(g1.holds(g1.boot_info_ipa(), BOOT_INFO_PAGE), "the boot-info page");
        for (ipa, len) in [
            (s.base, 64),
            (s.base - 8, 16),
            (s.end() - 8, 16),
            (s.base - 64, 0x2000),
            (g1.mem.base, g1.mem.size),
            (s.end() - 1, 1),
            (g1.mem.end(), 1),
            (g1.mem.base, 0),
        ] {
            assert!(!g1.holds(ipa, len), "{ipa:#x}+{len:#x}");
        }
        let none = VmSpec { devices: &[], ..*g1 };
        assert_eq!(none.shadow_cds().size, 0x1000, "at least one table");
    }

    #[test]
    fn lookups() {
        assert_eq!(MANIFEST.vm_on_cpu(0).unwrap().name, "host");
        assert_eq!(MANIFEST.vm_on_cpu(1).unwrap().name, "host");
        assert_eq!(MANIFEST.vm_on_cpu(2).unwrap().name, "guest1");
        assert_eq!(MANIFEST.vm_on_cpu(3).unwrap().name, "guest2");
        assert!(MANIFEST.vm_on_cpu(4).is_none());
        assert!(MANIFEST.vm_on_cpu(9).is_none());
        assert_eq!(MANIFEST.owner_of(0x5400_1000, 8).unwrap().id, 1);
        assert!(MANIFEST.owner_of(0x53ff_fff8, 16).is_none());
        assert_eq!(MANIFEST.vms[2].boot_info_ipa(), 0x5dff_f000);
        let d = MANIFEST.vms[1].devices[0];
        assert_eq!(MANIFEST.owner_of_device(d).unwrap().id, 1);
        assert!(MANIFEST.owner_of_device(PciAddr::slot(31, 7)).is_none());
    }

    #[test]
    fn each_intx_line_has_one_owner() {
        const M: u64 = 2 << 20;
        let [host, g1, g2] = [&MANIFEST.vms[0], &MANIFEST.vms[1], &MANIFEST.vms[2]];
        // Slots 2, 5, 6 (lines 2, 1, 2); 3 and 7 (line 3 both); 4 (line 0).
        assert_eq!((host.intx_lines(), g1.intx_lines(), g2.intx_lines()), (0b0110, 0b1000, 0b0001));
        // Slot 3 and slot 7 raise the same line: two VMs cannot have them.
        const A: &[PciAddr] = &[PciAddr::slot(3, 0)];
        const B: &[PciAddr] = &[PciAddr::slot(7, 0)];
        const C: &[PciAddr] = &[PciAddr::slot(8, 0)];
        let two = |b: &'static [PciAddr]| {
            check(&[
                VmSpec {
                    id: 0,
                    name: "a",
                    mem: MemRange::new(0x4400_0000, M),
                    cpus: Cpus::one(0),
                    devices: A,
                    sealed: Sealed,
                },
                VmSpec {
                    id: 1,
                    name: "b",
                    mem: MemRange::new(0x4600_0000, M),
                    cpus: Cpus::one(1),
                    devices: b,
                    sealed: Sealed,
                },
            ])
        };
        assert_eq!(two(B), Err(ManifestError::Intx(1)));
        assert_eq!(two(C), Ok(()));
        assert_eq!(two(&[]), Ok(()));
    }

    #[test]
    fn rids_and_device_checks() {
        assert_eq!(PciAddr::slot(3, 0).rid(), 0x18);
        assert_eq!(PciAddr { bus: 1, dev: 2, func: 1 }.rid(), 0x111);
        const M: u64 = 2 << 20;
        const D: &[PciAddr] = &[PciAddr::slot(2, 0)];
        const BAD: &[PciAddr] = &[PciAddr::slot(32, 0)];
        assert_eq!(
            check(&[
                VmSpec {
                    id: 0,
                    name: "a",
                    mem: MemRange::new(0x4400_0000, M),
                    cpus: Cpus::one(0),
                    devices: D,
                    sealed: Sealed
                },
                VmSpec {
                    id: 1,
                    name: "b",
                    mem: MemRange::new(0x4600_0000, M),
                    cpus: Cpus::one(1),
                    devices: D,
                    sealed: Sealed
                },
            ]),
            Err(ManifestError::Device(1))
        );
        assert_eq!(
            check(&[VmSpec {
                id: 0,
                name: "a",
                mem: MemRange::new(0x4400_0000, M),
                cpus: Cpus::one(0),
                devices: BAD,
                sealed: Sealed,
            }]),
            Err(ManifestError::Device(0))
        );
    }
}
