//! Runs QEMU `virt` with the hypervisor and one guest image per VM, with a hard timeout, the
//! serial output streamed and kept, and QEMU killed if we stop waiting.

use crate::images::root;
use crate::setup::QEMU;
use crate::Opts;
use platform::qemu_virt::{EDU_SLOTS, MANIFEST, QEMU_CPUS, QEMU_RAM_SIZE};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Marker of a normal end (printed by the hypervisor when the last VM stops).
pub const END_MARKER: &str = "all VMs stopped";
/// Marker of a fatal hypervisor error.
pub const PANIC_MARKER: &str = "hyp: PANIC";

/// The QEMU arguments for `hyp` with `guest` loaded into every VM.
pub fn args(hyp: &Path, guest: &Path, extra: &[&str]) -> Vec<String> {
    let mut a: Vec<String> = [
        "-M",
        "virt,virtualization=on,gic-version=3,iommu=smmuv3",
        "-cpu",
        "max",
        "-global",
        "arm-smmuv3.stage=nested",
        "-nographic",
        "-no-reboot",
        "-nic",
        "none",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    a.extend([
        "-smp".into(),
        QEMU_CPUS.to_string(),
        "-m".into(),
        format!("{}M", QEMU_RAM_SIZE >> 20),
    ]);
    a.extend(extra.iter().map(|s| s.to_string()));
    a.extend(["-kernel".into(), hyp.display().to_string()]);
    for vm in MANIFEST.vms {
        a.extend([
            "-device".into(),
            format!("loader,file={},addr={:#x},force-raw=on", guest.display(), vm.mem.base),
        ]);
    }
    // One edu device per VM; raise its DMA mask (28 bits by default) so VM addresses are not
    // clamped.
    for slot in EDU_SLOTS {
        a.extend(["-device".into(), format!("edu,addr={slot},dma_mask=0xffffffffffffffff")]);
    }
    a
}

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

/// Runs QEMU until it exits or `timeout` seconds pass, echoing its output if `echo`.
pub fn run(
    hyp: &Path,
    guest: &Path,
    extra: &[&str],
    opts: &Opts,
    timeout: u64,
    echo: bool,
) -> Result<RunOutput, String> {
    let args = args(hyp, guest, extra);
    if opts.verbose {
        println!("+ {QEMU} {}", args.join(" "));
    }
    let child = Command::new(QEMU)
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {QEMU}: {e}"))?;
    let mut child = KillOnDrop(child);
    let (tx, rx) = mpsc::channel::<String>();
    let out = child.0.stdout.take().expect("piped stdout");
    let err = child.0.stderr.take().expect("piped stderr");
    let tx2 = tx.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    std::thread::spawn(move || {
        for line in BufReader::new(err).lines().map_while(Result::ok) {
            if tx2.send(format!("qemu: {line}")).is_err() {
                break;
            }
        }
    });
    let start = Instant::now();
    let limit = Duration::from_secs(timeout);
    let mut log = String::new();
    let mut status = None;
    let mut timed_out = false;
    loop {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(line) => {
                let line = line.trim_end_matches('\r').to_string();
                if echo {
                    println!("{line}");
                    let _ = std::io::stdout().flush();
                }
                log.push_str(&line);
                log.push('\n');
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
                let line = line.trim_end_matches('\r').to_string();
                if echo {
                    println!("{line}");
                }
                log.push_str(&line);
                log.push('\n');
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
    let tag = extra.iter().find(|a| a.contains("gbpa_reset=")).map_or("run", |a| {
        if a.contains("bypass") {
            "bypass"
        } else {
            "abort"
        }
    });
    let log_path = root().join(format!("target/xtask/last-{tag}.log"));
    if let Some(dir) = log_path.parent() {
        let _ = std::fs::create_dir_all(dir);
    }
    let _ = std::fs::write(&log_path, &log);
    Ok(RunOutput { log, log_path, status, timed_out, timeout })
}
