//! Structures that cross the boundary through memory. All are little-endian, `#[repr(C)]`,
//! without implicit padding, and pinned by compile-time size/offset asserts (mirrored by
//! `_Static_assert`s in the C header).

use core::mem::{offset_of, size_of};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// `BootInfo::magic`: the bytes `"SMMUHYP\0"` read as a little-endian `u64`.
pub const BOOT_INFO_MAGIC: u64 = u64::from_le_bytes(*b"SMMUHYP\0");

/// Length of the NUL-padded VM name fields.
pub const VM_NAME_LEN: usize = 16;

/// Written by the hypervisor into the last 4 KiB page of a VM's RAM before the VM is entered;
/// `x0` holds its IPA at entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct BootInfo {
    /// Offset 0, length 8: [`BOOT_INFO_MAGIC`].
    pub magic: u64,
    /// Offset 8, length 4: [`crate::ABI_VERSION`] of the hypervisor.
    pub abi_version: u32,
    /// Offset 12, length 4: this VM's id (0 is the host).
    pub vm_id: u32,
    /// Offset 16, length 8: IPA of the first byte of this VM's RAM.
    pub mem_base: u64,
    /// Offset 24, length 8: size of this VM's RAM in bytes.
    pub mem_size: u64,
    /// Offset 32, length 4: index of the physical CPU this VM's only vCPU is pinned to.
    pub cpu: u32,
    /// Offset 36, length 4: number of VMs in the manifest.
    pub vm_count: u32,
    /// Offset 40, length 16: the VM's name, NUL-padded.
    pub name: [u8; VM_NAME_LEN],
    /// Offset 56, length 8: flags ([`BOOT_FLAG_HOST_IS_LINUX`], [`BOOT_FLAG_GUESTS_OFF`]); the
    /// other bits are zero.
    pub flags: u64,
}

/// [`BootInfo::flags`] bit 0: VM 0 (the host) is a Linux kernel rather than a bare-metal image
/// (it does not take part in tests that need a cooperating host).
pub const BOOT_FLAG_HOST_IS_LINUX: u64 = 1 << 0;
/// [`BootInfo::flags`] bit 1: this run wants every guest off while the host still runs (the
/// hypervisor's boot option `guests_off=1`): a guest runs the tests that do not wait for the
/// host, then powers off.
pub const BOOT_FLAG_GUESTS_OFF: u64 = 1 << 1;

const _: () = assert!(size_of::<BootInfo>() == 64);
const _: () = assert!(offset_of!(BootInfo, abi_version) == 8);
const _: () = assert!(offset_of!(BootInfo, mem_base) == 16);
const _: () = assert!(offset_of!(BootInfo, cpu) == 32);
const _: () = assert!(offset_of!(BootInfo, name) == 40);
const _: () = assert!(offset_of!(BootInfo, flags) == 56);

/// Written by [`crate::FunctionId::VmInfo`] into the caller's buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct VmInfo {
    /// Offset 0, length 4: the caller's VM id.
    pub vm_id: u32,
    /// Offset 4, length 4: number of VMs in the manifest.
    pub vm_count: u32,
    /// Offset 8, length 8: IPA of the caller's RAM.
    pub mem_base: u64,
    /// Offset 16, length 8: size of the caller's RAM.
    pub mem_size: u64,
    /// Offset 24, length 4: physical CPU the caller is pinned to.
    pub cpu: u32,
    /// Offset 28, length 4: the largest number of VMs that were ever running at the same
    /// instant (monotonic; equals `vm_count` once all VMs have run concurrently).
    pub peak_running: u32,
    /// Offset 32, length 8: bit `i` set while VM `i` is running (entered and not stopped).
    pub running_mask: u64,
    /// Offset 40, length 16: the caller's name, NUL-padded.
    pub name: [u8; VM_NAME_LEN],
    /// Offset 56, length 8: bit `i` set once VM `i` has stopped.
    pub stopped_mask: u64,
}

const _: () = assert!(size_of::<VmInfo>() == 64);
const _: () = assert!(offset_of!(VmInfo, mem_base) == 8);
const _: () = assert!(offset_of!(VmInfo, cpu) == 24);
const _: () = assert!(offset_of!(VmInfo, peak_running) == 28);
const _: () = assert!(offset_of!(VmInfo, running_mask) == 32);
const _: () = assert!(offset_of!(VmInfo, name) == 40);

/// Most BARs a PCI function has.
pub const MAX_BARS: usize = 6;

/// One memory BAR as the VM sees it: mapped in its stage-2 at `ipa`, `size` bytes, as device
/// memory. An unimplemented BAR has `size` 0.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct BarInfo {
    /// Offset 0, length 8: IPA of the BAR.
    pub ipa: u64,
    /// Offset 8, length 8: size in bytes (0 if the BAR is not implemented).
    pub size: u64,
}

