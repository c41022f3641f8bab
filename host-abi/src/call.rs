//! Function IDs and the one codec for hypercalls: [`HypCall::decode`] (used by the hypervisor on
//! the saved registers) and [`HypCall::to_regs`] (used by callers), plus [`HypReturn`] for the
//! result registers.

use crate::error::HypError;
use crate::types::{DeviceInfo, VmInfo};
use crate::CONSOLE_WRITE_MAX;

/// Number of argument registers (`x0..x7`) a hypercall reads.
pub const HVC_REGS: usize = 8;

/// SMCCC function-ID fields (SMCCC 1.1, section 2.5).
pub mod smccc {
    /// Bit 31: fast call.
    pub const FAST_CALL: u32 = 1 << 31;
    /// Bit 30: SMC64 calling convention.
    pub const SMC64: u32 = 1 << 30;
    /// Bits 29:24: owning entity number.
    pub const OWNER_SHIFT: u32 = 24;
    /// Owning entity mask (6 bits).
    pub const OWNER_MASK: u32 = 0x3f;
    /// Owning entity 6: vendor-specific hypervisor service calls.
    pub const OWNER_VENDOR_HYP: u32 = 6;

    /// A fast-call function ID for the vendor-specific hypervisor service.
    pub const fn vendor_hyp(smc64: bool, number: u16) -> u32 {
        FAST_CALL
            | if smc64 { SMC64 } else { 0 }
            | (OWNER_VENDOR_HYP << OWNER_SHIFT)
            | number as u32
    }

    /// The owning entity of a function ID.
    pub const fn owner(function: u32) -> u32 {
        (function >> OWNER_SHIFT) & OWNER_MASK
    }
}

