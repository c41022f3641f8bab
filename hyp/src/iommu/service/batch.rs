//! A VM's invalidation batch, validated as a whole before anything happens: the result is a
//! value that says what to send and whether the SMMU must be awake for it. Nothing in here
//! has an effect, so a batch with one bad command changes nothing, power included.

use crate::iommu::validate::{self, CommandAction, SmmuCaps};
use host_abi::smmu::{Command, Opcode};
use host_abi::{HypError, INVALIDATE_MAX};

/// A validated batch: the commands to send (VMID forced, SYNCs and elidable commands
/// removed), in order at the front of the output buffer.
#[derive(Debug, PartialEq, Eq)]
#[must_use]
pub struct ValidBatch<'a> {
    /// Commands for the hardware, in order.
    pub send: &'a [Command],
    /// The batch holds an ATC invalidation: it must never be lost, so the SMMU is powered on
    /// for it even where nothing is sent. Only looked for when asked (`while_off`): the check
    /// costs nothing on the fast path, where the SMMU is on.
    pub needs_power: bool,
    /// The batch holds a configuration invalidation (CFGI_STE, CFGI_CD, CFGI_CD_ALL): the
    /// shadow CDs of the streams they name are refreshed before it is sent.
    pub config: bool,
}

/// A batch validated up to its first refused command ([`validate_prefix`]).
#[derive(Debug, PartialEq, Eq)]
#[must_use]
pub struct Prefix<'a> {
    /// The commands before the refused one (all of them if none was), validated.
    pub valid: ValidBatch<'a>,
    /// The index of the first refused command and why, if any: the batch ends before it.
    pub refused: Option<(usize, HypError)>,
}

/// Validates every command of `cmds` (at most [`INVALIDATE_MAX`] are looked at, and at most
/// `out.len()`) for the VM with `vmid` owning what `owns` says; on success the commands to send
/// are at the front of `out` (`cmds` is left as it is). On failure: the index of the first bad
/// command and why. `while_off`: the SMMU is powered off, so whether the batch needs it
/// powered matters.
pub fn validate<'a>(
    cmds: &[Command],
    out: &'a mut [Command],
    vmid: u16,
    owns: &dyn Fn(u32) -> bool,
    caps: &SmmuCaps,
    while_off: bool,
) -> Result<ValidBatch<'a>, (usize, HypError)> {
    let p = validate_prefix(cmds, out, vmid, owns, caps, while_off);
    match p.refused {
        None => Ok(p.valid),
        Some(r) => Err(r),
    }
}

/// [`validate`] as a command queue consumes: every command up to the first one refused, which
/// ends the batch (`refused`); `valid` is what `validate` would make of the commands before
/// it, in the same place at the front of `out`.
#[inline]
pub fn validate_prefix<'a>(
    cmds: &[Command],
    out: &'a mut [Command],
    vmid: u16,
    owns: &dyn Fn(u32) -> bool,
    caps: &SmmuCaps,
    while_off: bool,
) -> Prefix<'a> {
    let len = cmds.len().min(INVALIDATE_MAX as usize).min(out.len());
    let mut n = 0;
    let mut config = false;
    let mut refused = None;
    for (i, c) in cmds[..len].iter().enumerate() {
        match validate::command(c, vmid, owns, caps) {
            Ok(CommandAction::Submit(x)) => {
                // n <= i < len <= out.len().
                out[n] = x;
                n += 1;
            }
            Ok(CommandAction::SubmitConfig(x)) => {
                out[n] = x;
                n += 1;
                config = true;
            }
            Ok(CommandAction::Elide) => {}
            Err(e) => {
                refused = Some((i, e));
                break;
            }
        }
    }
    let end = refused.map_or(len, |(i, _)| i);
    let needs_power = while_off && needs_power(&cmds[..end]);
    Prefix { valid: ValidBatch { send: &out[..n], needs_power, config }, refused }
}

/// Whether `cmds` hold an ATC invalidation (which must never be lost: the SMMU is powered on
/// for it).
pub fn needs_power(cmds: &[Command]) -> bool {
    cmds.iter().any(|c| c.opcode_byte() == Opcode::AtcInv as u8)
}

/// How many commands the batch [`validate`] makes of `cmds` (with the same `vmid`, `owns` and
/// `caps`, and valid) sends: its length without the commands it drops (SYNCs, ATC invalidations
/// without ATS). Only for errors, like [`caller_index`].
pub fn sent_of(cmds: &[Command], vmid: u16, owns: &dyn Fn(u32) -> bool, caps: &SmmuCaps) -> usize {
    let len = cmds.len().min(INVALIDATE_MAX as usize);
    cmds[..len].iter().filter(|c| is_sent(c, vmid, owns, caps)).count()
}

/// Whether [`validate`] sends `c` (valid, and not dropped).
fn is_sent(c: &Command, vmid: u16, owns: &dyn Fn(u32) -> bool, caps: &SmmuCaps) -> bool {
    matches!(
        validate::command(c, vmid, owns, caps),
        Ok(CommandAction::Submit(_) | CommandAction::SubmitConfig(_))
    )
}