/// Written by [`crate::FunctionId::DeviceInfo`]: one PCI function the caller owns.
#[derive(Clone, Copy, Debug, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct DeviceInfo {
    /// Offset 0, length 4: the function's SMMU stream ID (its PCI requester ID).
    pub stream_id: u32,
    /// Offset 4, length 2: PCI vendor ID.
    pub vendor: u16,
    /// Offset 6, length 2: PCI device ID.
    pub device: u16,
    /// Offset 8, length 4: PCI address as bus << 8 | device << 3 | function.
    pub pci_addr: u32,
    /// Offset 12, length 4: reserved, zero.
    pub reserved: u32,
    /// Offset 16, length 96: BARs 0..5.
    pub bars: [BarInfo; MAX_BARS],
}

const _: () = assert!(size_of::<BarInfo>() == 16);
const _: () = assert!(size_of::<DeviceInfo>() == 112);
const _: () = assert!(offset_of!(DeviceInfo, pci_addr) == 8);
const _: () = assert!(offset_of!(DeviceInfo, bars) == 16);

/// Written by [`crate::FunctionId::SmmuStats`]: SMMU-wide counters since boot.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct SmmuStats {
    /// Offset 0, length 8: commands written to the command queue (CMD_SYNCs included).
    pub commands: u64,
    /// Offset 8, length 8: CMD_SYNCs written (one per batch).
    pub syncs: u64,
    /// Offset 16, length 8: 64-bit STE word writes.
    pub ste_writes: u64,
    /// Offset 24, length 8: event records taken off the SMMU's event queue.
    pub events: u64,
    /// Offset 32, length 8: event records delivered to a VM's ring.
    pub events_routed: u64,
    /// Offset 40, length 8: event records dropped because a VM's ring was full.
    pub events_dropped: u64,
    /// Offset 48, length 8: commands the SMMU rejected.
    pub command_errors: u64,
    /// Offset 56, length 8: bytes of hypervisor heap in use (tables for streams included).
    pub heap_in_use: u64,
    /// Offset 64, length 8 (ABI 1.1): times the SMMU discarded event records itself (its event
    /// queue overflowed or an event write aborted); how many records is unknown. Each VM that
    /// could have lost one is told through `EVENT_READ`.
    pub events_lost_hw: u64,
    /// Offset 72, length 8 (ABI 1.1): global errors the hypervisor handled (outside command
    /// batches: event-queue aborts, service failures...).
    pub global_errors: u64,
}

const _: () = assert!(size_of::<SmmuStats>() == 80);
const _: () = assert!(offset_of!(SmmuStats, events_lost_hw) == 64);
const _: () = assert!(offset_of!(SmmuStats, events_routed) == 32);

/// Written by [`crate::FunctionId::PmStatus`].
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout,
)]
#[repr(C)]
pub struct PmStatus {
    /// Offset 0, length 4: 0 powered on, 1 powered off.
    pub power: u32,
    /// Offset 4, length 4: why the SMMU stays on ([`Refusal`] code): 0 nothing refused,
    /// 1 not every VM allows power-off, 2 GBPA resets to bypass on this platform and
    /// DMA-capable streams are assigned, 3 power management is disabled on this run.
    pub refusal: u32,
    /// Offset 8, length 8: bit `i` set if VM `i` votes allow-off.
    pub votes_allow_off: u64,
    /// Offset 16, length 4: number of VMs.
    pub vm_count: u32,
    /// Offset 20, length 4: the platform's GBPA reset value: 0 abort, 1 bypass.
    pub gbpa_reset: u32,
    /// Offset 24, length 4: DMA-capable streams assigned to VMs.
    pub dma_streams: u32,
    /// Offset 28, length 4: streams attached to something other than blocked.
    pub attached_streams: u32,
    /// Offset 32, length 8: completed suspends.
    pub suspends: u64,
    /// Offset 40, length 8: completed resumes.
    pub resumes: u64,
    /// Offset 48, length 8: commands not sent because the SMMU was off.
    pub elided: u64,
    /// Offset 56, length 4: power-ons caused by an ATC invalidation (low 32 bits).
    pub wakeups: u32,
    /// Offset 60, length 4: unexpected power losses detected and recovered (low 32 bits).
    pub losses: u32,
}

const _: () = assert!(size_of::<PmStatus>() == 64);
const _: () = assert!(offset_of!(PmStatus, suspends) == 32);
const _: () = assert!(offset_of!(PmStatus, losses) == 60);

/// Why the SMMU stays powered although power-off was voted for (`PmStatus::refusal` and
/// `PM_VOTE`'s `x2`; 0 there means nothing was refused).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum Refusal {
    /// 1: not every VM allows power-off yet.
    WaitingForVotes = 1,
    /// 2: GBPA resets to bypass on this platform and DMA-capable streams are assigned (between
    /// power-on and the hypervisor's first write their devices would bypass translation).
    BypassResetWithDma = 2,
    /// 3: power management is disabled on this run (boot option `pm=off`).
    Disabled = 3,
    /// 4 (ABI 1.2): the SMMU failed (a wait on it timed out): its power is left as it is.
    SmmuFailed = 4,
}

impl Refusal {
    /// The value in `PmStatus::refusal` and `PM_VOTE`'s `x2`.
    pub const fn code(self) -> u32 {
        self as u32
    }