/// Every function this hypervisor implements in the vendor-specific hypervisor range.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum FunctionId {
    /// SMCCC Call UID query (SMC32). Returns [`crate::CALL_UID`] in `w0..w3`. Never fails.
    CallUid = smccc::vendor_hyp(false, 0xFF01),
    /// SMCCC revision query (SMC32). Returns the ABI major version in `w0` and minor in `w1`.
    /// Never fails.
    Revision = smccc::vendor_hyp(false, 0xFF03),
    /// `x0` = [`crate::ABI_VERSION`]. Never fails.
    Version = smccc::vendor_hyp(true, 0x0000),
    /// `x1` = a function ID. Returns `0` if that function is implemented.
    /// Errors: `NOT_SUPPORTED` if it is not; `INVALID_PARAMETER` if `x1[63:32]` is not zero.
    Features = smccc::vendor_hyp(true, 0x0001),
    /// `x1` = IPA of a UTF-8 buffer, `x2` = its length (1..=[`CONSOLE_WRITE_MAX`]). The hypervisor
    /// prints it on the console, each line prefixed with the caller's name. Returns `0` and the
    /// number of bytes written in `x1`.
    /// Errors: `INVALID_PARAMETER` for a length of 0 or above the maximum; `INVALID_ADDRESS` if
    /// the buffer is not entirely inside the caller's RAM.
    ConsoleWrite = smccc::vendor_hyp(true, 0x0002),
    /// `x1` = IPA of a buffer, `x2` = its length (at least `size_of::<VmInfo>()` = 64). The
    /// hypervisor writes a [`VmInfo`] there and returns `0`.
    /// Errors: `INVALID_PARAMETER` if the buffer is smaller than `VmInfo`; `INVALID_ADDRESS` if
    /// it is not entirely inside the caller's RAM.
    VmInfo = smccc::vendor_hyp(true, 0x0003),
    /// `x1` = index (0-based) among the caller's PCI devices, `x2` = IPA of a buffer, `x3` = its
    /// length (at least `size_of::<DeviceInfo>()` = 112). Writes a [`DeviceInfo`] (stream ID, IDs,
    /// BARs as mapped in the caller's stage-2) and returns `0` with the caller's device count in
    /// `x1`.
    /// Errors: `INVALID_PARAMETER` if the index is not below the device count or the buffer is
    /// too small; `INVALID_ADDRESS` if the buffer is not entirely inside the caller's RAM.
    DeviceInfo = smccc::vendor_hyp(true, 0x0004),
    /// `x1` = IPA of a buffer, `x2` = its length in bytes (a multiple of 32, 32..=
    /// [`EVENT_READ_MAX`] * 32). Moves the oldest SMMU event records of the caller's streams
    /// (32-byte records exactly as the SMMU wrote them) into the buffer. Returns `0`, the number
    /// of records written in `x1`, the number still pending in `x2`, and the number of records
    /// dropped so far because the caller's ring was full in `x3`.
    /// Errors: `INVALID_PARAMETER` for a length that is not a multiple of 32 or out of range;
    /// `INVALID_ADDRESS` if the buffer is not entirely inside the caller's RAM.
    EventRead = smccc::vendor_hyp(true, 0x0008),
    /// `x1` = stream ID, `x2` = IPA of a 64-byte virtual [`Ste`](crate::smmu::Ste) written as if
    /// the caller owned an SMMU with stage 1 only. Accepted: invalid or Config = abort
    /// (blocked), Config = bypass (becomes *identity*: the caller's stage-2, never real bypass),
    /// Config = stage 1 (becomes *nested*: the caller's CD table, at an IPA, on its stage-2).
    /// Installed hitlessly; returns `0` and the domain in `x1` (0 blocked, 1 identity,
    /// 2 nested).
    /// Errors: `NOT_OWNED` (stream not the caller's), `INVALID_ADDRESS` (STE buffer outside the
    /// caller's RAM), `FORBIDDEN_FIELD` (any stage-2 field, Config stage-2/nested, EATS, STRW,
    /// attribute overrides), `RESERVED_FIELD` (reserved bits or Config encoding), `BAD_CONFIG`
    /// (S1Fmt not linear, S1CDMax > 5, S1DSS = 3, CD table not inside the caller's RAM),
    /// `DEVICE_ERROR` (the SMMU failed the invalidation; the stream is left blocked).
    SetSte = smccc::vendor_hyp(true, 0x0005),
    /// `x1` = stream ID. Blocks the stream (abort). Errors: `NOT_OWNED`, `DEVICE_ERROR`.
    ClearSte = smccc::vendor_hyp(true, 0x0006),
    /// `x1` = IPA of an array of 16-byte [`Command`](crate::smmu::Command)s, `x2` = count
    /// (1..=[`INVALIDATE_MAX`]). Every command is checked before any is submitted: CFGI_STE,
    /// CFGI_CD, CFGI_CD_ALL and ATC_INV of the caller's streams; TLBI_NH_ALL, TLBI_NH_ASID and
    /// TLBI_NH_VA with VMID 0 (the hypervisor puts the caller's); CMD_SYNC without interrupt or
    /// MSI. They go to the SMMU as one batch with one CMD_SYNC. Returns `0` and the number of
    /// commands sent to the hardware in `x1`.
    /// Errors, with the index of the first bad command in the caller's array in `x1`:
    /// `NOT_OWNED`, `FORBIDDEN_FIELD`, `RESERVED_FIELD`, `BAD_COMMAND`, and `DEVICE_ERROR` for
    /// a command the SMMU rejected (CMD_SYNCs, which are not sent, count all the same; the
    /// count itself when the batch failed as a whole: its SYNC, a timeout, a power loss); and
    /// `INVALID_PARAMETER` (count 0 or too large), `INVALID_ADDRESS` (array outside the
    /// caller's RAM).
    Invalidate = smccc::vendor_hyp(true, 0x0007),
    /// `x1` = count (1..=[`INVALIDATE_INLINE_MAX`]), `x2`..`x7` = the commands themselves, two
    /// registers each (`x2`, `x3` the first command's two 64-bit words; registers past the
    /// count are ignored): [`FunctionId::Invalidate`] without the array in memory, for the
    /// common batch of a paravirtual IOMMU driver (one strict unmap: one `TLBI_NH_VA`). The same
    /// checks, batch and results as `INVALIDATE` (the index of a bad command in `x1`), and
    /// `INVALID_PARAMETER` for a count of 0 or above the maximum.
    InvalidateInline = smccc::vendor_hyp(true, 0x000D),
    /// `x1` = 0 (need-on) or 1 (allow-off): the caller's vote on SMMU power. The SMMU is
    /// powered off only when every VM allows it (and, where GBPA resets to bypass, no
    /// DMA-capable stream is assigned); it comes back at the first need-on. Returns `0`, the
    /// power state after the vote in `x1` (0 on, 1 off), the refusal reason in `x2` (see
    /// [`PmStatus`](crate::PmStatus)::refusal) and the DMA-capable streams in `x3`.
    /// Errors: `INVALID_PARAMETER` for any other `x1`.
    PmVote = smccc::vendor_hyp(true, 0x000A),
    /// `x1` = IPA of a buffer, `x2` = its length (at least 64): writes
    /// [`PmStatus`](crate::PmStatus). Errors: `INVALID_PARAMETER`, `INVALID_ADDRESS`.
    PmStatus = smccc::vendor_hyp(true, 0x000B),
    /// Test platforms only: `x1` = N. The SMMU loses power unexpectedly (its registers return
    /// to reset values): now if N = 0, otherwise just before the hypervisor's N-th SMMU
    /// register write from now (so in the middle of a suspend or resume sequence). The
    /// hypervisor detects it on its next SMMU access or by its checks in resume, and recovers.
    /// Errors: `NOT_SUPPORTED` unless the platform enables fault injection for the caller;
    /// `REFUSED` with [`Refusal::BypassResetWithDma`](crate::Refusal) (2) in `x1` on a platform
    /// whose GBPA resets to bypass while any DMA-capable stream is assigned (registers at reset
    /// values there mean untranslated DMA until the hypervisor's next SMMU access: the same
    /// reason power-off is refused), for N = 0 and for N > 0 alike; nothing is armed then.
    PmInjectLoss = smccc::vendor_hyp(true, 0x000C),
    /// `x1` = IPA of a buffer, `x2` = its length (at least `size_of::<SmmuStats>()` = 80).
    /// Writes [`SmmuStats`] (SMMU-wide counters) and returns `0`.
    /// Errors: `INVALID_PARAMETER` if the buffer is too small; `INVALID_ADDRESS` if it is not
    /// entirely inside the caller's RAM.
    SmmuStats = smccc::vendor_hyp(true, 0x0009),
}

