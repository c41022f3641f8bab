//! `cargo xtask run --host linux --shell`: the Linux host boots to an interactive busybox shell
//! with `smmu_hyp` loaded (`tests/linux/init/shell.sh`), its console (the PCI 16550) on this
//! terminal with stdin forwarded: QEMU's `stdio` character device, multiplexed so that QEMU's
//! escapes work (`Ctrl-A x` ends the run, `Ctrl-A h` lists the others) and with `signal=off`
//! so that `Ctrl-C` goes to the host's shell. The board's PL011 — the hypervisor's own lines and
//! the bare-metal guests' — goes to a file instead, `target/xtask/last-linux-shell.log`, so
//! nothing interleaves with the shell; xtask reads it once QEMU has exited. `poweroff` in the
//! shell ends the run the normal way: busybox init powers the host off (PSCI `SYSTEM_OFF`), the
//! guests finish their tests, and the hypervisor ends QEMU.
//!
//! The same run with its input scripted ([`Input::Script`]: the commands are written once the
//! shell's prompt appears, the console is captured) is the smoke test of `cargo xtask test`.

use crate::qemu::{self, Launch, RunOutput, HOST_PREFIX};
use crate::tools::{root, QEMU};
use crate::Opts;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The host shell's prompt (`PS1` in `tests/linux/init/profile.sh`, in `/`).
pub const PROMPT: &str = "host:/# ";

/// Where the shell's input comes from.
pub enum Input {
    /// This terminal (QEMU's stdin and stdout are xtask's).
    Terminal,
    /// These commands, written once the prompt appears; the console is captured.
    Script(String),
}

/// Where the PL011 (the hypervisor's and the guests' lines) goes in a shell run.
pub fn serial_log(l: &Launch<'_>) -> PathBuf {
    root().join(format!("target/xtask/last-{}.log", l.tag))
}

/// The QEMU arguments of a shell run: a run's ([`qemu::args`]), with the host's console on
/// QEMU's stdio (multiplexed for the escapes, `signal=off`) instead of xtask's socket, and the
/// PL011 in `serial` instead of on stdout.
pub fn args(l: &Launch<'_>, serial: &Path) -> Vec<String> {
    let mut a = qemu::args(l);
    a.retain(|x| x != "-nographic");
    for x in a.iter_mut() {
        if x.starts_with("socket,id=hostcon,") {
            *x = "stdio,id=hostcon,mux=on,signal=off".into();
        }
    }
    a.extend(
        ["-display", "none", "-monitor", "none", "-serial"]
            .map(String::from)
            .into_iter()
            .chain([format!("file:{}", serial.display())]),
    );
    a
}

/// Runs the shell: until QEMU exits (the host's `poweroff`, or QEMU's escape) for
/// [`Input::Terminal`], or `timeout` seconds for a script (then QEMU is killed). The log is
/// the PL011's, followed by the console (each line prefixed `[host] `) when it was captured.
pub fn run(l: &Launch<'_>, opts: &Opts, timeout: u64, input: Input) -> Result<RunOutput, String> {
    let serial = serial_log(l);
    if let Some(d) = serial.parent() {
        std::fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
    }
    let _ = std::fs::remove_file(&serial);
    let _ = std::fs::remove_file(l.trace_path());
    let args = args(l, &serial);
    if opts.verbose {
        println!("+ {}", qemu::shell_line(QEMU, &args));
    }
    let start = Instant::now();
    let mut cmd = Command::new(QEMU);
    cmd.args(&args);
    let (status, timed_out, console) = match input {
        Input::Terminal => {
            let status = cmd
                .stdin(Stdio::inherit())
                .stdout(Stdio::inherit())
                .stderr(Stdio::inherit())
                .status()
                .map_err(|e| format!("cannot start {QEMU}: {e}"))?;
            (Some(status), false, None)
        }
        Input::Script(script) => {
            let (status, timed_out, console) = scripted(cmd, &script, timeout)?;
            (status, timed_out, Some(console))
        }
    };
    let mut log = std::fs::read_to_string(&serial)
        .map_err(|e| format!("{}: {e}", serial.display()))?
        .replace('\r', "");
    if let Some(c) = &console {
        let path = root().join(format!("target/xtask/last-{}-console.log", l.tag));
        let _ = std::fs::write(&path, c);
        for line in c.lines() {
            log.push_str(HOST_PREFIX);
            log.push_str(line.trim_end_matches('\r'));
            log.push('\n');
        }
    }
    Ok(RunOutput {
        log,
        log_path: serial,
        status,
        timed_out,
        timeout,
        seconds: start.elapsed().as_secs_f64(),
        checks: Vec::new(),
        trace_path: l.trace_path(),
    })
}

