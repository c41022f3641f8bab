//! Property-based fuzzing of the hypercall boundary (proptest): random sequences of calls from
//! all three VMs, with registers and guest buffers drawn to hit the decoder's and validators'
//! edges (valid function IDs, addresses at and across every VM's and the hypervisor's bounds,
//! owned and foreign streams, single-bit and random STEs and commands), run through the real
//! dispatcher and the real SMMU service on the software SMMU. After every call:
//!
//! * nothing panicked;
//! * a VM's memory changed only if it made the call, and only on success;
//! * a refused call changed nothing in the SMMU service (streams, domains, STEs in the table,
//!   votes, power, commands the SMMU consumed);
//! * every stream's STE is exactly the encoding of the domain it is attached to, and a
//!   stream's domain changed only through its owner's call.
//!
//! Why proptest: it runs inside `cargo test` on the stable toolchain (cargo-fuzz needs nightly
//! sanitizers this machine's toolchains lack), generates structured inputs from strategies, and
//! shrinks a failure to a minimal sequence. The corpus in `hyp/fuzz/corpus.txt` (seed calls
//! that reached deep paths, and every failure found so far) is replayed first and also mutated
//! by the strategy. `cargo test` runs a bounded number of cases (`FUZZ_CASES`, default 256
//! sequences); `cargo xtask fuzz --cases N` runs more.

use crate::hypercall::{dispatch, Caller, ConsoleSink, Env};
use crate::iommu::driver::ste::{self};
use crate::iommu::service::SmmuService;
use crate::iommu::soft::fake::FakeSmmu;
use crate::pci::{Bar, Function};
use crate::vm::lifecycle::VmStates;
use crate::vm::memory::{GuestMemory, ServedRange};
use host_abi::{FunctionId, HVC_REGS};
use platform::power::GbpaReset;
use platform::qemu_virt::MANIFEST;
use platform::VmSpec;
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::string::String;
use std::vec::Vec;

/// Sparse RAM of one VM (4 KiB pages, zero until written).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
struct Ram {
    pages: BTreeMap<u64, Vec<u8>>,
}

impl Ram {
    fn byte(&self, a: u64) -> u8 {
        self.pages.get(&(a & !0xfff)).map_or(0, |p| p[(a & 0xfff) as usize])
    }
    fn set(&mut self, a: u64, v: u8) {
        let p = self.pages.entry(a & !0xfff).or_insert_with(|| std::vec![0; 4096]);
        p[(a & 0xfff) as usize] = v;
    }
}

/// Every VM's RAM; a call reaches only the caller's.
struct Memory {
    rams: Vec<Ram>,
    caller: u32,
}

/// It serves every VM (it holds all their RAM), so that a range of another VM than the caller
/// reaches it and fails the assertions rather than being refused unseen.
impl GuestMemory for Memory {
    fn serves(&self, _vm: u32) -> bool {
        true
    }
    fn copy_out(&self, r: ServedRange, out: &mut [u8]) {
        assert_eq!(r.vm(), self.caller, "a range of another VM reached the memory");
        assert_eq!(out.len() as u64, r.len());
        let spec = &MANIFEST.vms[r.vm() as usize];
        assert!(spec.mem.contains_range(r.ipa(), r.len()));
        for (i, o) in out.iter_mut().enumerate() {
            *o = self.rams[r.vm() as usize].byte(r.ipa() + i as u64);
        }
    }
    fn copy_in(&mut self, r: ServedRange, data: &[u8]) {
        assert_eq!(r.vm(), self.caller, "a range of another VM reached the memory");
        assert_eq!(data.len() as u64, r.len());
        let spec = &MANIFEST.vms[r.vm() as usize];
        assert!(spec.mem.contains_range(r.ipa(), r.len()));
        for (i, b) in data.iter().enumerate() {
            self.rams[r.vm() as usize].set(r.ipa() + i as u64, *b);
        }
    }
}

struct NoConsole;
impl ConsoleSink for NoConsole {
    fn vm_text(&mut self, _vm: &VmSpec, _bytes: &[u8]) {}
}

