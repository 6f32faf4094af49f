//! The daemon's control socket: a Unix stream socket (mode 0600, so only its owner — root —
//! may use it) where `nsdb stats` and `nsdb allow add|remove|list` talk to a running daemon.
//!
//! Protocol: one JSON object per line each way, one request per connection:
//! `{"cmd":"stats"}`, `{"cmd":"allow_add","net":"198.18.8.8/32"}`,
//! `{"cmd":"allow_remove","net":"198.18.8.8/32"}`, `{"cmd":"allow_list"}`. The answer is
//! `{"ok":true,...}` or `{"ok":false,"error":"..."}`.

use std::{
    io::{BufRead as _, BufReader, Write as _},
    os::unix::{fs::PermissionsExt as _, net::UnixStream as StdUnixStream},
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::{Context, Result, bail};
use ipnet::IpNet;
use serde_json::{Value, json};
use tokio::{
    io::{AsyncBufReadExt as _, AsyncWriteExt as _},
    net::UnixListener,
    sync::{mpsc, oneshot},
};

/// Default path of the control socket.
pub const DEFAULT_PATH: &str = "/run/nsdb/nsdb.sock";

/// A request from a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Stats,
    AllowAdd(IpNet),
    AllowRemove(IpNet),
    AllowList,
}

impl Request {
    fn parse(line: &str) -> Result<Self, String> {
        let v: Value = serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
        let net = || -> Result<IpNet, String> {
            let s = v["net"].as_str().ok_or("\"net\" is missing")?;
            crate::allowlist::parse_net(s)
                .ok_or_else(|| format!("{s:?} is not an IP address or CIDR prefix"))
        };
        match v["cmd"].as_str() {
            Some("stats") => Ok(Self::Stats),
            Some("allow_add") => Ok(Self::AllowAdd(net()?)),
            Some("allow_remove") => Ok(Self::AllowRemove(net()?)),
            Some("allow_list") => Ok(Self::AllowList),
            Some(other) => Err(format!("unknown command {other:?}")),
            None => Err("\"cmd\" is missing".into()),
        }
    }

    fn to_json(&self) -> Value {
        match self {
            Self::Stats => json!({"cmd": "stats"}),
            Self::AllowAdd(n) => json!({"cmd": "allow_add", "net": n.to_string()}),
            Self::AllowRemove(n) => json!({"cmd": "allow_remove", "net": n.to_string()}),
            Self::AllowList => json!({"cmd": "allow_list"}),
        }
    }
}

/// A request on its way to the event loop, with where the answer goes.
pub struct Call {
    pub req: Request,
    pub reply: oneshot::Sender<Value>,
}

/// The bound socket; the file is removed when this is dropped.
pub struct Socket {
    path: PathBuf,
    listener: Option<std::os::unix::net::UnixListener>,
}

impl Drop for Socket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Binds the control socket at `path`: refuses if another daemon answers there, replaces a
/// stale socket file left by a killed one, creates the directory (0755) if needed.
pub fn bind(path: &Path) -> Result<Socket> {
    if path.exists() {
        let meta = std::fs::symlink_metadata(path)?;
        use std::os::unix::fs::FileTypeExt as _;
        if !meta.file_type().is_socket() {
            bail!(
                "control socket {}: a file that is not a socket is in the way",
                path.display()
            );
        }
        if StdUnixStream::connect(path).is_ok() {
            bail!(
                "control socket {} is in use by another nsdb daemon (give each daemon its own --control)",
                path.display()
            );
        }
        std::fs::remove_file(path)
            .with_context(|| format!("removing the stale control socket {}", path.display()))?;
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty())
        && !dir.exists()
    {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755));
    }
    // Created with mode 0600 from the start (no window where others could connect).
    // SAFETY: umask only changes this process's file creation mask; restored right after.
    let old = unsafe { libc::umask(0o177) };
    let listener = std::os::unix::net::UnixListener::bind(path);
    // SAFETY: as above.
    unsafe { libc::umask(old) };
    let listener =
        listener.with_context(|| format!("control socket {}: cannot listen", path.display()))?;
    listener.set_nonblocking(true)?;
    Ok(Socket {
        path: path.to_path_buf(),
        listener: Some(listener),
    })
}

impl Socket {
    /// Accepts clients on the current tokio runtime; each request goes to `tx`.
    pub fn serve(&mut self, tx: mpsc::Sender<Call>) -> Result<()> {
        let std_listener = self.listener.take().expect("serve is called once");
        let listener = UnixListener::from_std(std_listener)?;
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let tx = tx.clone();
                tokio::spawn(async move {
                    let _ = tokio::time::timeout(Duration::from_secs(10), client(stream, tx)).await;
                });
            }
        });
        Ok(())
    }
}

async fn client(stream: tokio::net::UnixStream, tx: mpsc::Sender<Call>) -> std::io::Result<()> {
    let (r, mut w) = stream.into_split();
    let mut line = String::new();
    // One line of at most 4 KiB.
    let mut r = tokio::io::AsyncReadExt::take(tokio::io::BufReader::new(r), 4096);
    r.read_line(&mut line).await?;
    let answer = match Request::parse(line.trim()) {
        Ok(req) => {
            let (reply, rx) = oneshot::channel();
            if tx.send(Call { req, reply }).await.is_err() {
                json!({"ok": false, "error": "the daemon is stopping"})
            } else {
                rx.await
                    .unwrap_or_else(|_| json!({"ok": false, "error": "no answer"}))
            }
        }
        Err(e) => json!({"ok": false, "error": e}),
    };
    let mut text = answer.to_string();
    text.push('\n');
    w.write_all(text.as_bytes()).await?;
    w.shutdown().await
}

/// Sends one request to the daemon at `path` and returns its answer (`ok: true`), or the
/// daemon's error.
pub fn call(path: &Path, req: &Request) -> Result<Value> {
    let mut s = StdUnixStream::connect(path).map_err(|e| {
        anyhow::anyhow!(
            "no nsdb daemon answers on {} ({e}); is `nsdb run` running, with this --control?",
            path.display()
        )
    })?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut text = req.to_json().to_string();
    text.push('\n');
    s.write_all(text.as_bytes())?;
    let mut line = String::new();
    BufReader::new(&s)
        .read_line(&mut line)
        .with_context(|| format!("reading the answer from {}", path.display()))?;
    let v: Value = serde_json::from_str(line.trim())
        .with_context(|| format!("a malformed answer from {}", path.display()))?;
    if v["ok"] != true {
        bail!("{}", v["error"].as_str().unwrap_or("the daemon refused"));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_and_bad_ones_are_refused() {
        for r in [
            Request::Stats,
            Request::AllowList,
            Request::AllowAdd("198.18.8.8/32".parse().unwrap()),
            Request::AllowRemove("2001:db8::/48".parse().unwrap()),
        ] {
            assert_eq!(Request::parse(&r.to_json().to_string()), Ok(r));
        }
        assert!(Request::parse("stats").unwrap_err().contains("not JSON"));
        assert!(Request::parse("{}").unwrap_err().contains("cmd"));
        assert!(
            Request::parse(r#"{"cmd":"reboot"}"#)
                .unwrap_err()
                .contains("unknown command")
        );
        assert!(
            Request::parse(r#"{"cmd":"allow_add"}"#)
                .unwrap_err()
                .contains("net")
        );
        assert!(
            Request::parse(r#"{"cmd":"allow_add","net":"10.0.0.0/33"}"#)
                .unwrap_err()
                .contains("not an IP")
        );
    }
}