/// Where the `sent`-th command of the batch [`validate`] made from `cmds` (with the same
/// `vmid`, `owns` and `caps`) is in `cmds`: the caller's own index, the commands `validate`
/// dropped (SYNCs, elided ATC invalidations) counted back in. The number of commands looked at
/// when the batch has no such command (`sent` is the hypervisor's closing SYNC, or past it):
/// a failure of the batch as a whole. Only for errors: it validates again rather than cost the
/// fast path a map.
pub fn caller_index(
    cmds: &[Command],
    sent: usize,
    vmid: u16,
    owns: &dyn Fn(u32) -> bool,
    caps: &SmmuCaps,
) -> usize {
    let len = cmds.len().min(INVALIDATE_MAX as usize);
    cmds[..len]
        .iter()
        .enumerate()
        .filter(|(_, c)| is_sent(c, vmid, owns, caps))
        .nth(sent)
        .map_or(len, |(i, _)| i)
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
        let b = [Command::sync(), Command::tlbi_nh_va(0, 1, 0x1000), Command::sync()];
        let mut out = [Command::default(); 8];
        let mut out2 = [Command::default(); 8];
        let v = validate(&b, &mut out, 7, &owns, &SmmuCaps::QEMU, true).unwrap();
        assert_eq!(v.send, [Command::tlbi_nh_va(7, 1, 0x1000)]);
        assert!(!v.needs_power && !v.config);
        let b = [
            Command::atc_inv_all(0x18),
            Command::cfgi_ste(0x18),
            Command::sync(),
            Command::tlbi_nh_all(0),
        ];
        let b2 = b;
        let v = validate(&b, &mut out, 7, &owns, &SmmuCaps::QEMU, true).unwrap();
        assert_eq!(v.send, [Command::cfgi_ste(0x18), Command::tlbi_nh_all(7)]);
        assert!(v.needs_power, "an ATC invalidation needs the SMMU even without ATS");
        assert!(v.config, "CFGI_STE: the stream's shadow CDs are refreshed");
        let v = validate(&b2, &mut out2, 7, &owns, &SmmuCaps::QEMU, false).unwrap();
        assert!(!v.needs_power, "not looked for while the SMMU is on");
    }

    #[test]
    fn a_prefix_is_what_comes_before_the_first_refused_command() {
        let b = [
            Command::atc_inv_all(0x18),
            Command::tlbi_nh_all(0),
            Command::sync(),
            Command::cfgi_ste(0x20),
            Command::cfgi_ste(0x18),
            Command::atc_inv_all(0x18),
        ];
        let mut out = [Command::default(); 8];
        let p = validate_prefix(&b, &mut out, 7, &owns, &SmmuCaps::QEMU, true);
        assert_eq!(p.refused, Some((3, HypError::NotOwned)));
        assert_eq!(p.valid.send, [Command::tlbi_nh_all(7)], "what validate makes of b[..3]");
        assert!(p.valid.needs_power, "its own ATC_INV");
        assert!(!p.valid.config, "the CFGI_STE after the refused command is not in it");
        let mut out2 = [Command::default(); 8];
        assert_eq!(
            validate(&b, &mut out2, 7, &owns, &SmmuCaps::QEMU, true),
            Err((3, HypError::NotOwned))
        );
        // Nothing refused: the whole batch, as validate makes it.
        let p = validate_prefix(&b[4..], &mut out, 7, &owns, &SmmuCaps::QEMU, true);
        assert_eq!(p.refused, None);
        assert_eq!(p.valid.send, [Command::cfgi_ste(0x18)]);
        assert!(p.valid.needs_power && p.valid.config);
        // An ATC_INV only after the refused command: nothing to power on for.
        let p = validate_prefix(&b[1..], &mut out, 7, &owns, &SmmuCaps::QEMU, true);
        assert_eq!(p.refused, Some((2, HypError::NotOwned)));
        assert!(!p.valid.needs_power);
        assert_eq!(
            (
                sent_of(&b[..3], 7, &owns, &SmmuCaps::QEMU),
                sent_of(&b[4..], 7, &owns, &SmmuCaps::QEMU)
            ),
            (1, 1)
        );
        assert_eq!(sent_of(&b, 7, &owns, &SmmuCaps { ats: true, ..SmmuCaps::QEMU }), 4);
    }

    #[test]
    fn a_sent_command_is_found_at_its_index_in_the_callers_array() {
        let b = [
            Command::sync(),
            Command::sync(),
            Command::tlbi_nh_all(0),
            Command::atc_inv_all(0x18),
            Command::sync(),
            Command::cfgi_ste(0x18),
            Command::tlbi_nh_va(0, 1, 0x1000),
        ];
        let mut out = [Command::default(); 8];
        let v = validate(&b, &mut out, 7, &owns, &SmmuCaps::QEMU, false).unwrap();
        assert_eq!(v.send.len(), 3, "the SYNCs and the ATC_INV (no ATS) dropped");
        let at = |sent| caller_index(&b, sent, 7, &owns, &SmmuCaps::QEMU);
        assert_eq!([at(0), at(1), at(2)], [2, 5, 6]);
        assert_eq!(at(3), b.len(), "the hypervisor's own SYNC: no command of the caller's");
        assert_eq!(at(99), b.len());
        // With ATS the ATC invalidation is sent, and counted.
        let ats = SmmuCaps { ats: true, ..SmmuCaps::QEMU };
        assert_eq!(caller_index(&b, 1, 7, &owns, &ats), 3);
    }

    #[test]
    fn one_bad_command_refuses_the_batch_and_names_it() {
        let b = [Command::tlbi_nh_all(0), Command::sync(), Command::cfgi_ste(0x20)];
        let before = b;
        assert_eq!(
            validate(&b, &mut [Command::default(); 8], 7, &owns, &SmmuCaps::QEMU, true),
            Err((2, HypError::NotOwned))
        );
        // The caller's commands are left as they were.
        assert_eq!(b, before);
        let empty: [Command; 0] = [];
        let v = validate(&empty, &mut [], 7, &owns, &SmmuCaps::QEMU, true).unwrap();
        assert!(v.send.is_empty() && !v.needs_power && !v.config);
    }
}