/// What a refused call must leave as it was.
#[derive(Debug, PartialEq, Eq)]
struct Snapshot {
    streams: Vec<(u32, Option<crate::iommu::driver::ste::Domain>, [u64; 8])>,
    pm: host_abi::PmStatus,
    consumed: usize,
}

struct World {
    io: SmmuService<FakeSmmu>,
    mem: Memory,
    states: VmStates,
    devices: Vec<Vec<Function>>,
}

use crate::iommu::service::tests::service_with;

fn sids() -> Vec<u32> {
    let mut v: Vec<u32> =
        MANIFEST.vms.iter().flat_map(|vm| vm.devices.iter().map(|d| d.rid())).collect();
    v.push(0x1001);
    v
}

impl World {
    fn new() -> Self {
        let max = sids().into_iter().max().unwrap();
        let mut io = service_with(FakeSmmu::qemu(), max, GbpaReset::Abort);
        io.injector = Some(0);
        io.add_streams(2, 0x1001, 1);
        let states = VmStates::new(MANIFEST.vms.len() as u32);
        for vm in MANIFEST.vms {
            states.start(vm.id);
        }
        let devices = MANIFEST
            .vms
            .iter()
            .map(|vm| {
                vm.devices
                    .iter()
                    .map(|a| Function {
                        addr: *a,
                        vendor: 0x1234,
                        device: 0x11e8,
                        bars: [
                            Some(Bar { index: 0, base: 0x1000_0000, size: 0x10_0000 }),
                            None,
                            None,
                            None,
                            None,
                            None,
                        ],
                    })
                    .collect()
            })
            .collect();
        let rams = MANIFEST.vms.iter().map(|_| Ram::default()).collect();
        World { io, mem: Memory { rams, caller: 0 }, states, devices }
    }

    fn snapshot(&mut self) -> Snapshot {
        let streams =
            sids().into_iter().map(|s| (s, self.io.domain_of(s), self.io.ste(s).0)).collect();
        Snapshot { streams, pm: self.io.pm_status(), consumed: self.io.regs_mut().consumed.len() }
    }

    fn call(&mut self, vm: u32, regs: &[u64; HVC_REGS]) -> host_abi::call::HypReturn {
        self.mem.caller = vm;
        let spec = &MANIFEST.vms[vm as usize];
        let caller = Caller { vm: spec, states: &self.states, devices: &self.devices[vm as usize] };
        let mut env =
            Env { caller, mem: &mut self.mem, console: &mut NoConsole, smmu: &mut self.io };
        dispatch(0, regs, &mut env)
    }

    /// Runs one call and checks every property; `Err` describes a violation.
    fn step(&mut self, c: &FuzzCall) -> Result<(), String> {
        let vm = c.vm;
        // The buffers the call may read: written into the caller's RAM first.
        for (ipa, bytes) in &c.mem {
            if MANIFEST.vms[vm as usize].mem.contains_range(*ipa, bytes.len() as u64) {
                for (i, b) in bytes.iter().enumerate() {
                    self.mem.rams[vm as usize].set(ipa + i as u64, *b);
                }
            }
        }
        let before = self.snapshot();
        let rams = self.mem.rams.clone();
        let r = self.call(vm, &c.regs);
        let after = self.snapshot();
        for (i, ram) in self.mem.rams.iter().enumerate() {
            if i as u32 != vm && *ram != rams[i] {
                return Err(std::format!("vm {vm}'s call changed vm {i}'s memory: {c:x?}"));
            }
        }
        if r.status().is_err() {
            if after != before {
                return Err(std::format!(
                    "refused call {c:x?} -> {r:x?} changed the service:\n{before:x?}\n{after:x?}"
                ));
            }
            if self.mem.rams[vm as usize] != rams[vm as usize] {
                return Err(std::format!("refused call {c:x?} wrote the caller's memory"));
            }
        }
        // Every command the SMMU consumed on this call is one the caller may have sent, on its
        // own streams and with its own VMID (or the hypervisor's own CFGI_STE/SYNC/boot set).
        let vmid = MANIFEST.vms[vm as usize].vmid() as u64;
        let consumed = self.io.regs_mut().consumed[before.consumed..].to_vec();
        for c in consumed {
            let op = c[0] & 0xff;
            let sid = (c[0] >> 32) as u32;
            let ok = match op {
                0x03 | 0x05 | 0x06 | 0x40 => self.io.owns(vm, sid),
                0x10..=0x12 => (c[0] >> 32) & 0xffff == vmid,
                0x46 => true,
                // Resume after a power loss the caller's own call noticed (host injection).
                0x04 | 0x20 | 0x30 => true,
                _ => false,
            };
            if !ok {
                return Err(std::format!("vm {vm}'s call {c:x?} sent command {op:#x} {:x?}", c));
            }
        }
        for (b, a) in before.streams.iter().zip(after.streams.iter()) {
            let owner = self.io.owner_of(a.0).unwrap();
            if b.1 != a.1 && owner != vm {
                return Err(std::format!("vm {vm} changed stream {:#x} of vm {owner}", a.0));
            }
            let want = self.io.encoded(a.0, &a.1.unwrap()).map(|s| s.0);
            if Some(a.2) != want {
                return Err(std::format!("stream {:#x}: STE {:x?} is not its domain's", a.0, a.2));
            }
            // What the SMMU walks for a nested stream is a CD the hypervisor accepted (or none).
            if let Some(crate::iommu::driver::ste::Domain::Nested(_)) = a.1 {
                let spec = &platform::qemu_virt::MANIFEST.vms[owner as usize];
                let c = self.io.shadow_cd(a.0, 0).ok_or("nested stream without a shadow CD")?;
                if crate::iommu::validate::cd(&c, spec, &self.io.caps()) != Ok(c) {
                    return Err(std::format!("stream {:#x}: shadow CD {c:x?} is not valid", a.0));
                }
            }
        }
        Ok(())
    }
}

