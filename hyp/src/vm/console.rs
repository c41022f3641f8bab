//! Per-VM console line assembly: text a VM writes through `CONSOLE_WRITE` is collected until a
//! newline, so lines from VMs running on different CPUs never interleave mid-line, and each line
//! is printed with the VM's name as prefix.

/// Longest line kept; a longer line is emitted in pieces of this size.
pub const LINE_MAX: usize = 160;

/// A partial line from one VM.
#[derive(Debug)]
pub struct LineBuffer {
    buf: [u8; LINE_MAX],
    len: usize,
}

impl Default for LineBuffer {
    fn default() -> Self {
        Self::new()
    }
}

impl LineBuffer {
    /// An empty buffer.
    pub const fn new() -> Self {
        Self { buf: [0; LINE_MAX], len: 0 }
    }

    /// Appends `bytes`; calls `emit` with each completed line (without the newline). Control
    /// characters other than tab are replaced by `?` so a VM cannot drive the terminal.
    pub fn push(&mut self, bytes: &[u8], emit: &mut dyn FnMut(&[u8])) {
        for &b in bytes {
            match b {
                b'\n' => self.flush(emit),
                b'\r' => {}
                _ => {
                    if self.len == LINE_MAX {
                        self.flush(emit);
                    }
                    self.buf[self.len] =
                        if b == b'\t' || (0x20..0x7f).contains(&b) { b } else { b'?' };
                    self.len += 1;
                }
            }
        }
    }

    /// Emits the partial line, if any (used when a VM stops mid-line).
    pub fn flush(&mut self, emit: &mut dyn FnMut(&[u8])) {
        emit(&self.buf[..self.len]);
        self.len = 0;
    }

    /// Whether a partial line is pending.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::String;
    use std::vec::Vec;

    fn run(chunks: &[&[u8]]) -> Vec<String> {
        let mut lb = LineBuffer::new();
        let mut out = Vec::new();
        for c in chunks {
            lb.push(c, &mut |l| out.push(String::from_utf8(l.to_vec()).unwrap()));
        }
        out
    }

    #[test]
    fn lines_are_assembled_across_calls() {
        assert_eq!(run(&[b"test a ... ", b"ok\nsec", b"ond\r\n"]), ["test a ... ok", "second"]);
        assert!(run(&[b"no newline"]).is_empty());
    }

    #[test]
    fn control_characters_are_neutralised_and_long_lines_split() {
        assert_eq!(run(&[b"a\x1b[2Jb\n"]), ["a?[2Jb"]);
        let long = [b'x'; LINE_MAX + 5];
        let out = run(&[&long, b"\n"]);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].len(), LINE_MAX);
        assert_eq!(out[1].len(), 5);
    }
}
