//! SMMU power-management policy (pure): every VM votes; the SMMU may be powered off only when
//! every VM allows it, and — on a platform whose GBPA resets to bypass — only when no stream
//! that could issue DMA is assigned, because between power-on and the hypervisor's first write
//! such a device would bypass translation.

pub use host_abi::Refusal;
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

/// What to do after a vote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Run the suspend sequence and power off.
    PowerOff,
    /// Power on and run the resume sequence.
    PowerOn,
    /// Nothing changes; the refusal says why power stays on, if it was asked to go off.
    Stay(Option<Refusal>),
}

/// Decides the next step from the votes, the current state and the platform.
pub fn decide(votes: &[Vote], power: Power, reset: GbpaReset, dma_streams: usize) -> Action {
    let all_allow = votes.iter().all(|v| *v == Vote::AllowOff);
    match power {
        Power::Off if !all_allow => Action::PowerOn,
        Power::Off => Action::Stay(None),
        Power::On if !all_allow => Action::Stay(Some(Refusal::WaitingForVotes)),
        Power::On => match loss_refusal(reset, dma_streams) {
            Some(r) => Action::Stay(Some(r)),
            None => Action::PowerOff,
        },
    }
}

/// Whether the SMMU may be left at its reset values by the hypervisor's choice (a power-off, or
/// a power loss a test asks for) with `dma_streams` DMA-capable streams assigned: not where GBPA
/// resets to bypass, since until the hypervisor's next SMMU write those devices would bypass
/// translation. The reason it may not, if so.
pub fn loss_refusal(reset: GbpaReset, dma_streams: usize) -> Option<Refusal> {
    (reset == GbpaReset::Bypass && dma_streams > 0).then_some(Refusal::BypassResetWithDma)
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
            Action::Stay(Some(Refusal::WaitingForVotes))
        );
        assert_eq!(decide(&[AllowOff; 3], Power::On, a, 3), Action::PowerOff);
        assert_eq!(decide(&[AllowOff; 3], Power::Off, a, 3), Action::Stay(None));
        assert_eq!(decide(&[AllowOff, NeedOn, AllowOff], Power::Off, a, 3), Action::PowerOn);
    }

    #[test]
    fn bypass_reset_platforms_refuse_while_dma_is_possible() {
        let b = GbpaReset::Bypass;
        assert_eq!(
            decide(&[AllowOff; 3], Power::On, b, 1),
            Action::Stay(Some(Refusal::BypassResetWithDma))
        );
        assert_eq!(decide(&[AllowOff; 3], Power::On, b, 0), Action::PowerOff);
    }

    #[test]
    fn reset_values_are_refused_exactly_where_gbpa_resets_to_bypass_with_dma() {
        assert_eq!(loss_refusal(GbpaReset::Bypass, 1), Some(Refusal::BypassResetWithDma));
        assert_eq!(loss_refusal(GbpaReset::Bypass, 0), None);
        assert_eq!(loss_refusal(GbpaReset::Abort, 5), None);
    }
}
