//! Runs QEMU `virt` with the hypervisor and the VM images, with a hard timeout, the serial
//! output streamed and kept, and QEMU killed if we stop waiting.
//!
//! Two consoles are merged line by line into one stream: the board's PL011 (QEMU's stdout: the
//! hypervisor's own lines and the bare-metal VMs' `[name]` lines, which go through a
//! hypercall), and the host's PCI 16550 (`pci-serial`), which a Linux host drives as `ttyS0`.
//! The 16550's output arrives on a Unix socket QEMU listens on; xtask connects to it and prefixes
//! every line with `[host] `.

use crate::tools::root;
use crate::tools::QEMU;
use crate::Opts;
use platform::qemu_virt::{
    EDU_SLOTS, GUEST1_DISK_SLOT, HOST_DISK_SLOT, HOST_SERIAL_SLOT, MANIFEST, QEMU_CPUS,
    QEMU_RAM_SIZE,
};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Marker of a normal end (printed by the hypervisor when the last VM stops).
pub const END_MARKER: &str = "all VMs stopped";
/// Marker of a fatal hypervisor error.
pub const PANIC_MARKER: &str = "hyp: PANIC";
/// Prefix of the host's 16550 console lines in the merged output.
pub const HOST_PREFIX: &str = "[host] ";

/// What runs as VM 0.
#[derive(Clone, Debug)]
pub enum Host {
    /// The same bare-metal image as the guests.
    Bare,
    /// A Linux kernel with its initramfs and device tree, placed where the hypervisor expects
    /// them (see `platform::linux`).
    Linux(LinuxFiles),
    /// No hypervisor at all: QEMU boots the Linux kernel itself (`-kernel Image -initrd`, its
    /// own device tree, the real SMMU given to Linux), on one CPU with the host VM's RAM size
    /// and the host's console and disk in the same slots. The bench's native baseline.
    Native(NativeLinux),
}

/// A Linux kernel QEMU boots directly (see [`Host::Native`]).
#[derive(Clone, Debug)]
pub struct NativeLinux {
    /// The arm64 `Image`.
    pub image: PathBuf,
    /// The initramfs (newc cpio).
    pub initrd: PathBuf,
    /// RAM in bytes.
    pub ram: u64,
    /// CPUs (`-smp`): as many as the host has under the hypervisor.
    pub cpus: u32,
}

/// A Linux host's files and where each is loaded.
#[derive(Clone, Debug)]
pub struct LinuxFiles {
    /// The arm64 `Image`.
    pub image: PathBuf,
    /// Its load address.
    pub image_addr: u64,
    /// The initramfs (newc cpio).
    pub initrd: PathBuf,
    /// Its load address.
    pub initrd_addr: u64,
    /// The device tree blob.
    pub dtb: PathBuf,
    /// Its load address.
    pub dtb_addr: u64,
}

/// One QEMU run.
#[derive(Clone, Debug)]
pub struct Launch<'a> {
    /// The hypervisor ELF.
    pub hyp: &'a Path,
    /// The flat bare-metal image loaded into every VM that is not a Linux host.
    pub guest: &'a Path,
    /// VM 0.
    pub host: Host,
    /// guest1 as a Linux guest (`run --guest1 linux`), else the bare-metal image.
    pub guest1: Option<LinuxFiles>,
    /// The host's virtio disk image.
    pub disk: &'a Path,
    /// Instead of `disk`: QEMU's `null-co` block driver of this many bytes (reads return
    /// zeros, writes are dropped, no host I/O), each request completing
    /// [`NULL_DISK_LATENCY_NS`] of real time after it is made (the bench).
    pub null_disk: Option<u64>,
    /// The hypervisor's boot options (`-append`).
    pub append: String,
    /// Further QEMU arguments (e.g. `-icount`).
    pub extra: Vec<String>,
    /// Names the log file `target/xtask/last-TAG.log` (and the trace `trace-TAG.log`).
    pub tag: String,
    /// Record QEMU's trace of [`crate::report::TRACE_EVENTS`] (test runs: the trace is the judge
    /// of what no VM can see).
    pub trace: bool,
}

