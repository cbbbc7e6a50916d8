//! A child process speaking MCP over stdio (newline-delimited JSON-RPC), as a [`Link`].
//!
//! The child is started in its own process group (`process-wrap`, the crate rmcp's
//! child-process transport is built on), so stopping it also stops whatever it started
//! (`npx` runs the server as a grandchild). Its stdout is split into lines here, unparsed: the
//! bytes reach [`super::mux`] as written, so no field is lost in a typed re-serialization.
//! Its stderr goes to the log, line by line, under the server's name.
//!
//! The child gets a minimal environment (`INHERITED_ENV`: `PATH`, `HOME`, locale, proxies and
//! CA bundles) plus the configured `connection.env`: the gateway's own secrets (session key,
//! upstream credentials in its environment) are not inherited.

use std::process::Stdio;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use process_wrap::tokio::{ChildWrapper, CommandWrap, KillOnDrop, ProcessGroup};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWriteExt, BufReader};
use tokio::sync::{mpsc, oneshot};

use super::link::{Link, Stop, LINK_BUFFER};
use crate::config::StdioCommand;

/// Variables passed from the gateway's environment to every child (when set): what a
/// program needs to find itself, its locale, and the network (proxies, CA bundles).
const INHERITED_ENV: [&str; 20] = [
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "SHELL",
    "TERM",
    "LANG",
    "LC_ALL",
    "TMPDIR",
    "TZ",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "NODE_EXTRA_CA_CERTS",
    "PYENV_ROOT",
];

/// Longest stdout line accepted (one JSON-RPC message); longer ones are logged and dropped.
const MAX_LINE: usize = 64 * 1024 * 1024;

/// Longest stderr line logged (the rest is cut).
const MAX_LOG_LINE: usize = 4096;

/// How long a stopped child gets to exit after its stdin is closed, before SIGTERM.
const STDIN_GRACE: Duration = Duration::from_millis(500);

/// How long a stopped child gets between SIGTERM and SIGKILL.
const TERM_GRACE: Duration = Duration::from_secs(2);

/// Start `cmd` as the upstream named `server`.
pub fn spawn(server: &str, cmd: &StdioCommand) -> Result<Link, String> {
    let mut command = tokio::process::Command::new(&cmd.command);
    command
        .args(&cmd.args)
        .env_clear()
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for key in INHERITED_ENV {
        if let Some(v) = std::env::var_os(key) {
            command.env(key, v);
        }
    }
    for (k, v) in &cmd.env {
        command.env(k, v);
    }
    if let Some(dir) = &cmd.cwd {
        command.current_dir(dir);
    }
    let mut wrap = CommandWrap::from(command);
    wrap.wrap(ProcessGroup::leader()).wrap(KillOnDrop);
    let mut child = wrap
        .spawn()
        .map_err(|e| format!("cannot start `{}`: {e}", cmd.command))?;
    let pid = child.id();
    let (Some(stdin), Some(stdout)) = (child.stdin().take(), child.stdout().take()) else {
        return Err("the child's stdio pipes are missing".into());
    };
    let stderr = child.stderr().take();

    let (to_child, from_gateway) = mpsc::channel::<Bytes>(LINK_BUFFER);
    let (to_gateway, from_child) = mpsc::channel::<Bytes>(LINK_BUFFER);
    let (ended_tx, ended_rx) = oneshot::channel();
    let (stop_tx, stop_rx) = oneshot::channel::<oneshot::Sender<()>>();

    let name = server.to_string();
    let writer = tokio::spawn(write_messages(stdin, from_gateway, name.clone()));
    let reader = tokio::spawn(read_messages(stdout, to_gateway, name.clone()));
    if let Some(err) = stderr {
        tokio::spawn(log_stderr(err, name.clone()));
    }
    tokio::spawn(supervise(child, ended_tx, stop_rx, name));
    Ok(Link {
        tx: to_child,
        rx: from_child,
        ended: ended_rx,
        pid,
        stopper: Box::new(ChildStopper {
            stop: Some(stop_tx),
            tasks: vec![writer, reader],
        }),
    })
}

