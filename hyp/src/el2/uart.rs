//! PL011 console, the `log` backend, and a lock-free emergency console for panics.

use core::fmt::{self, Write};
use core::ptr::NonNull;
use spin::mutex::SpinMutex;

/// Data register.
const DR: usize = 0x00;
/// Flag register.
const FR: usize = 0x18;
/// FR.TXFF: transmit FIFO full.
const FR_TXFF: u32 = 1 << 5;

/// A PL011 UART at a fixed address.
pub struct Pl011 {
    base: NonNull<u32>,
}

// SAFETY: the UART registers are device memory reachable from every CPU; access is serialised
// by the console lock (or deliberately not, for the emergency console, where interleaving is
// the lesser evil).
unsafe impl Send for Pl011 {}

impl Pl011 {
    /// # Safety
    ///
    /// `base` must be the PL011's register block, mapped as device memory.
    pub const unsafe fn new(base: usize) -> Self {
        // SAFETY: the caller promises a real register block, which is not at address 0.
        Self { base: unsafe { NonNull::new_unchecked(base as *mut u32) } }
    }

    fn reg(&self, off: usize) -> *mut u32 {
        self.base.as_ptr().wrapping_byte_add(off)
    }

    /// Sends one byte, waiting while the FIFO is full.
    pub fn put(&mut self, b: u8) {
        // SAFETY: FR and DR are registers of the UART this value was created for.
        unsafe {
            while self.reg(FR).read_volatile() & FR_TXFF != 0 {}
            self.reg(DR).write_volatile(b as u32);
        }
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
    let _ = u.write_fmt(args);
}