    /// The code of an optional refusal (0: none).
    pub const fn code_of(r: Option<Refusal>) -> u32 {
        match r {
            Some(r) => r as u32,
            None => 0,
        }
    }

    /// Decodes a code: `Some(None)` for 0, `None` for an unknown value.
    pub const fn from_code(v: u64) -> Option<Option<Refusal>> {
        Some(Some(match v {
            0 => return Some(None),
            1 => Refusal::WaitingForVotes,
            2 => Refusal::BypassResetWithDma,
            3 => Refusal::Disabled,
            4 => Refusal::SmmuFailed,
            _ => return None,
        }))
    }

    /// In words.
    pub const fn describe(self) -> &'static str {
        match self {
            Refusal::WaitingForVotes => "not every VM allows power-off",
            Refusal::BypassResetWithDma => {
                "GBPA resets to bypass on this platform and DMA-capable streams are assigned"
            }
            Refusal::Disabled => "power management is disabled",
            Refusal::SmmuFailed => "the SMMU failed (a wait on it timed out)",
        }
    }
}

/// What `PM_VOTE` returns in `x1..x3`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PmVoteResult {
    /// `x1`: the SMMU is powered off after the vote (1) or on (0).
    pub powered_off: bool,
    /// `x2`: why power stays on, if it does although asked to go off (0: nothing refused).
    pub refusal: Option<Refusal>,
    /// `x3`: DMA-capable streams assigned to VMs.
    pub dma_streams: u32,
}

impl PmVoteResult {
    /// `x1..x3`.
    pub const fn to_regs(&self) -> [u64; 3] {
        [self.powered_off as u64, Refusal::code_of(self.refusal) as u64, self.dma_streams as u64]
    }

    /// From `x1..x3`; `None` if a value is out of range.
    pub fn from_regs(r: [u64; 3]) -> Option<Self> {
        Some(Self {
            powered_off: match r[0] {
                0 => false,
                1 => true,
                _ => return None,
            },
            refusal: Refusal::from_code(r[1])?,
            dma_streams: u32::try_from(r[2]).ok()?,
        })
    }
}

/// Copies `name` into a NUL-padded name field (truncating to [`VM_NAME_LEN`] - 1 bytes).
pub fn encode_name(name: &str) -> [u8; VM_NAME_LEN] {
    let mut out = [0u8; VM_NAME_LEN];
    let n = name.len().min(VM_NAME_LEN - 1);
    out[..n].copy_from_slice(&name.as_bytes()[..n]);
    out
}

/// The name stored in a NUL-padded name field (up to the first NUL; invalid UTF-8 gives "?").
pub fn decode_name(name: &[u8; VM_NAME_LEN]) -> &str {
    let end = name.iter().position(|&b| b == 0).unwrap_or(VM_NAME_LEN);
    core::str::from_utf8(&name[..end]).unwrap_or("?")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boot_info_bytes_are_pinned() {
        let b = BootInfo {
            magic: BOOT_INFO_MAGIC,
            abi_version: 0x0001_0002,
            vm_id: 3,
            mem_base: 0x4400_0000,
            mem_size: 0x200_0000,
            cpu: 2,
            vm_count: 3,
            name: encode_name("guest1"),
            flags: BOOT_FLAG_HOST_IS_LINUX,
        };
        let bytes = b.as_bytes();
        assert_eq!(&bytes[0..8], b"SMMUHYP\0");
        assert_eq!(&bytes[8..12], &[2, 0, 1, 0]);
        assert_eq!(bytes[12], 3);
        assert_eq!(&bytes[16..24], &0x4400_0000u64.to_le_bytes());
        assert_eq!(bytes[32], 2);
        assert_eq!(&bytes[40..46], b"guest1");
        assert_eq!(bytes[56], 1, "flags: host is Linux");
        assert_eq!(BootInfo::read_from_bytes(bytes).unwrap(), b);
    }

    #[test]
    fn pm_vote_results_round_trip() {
        for refusal in [
            None,
            Some(Refusal::WaitingForVotes),
            Some(Refusal::BypassResetWithDma),
            Some(Refusal::Disabled),
            Some(Refusal::SmmuFailed),
        ] {
            let r = PmVoteResult { powered_off: refusal.is_none(), refusal, dma_streams: 3 };
            assert_eq!(PmVoteResult::from_regs(r.to_regs()), Some(r));
        }
        assert_eq!(
            PmVoteResult { powered_off: false, refusal: Some(Refusal::Disabled), dma_streams: 1 }
                .to_regs(),
            [0, 3, 1]
        );
        assert_eq!(PmVoteResult::from_regs([2, 0, 0]), None);
        assert_eq!(PmVoteResult::from_regs([0, 5, 0]), None);
    }

    #[test]
    fn names_round_trip_and_truncate() {
        assert_eq!(decode_name(&encode_name("host")), "host");
        assert_eq!(decode_name(&encode_name("a-very-long-vm-name")), "a-very-long-vm-");
    }
}