/// One call: who makes it, its registers, and buffers to place in the caller's memory first.
#[derive(Clone, Debug)]
pub struct FuzzCall {
    vm: u32,
    regs: [u64; HVC_REGS],
    mem: Vec<(u64, Vec<u8>)>,
}

/// Interesting addresses for VM `vm`.
fn addresses(vm: u32) -> Vec<u64> {
    let me = MANIFEST.vms[vm as usize].mem;
    let other = MANIFEST.vms[(vm as usize + 1) % MANIFEST.vms.len()].mem;
    std::vec![
        me.base + 0x1000,
        me.base + 0x2000,
        me.end() - 64,
        me.end() - 32,
        me.end() - 1,
        me.end(),
        me.base - 8,
        other.base + 0x1000,
        0x4020_0000,
        0,
        u64::MAX - 7,
    ]
}

fn function_ids() -> Vec<u64> {
    let mut v: Vec<u64> = FunctionId::ALL.iter().map(|f| *f as u32 as u64).collect();
    v.extend([0xC600_00FF, 0x8400_0000, 0xC600_0000 | 1 << 32]);
    v
}

fn word() -> impl Strategy<Value = u64> {
    prop_oneof![Just(0u64), (0u32..64).prop_map(|b| 1u64 << b), any::<u64>(), (0u64..600),]
}

/// A 64-byte STE or 16-byte commands: single bits, valid encodings, random words.
fn buffer(vm: u32) -> impl Strategy<Value = Vec<u8>> {
    let me = &MANIFEST.vms[vm as usize];
    let own = me.devices[0].rid();
    let cd = me.mem.base + 0x3000;
    let valid: Vec<Vec<u64>> = std::vec![
        ste::abort().0.to_vec(),
        host_abi::smmu::Ste::default()
            .with_v(1)
            .with_config(host_abi::smmu::SteConfig::Bypass)
            .0
            .to_vec(),
        host_abi::smmu::Ste::default()
            .with_v(1)
            .with_config(host_abi::smmu::SteConfig::S1)
            .with_s1_context_ptr(cd)
            .0
            .to_vec(),
        [host_abi::smmu::Command::cfgi_ste(own).0, host_abi::smmu::Command::tlbi_nh_all(0).0]
            .concat(),
        [host_abi::smmu::Command::sync().0, host_abi::smmu::Command::atc_inv_all(own).0].concat(),
    ];
    (prop::sample::select(valid), prop::collection::vec((0usize..8, word()), 0..4)).prop_map(
        |(mut words, flips)| {
            words.resize(8, 0);
            for (i, w) in flips {
                words[i] ^= w;
            }
            words.iter().flat_map(|w| w.to_le_bytes()).collect()
        },
    )
}

