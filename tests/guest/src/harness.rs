//! The test harness: runs named tests in order, prints `test NAME ... ok` or
//! `test NAME ... FAILED: reason` for each and a final `N passed, M failed`, then powers the VM
//! off. An unexpected exception fails the running test, counts the rest as not run (failed),
//! prints the summary and powers off.

use crate::msg::Msg;
use crate::println;
use core::sync::atomic::{AtomicUsize, Ordering};

/// A test: a name and a function returning `Err(reason)` on failure.
pub type Test = (&'static str, fn() -> Result<(), Msg>);

static TESTS: AtomicUsize = AtomicUsize::new(0);
static TESTS_LEN: AtomicUsize = AtomicUsize::new(0);
/// The names [`run`] skips.
static SKIP: AtomicUsize = AtomicUsize::new(0);
static SKIP_LEN: AtomicUsize = AtomicUsize::new(0);
static CURRENT: AtomicUsize = AtomicUsize::new(usize::MAX);
static PASSED: AtomicUsize = AtomicUsize::new(0);
static FAILED: AtomicUsize = AtomicUsize::new(0);

fn tests() -> &'static [Test] {
    let p = TESTS.load(Ordering::SeqCst) as *const Test;
    if p.is_null() {
        return &[];
    }
    // SAFETY: `run` stored a pointer and length of a `&'static [Test]`.
    unsafe { core::slice::from_raw_parts(p, TESTS_LEN.load(Ordering::SeqCst)) }
}

fn skipped() -> &'static [&'static str] {
    let p = SKIP.load(Ordering::SeqCst) as *const &'static str;
    if p.is_null() {
        return &[];
    }
    // SAFETY: `run` stored a pointer and length of a `&'static [&'static str]`.
    unsafe { core::slice::from_raw_parts(p, SKIP_LEN.load(Ordering::SeqCst)) }
}

/// Runs the tests of `list` whose names are not in `skip`, and powers the VM off.
pub fn run(list: &'static [Test], skip: &'static [&'static str]) -> ! {
    TESTS.store(list.as_ptr() as usize, Ordering::SeqCst);
    TESTS_LEN.store(list.len(), Ordering::SeqCst);
    SKIP.store(skip.as_ptr() as usize, Ordering::SeqCst);
    SKIP_LEN.store(skip.len(), Ordering::SeqCst);
    for (i, (name, f)) in list.iter().enumerate() {
        if skip.contains(name) {
            continue;
        }
        CURRENT.store(i, Ordering::SeqCst);
        match f() {
            Ok(()) => {
                bump(&PASSED);
                println!("test {name} ... ok");
            }
            Err(m) => {
                bump(&FAILED);
                println!("test {name} ... FAILED: {}", m.as_str());
            }
        }
    }
    finish()
}

fn finish() -> ! {
    println!("{} passed, {} failed", PASSED.load(Ordering::SeqCst), FAILED.load(Ordering::SeqCst));
    crate::arch::system_off()
}

/// Called for an exception no probe expected.
pub fn unexpected_exception(kind: u64, esr: u64, far: u64, elr: u64) -> ! {
    let list = tests();
    let cur = CURRENT.load(Ordering::SeqCst);
    let why = crate::msg!(
        "unexpected exception (vector {kind}): ESR={esr:#x} EC={:#x} FAR={far:#x} ELR={elr:#x}",
        (esr >> 26) & 0x3f
    );
    match list.get(cur) {
        Some((name, _)) => {
            bump(&FAILED);
            println!("test {name} ... FAILED: {}", why.as_str());
            let skip = skipped();
            for (name, _) in list[cur + 1..].iter().filter(|(n, _)| !skip.contains(n)) {
                bump(&FAILED);
                println!("test {name} ... FAILED: not run after an unexpected exception");
            }
        }
        None => println!("{}", why.as_str()),
    }
    finish()
}

/// Adds one (the guest is single-threaded and runs with the MMU off, where exclusive
/// read-modify-write instructions are best avoided: a plain load and store suffice).
fn bump(c: &AtomicUsize) {
    c.store(c.load(Ordering::SeqCst) + 1, Ordering::SeqCst);
}