/// Most commands one [`FunctionId::Invalidate`] call takes.
pub const INVALIDATE_MAX: u64 = 256;

/// Most commands one [`FunctionId::InvalidateInline`] call carries (in `x2`..`x7`).
pub const INVALIDATE_INLINE_MAX: u64 = ((HVC_REGS - 2) / 2) as u64;

/// Most event records one [`FunctionId::EventRead`] call returns.
pub const EVENT_READ_MAX: u64 = 16;

impl FunctionId {
    /// Every implemented function, for `FEATURES`, tests and the C header.
    pub const ALL: [FunctionId; 16] = [
        FunctionId::CallUid,
        FunctionId::Revision,
        FunctionId::Version,
        FunctionId::Features,
        FunctionId::ConsoleWrite,
        FunctionId::VmInfo,
        FunctionId::DeviceInfo,
        FunctionId::EventRead,
        FunctionId::SmmuStats,
        FunctionId::SetSte,
        FunctionId::ClearSte,
        FunctionId::Invalidate,
        FunctionId::InvalidateInline,
        FunctionId::PmVote,
        FunctionId::PmStatus,
        FunctionId::PmInjectLoss,
    ];

    /// The function ID with this value, if implemented.
    #[inline]
    pub fn from_u32(id: u32) -> Option<FunctionId> {
        // A match, not a search of ALL: this is on every hypercall's path.
        const CALL_UID: u32 = FunctionId::CallUid as u32;
        const REVISION: u32 = FunctionId::Revision as u32;
        const VERSION: u32 = FunctionId::Version as u32;
        const FEATURES: u32 = FunctionId::Features as u32;
        const CONSOLE_WRITE: u32 = FunctionId::ConsoleWrite as u32;
        const VM_INFO: u32 = FunctionId::VmInfo as u32;
        const DEVICE_INFO: u32 = FunctionId::DeviceInfo as u32;
        const EVENT_READ: u32 = FunctionId::EventRead as u32;
        const SMMU_STATS: u32 = FunctionId::SmmuStats as u32;
        const SET_STE: u32 = FunctionId::SetSte as u32;
        const CLEAR_STE: u32 = FunctionId::ClearSte as u32;
        const INVALIDATE: u32 = FunctionId::Invalidate as u32;
        const INVALIDATE_INLINE: u32 = FunctionId::InvalidateInline as u32;
        const PM_VOTE: u32 = FunctionId::PmVote as u32;
        const PM_STATUS: u32 = FunctionId::PmStatus as u32;
        const PM_INJECT_LOSS: u32 = FunctionId::PmInjectLoss as u32;
        Some(match id {
            CALL_UID => FunctionId::CallUid,
            REVISION => FunctionId::Revision,
            VERSION => FunctionId::Version,
            FEATURES => FunctionId::Features,
            CONSOLE_WRITE => FunctionId::ConsoleWrite,
            VM_INFO => FunctionId::VmInfo,
            DEVICE_INFO => FunctionId::DeviceInfo,
            EVENT_READ => FunctionId::EventRead,
            SMMU_STATS => FunctionId::SmmuStats,
            SET_STE => FunctionId::SetSte,
            CLEAR_STE => FunctionId::ClearSte,
            INVALIDATE => FunctionId::Invalidate,
            INVALIDATE_INLINE => FunctionId::InvalidateInline,
            PM_VOTE => FunctionId::PmVote,
            PM_STATUS => FunctionId::PmStatus,
            PM_INJECT_LOSS => FunctionId::PmInjectLoss,
            _ => return None,
        })
    }

