//! A VM's invalidation batch, validated as a whole before anything happens: the result is a
//! value that says what to send and whether the SMMU must be awake for it. Nothing in here
//! has an effect, so a batch with one bad command changes nothing, power included.

use crate::validate::{self, CommandAction, SmmuCaps};
use host_abi::smmu::{Command, Opcode};
use host_abi::{HypError, INVALIDATE_MAX};

/// A validated batch: the commands to send (VMID forced, SYNCs and elidable commands
/// removed), compacted at the front of the caller's buffer.
#[derive(Debug, PartialEq, Eq)]
#[must_use]
pub struct ValidBatch<'a> {
    /// Commands for the hardware, in order.
    pub send: &'a [Command],
    /// The batch holds an ATC invalidation: it must never be lost, so the SMMU is powered on
    /// for it even where nothing is sent. Only looked for when asked (`while_off`): the check
    /// costs nothing on the fast path, where the SMMU is on.
    pub needs_power: bool,
}

/// Validates every command of `cmds` (at most [`INVALIDATE_MAX`] are looked at) for the VM with
/// `vmid` owning what `owns` says; on success the commands to send are compacted at the front
/// of `cmds`. On failure: the index of the first bad command and why. `while_off`: the SMMU is
/// powered off, so whether the batch needs it powered matters.
pub fn validate<'a>(
    cmds: &'a mut [Command],
    vmid: u16,
    owns: &dyn Fn(u32) -> bool,
    caps: &SmmuCaps,
    while_off: bool,
) -> Result<ValidBatch<'a>, (usize, HypError)> {
    let len = cmds.len().min(INVALIDATE_MAX as usize);
    let cmds = &mut cmds[..len];
    // Looked at before compaction rewrites the buffer (and only while off).
    let needs_power = while_off && cmds.iter().any(|c| c.opcode_byte() == Opcode::AtcInv as u8);
    let mut n = 0;
    for i in 0..len {
        match validate::command(&cmds[i], vmid, owns, caps) {
            Ok(CommandAction::Submit(x)) => {
                // n <= i < len: the compacted commands stay within what was validated.
                cmds[n] = x;
                n += 1;
            }
            Ok(CommandAction::Elide) => {}
            Err(e) => return Err((i, e)),
        }
    }
    Ok(ValidBatch { send: &cmds[..n], needs_power })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn owns(s: u32) -> bool {
        s == 0x18
    }

    #[test]
    fn a_leading_dropped_command_does_not_shift_or_lose_the_rest() {
        // The VM's own SYNC is dropped; the TLBI after it must be sent, VMID forced.
        let mut b = [Command::sync(), Command::tlbi_nh_va(0, 1, 0x1000), Command::sync()];
        let v = validate(&mut b, 7, &owns, &SmmuCaps::QEMU, true).unwrap();
        assert_eq!(v.send, [Command::tlbi_nh_va(7, 1, 0x1000)]);
        assert!(!v.needs_power);
        let mut b = [
            Command::atc_inv_all(0x18),
            Command::cfgi_ste(0x18),
            Command::sync(),
            Command::tlbi_nh_all(0),
        ];
        let mut b2 = b;
        let v = validate(&mut b, 7, &owns, &SmmuCaps::QEMU, true).unwrap();
        assert_eq!(v.send, [Command::cfgi_ste(0x18), Command::tlbi_nh_all(7)]);
        assert!(v.needs_power, "an ATC invalidation needs the SMMU even without ATS");
        let v = validate(&mut b2, 7, &owns, &SmmuCaps::QEMU, false).unwrap();
        assert!(!v.needs_power, "not looked for while the SMMU is on");
    }

    #[test]
    fn one_bad_command_refuses_the_batch_and_names_it() {
        let mut b = [Command::tlbi_nh_all(0), Command::sync(), Command::cfgi_ste(0x20)];
        let before = b;
        assert_eq!(validate(&mut b, 7, &owns, &SmmuCaps::QEMU, true), Err((2, HypError::NotOwned)));
        // The buffer is the hypervisor's copy; what matters is that the result carries no
        // commands. (Compaction may have rewritten the front.)
        assert_eq!(b[2], before[2]);
        let mut empty: [Command; 0] = [];
        let v = validate(&mut empty, 7, &owns, &SmmuCaps::QEMU, true).unwrap();
        assert!(v.send.is_empty() && !v.needs_power);
    }
}
