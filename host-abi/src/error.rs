//! Status codes returned in `x0`.

/// An error returned by a hypercall, as a negative value in `x0`.
///
/// `-1..=-3` are the generic SMCCC codes; the others are specific to this hypervisor. Every code
/// is returned for exactly the cases listed on its variant.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(i64)]
pub enum HypError {
    /// SMCCC `NOT_SUPPORTED`: the function ID is not implemented (unknown ID, a call from a
    /// conduit or immediate the ABI does not use, or a PSCI function the hypervisor does not
    /// offer to VMs).
    NotSupported = -1,
    /// SMCCC `INVALID_PARAMETER`: an argument is out of its documented range (a length of zero
    /// or above the limit, a buffer too small for the result, reserved argument bits set).
    InvalidParameter = -3,
    /// A buffer (IPA and length) is not entirely inside the caller's own RAM, or it wraps.
    InvalidAddress = -4,
    /// The stream (in the call or in a command) is not assigned to the caller.
    NotOwned = -5,
    /// A field the caller may not set: stage-2 fields (VMID, S2TTB, S2 configuration, which
    /// belong to the hypervisor), privileged STE controls, a command's VMID or secure bit, a
    /// CMD_SYNC asking for an interrupt or MSI.
    ForbiddenField = -6,
    /// A reserved or unknown bit or encoding is set.
    ReservedField = -7,
    /// A configuration value out of range: CD table format or size not supported, CD table
    /// outside the caller's RAM, S1DSS reserved.
    BadConfig = -8,
    /// A command whose opcode VMs may not issue (only CFGI_STE, CFGI_CD, CFGI_CD_ALL,
    /// TLBI_NH_ALL, TLBI_NH_ASID, TLBI_NH_VA, ATC_INV and CMD_SYNC are allowed).
    BadCommand = -9,
    /// The SMMU rejected a command or did not complete it in time. The hypervisor recovered
    /// the queue; translation is unchanged or stricter.
    DeviceError = -10,
    /// A valid request the caller may make, refused in the current state because carrying it
    /// out would break the invariant; `x1` holds the reason, a [`crate::Refusal`] code
    /// (`PM_INJECT_LOSS` on a platform whose GBPA resets to bypass while DMA-capable streams
    /// are assigned: 2, `BypassResetWithDma`). Nothing changed.
    Refused = -11,
}

impl HypError {
    /// Every error, in code order, for tests and the C header.
    pub const ALL: [HypError; 10] = [
        HypError::NotSupported,
        HypError::InvalidParameter,
        HypError::InvalidAddress,
        HypError::NotOwned,
        HypError::ForbiddenField,
        HypError::ReservedField,
        HypError::BadConfig,
        HypError::BadCommand,
        HypError::DeviceError,
        HypError::Refused,
    ];

    /// The value placed in `x0`.
    pub const fn code(self) -> i64 {
        self as i64
    }

    /// The name used in logs and in the C header (`SMMU_HYP_` prefix there).
    pub const fn name(self) -> &'static str {
        match self {
            HypError::NotSupported => "NOT_SUPPORTED",
            HypError::InvalidParameter => "INVALID_PARAMETER",
            HypError::InvalidAddress => "INVALID_ADDRESS",
            HypError::NotOwned => "NOT_OWNED",
            HypError::ForbiddenField => "FORBIDDEN_FIELD",
            HypError::ReservedField => "RESERVED_FIELD",
            HypError::BadConfig => "BAD_CONFIG",
            HypError::BadCommand => "BAD_COMMAND",
            HypError::DeviceError => "DEVICE_ERROR",
            HypError::Refused => "REFUSED",
        }
    }

    /// Decodes a status from `x0`: `Ok(value)` for non-negative values, the error otherwise.
    /// A negative value that is no known code decodes as [`HypError::NotSupported`].
    pub fn from_x0(x0: u64) -> Result<u64, HypError> {
        let v = x0 as i64;
        if v >= 0 {
            return Ok(x0);
        }
        Err(Self::ALL.into_iter().find(|e| e.code() == v).unwrap_or(HypError::NotSupported))
    }
}

impl core::fmt::Display for HypError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{} ({})", self.name(), self.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_distinct_negative_and_round_trip() {
        for (i, e) in HypError::ALL.iter().enumerate() {
            assert!(e.code() < 0);
            assert_eq!(HypError::from_x0(e.code() as u64), Err(*e));
            for other in &HypError::ALL[i + 1..] {
                assert_ne!(e.code(), other.code());
            }
        }
        assert_eq!(HypError::from_x0(7), Ok(7));
        assert_eq!(HypError::from_x0(-99i64 as u64), Err(HypError::NotSupported));
    }
}
