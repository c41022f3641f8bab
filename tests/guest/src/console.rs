//! Console output through the CONSOLE_WRITE hypercall.

use core::fmt::{self, Write};
use host_abi::{HypCall, CONSOLE_WRITE_MAX};

/// Writes text through the hypervisor (it prefixes each line with this VM's name).
pub struct Console;

impl Write for Console {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for chunk in s.as_bytes().chunks(CONSOLE_WRITE_MAX as usize) {
            // The MMU is off: a buffer's address is its IPA.
            let mut buf = [0u8; CONSOLE_WRITE_MAX as usize];
            buf[..chunk.len()].copy_from_slice(chunk);
            let r = crate::arch::hvc(
                HypCall::ConsoleWrite { ipa: buf.as_ptr() as u64, len: chunk.len() as u64 }
                    .to_regs(),
            );
            if r[0] != 0 {
                return Err(fmt::Error);
            }
        }
        Ok(())
    }
}

/// Prints formatted text.
pub fn print(args: fmt::Arguments<'_>) {
    let _ = Console.write_fmt(args);
}

/// `println!` for the guest.
#[macro_export]
macro_rules! println {
    () => { $crate::console::print(format_args!("\n")) };
    ($($arg:tt)*) => {{
        $crate::console::print(format_args!($($arg)*));
        $crate::console::print(format_args!("\n"));
    }};
}