impl Launch<'_> {
    fn console_socket(&self) -> PathBuf {
        root().join(format!("target/xtask/host-console-{}.sock", self.tag))
    }

    /// Where QEMU's trace goes.
    pub fn trace_path(&self) -> PathBuf {
        root().join(format!("target/xtask/trace-{}.log", self.tag))
    }
}

/// The QEMU arguments of a native launch: the same machine without `virtualization=on` and
/// without the ITS (the host under the hypervisor has none, so its devices use INTx natively
/// too), QEMU's own device tree; `append` is the kernel's command line.
fn native_args(l: &Launch<'_>, n: &NativeLinux) -> Vec<String> {
    let mut a = machine("virt,gic-version=3,iommu=smmuv3,its=off");
    a.extend(["-smp".into(), n.cpus.to_string(), "-m".into(), format!("{}M", n.ram >> 20)]);
    a.extend(l.extra.iter().cloned());
    a.extend(["-kernel".into(), n.image.display().to_string()]);
    a.extend(["-initrd".into(), n.initrd.display().to_string()]);
    a.extend(["-append".into(), l.append.clone()]);
    a.extend(console_and_disk(l));
    a
}

/// What every launch shares: `machine` (QEMU's `-M`), the CPU, the SMMU with both stages, no
/// display, no reboot, no network.
fn machine(machine: &str) -> Vec<String> {
    let shared = [
        "-cpu",
        "max",
        "-global",
        "arm-smmuv3.stage=nested",
        "-nographic",
        "-no-reboot",
        "-nic",
        "none",
    ];
    let mut a = vec!["-M".to_string(), machine.to_string()];
    a.extend(shared.iter().map(|s| s.to_string()));
    a
}

/// The host's console (a PCI 16550 on a socket xtask reads) and its virtio-blk disk.
fn console_and_disk(l: &Launch<'_>) -> Vec<String> {
    let chardev = match l.host {
        Host::Linux(_) | Host::Native(_) => {
            format!("socket,id=hostcon,path={},server=on,wait=off", l.console_socket().display())
        }
        Host::Bare => "null,id=hostcon".into(),
    };
    vec![
        "-chardev".into(),
        chardev,
        "-device".into(),
        format!("pci-serial,addr={HOST_SERIAL_SLOT},chardev=hostcon"),
        // snapshot=on: the host's writes go to a temporary overlay, so every run starts from
        // the same image.
        "-drive".into(),
        match l.null_disk {
            Some(size) => format!(
                "driver=null-co,read-zeroes=on,size={size},latency-ns={NULL_DISK_LATENCY_NS},\
                 if=none,id=hostdisk"
            ),
            None => format!("file={},if=none,format=raw,id=hostdisk,snapshot=on", l.disk.display()),
        },
        // iommu_platform=on: without it QEMU's virtio devices DMA to guest-physical addresses
        // straight into memory, around the SMMU (and Linux, not offered
        // VIRTIO_F_ACCESS_PLATFORM, does not use the DMA API for them). It needs the modern
        // (virtio 1.0) device only.
        "-device".into(),
        format!(
            "virtio-blk-pci,addr={HOST_DISK_SLOT},drive=hostdisk,disable-legacy=on,iommu_platform=on"
        ),
    ]
}

