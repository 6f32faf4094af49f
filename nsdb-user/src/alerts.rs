//! The alert log: one JSON object per line, to a file (appended) or stdout.

use std::{
    fs::{File, OpenOptions},
    io::{self, BufWriter, Write},
    path::PathBuf,
};

use crate::events::Alert;

/// Where alerts go.
pub enum AlertSink {
    Stdout(io::Stdout),
    File { path: PathBuf, out: BufWriter<File> },
}

impl AlertSink {
    /// `-` is stdout; anything else a file opened for appending (created if missing).
    pub fn open(target: &str) -> io::Result<Self> {
        if target == "-" {
            return Ok(Self::Stdout(io::stdout()));
        }
        let path = PathBuf::from(target);
        let f = OpenOptions::new().create(true).append(true).open(&path)?;
        Ok(Self::File {
            path,
            out: BufWriter::new(f),
        })
    }

    /// Reopens the file (after log rotation). No-op for stdout.
    pub fn reopen(&mut self) -> io::Result<()> {
        if let Self::File { path, out } = self {
            out.flush()?;
            let f = OpenOptions::new().create(true).append(true).open(&*path)?;
            *out = BufWriter::new(f);
        }
        Ok(())
    }

    pub fn write(&mut self, alert: &Alert) -> io::Result<()> {
        let line = serde_json::to_string(alert).map_err(io::Error::other)?;
        match self {
            Self::Stdout(s) => {
                let mut l = s.lock();
                writeln!(l, "{line}")
            }
            Self::File { out, .. } => writeln!(out, "{line}"),
        }
    }

    pub fn flush(&mut self) -> io::Result<()> {
        match self {
            Self::Stdout(s) => s.flush(),
            Self::File { out, .. } => out.flush(),
        }
    }
}