/// QEMU with its console piped: `script` is written once [`PROMPT`] has appeared; returns its
/// exit status (None if killed), whether `timeout` hit, and everything the console printed.
fn scripted(
    mut cmd: Command,
    script: &str,
    timeout: u64,
) -> Result<(Option<std::process::ExitStatus>, bool, String), String> {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {QEMU}: {e}"))?;
    let (tx, rx) = mpsc::channel::<Vec<u8>>();
    for r in [
        Box::new(child.stdout.take().expect("piped stdout")) as Box<dyn Read + Send>,
        Box::new(child.stderr.take().expect("piped stderr")),
    ] {
        let tx = tx.clone();
        std::thread::spawn(move || {
            let mut r = r;
            let mut buf = [0u8; 4096];
            while let Ok(n) = r.read(&mut buf) {
                if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                    break;
                }
            }
        });
    }
    drop(tx);
    // Kept open until QEMU has exited (at end of file QEMU would stop reading it).
    let mut stdin = child.stdin.take().expect("piped stdin");
    let mut written = false;
    let mut out = Vec::new();
    let limit = Duration::from_secs(timeout);
    let start = Instant::now();
    let mut timed_out = false;
    loop {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(bytes) => out.extend_from_slice(&bytes),
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
        if !written && String::from_utf8_lossy(&out).contains(PROMPT) {
            if let Err(e) = stdin.write_all(script.as_bytes()).and_then(|()| stdin.flush()) {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("writing to QEMU: {e}"));
            }
            written = true;
        }
        if start.elapsed() > limit {
            timed_out = true;
            break;
        }
    }
    let status = if timed_out {
        let _ = child.kill();
        let _ = child.wait();
        None
    } else {
        child.wait().ok()
    };
    drop(stdin);
    Ok((status, timed_out, String::from_utf8_lossy(&out).into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::qemu::{Host, LinuxFiles};

    #[test]
    fn the_console_is_stdio_and_the_pl011_a_file() {
        let (hyp, guest, disk) =
            (PathBuf::from("/t/hyp"), PathBuf::from("/t/g.bin"), PathBuf::from("/t/d.img"));
        let l = Launch {
            hyp: &hyp,
            guest: &guest,
            host: Host::Linux(LinuxFiles {
                image: "/t/Image".into(),
                image_addr: 0x4400_0000,
                initrd: "/t/initrd".into(),
                initrd_addr: 0x5000_0000,
                dtb: "/t/dtb".into(),
                dtb_addr: 0x53e0_0000,
            }),
            guest1: None,
            disk: &disk,
            null_disk: None,
            append: "gbpa_reset=abort".into(),
            extra: vec![],
            tag: "linux-shell".into(),
            trace: true,
        };
        let a = args(&l, Path::new("/t/serial.log"));
        // -nographic would claim stdio for the PL011 and the monitor.
        assert!(!a.iter().any(|x| x == "-nographic"));
        assert!(!a.iter().any(|x| x.starts_with("socket,")));
        let pair = |k: &str, v: &str| a.windows(2).any(|w| w[0] == k && w[1] == v);
        assert!(pair("-chardev", "stdio,id=hostcon,mux=on,signal=off"));
        assert!(a.iter().any(|x| x.starts_with("pci-serial,") && x.ends_with(",chardev=hostcon")));
        assert!(pair("-serial", "file:/t/serial.log"));
        assert!(pair("-monitor", "none") && pair("-display", "none"));
        // Everything else as in a test run: the trace, the loaders, the disk.
        assert!(pair("-trace", "smmuv3_translate_bypass"));
        assert!(a.contains(&"loader,file=/t/Image,addr=0x44000000,force-raw=on".to_string()));
        assert!(a.iter().any(|x| x.starts_with("virtio-blk-pci,")));
        assert_eq!(serial_log(&l), root().join("target/xtask/last-linux-shell.log"));
        assert!(crate::linux::stress::PROFILE.text.contains(r"PS1='host:\w# '"));
        assert_eq!(PROMPT, "host:/# ");
    }
}