/// Write each message as one line.
async fn write_messages(
    mut stdin: tokio::process::ChildStdin,
    mut rx: mpsc::Receiver<Bytes>,
    server: String,
) {
    while let Some(msg) = rx.recv().await {
        let ok = async {
            stdin.write_all(&msg).await?;
            stdin.write_all(b"\n").await?;
            stdin.flush().await
        }
        .await;
        if let Err(e) = ok {
            tracing::debug!(server = %server, error = %e, "writing to the child's stdin failed");
            return;
        }
    }
    // The gateway closed the link: closing stdin asks the child to exit (MCP stdio shutdown).
    let _ = stdin.shutdown().await;
}

/// Split stdout into lines (LF or CRLF); each non-empty line is one message.
async fn read_messages(
    stdout: tokio::process::ChildStdout,
    tx: mpsc::Sender<Bytes>,
    server: String,
) {
    let mut lines = BufReader::with_capacity(64 * 1024, stdout);
    let mut buf = Vec::with_capacity(8 * 1024);
    loop {
        buf.clear();
        match read_line(&mut lines, &mut buf).await {
            Ok(Line::Eof) => return,
            Ok(Line::TooLong) => {
                tracing::warn!(server = %server, limit = MAX_LINE, "the child wrote a line longer than the limit; dropped");
            }
            Ok(Line::Full) => {
                let line = buf.strip_suffix(b"\r").unwrap_or(&buf);
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                if tx.send(Bytes::copy_from_slice(line)).await.is_err() {
                    return;
                }
            }
            Err(e) => {
                tracing::debug!(server = %server, error = %e, "reading the child's stdout failed");
                return;
            }
        }
    }
}

enum Line {
    Full,
    TooLong,
    Eof,
}

/// One line into `buf` (without the LF), or skip to the next LF when it is too long.
async fn read_line<R: AsyncRead + Unpin>(
    r: &mut BufReader<R>,
    buf: &mut Vec<u8>,
) -> std::io::Result<Line> {
    let mut too_long = false;
    loop {
        let chunk = r.fill_buf().await?;
        if chunk.is_empty() {
            return Ok(if buf.is_empty() && !too_long {
                Line::Eof
            } else if too_long {
                Line::TooLong
            } else {
                Line::Full
            });
        }
        let (take, done) = match memchr(chunk) {
            Some(i) => (i, true),
            None => (chunk.len(), false),
        };
        if !too_long {
            if buf.len() + take > MAX_LINE {
                too_long = true;
                buf.clear();
            } else {
                buf.extend_from_slice(&chunk[..take]);
            }
        }
        r.consume(take + usize::from(done));
        if done {
            return Ok(if too_long { Line::TooLong } else { Line::Full });
        }
    }
}

fn memchr(b: &[u8]) -> Option<usize> {
    b.iter().position(|&c| c == b'\n')
}

/// Every stderr line goes to the log under the server's name.
async fn log_stderr(stderr: tokio::process::ChildStderr, server: String) {
    let mut r = BufReader::new(stderr);
    let mut buf = Vec::with_capacity(1024);
    loop {
        buf.clear();
        match read_line(&mut r, &mut buf).await {
            Ok(Line::Eof) | Err(_) => return,
            Ok(Line::TooLong) => {}
            Ok(Line::Full) => {
                let cut = buf.len().min(MAX_LOG_LINE);
                let text = String::from_utf8_lossy(&buf[..cut]);
                let text = text.trim_end();
                if !text.is_empty() {
                    tracing::info!(target: "portcullis::upstream::stderr", server = %server, "{text}");
                }
            }
        }
    }
}