/// The QEMU arguments of a launch.
pub fn args(l: &Launch<'_>) -> Vec<String> {
    if let Host::Native(n) = &l.host {
        return native_args(l, n);
    }
    let mut a = machine("virt,virtualization=on,gic-version=3,iommu=smmuv3");
    a.extend([
        "-smp".into(),
        QEMU_CPUS.to_string(),
        "-m".into(),
        format!("{}M", QEMU_RAM_SIZE >> 20),
    ]);
    a.extend(l.extra.iter().cloned());
    if l.trace {
        for e in crate::report::TRACE_EVENTS {
            a.extend(["-trace".into(), e.into()]);
        }
        a.extend(["-D".into(), l.trace_path().display().to_string()]);
    }
    a.extend(["-append".into(), l.append.clone()]);
    a.extend(["-kernel".into(), l.hyp.display().to_string()]);
    let loader = |file: &Path, addr: u64| {
        [
            "-device".to_string(),
            format!("loader,file={},addr={addr:#x},force-raw=on", file.display()),
        ]
    };
    for vm in MANIFEST.vms {
        let linux = match (&l.host, vm.id) {
            (Host::Linux(f), 0) => Some(f),
            (_, 1) => l.guest1.as_ref(),
            _ => None,
        };
        match linux {
            Some(f) => {
                a.extend(loader(&f.image, f.image_addr));
                a.extend(loader(&f.initrd, f.initrd_addr));
                a.extend(loader(&f.dtb, f.dtb_addr));
            }
            None => a.extend(loader(l.guest, vm.mem.base)),
        }
    }
    // One edu device per VM; raise its DMA mask (28 bits by default) so VM addresses are not
    // clamped.
    for slot in EDU_SLOTS {
        a.extend(["-device".into(), format!("edu,addr={slot},dma_mask=0xffffffffffffffff")]);
    }
    // The host's console and disk (a bare-metal host leaves them alone).
    a.extend(console_and_disk(l));
    // guest1's disk, in every run (a bare-metal guest1 leaves it alone): the same image as the
    // host's, each with its own temporary overlay (snapshot=on), behind the SMMU
    // (iommu_platform=on) like the host's; in the bench, the same null disk as the host's.
    a.extend([
        "-drive".into(),
        match l.null_disk {
            Some(size) => format!(
                "driver=null-co,read-zeroes=on,size={size},latency-ns={NULL_DISK_LATENCY_NS},\
                 if=none,id=guest1disk"
            ),
            None => format!("file={},if=none,format=raw,id=guest1disk,snapshot=on", l.disk.display()),
        },
        "-device".into(),
        format!(
            "virtio-blk-pci,addr={GUEST1_DISK_SLOT},drive=guest1disk,disable-legacy=on,iommu_platform=on"
        ),
    ]);
    a
}

/// Quotes `arg` for a POSIX shell (unchanged when it needs no quoting).
pub fn shell_quote(arg: &str) -> String {
    let plain = !arg.is_empty()
        && arg.bytes().all(|b| b.is_ascii_alphanumeric() || b"_./=,:@%+-".contains(&b));
    if plain {
        arg.to_string()
    } else {
        format!("'{}'", arg.replace('\'', "'\\''"))
    }
}

/// A command line that can be pasted into a shell as it is.
pub fn shell_line(program: &str, args: &[String]) -> String {
    let mut s = shell_quote(program);
    for a in args {
        s.push(' ');
        s.push_str(&shell_quote(a));
    }
    s
}

/// How long a request to a null disk takes, in real time. Longer than the guest's path from
/// submitting a request to idling, so that every request is completed by an interrupt that
/// wakes the waiting task, as with a real disk. With no latency, whether the completion (a
/// bottom half in QEMU's main loop) comes before or after the guest idles depends on the host's
/// load, and a 4 KiB read cost 22,600 or 27,800 instructions from one boot to the next.
pub const NULL_DISK_LATENCY_NS: u64 = 500_000;

/// A finished (or abandoned) run.
pub struct RunOutput {
    /// Everything QEMU printed.
    pub log: String,
    /// Where it was saved.
    pub log_path: PathBuf,
    /// QEMU's exit status (None if killed on timeout).
    pub status: Option<std::process::ExitStatus>,
    /// Whether the timeout hit.
    pub timed_out: bool,
    /// Seconds allowed.
    pub timeout: u64,
    /// Seconds it took.
    pub seconds: f64,
    /// Checks xtask made on the log (filled in by the caller).
    pub checks: Vec<crate::report::LogCheck>,
    /// QEMU's trace (if the launch asked for one).
    pub trace_path: PathBuf,
}

