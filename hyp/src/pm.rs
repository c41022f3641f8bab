//! SMMU power management policy (pure): every VM votes; the SMMU may be powered off only when
//! every VM allows it, and — on a platform whose GBPA resets to bypass — only when no stream
//! that could issue DMA is assigned, because between power-on and the hypervisor's first write
//! such a device would bypass translation.

use platform::power::GbpaReset;

/// A VM's vote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Vote {
    /// The VM needs the SMMU powered (the default).
    NeedOn,
    /// The VM allows the SMMU to be powered off.
    AllowOff,
}

/// The SMMU's power state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Power {
    /// Powered and translating.
    On,
    /// Powered off: registers lost, STE changes kept in memory, TLB/config invalidations elided.
    Off,
}

/// Why the SMMU stays on although asked to go off (values as in `PmStatus::refusal`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum Refusal {
    /// Nothing refused.
    None = 0,
    /// Not every VM allows power-off yet.
    WaitingForVotes = 1,
    /// GBPA resets to bypass on this platform and DMA-capable streams are assigned.
    BypassResetWithDma = 2,
    /// Power management is disabled on this run.
    Disabled = 3,
}

impl Refusal {
    /// In words.
    pub fn describe(self) -> &'static str {
        match self {
            Refusal::None => "none",
            Refusal::WaitingForVotes => "not every VM allows power-off",
            Refusal::BypassResetWithDma => {
                "GBPA resets to bypass on this platform and DMA-capable streams are assigned"
            }
            Refusal::Disabled => "power management is disabled",
        }
    }
}

/// What to do after a vote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Run the suspend sequence and power off.
    PowerOff,
    /// Power on and run the resume sequence.
    PowerOn,
    /// Nothing changes; the refusal says why power stays on (or `None`).
    Stay(Refusal),
}

/// Decides the next step from the votes, the current state and the platform.
pub fn decide(votes: &[Vote], power: Power, reset: GbpaReset, dma_streams: usize) -> Action {
    let all_allow = votes.iter().all(|v| *v == Vote::AllowOff);
    match power {
        Power::Off if !all_allow => Action::PowerOn,
        Power::Off => Action::Stay(Refusal::None),
        Power::On if !all_allow => Action::Stay(Refusal::WaitingForVotes),
        Power::On if reset == GbpaReset::Bypass && dma_streams > 0 => {
            Action::Stay(Refusal::BypassResetWithDma)
        }
        Power::On => Action::PowerOff,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Vote::*;

    #[test]
    fn every_vote_counts() {
        let a = GbpaReset::Abort;
        assert_eq!(
            decide(&[AllowOff, AllowOff, NeedOn], Power::On, a, 3),
            Action::Stay(Refusal::WaitingForVotes)
        );
        assert_eq!(decide(&[AllowOff; 3], Power::On, a, 3), Action::PowerOff);
        assert_eq!(decide(&[AllowOff; 3], Power::Off, a, 3), Action::Stay(Refusal::None));
        assert_eq!(decide(&[AllowOff, NeedOn, AllowOff], Power::Off, a, 3), Action::PowerOn);
    }

    #[test]
    fn bypass_reset_platforms_refuse_while_dma_is_possible() {
        let b = GbpaReset::Bypass;
        assert_eq!(
            decide(&[AllowOff; 3], Power::On, b, 1),
            Action::Stay(Refusal::BypassResetWithDma)
        );
        assert_eq!(decide(&[AllowOff; 3], Power::On, b, 0), Action::PowerOff);
    }
}