    /// The name used in logs and (with prefix `SMMU_HYP_FN_`) in the C header.
    pub const fn name(self) -> &'static str {
        match self {
            FunctionId::CallUid => "CALL_UID",
            FunctionId::Revision => "REVISION",
            FunctionId::Version => "VERSION",
            FunctionId::Features => "FEATURES",
            FunctionId::ConsoleWrite => "CONSOLE_WRITE",
            FunctionId::VmInfo => "VM_INFO",
            FunctionId::DeviceInfo => "DEVICE_INFO",
            FunctionId::EventRead => "EVENT_READ",
            FunctionId::SmmuStats => "SMMU_STATS",
            FunctionId::SetSte => "SET_STE",
            FunctionId::ClearSte => "CLEAR_STE",
            FunctionId::Invalidate => "INVALIDATE",
            FunctionId::InvalidateInline => "INVALIDATE_INLINE",
            FunctionId::PmVote => "PM_VOTE",
            FunctionId::PmStatus => "PM_STATUS",
            FunctionId::PmInjectLoss => "PM_INJECT_LOSS",
        }
    }
}

/// A decoded hypercall: the function and its validated register arguments. Address arguments
/// are checked against the caller's memory by the hypervisor, which alone knows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HypCall {
    /// See [`FunctionId::CallUid`].
    CallUid,
    /// See [`FunctionId::Revision`].
    Revision,
    /// See [`FunctionId::Version`].
    Version,
    /// See [`FunctionId::Features`].
    Features {
        /// The function ID asked about.
        function: u32,
    },
    /// See [`FunctionId::ConsoleWrite`].
    ConsoleWrite {
        /// IPA of the text.
        ipa: u64,
        /// Length in bytes, `1..=CONSOLE_WRITE_MAX`.
        len: u64,
    },
    /// See [`FunctionId::VmInfo`].
    VmInfo {
        /// IPA of the output buffer.
        ipa: u64,
        /// Length of the output buffer, at least 64.
        len: u64,
    },
    /// See [`FunctionId::DeviceInfo`].
    DeviceInfo {
        /// Index among the caller's devices.
        index: u64,
        /// IPA of the output buffer.
        ipa: u64,
        /// Length of the output buffer, at least 112.
        len: u64,
    },
    /// See [`FunctionId::EventRead`].
    EventRead {
        /// IPA of the output buffer.
        ipa: u64,
        /// Length in bytes: a multiple of 32, at most 32 * EVENT_READ_MAX.
        len: u64,
    },
    /// See [`FunctionId::SetSte`].
    SetSte {
        /// Stream ID (x1[31:0]).
        sid: u32,
        /// IPA of the 64-byte virtual STE.
        ipa: u64,
    },
    /// See [`FunctionId::ClearSte`].
    ClearSte {
        /// Stream ID.
        sid: u32,
    },
    /// See [`FunctionId::Invalidate`].
    Invalidate {
        /// IPA of the command array.
        ipa: u64,
        /// Number of 16-byte commands.
        count: u64,
    },
    /// See [`FunctionId::InvalidateInline`].
    InvalidateInline {
        /// How many of `cmds` are the call's (1..=[`INVALIDATE_INLINE_MAX`]).
        count: u8,
        /// The commands' words, from `x2` on (those past `count` are zero).
        cmds: [[u64; 2]; INVALIDATE_INLINE_MAX as usize],
    },
    /// See [`FunctionId::PmVote`].
    PmVote {
        /// True for allow-off.
        allow_off: bool,
    },
    /// See [`FunctionId::PmStatus`].
    PmStatus {
        /// IPA of the output buffer.
        ipa: u64,
        /// Its length, at least 64.
        len: u64,
    },
    /// See [`FunctionId::PmInjectLoss`].
    PmInjectLoss {
        /// 0: now; N: before the N-th SMMU register write from now.
        after_writes: u64,
    },
    /// See [`FunctionId::SmmuStats`].
    SmmuStats {
        /// IPA of the output buffer.
        ipa: u64,
        /// Length of the output buffer, at least 80 (the whole [`SmmuStats`](crate::SmmuStats)).
        len: u64,
    },
}