impl RunOutput {
    /// Ok if QEMU ended by itself, successfully, after the hypervisor's end marker and without
    /// a panic.
    pub fn verdict(&self) -> Result<(), String> {
        if self.timed_out {
            return Err(format!("QEMU timed out after {} s", self.timeout));
        }
        if let Some(line) = self.log.lines().find(|l| l.contains(PANIC_MARKER)) {
            return Err(format!("the hypervisor panicked: {}", line.trim()));
        }
        match self.status {
            Some(s) if s.success() => {}
            Some(s) => return Err(format!("QEMU exited with {s}")),
            None => return Err("QEMU did not exit".into()),
        }
        if !self.log.contains(END_MARKER) {
            return Err(format!("the run ended without `{END_MARKER}`"));
        }
        Ok(())
    }
}

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Reads lines from `r`, prefixing each with `prefix`, into `tx`.
fn forward(r: impl std::io::Read + Send + 'static, prefix: &'static str, tx: mpsc::Sender<String>) {
    std::thread::spawn(move || {
        let mut r = BufReader::new(r);
        let mut buf = Vec::new();
        // Bytes, not `lines()`: a console may send invalid UTF-8, which must not end the stream.
        while let Ok(n) = r.read_until(b'\n', &mut buf) {
            if n == 0 {
                break;
            }
            let line = String::from_utf8_lossy(&buf);
            let line = line.trim_end_matches(['\n', '\r']);
            if tx.send(format!("{prefix}{line}")).is_err() {
                break;
            }
            buf.clear();
        }
    });
}

