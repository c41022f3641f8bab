//! PL011 console, the `log` backend, and a lock-free emergency console for panics.

use core::fmt::{self, Write};
use core::ptr::NonNull;
use safe_mmio::fields::{ReadPure, WriteOnly};
use safe_mmio::{field, UniqueMmioPointer};
use spin::mutex::SpinMutex;

/// The PL011 registers the console uses.
#[repr(C)]
struct Pl011Regs {
    /// 0x00 UARTDR: data (a write queues one character).
    dr: WriteOnly<u32>,
    _reserved: [u32; 5],
    /// 0x18 UARTFR: flags.
    fr: ReadPure<u32>,
}

/// FR.TXFF: transmit FIFO full.
const FR_TXFF: u32 = 1 << 5;

/// A PL011 UART at a fixed address.
pub struct Pl011 {
    regs: UniqueMmioPointer<'static, Pl011Regs>,
}

// SAFETY: the UART registers are device memory reachable from every CPU; access is serialised
// by the console lock (or deliberately not, for the emergency console, where interleaving is
// the lesser evil).
unsafe impl Send for Pl011 {}

impl Pl011 {
    /// # Safety
    ///
    /// `base` must be the PL011's register block, mapped as device memory (or the MMU off);
    /// only the console and the emergency console (when the console's holder failed) use it.
    pub unsafe fn new(base: usize) -> Self {
        let p = NonNull::new(base as *mut Pl011Regs).expect("UART base is not 0");
        // SAFETY: per the caller: the UART's registers, and no other user at the same time.
        Self { regs: unsafe { UniqueMmioPointer::new(p) } }
    }

    /// Sends one byte, waiting while the FIFO is full.
    pub fn put(&mut self, b: u8) {
        while field!(self.regs, fr).read() & FR_TXFF != 0 {}
        field!(self.regs, dr).write(b as u32);
    }
}

impl Write for Pl011 {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for b in s.bytes() {
            if b == b'\n' {
                self.put(b'\r');
            }
            self.put(b);
        }
        Ok(())
    }
}

/// The console, shared by all CPUs.
pub static CONSOLE: SpinMutex<Option<Pl011>> = SpinMutex::new(None);

/// Installs the console at `base`.
///
/// # Safety
///
/// As for [`Pl011::new`]; call once.
pub unsafe fn init(base: usize) {
    // SAFETY: forwarded to the caller.
    *CONSOLE.lock() = Some(unsafe { Pl011::new(base) });
    log::set_logger(&LOGGER).ok();
    log::set_max_level(log::LevelFilter::Info);
}

/// Runs `f` with the console locked (whole lines from different CPUs never interleave).
pub fn with_console(f: impl FnOnce(&mut Pl011)) {
    if let Some(c) = CONSOLE.lock().as_mut() {
        f(c)
    }
}

struct Logger;
static LOGGER: Logger = Logger;

impl log::Log for Logger {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, record: &log::Record<'_>) {
        with_console(|c| {
            // The PL011's fmt::Write never fails (it waits for room): nothing to handle.
            let _ = writeln!(c, "hyp: {:<5} {}", record.level(), record.args());
        });
    }
    fn flush(&self) {}
}

/// Writes to the UART without taking the lock: for panics and fatal exceptions, where the lock
/// may be held by the CPU that failed.
pub fn emergency(args: fmt::Arguments<'_>, base: usize) {
    // SAFETY: `base` is the board's UART; a concurrent writer can only garble characters.
    let mut u = unsafe { Pl011::new(base) };
    // Never fails (the PL011 waits for room); and on this path there is nobody left to tell.
    let _ = u.write_fmt(args);
}