impl HypCall {
    /// Decodes `INVALIDATE_INLINE`'s arguments (`x1` = count, `x2..x7` = the commands; `x0`
    /// is taken to be its function ID): the one decoder of them, used by [`HypCall::decode`]
    /// and by a hypervisor's fast path for this call (a Linux guest makes one per strict
    /// unmap).
    #[inline(always)]
    pub fn decode_invalidate_inline(regs: &[u64; HVC_REGS]) -> Result<HypCall, HypError> {
        let count = regs[1];
        if count == 0 || count > INVALIDATE_INLINE_MAX {
            return Err(HypError::InvalidParameter);
        }
        let mut cmds = [[0u64; 2]; INVALIDATE_INLINE_MAX as usize];
        for (i, c) in cmds.iter_mut().take(count as usize).enumerate() {
            *c = [regs[2 + 2 * i], regs[3 + 2 * i]];
        }
        Ok(HypCall::InvalidateInline { count: count as u8, cmds })
    }

    /// Decodes `x0..x7` as saved at the trap. The function ID is `w0` (SMCCC ignores
    /// `x0[63:32]`).
    #[inline]
    pub fn decode(regs: &[u64; HVC_REGS]) -> Result<HypCall, HypError> {
        let function = FunctionId::from_u32(regs[0] as u32).ok_or(HypError::NotSupported)?;
        Ok(match function {
            FunctionId::CallUid => HypCall::CallUid,
            FunctionId::Revision => HypCall::Revision,
            FunctionId::Version => HypCall::Version,
            FunctionId::Features => {
                let function = u32::try_from(regs[1]).map_err(|_| HypError::InvalidParameter)?;
                HypCall::Features { function }
            }
            FunctionId::ConsoleWrite => {
                let len = regs[2];
                if len == 0 || len > CONSOLE_WRITE_MAX {
                    return Err(HypError::InvalidParameter);
                }
                HypCall::ConsoleWrite { ipa: regs[1], len }
            }
            FunctionId::VmInfo => {
                let len = regs[2];
                if len < core::mem::size_of::<VmInfo>() as u64 {
                    return Err(HypError::InvalidParameter);
                }
                HypCall::VmInfo { ipa: regs[1], len }
            }
            FunctionId::DeviceInfo => {
                let len = regs[3];
                if len < core::mem::size_of::<DeviceInfo>() as u64 {
                    return Err(HypError::InvalidParameter);
                }
                HypCall::DeviceInfo { index: regs[1], ipa: regs[2], len }
            }
            FunctionId::EventRead => {
                let len = regs[2];
                if len == 0 || !len.is_multiple_of(32) || len > 32 * EVENT_READ_MAX {
                    return Err(HypError::InvalidParameter);
                }
                HypCall::EventRead { ipa: regs[1], len }
            }
            FunctionId::SetSte => {
                let sid = u32::try_from(regs[1]).map_err(|_| HypError::InvalidParameter)?;
                HypCall::SetSte { sid, ipa: regs[2] }
            }
            FunctionId::ClearSte => {
                let sid = u32::try_from(regs[1]).map_err(|_| HypError::InvalidParameter)?;
                HypCall::ClearSte { sid }
            }
            FunctionId::Invalidate => {
                let count = regs[2];
                if count == 0 || count > INVALIDATE_MAX {
                    return Err(HypError::InvalidParameter);
                }
                HypCall::Invalidate { ipa: regs[1], count }
            }
            FunctionId::InvalidateInline => Self::decode_invalidate_inline(regs)?,
            FunctionId::PmVote => match regs[1] {
                0 => HypCall::PmVote { allow_off: false },
                1 => HypCall::PmVote { allow_off: true },
                _ => return Err(HypError::InvalidParameter),
            },
            FunctionId::PmStatus => {
                let len = regs[2];
                if len < core::mem::size_of::<crate::PmStatus>() as u64 {
                    return Err(HypError::InvalidParameter);
                }
                HypCall::PmStatus { ipa: regs[1], len }
            }
            FunctionId::PmInjectLoss => HypCall::PmInjectLoss { after_writes: regs[1] },
            FunctionId::SmmuStats => {
                let len = regs[2];
                if len < core::mem::size_of::<crate::SmmuStats>() as u64 {
                    return Err(HypError::InvalidParameter);
                }
                HypCall::SmmuStats { ipa: regs[1], len }
            }
        })
    }