/// Connects to the host console socket QEMU listens on (it appears shortly after start-up).
fn connect_console(path: &Path, tx: mpsc::Sender<String>, child: &mut Child) -> Result<(), String> {
    let start = Instant::now();
    loop {
        match std::os::unix::net::UnixStream::connect(path) {
            Ok(s) => {
                forward(s, HOST_PREFIX, tx);
                return Ok(());
            }
            Err(e) => {
                if let Ok(Some(status)) = child.try_wait() {
                    return Err(format!("QEMU exited ({status}) before its host console opened"));
                }
                if start.elapsed() > Duration::from_secs(20) {
                    return Err(format!(
                        "cannot connect to the host console {}: {e}",
                        path.display()
                    ));
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

/// Runs QEMU until it exits or `timeout` seconds pass, echoing its output if `echo`.
pub fn run(l: &Launch<'_>, opts: &Opts, timeout: u64, echo: bool) -> Result<RunOutput, String> {
    let args = args(l);
    if opts.verbose {
        println!("+ {}", shell_line(QEMU, &args));
    }
    let socket = l.console_socket();
    if let Some(dir) = socket.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let _ = std::fs::remove_file(&socket);
    let _ = std::fs::remove_file(l.trace_path());
    let start = Instant::now();
    let child = Command::new(QEMU)
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {QEMU}: {e}"))?;
    let mut child = KillOnDrop(child);
    let (tx, rx) = mpsc::channel::<String>();
    forward(child.0.stdout.take().expect("piped stdout"), "", tx.clone());
    forward(child.0.stderr.take().expect("piped stderr"), "qemu: ", tx.clone());
    if matches!(l.host, Host::Linux(_) | Host::Native(_)) {
        connect_console(&socket, tx.clone(), &mut child.0)?;
    }
    drop(tx);
    let limit = Duration::from_secs(timeout);
    let mut log = String::new();
    let mut status = None;
    let mut timed_out = false;
    let take = |line: String, log: &mut String| {
        if echo {
            println!("{line}");
            let _ = std::io::stdout().flush();
        }
        log.push_str(&line);
        log.push('\n');
    };
    loop {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(line) => {
                take(line, &mut log);
                continue;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                status = child.0.wait().ok();
                break;
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
        if let Ok(Some(s)) = child.0.try_wait() {
            // Drain what is left.
            while let Ok(line) = rx.recv_timeout(Duration::from_millis(200)) {
                take(line, &mut log);
            }
            status = Some(s);
            break;
        }
        if start.elapsed() > limit {
            timed_out = true;
            break;
        }
    }
    drop(child);
    let _ = std::fs::remove_file(&socket);
    let log_path = root().join(format!("target/xtask/last-{}.log", l.tag));
    if let Some(dir) = log_path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let _ = std::fs::write(&log_path, &log);
    Ok(RunOutput {
        log,
        log_path,
        status,
        timed_out,
        timeout,
        seconds: start.elapsed().as_secs_f64(),
        checks: Vec::new(),
        trace_path: l.trace_path(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_survives_a_shell() {
        assert_eq!(shell_quote("-append"), "-append");
        assert_eq!(
            shell_quote("loader,file=/a/b.bin,addr=0x44000000"),
            "loader,file=/a/b.bin,addr=0x44000000"
        );
        assert_eq!(shell_quote("gbpa_reset=abort pm_inject=1"), "'gbpa_reset=abort pm_inject=1'");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
        assert_eq!(shell_quote(""), "''");
        // The shell gives back exactly the arguments.
        let args: Vec<String> =
            ["a b", "it's", "$HOME", "x;y", "plain"].iter().map(|s| s.to_string()).collect();
        let line = shell_line("printf", &[vec!["%s\\n".to_string()], args.clone()].concat());
        let out = Command::new("sh").arg("-c").arg(&line).output().unwrap();
        let got: Vec<String> =
            String::from_utf8(out.stdout).unwrap().lines().map(|s| s.to_string()).collect();
        assert_eq!(got, args);
    }

    #[test]
    fn launch_arguments() {
        let hyp = PathBuf::from("/t/hyp");
        let guest = PathBuf::from("/t/guest.bin");
        let disk = PathBuf::from("/t/disk.img");
        let mut l = Launch {
            hyp: &hyp,
            guest: &guest,
            host: Host::Bare,
            guest1: None,
            disk: &disk,
            null_disk: None,
            append: "gbpa_reset=abort pm_inject=1".into(),
            extra: vec![],
            tag: "abort".into(),
            trace: true,
        };
        let a = args(&l);
        let loaders = a.iter().filter(|x| x.starts_with("loader,file=/t/guest.bin")).count();
        assert_eq!(loaders, MANIFEST.vms.len());
        assert!(a.windows(2).any(|w| w[0] == "-append" && w[1] == "gbpa_reset=abort pm_inject=1"));
        assert!(a.contains(&"null,id=hostcon".to_string()));
        assert!(a.iter().any(|x| x.starts_with("virtio-blk-pci,addr=6")));
        assert!(a.windows(2).any(|w| w[0] == "-trace" && w[1] == "smmuv3_translate_bypass"));
        l.host = Host::Linux(LinuxFiles {
            image: "/t/Image".into(),
            image_addr: 0x4400_0000,
            initrd: "/t/initrd".into(),
            initrd_addr: 0x5000_0000,
            dtb: "/t/dtb".into(),
            dtb_addr: 0x53e0_0000,
        });
        let a = args(&l);
        assert_eq!(a.iter().filter(|x| x.starts_with("loader,file=/t/guest.bin")).count(), 2);
        assert!(a.contains(&"loader,file=/t/Image,addr=0x44000000,force-raw=on".to_string()));
        assert!(a.iter().any(|x| x.starts_with("socket,id=hostcon,path=")));
        l.host = Host::Native(NativeLinux {
            image: "/t/Image".into(),
            initrd: "/t/initrd".into(),
            ram: 256 << 20,
            cpus: 2,
        });
        l.append = "console=ttyS0 iommu.passthrough=1".into();
        l.null_disk = Some(8 << 20);
        let a = args(&l);
        assert!(!a.iter().any(|x| x.contains("virtualization=on") || x.starts_with("loader,")));
        assert!(a.contains(&"virt,gic-version=3,iommu=smmuv3,its=off".to_string()));
        assert!(a.windows(2).any(|w| w[0] == "-kernel" && w[1] == "/t/Image"));
        assert!(a.windows(2).any(|w| w[0] == "-initrd" && w[1] == "/t/initrd"));
        assert!(a.windows(2).any(|w| w[0] == "-smp" && w[1] == "2"));
        assert!(a.windows(2).any(|w| w[0] == "-m" && w[1] == "256M"));
        assert!(a
            .windows(2)
            .any(|w| w[0] == "-append" && w[1] == "console=ttyS0 iommu.passthrough=1"));
        assert!(a.iter().any(|x| x.starts_with("virtio-blk-pci,addr=6")));
        assert!(a.iter().any(|x| x.starts_with("socket,id=hostcon,path=")));
        assert!(a.contains(
            &"driver=null-co,read-zeroes=on,size=8388608,latency-ns=500000,if=none,id=hostdisk"
                .into()
        ));
    }
}
