//! Process helpers shared by the example programs (`loadgen`, `eval`):
//! finding the binaries built next to them, starting a server and learning
//! its address, and killing it when done.

use std::io::{BufRead as _, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A child process killed (and reaped) when dropped.
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Start a process and wait for the "listening on http://ADDR/mcp" line on stderr.
pub fn start_listening(mut cmd: Command) -> Result<(Killed, String), String> {
    let mut child = cmd.stdout(Stdio::null()).stderr(Stdio::piped()).spawn().map_err(|e| format!("spawn: {e}"))?;
    let stderr = child.stderr.take().ok_or("no stderr")?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        // JITGATE_EXAMPLE_LOG=1 passes the process's log through (for debugging a run).
        let echo = std::env::var_os("JITGATE_EXAMPLE_LOG").is_some();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if echo {
                eprintln!("{line}");
            }
            if let Some(url) = line.split("listening on ").nth(1) {
                if let Some(tx) = tx.take() {
                    let _ = tx.send(url.trim().to_owned());
                }
            }
        }
    });
    let url = rx.recv_timeout(Duration::from_secs(60)).map_err(|_| "process did not report its address within 60 s".to_owned())?;
    Ok((Killed(child), url))
}

/// A binary built next to this example (the gateway, the example server).
pub fn sibling(name: &str) -> Result<PathBuf, String> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let examples = exe.parent().ok_or("no exe dir")?;
    let candidates = [examples.join(name), examples.parent().map(|p| p.join(name)).unwrap_or_default()];
    candidates
        .into_iter()
        .find(|p| p.exists())
        .ok_or_else(|| format!("{name} not built: run `cargo build --release --bins --examples`"))
}