    /// The function ID of this call.
    pub fn function(&self) -> FunctionId {
        match self {
            HypCall::CallUid => FunctionId::CallUid,
            HypCall::Revision => FunctionId::Revision,
            HypCall::Version => FunctionId::Version,
            HypCall::Features { .. } => FunctionId::Features,
            HypCall::ConsoleWrite { .. } => FunctionId::ConsoleWrite,
            HypCall::VmInfo { .. } => FunctionId::VmInfo,
            HypCall::DeviceInfo { .. } => FunctionId::DeviceInfo,
            HypCall::EventRead { .. } => FunctionId::EventRead,
            HypCall::SmmuStats { .. } => FunctionId::SmmuStats,
            HypCall::SetSte { .. } => FunctionId::SetSte,
            HypCall::ClearSte { .. } => FunctionId::ClearSte,
            HypCall::Invalidate { .. } => FunctionId::Invalidate,
            HypCall::InvalidateInline { .. } => FunctionId::InvalidateInline,
            HypCall::PmVote { .. } => FunctionId::PmVote,
            HypCall::PmStatus { .. } => FunctionId::PmStatus,
            HypCall::PmInjectLoss { .. } => FunctionId::PmInjectLoss,
        }
    }

    /// Encodes the call into `x0..x7` for `HVC #0`.
    pub fn to_regs(&self) -> [u64; HVC_REGS] {
        let mut r = [0u64; HVC_REGS];
        r[0] = self.function() as u32 as u64;
        match *self {
            HypCall::CallUid | HypCall::Revision | HypCall::Version => {}
            HypCall::PmInjectLoss { after_writes } => r[1] = after_writes,
            HypCall::Features { function } => r[1] = function as u64,
            HypCall::ConsoleWrite { ipa, len }
            | HypCall::VmInfo { ipa, len }
            | HypCall::EventRead { ipa, len }
            | HypCall::SmmuStats { ipa, len } => {
                r[1] = ipa;
                r[2] = len;
            }
            HypCall::SetSte { sid, ipa } => {
                r[1] = sid as u64;
                r[2] = ipa;
            }
            HypCall::ClearSte { sid } => r[1] = sid as u64,
            HypCall::PmVote { allow_off } => r[1] = allow_off as u64,
            HypCall::PmStatus { ipa, len } => {
                r[1] = ipa;
                r[2] = len;
            }
            HypCall::Invalidate { ipa, count } => {
                r[1] = ipa;
                r[2] = count;
            }
            HypCall::InvalidateInline { count, cmds } => {
                r[1] = count as u64;
                for (i, c) in cmds.iter().take(count as usize).enumerate() {
                    r[2 + 2 * i] = c[0];
                    r[3 + 2 * i] = c[1];
                }
            }
            HypCall::DeviceInfo { index, ipa, len } => {
                r[1] = index;
                r[2] = ipa;
                r[3] = len;
            }
        }
        r
    }
}

impl TryFrom<&[u64; HVC_REGS]> for HypCall {
    type Error = HypError;
    fn try_from(regs: &[u64; HVC_REGS]) -> Result<Self, HypError> {
        HypCall::decode(regs)
    }
}

/// The result registers `x0..x3` of a hypercall.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HypReturn(pub [u64; 4]);

impl HypReturn {
    /// Success with `x0` = `value` and extra results in `x1..x3`.
    pub const fn ok(value: u64, x1: u64, x2: u64, x3: u64) -> HypReturn {
        HypReturn([value, x1, x2, x3])
    }

    /// Failure: `x0` = the negative error code, `x1..x3` = 0.
    pub const fn err(e: HypError) -> HypReturn {
        HypReturn([e.code() as u64, 0, 0, 0])
    }

