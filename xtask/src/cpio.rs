//! A writer of "newc" cpio archives (the format of a Linux initramfs), so the initramfs can hold
//! device nodes (`/dev/console`) and root-owned files without root or `mknod` on the build
//! machine.

/// File types (the `S_IFMT` part of `c_mode`).
pub const S_IFDIR: u32 = 0o040000;
/// Regular file.
pub const S_IFREG: u32 = 0o100000;
/// Symbolic link.
pub const S_IFLNK: u32 = 0o120000;
/// Character device.
pub const S_IFCHR: u32 = 0o020000;

/// An archive being written.
#[derive(Default)]
pub struct Cpio {
    out: Vec<u8>,
    ino: u32,
}

fn pad4(v: &mut Vec<u8>) {
    while !v.len().is_multiple_of(4) {
        v.push(0);
    }
}

impl Cpio {
    /// An empty archive.
    pub fn new() -> Self {
        Self::default()
    }

    fn entry(&mut self, name: &str, mode: u32, rdev: (u32, u32), data: &[u8]) {
        self.ino += 1;
        let nlink = if mode & 0o170000 == S_IFDIR { 2 } else { 1 };
        // magic, ino, mode, uid, gid, nlink, mtime, filesize, devmajor, devminor, rdevmajor,
        // rdevminor, namesize, check: eight hex digits each.
        let fields = [
            self.ino,
            mode,
            0,
            0,
            nlink,
            0,
            data.len() as u32,
            0,
            0,
            rdev.0,
            rdev.1,
            name.len() as u32 + 1,
            0,
        ];
        self.out.extend_from_slice(b"070701");
        for f in fields {
            self.out.extend_from_slice(format!("{f:08x}").as_bytes());
        }
        self.out.extend_from_slice(name.as_bytes());
        self.out.push(0);
        pad4(&mut self.out);
        self.out.extend_from_slice(data);
        pad4(&mut self.out);
    }

    /// A directory.
    pub fn dir(&mut self, name: &str) {
        self.entry(name, S_IFDIR | 0o755, (0, 0), &[]);
    }

    /// A regular file with permission bits `perm`.
    pub fn file(&mut self, name: &str, perm: u32, data: &[u8]) {
        self.entry(name, S_IFREG | perm, (0, 0), data);
    }

    /// A symbolic link to `target`.
    pub fn symlink(&mut self, name: &str, target: &str) {
        self.entry(name, S_IFLNK | 0o777, (0, 0), target.as_bytes());
    }

    /// A character device node.
    pub fn char_dev(&mut self, name: &str, perm: u32, major: u32, minor: u32) {
        self.entry(name, S_IFCHR | perm, (major, minor), &[]);
    }

    /// The archive, with its trailer.
    pub fn finish(mut self) -> Vec<u8> {
        self.entry("TRAILER!!!", 0, (0, 0), &[]);
        // The kernel reads the archive in 512-byte blocks' worth of padding gracefully, but
        // cpio tools expect it.
        while !self.out.len().is_multiple_of(512) {
            self.out.push(0);
        }
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (name, mode, rdev, data).
    type Entry = (String, u32, (u32, u32), Vec<u8>);

    /// Reads a newc archive back (a minimal reader for the test).
    fn read(a: &[u8]) -> Vec<Entry> {
        let mut out = Vec::new();
        let mut p = 0;
        let field = |p: usize, i: usize| {
            u32::from_str_radix(std::str::from_utf8(&a[p + 6 + 8 * i..p + 14 + 8 * i]).unwrap(), 16)
                .unwrap()
        };
        loop {
            assert_eq!(&a[p..p + 6], b"070701", "magic at {p}");
            let (mode, size, rmaj, rmin, namesize) =
                (field(p, 1), field(p, 6), field(p, 9), field(p, 10), field(p, 11));
            let name_at = p + 110;
            let name =
                String::from_utf8(a[name_at..name_at + namesize as usize - 1].to_vec()).unwrap();
            assert_eq!(a[name_at + namesize as usize - 1], 0, "NUL-terminated name");
            let data_at = (name_at + namesize as usize).next_multiple_of(4);
            let data = a[data_at..data_at + size as usize].to_vec();
            p = (data_at + size as usize).next_multiple_of(4);
            if name == "TRAILER!!!" {
                break;
            }
            out.push((name, mode, (rmaj, rmin), data));
        }
        out
    }

    #[test]
    fn writes_what_the_kernel_unpacks() {
        let mut c = Cpio::new();
        c.dir("dev");
        c.char_dev("dev/console", 0o600, 5, 1);
        c.file("init", 0o755, b"#!/bin/sh\necho hi\n");
        c.symlink("bin/sh", "busybox");
        let a = c.finish();
        assert_eq!(a.len() % 512, 0);
        let e = read(&a);
        assert_eq!(e.len(), 4);
        assert_eq!(e[0].0, "dev");
        assert_eq!(e[0].1, S_IFDIR | 0o755);
        assert_eq!((e[1].1, e[1].2), (S_IFCHR | 0o600, (5, 1)));
        assert_eq!((e[2].1, e[2].3.as_slice()), (S_IFREG | 0o755, &b"#!/bin/sh\necho hi\n"[..]));
        assert_eq!((e[3].1, e[3].3.as_slice()), (S_IFLNK | 0o777, &b"busybox"[..]));
    }

    #[test]
    fn headers_are_110_bytes_and_data_is_aligned() {
        let mut c = Cpio::new();
        c.file("a", 0o644, b"x");
        let a = c.finish();
        // 110-byte header + "a\0" = 112 (aligned), then 1 data byte padded to 4.
        assert_eq!(&a[110..112], b"a\0");
        assert_eq!(a[112], b'x');
        assert_eq!(&a[113..116], &[0, 0, 0]);
        assert_eq!(&a[116..122], b"070701");
    }

    #[test]
    fn the_system_cpio_tool_lists_it() {
        // Cross-check with GNU cpio (`cargo xtask setup` installs it).
        let mut c = Cpio::new();
        c.dir("bin");
        c.file("bin/x", 0o755, b"data");
        let dir = std::env::temp_dir().join(format!("cpio-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("a.cpio");
        std::fs::write(&path, c.finish()).unwrap();
        let out = std::process::Command::new("cpio")
            .args(["-it", "-F", path.to_str().unwrap()])
            .output()
            .unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        assert!(out.status.success());
        assert_eq!(String::from_utf8_lossy(&out.stdout), "bin\nbin/x\n");
    }
}
