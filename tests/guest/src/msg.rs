//! A fixed-size text buffer for test failure messages (no heap in the guest).

use core::fmt;

/// Capacity of a message.
pub const MSG_LEN: usize = 160;

/// A short message; text beyond the capacity is cut off.
#[derive(Clone)]
pub struct Msg {
    buf: [u8; MSG_LEN],
    len: usize,
}

impl Msg {
    /// An empty message.
    pub const fn new() -> Self {
        Self { buf: [0; MSG_LEN], len: 0 }
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        // Only whole UTF-8 sequences are ever appended (see write_str).
        core::str::from_utf8(&self.buf[..self.len]).unwrap_or("?")
    }
}

impl Default for Msg {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Write for Msg {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for ch in s.chars() {
            let mut b = [0u8; 4];
            let e = ch.encode_utf8(&mut b);
            if self.len + e.len() > MSG_LEN {
                break;
            }
            self.buf[self.len..self.len + e.len()].copy_from_slice(e.as_bytes());
            self.len += e.len();
        }
        Ok(())
    }
}

impl fmt::Debug for Msg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Builds a [`Msg`] with `format!` syntax.
#[macro_export]
macro_rules! msg {
    ($($arg:tt)*) => {{
        let mut m = $crate::msg::Msg::new();
        let _ = core::fmt::Write::write_fmt(&mut m, format_args!($($arg)*));
        m
    }};
}

/// Fails the current test with a message unless `cond` holds.
#[macro_export]
macro_rules! check {
    ($cond:expr, $($arg:tt)*) => {
        if !$cond {
            return Err($crate::msg!($($arg)*));
        }
    };
}

/// Fails the current test unless the two values are equal, printing both.
#[macro_export]
macro_rules! check_eq {
    ($a:expr, $b:expr, $what:expr) => {{
        let (a, b) = (&$a, &$b);
        if a != b {
            return Err($crate::msg!("{}: got {:x?}, expected {:x?}", $what, a, b));
        }
    }};
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_format_and_truncate() {
        let m = msg!("value {:#x}", 0x2a);
        assert_eq!(m.as_str(), "value 0x2a");
        let long = msg!("{}", "é".repeat(100));
        assert!(long.as_str().len() <= MSG_LEN);
        assert!(long.as_str().chars().all(|c| c == 'é'), "never cuts a character in half");
    }

    fn checked(x: u32) -> Result<(), Msg> {
        check!(x < 3, "x = {x} is too large");
        check_eq!(x, 1, "x");
        Ok(())
    }

    #[test]
    fn check_macros_fail_with_the_reason() {
        assert!(checked(1).is_ok());
        assert_eq!(checked(5).unwrap_err().as_str(), "x = 5 is too large");
        assert_eq!(checked(2).unwrap_err().as_str(), "x: got 2, expected 1");
    }
}