    /// Failure with the index of the offending element (INVALIDATE) in `x1`.
    pub const fn err_at(e: HypError, index: u64) -> HypReturn {
        HypReturn([e.code() as u64, index, 0, 0])
    }

    /// From a result.
    pub fn from_result(r: Result<HypReturn, HypError>) -> HypReturn {
        r.unwrap_or_else(HypReturn::err)
    }

    /// Decodes `x0` as a status (see [`HypError::from_x0`]).
    pub fn status(&self) -> Result<u64, HypError> {
        HypError::from_x0(self.0[0])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn function_ids_follow_smccc_vendor_hyp_layout() {
        // Literal values: fast call (bit 31), SMC64 (bit 30), owner 6 (bits 29:24), number.
        assert_eq!(FunctionId::CallUid as u32, 0x8600_FF01);
        assert_eq!(FunctionId::Revision as u32, 0x8600_FF03);
        assert_eq!(FunctionId::Version as u32, 0xC600_0000);
        assert_eq!(FunctionId::Features as u32, 0xC600_0001);
        assert_eq!(FunctionId::ConsoleWrite as u32, 0xC600_0002);
        assert_eq!(FunctionId::VmInfo as u32, 0xC600_0003);
        assert_eq!(FunctionId::DeviceInfo as u32, 0xC600_0004);
        assert_eq!(FunctionId::EventRead as u32, 0xC600_0008);
        assert_eq!(FunctionId::SmmuStats as u32, 0xC600_0009);
        assert_eq!(FunctionId::SetSte as u32, 0xC600_0005);
        assert_eq!(FunctionId::ClearSte as u32, 0xC600_0006);
        assert_eq!(FunctionId::Invalidate as u32, 0xC600_0007);
        assert_eq!(FunctionId::InvalidateInline as u32, 0xC600_000D);
        for f in FunctionId::ALL {
            assert_eq!(smccc::owner(f as u32), smccc::OWNER_VENDOR_HYP);
            assert_eq!(FunctionId::from_u32(f as u32), Some(f));
        }
    }

    #[test]
    fn every_call_round_trips_through_registers() {
        let calls = [
            HypCall::CallUid,
            HypCall::Revision,
            HypCall::Version,
            HypCall::Features { function: 0xC600_0002 },
            HypCall::InvalidateInline { count: 2, cmds: [[1, 2], [3, 4], [0, 0]] },
            HypCall::InvalidateInline { count: 3, cmds: [[1, 2], [3, 4], [5, 6]] },
            HypCall::ConsoleWrite { ipa: 0x4400_1000, len: 12 },
            HypCall::VmInfo { ipa: 0x4400_2000, len: 64 },
            HypCall::DeviceInfo { index: 1, ipa: 0x4400_3000, len: 112 },
            HypCall::EventRead { ipa: 0x4400_4000, len: 64 },
            HypCall::SmmuStats { ipa: 0x4400_5000, len: 80 },
            HypCall::SetSte { sid: 0x18, ipa: 0x4600_1000 },
            HypCall::ClearSte { sid: 0x18 },
            HypCall::Invalidate { ipa: 0x4600_2000, count: 256 },
            HypCall::PmVote { allow_off: true },
            HypCall::PmVote { allow_off: false },
            HypCall::PmStatus { ipa: 0x4600_3000, len: 64 },
            HypCall::PmInjectLoss { after_writes: 7 },
        ];
        for c in calls {
            assert_eq!(HypCall::decode(&c.to_regs()), Ok(c));
        }
    }

    #[test]
    fn bad_arguments_are_rejected_with_their_codes() {
        let mut r = [0u64; HVC_REGS];
        r[0] = 0xC600_00FF;
        assert_eq!(HypCall::decode(&r), Err(HypError::NotSupported));
        r[0] = 0x8400_0000; // PSCI is not a hypercall
        assert_eq!(HypCall::decode(&r), Err(HypError::NotSupported));
        r = HypCall::Features { function: 1 }.to_regs();
        r[1] |= 1 << 32;
        assert_eq!(HypCall::decode(&r), Err(HypError::InvalidParameter));
        r = HypCall::ConsoleWrite { ipa: 0, len: 1 }.to_regs();
        r[2] = 0;
        assert_eq!(HypCall::decode(&r), Err(HypError::InvalidParameter));
        r[2] = CONSOLE_WRITE_MAX + 1;
        assert_eq!(HypCall::decode(&r), Err(HypError::InvalidParameter));
        r[2] = CONSOLE_WRITE_MAX;
        assert!(HypCall::decode(&r).is_ok());
        r = HypCall::VmInfo { ipa: 0, len: 64 }.to_regs();
        r[2] = 63;
        assert_eq!(HypCall::decode(&r), Err(HypError::InvalidParameter));
        r = HypCall::DeviceInfo { index: 0, ipa: 0, len: 112 }.to_regs();
        r[3] = 111;
        assert_eq!(HypCall::decode(&r), Err(HypError::InvalidParameter));
        for bad in [0, 31, 33, 32 * EVENT_READ_MAX + 32] {
            r = HypCall::EventRead { ipa: 0, len: 32 }.to_regs();
            r[2] = bad;
            assert_eq!(HypCall::decode(&r), Err(HypError::InvalidParameter), "len {bad}");
        }
        // The whole structure, its ABI 1.1 counters included: 64 bytes (1.0's) are too few.
        for bad in [0, 63, 64, 79] {
            r = HypCall::SmmuStats { ipa: 0, len: 80 }.to_regs();
            r[2] = bad;
            assert_eq!(HypCall::decode(&r), Err(HypError::InvalidParameter), "len {bad}");
        }
        r[2] = 80;
        assert_eq!(HypCall::decode(&r), Ok(HypCall::SmmuStats { ipa: 0, len: 80 }));
        for bad in [0, INVALIDATE_MAX + 1] {
            r = HypCall::Invalidate { ipa: 0, count: 1 }.to_regs();
            r[2] = bad;
            assert_eq!(HypCall::decode(&r), Err(HypError::InvalidParameter));
        }
        r = HypCall::ClearSte { sid: 1 }.to_regs();
        r[1] |= 1 << 32;
        assert_eq!(HypCall::decode(&r), Err(HypError::InvalidParameter));
    }

    #[test]
    fn upper_half_of_x0_is_ignored() {
        let mut r = HypCall::Version.to_regs();
        r[0] |= 0xdead_beef << 32;
        assert_eq!(HypCall::decode(&r), Ok(HypCall::Version));
    }

    #[test]
    fn return_registers_encode_status() {
        assert_eq!(HypReturn::err(HypError::InvalidAddress).0[0], (-4i64) as u64);
        assert_eq!(HypReturn::ok(5, 1, 2, 3).status(), Ok(5));
        assert_eq!(
            HypReturn::from_result(Err(HypError::InvalidParameter)).status(),
            Err(HypError::InvalidParameter)
        );
    }

    #[test]
    fn an_inline_invalidate_takes_1_to_3_commands_and_nothing_past_its_count() {
        assert_eq!(INVALIDATE_INLINE_MAX, 3, "x2..x7: three commands");
        let mut r = [0u64; HVC_REGS];
        r[0] = FunctionId::InvalidateInline as u32 as u64;
        r[2..].copy_from_slice(&[1, 2, 3, 4, 5, 6]);
        for bad in [0, 4, 1 << 32, u64::MAX] {
            r[1] = bad;
            assert_eq!(HypCall::decode(&r), Err(HypError::InvalidParameter), "count {bad}");
        }
        r[1] = 1;
        let want = HypCall::InvalidateInline { count: 1, cmds: [[1, 2], [0, 0], [0, 0]] };
        assert_eq!(HypCall::decode(&r), Ok(want), "x4..x7 past the count are not the call's");
        r[1] = 3;
        let want = HypCall::InvalidateInline { count: 3, cmds: [[1, 2], [3, 4], [5, 6]] };
        assert_eq!(HypCall::decode(&r), Ok(want));
    }

    #[test]
    fn buffer_lengths_are_refused_exactly_past_their_bounds() {
        let call = |f: FunctionId, len: u64| {
            let mut r = [0u64; HVC_REGS];
            r[0] = f as u32 as u64;
            r[2] = len;
            HypCall::decode(&r)
        };
        let most = 32 * EVENT_READ_MAX;
        assert!(call(FunctionId::EventRead, most).is_ok(), "the most records at once");
        assert_eq!(call(FunctionId::EventRead, most + 32), Err(HypError::InvalidParameter));
        let least = core::mem::size_of::<crate::PmStatus>() as u64;
        assert!(call(FunctionId::PmStatus, least).is_ok(), "exactly the structure");
        assert_eq!(call(FunctionId::PmStatus, least - 1), Err(HypError::InvalidParameter));
    }
}