/// Own the child: report its exit, or stop it on request (SIGTERM to the group, SIGKILL after
/// a grace period), and always reap it. Whatever it left in its group is killed too.
async fn supervise(
    mut child: Box<dyn ChildWrapper>,
    ended: oneshot::Sender<String>,
    stop: oneshot::Receiver<oneshot::Sender<()>>,
    server: String,
) {
    let mut stop = Some(stop);
    let mut ended = Some(ended);
    let status = tokio::select! {
        status = child.wait() => status,
        req = async { match stop.as_mut() { Some(s) => s.await, None => std::future::pending().await } } => {
            stop = None;
            // MCP's stdio shutdown: stdin is closed first (the stopper dropped it), then
            // SIGTERM, then SIGKILL.
            let status = match tokio::time::timeout(STDIN_GRACE, child.wait()).await {
                Ok(s) => s,
                Err(_) => {
                    let _ = child.signal(libc_sigterm());
                    match tokio::time::timeout(TERM_GRACE, child.wait()).await {
                        Ok(s) => s,
                        Err(_) => {
                            let _ = child.start_kill();
                            child.wait().await
                        }
                    }
                }
            };
            if let Ok(done) = req {
                if let Some(tx) = ended.take() {
                    let _ = tx.send("stopped by the gateway".into());
                }
                let _ = done.send(());
            }
            status
        }
    };
    // Leftovers in the group (a server started by `npx` outlives a killed `npx`).
    let _ = child.start_kill();
    let reason = match status {
        Ok(s) => describe_exit(s),
        Err(e) => format!("waiting for the child failed: {e}"),
    };
    tracing::debug!(server = %server, reason = %reason, "child process ended");
    if let Some(tx) = ended.take() {
        let _ = tx.send(reason);
    }
    // A stop requested after the exit is answered at once.
    if let Some(stop) = stop {
        if let Ok(done) = stop.await {
            let _ = done.send(());
        }
    }
}

fn describe_exit(s: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (s.code(), s.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(sig)) => format!("killed by signal {sig}"),
        _ => "exited".into(),
    }
}

const fn libc_sigterm() -> i32 {
    15
}

/// Stops the child and its tasks.
struct ChildStopper {
    stop: Option<oneshot::Sender<oneshot::Sender<()>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

#[async_trait]
impl Stop for ChildStopper {
    async fn stop(&mut self) {
        // The writer owns stdin: ending it closes the pipe, the child's cue to exit.
        for t in self.tasks.drain(..) {
            t.abort();
        }
        if let Some(stop) = self.stop.take() {
            let (done_tx, done_rx) = oneshot::channel();
            if stop.send(done_tx).is_ok() {
                let _ = done_rx.await;
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn sh(script: &str) -> StdioCommand {
        StdioCommand {
            command: "sh".into(),
            args: vec!["-c".into(), script.into()],
            env: vec![("GREETING".into(), "hello $ {x}".into())],
            cwd: None,
        }
    }

    #[tokio::test]
    async fn lines_in_and_out_env_and_exit() {
        let mut link = spawn(
            "t",
            &sh("printf '%s\\n' \"$GREETING\"; read line; printf '%s\\r\\n\\n' \"$line\"; echo oops >&2; exit 3"),
        )
        .unwrap();
        assert!(link.pid.is_some());
        assert_eq!(link.rx.recv().await.unwrap(), "hello $ {x}");
        link.tx
            .send(Bytes::from_static(b"{\"a\":1}"))
            .await
            .unwrap();
        assert_eq!(link.rx.recv().await.unwrap(), "{\"a\":1}");
        assert!(link.rx.recv().await.is_none());
        assert_eq!(link.ended.await.unwrap(), "exited with status 3");
        link.stopper.stop().await;
    }

    #[tokio::test]
    async fn missing_command_is_an_error() {
        let cmd = StdioCommand {
            command: "/nonexistent/portcullis-test".into(),
            args: vec![],
            env: vec![],
            cwd: None,
        };
        let err = spawn("t", &cmd).err().unwrap();
        assert!(err.contains("cannot start"), "{err}");
    }

    #[tokio::test]
    async fn stop_kills_the_whole_group() {
        // The shell starts a grandchild that would outlive a plain kill of the shell.
        let mut link = spawn("t", &sh("sleep 300 & echo $!; wait")).unwrap();
        let grandchild: i32 = String::from_utf8_lossy(&link.rx.recv().await.unwrap())
            .trim()
            .parse()
            .unwrap();
        link.stopper.stop().await;
        let reason = link.ended.await.unwrap();
        assert_eq!(reason, "stopped by the gateway");
        // SIGTERM reached the whole group; the grandchild (reparented) dies promptly.
        let running = |pid: i32| {
            let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            state
                .rsplit(')')
                .next()
                .and_then(|s| s.split_whitespace().next())
                .is_some_and(|st| st != "Z" && st != "X")
        };
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while running(grandchild) && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let state = std::fs::read_to_string(format!("/proc/{grandchild}/stat")).unwrap_or_default();
        let running = running(grandchild);
        assert!(!running, "grandchild still running: {state}");
    }
}