fn call_strategy() -> impl Strategy<Value = FuzzCall> {
    (0u32..3).prop_flat_map(|vm| {
        let addrs = addresses(vm);
        let owners: Vec<u64> = sids().into_iter().map(|s| s as u64).collect();
        let arg =
            prop_oneof![prop::sample::select(addrs.clone()), prop::sample::select(owners), word(),];
        (
            Just(vm),
            prop::sample::select(function_ids()),
            prop::collection::vec(arg, 7),
            buffer(vm),
            prop::sample::select(addrs),
        )
            .prop_map(|(vm, f, args, buf, at)| {
                let mut regs = [0u64; HVC_REGS];
                regs[0] = f;
                regs[1..].copy_from_slice(&args);
                FuzzCall { vm, regs, mem: std::vec![(at, buf)] }
            })
    })
}

/// The corpus: one call per line, `vm x0 x1 x2 x3 x4 x5 x6 x7` in hex (x0..x7 as the VM sets
/// them), optionally followed by `@ipa` and hex words placed there first.
fn corpus() -> Vec<FuzzCall> {
    let text = include_str!("../fuzz/corpus.txt");
    let mut out = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')) {
        let (call, buf) = line.split_once('@').map_or((line, None), |(a, b)| (a, Some(b)));
        let nums: Vec<u64> = call
            .split_whitespace()
            .map(|w| u64::from_str_radix(w.trim_start_matches("0x"), 16).expect("corpus hex"))
            .collect();
        assert_eq!(nums.len(), 9, "corpus line: {line}");
        let mut regs = [0u64; HVC_REGS];
        regs.copy_from_slice(&nums[1..]);
        let mem = buf
            .map(|b| {
                let mut w = b.split_whitespace().map(|x| {
                    u64::from_str_radix(x.trim_start_matches("0x"), 16).expect("corpus hex")
                });
                let at = w.next().expect("@ipa");
                std::vec![(at, w.flat_map(|x| x.to_le_bytes()).collect())]
            })
            .unwrap_or_default();
        out.push(FuzzCall { vm: nums[0] as u32, regs, mem });
    }
    out
}

fn cases() -> u32 {
    std::env::var("FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(256)
}

/// The seed of both fuzzers' random sequences: `FUZZ_SEED` (decimal or 0x-hex; `cargo xtask
/// fuzz` sets a new one each run and prints it), else a fixed one, so that `cargo test` and CI
/// run the same sequences every time and a red run is reproducible.
pub fn rng_seed() -> proptest::test_runner::RngSeed {
    let parse = |v: &str| match v.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => v.parse().ok(),
    };
    let seed = std::env::var("FUZZ_SEED").ok().and_then(|v| parse(v.trim()));
    proptest::test_runner::RngSeed::Fixed(seed.unwrap_or(0x5eed_5eed))
}

#[test]
fn the_corpus_replays_without_a_violation() {
    let c = corpus();
    assert!(c.len() >= 20, "the corpus lost its seeds");
    let mut w = World::new();
    for call in &c {
        if let Err(e) = w.step(call) {
            panic!("{e}");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: cases(), failure_persistence: None, rng_seed: rng_seed(), ..ProptestConfig::default() })]

    #[test]
    fn random_call_sequences_keep_every_property(
        calls in prop::collection::vec(
            prop_oneof![3 => call_strategy(), 1 => prop::sample::select(corpus())],
            1..12,
        )
    ) {
        let mut w = World::new();
        for c in &calls {
            if let Err(e) = w.step(c) {
                prop_assert!(false, "{}", e);
            }
        }
    }
}

#[test]
fn the_checker_notices_a_change_made_by_a_refused_call() {
    // A call that fails must leave the service as it was: simulate a service that attaches
    // and then fails, and see the snapshot differ.
    let mut w = World::new();
    let before = w.snapshot();
    let g1 = MANIFEST.vms[1].devices[0].rid();
    w.io.attach(1, g1, crate::iommu::driver::ste::Domain::Identity, &crate::vm::memory::NoMemory)
        .unwrap();
    assert_ne!(w.snapshot(), before);
}
