//! `nsdb run --config FILE`: a TOML file equivalent to the command line.
//!
//! Every key is the long name of a `nsdb run` flag (`mode`, `iface`, `allow-entries`; `_` may
//! be written for `-`), so the file can say everything a command line can, and nothing else:
//!
//! ```toml
//! iface = ["lan0", "wan0"]      # repeated flags take an array
//! mode = "enforce"
//! internal = ["192.0.2.0/24", "2001:db8:1::/48"]
//! db = "/var/lib/nsdb/history.db"
//! allow-entries = 2000000       # numbers as numbers or strings
//! no-kernel-learning = false    # switches: true gives the flag, false leaves it out
//! ```
//!
//! The file becomes flags placed before the command line's own, and a flag given on the
//! command line replaces the file's value for that key entirely (also for repeated flags), so
//! `--mode monitor` on the command line wins over `mode = "enforce"` in the file.

use std::{collections::BTreeSet, ffi::OsString, path::Path};

use anyhow::{Context, Result, bail};
use clap::CommandFactory;

/// Long flag names `nsdb run` accepts (without the leading `--`), and whether each takes a
/// value.
fn run_flags() -> Vec<(String, bool)> {
    let cmd = super::Cli::command();
    let run = cmd
        .find_subcommand("run")
        .expect("nsdb has a run subcommand");
    run.get_arguments()
        .filter_map(|a| {
            a.get_long()
                .map(|l| (l.to_string(), a.get_action().takes_values()))
        })
        .collect()
}

/// The long flags given on a command line (`--x v` and `--x=v`).
fn given_flags(args: &[OsString]) -> BTreeSet<String> {
    args.iter()
        .filter_map(|a| a.to_str())
        .take_while(|a| *a != "--")
        .filter_map(|a| a.strip_prefix("--"))
        .map(|a| a.split('=').next().unwrap_or(a).to_string())
        .collect()
}

/// Turns the config file at `path` into `nsdb run` flags, leaving out the keys in `given`.
pub fn flags_from_file(path: &Path, given: &BTreeSet<String>) -> Result<Vec<OsString>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading config file {}", path.display()))?;
    let table: toml::Table = toml::from_str(&text)
        .map_err(|e| anyhow::anyhow!("{}: {}", path.display(), one_line(&e.to_string())))?;
    let known = run_flags();
    let mut out = Vec::new();
    for (key, value) in &table {
        let flag = key.replace('_', "-");
        let Some((_, takes_value)) = known.iter().find(|(l, _)| *l == flag) else {
            bail!(
                "{}: unknown key {key:?} (keys are the long names of `nsdb run` flags, see nsdb run --help)",
                path.display()
            );
        };
        if matches!(flag.as_str(), "config" | "help" | "version") {
            bail!(
                "{}: key {key:?} cannot be set in a config file",
                path.display()
            );
        }
        if given.contains(&flag) {
            continue;
        }
        let scalar = |v: &toml::Value| -> Result<String> {
            match v {
                toml::Value::String(s) => Ok(s.clone()),
                toml::Value::Integer(i) => Ok(i.to_string()),
                toml::Value::Float(f) => Ok(f.to_string()),
                toml::Value::Boolean(b) => Ok(b.to_string()),
                other => bail!(
                    "{}: key {key:?}: expected a string or a number, found {}",
                    path.display(),
                    other.type_str()
                ),
            }
        };
        match (value, takes_value) {
            (toml::Value::Boolean(b), false) => {
                if *b {
                    out.push(format!("--{flag}").into());
                }
            }
            (_, false) => bail!(
                "{}: key {key:?} is a switch: write {key} = true or false",
                path.display()
            ),
            (toml::Value::Array(items), true) => {
                for v in items {
                    out.push(format!("--{flag}").into());
                    out.push(scalar(v)?.into());
                }
            }
            (v, true) => {
                out.push(format!("--{flag}").into());
                out.push(scalar(v)?.into());
            }
        }
    }
    Ok(out)
}

/// The process's arguments with a `run --config FILE` expanded: the file's flags go right
/// after `run`, the command line's after them. Other commands are returned unchanged.
pub fn expand_args(args: Vec<OsString>) -> Result<Vec<OsString>> {
    let Some(run_at) = args.iter().position(|a| a == "run") else {
        return Ok(args);
    };
    // Only when `run` is the subcommand (the first argument that is not a global flag).
    if args[1..run_at]
        .iter()
        .any(|a| !a.to_string_lossy().starts_with('-'))
    {
        return Ok(args);
    }
    let rest = &args[run_at + 1..];
    let mut path = None;
    let mut i = 0;
    while i < rest.len() {
        let a = rest[i].to_string_lossy();
        if a == "--" {
            break;
        }
        if a == "--config" {
            match rest.get(i + 1) {
                Some(p) => path = Some(std::path::PathBuf::from(p)),
                None => bail!("--config needs a file: --config /etc/nsdb/nsdb.toml"),
            }
            i += 1;
        } else if let Some(p) = a.strip_prefix("--config=") {
            path = Some(p.into());
        }
        i += 1;
    }
    let Some(path) = path else {
        return Ok(args);
    };
    let given = given_flags(rest);
    let from_file = flags_from_file(&path, &given)?;
    let mut out: Vec<OsString> = args[..=run_at].to_vec();
    out.extend(from_file);
    out.extend(rest.iter().cloned());
    Ok(out)
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    fn write(text: &str) -> (std::path::PathBuf, impl Drop + use<>) {
        struct Rm(std::path::PathBuf);
        impl Drop for Rm {
            fn drop(&mut self) {
                let _ = std::fs::remove_file(&self.0);
            }
        }
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let p = std::env::temp_dir().join(format!(
            "nsdb-config-{}-{}.toml",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::write(&p, text).unwrap();
        (p.clone(), Rm(p))
    }

    #[test]
    fn every_run_flag_can_be_set_from_the_file() {
        // Build a file with every flag that takes a value (one value each) and every switch.
        let flags = run_flags();
        assert!(flags.len() >= 20, "{flags:?}");
        for (flag, _) in &flags {
            if matches!(flag.as_str(), "config" | "help" | "version") {
                continue;
            }
            let (p, _rm) = write(&format!("{flag} = [\"x\"]\n"));
            let r = flags_from_file(&p, &BTreeSet::new());
            let takes = flags.iter().find(|(l, _)| l == flag).unwrap().1;
            if takes {
                assert_eq!(r.unwrap(), os(&[&format!("--{flag}"), "x"]), "{flag}");
            } else {
                assert!(r.unwrap_err().to_string().contains("is a switch"), "{flag}");
                let (p, _rm) = write(&format!("{flag} = true\n"));
                assert_eq!(
                    flags_from_file(&p, &BTreeSet::new()).unwrap(),
                    os(&[&format!("--{flag}")])
                );
            }
        }
    }

    #[test]
    fn the_shipped_example_config_parses() {
        use clap::Parser as _;
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../contrib/nsdb.toml");
        let args = os(&["nsdb", "run", "--config", p.to_str().unwrap()]);
        let cli = super::super::Cli::try_parse_from(expand_args(args).unwrap()).unwrap();
        let super::super::Command::Run(r) = cli.command else {
            panic!("not run")
        };
        assert_eq!(r.ifaces, ["lan0", "wan0"]);
        assert_eq!(r.mode, super::super::run::Mode::Monitor);
        assert_eq!(r.internal.len(), 2);
        assert_eq!(r.on_exit, crate::loader::OnExit::Keep);
        assert_eq!(r.control, "/run/nsdb/nsdb.sock");
        assert_eq!(r.event_rate, 10);
    }

    #[test]
    fn attach_tc_from_the_file_and_xdp_by_default() {
        use clap::Parser as _;
        let parse = |text: &str| {
            let (p, _rm) = write(text);
            let args = os(&["nsdb", "run", "--config", p.to_str().unwrap()]);
            let cli = super::super::Cli::try_parse_from(expand_args(args).unwrap()).unwrap();
            let super::super::Command::Run(r) = cli.command else {
                panic!("not run")
            };
            r.attach
        };
        assert_eq!(
            parse("iface = [\"lan0\"]\nattach = \"tc\"\n"),
            crate::loader::Hook::Tc
        );
        assert_eq!(parse("iface = [\"lan0\"]\n"), crate::loader::Hook::Xdp);
        let (p, _rm) = write("iface = [\"lan0\"]\nattach = \"ebpf\"\n");
        let args = os(&["nsdb", "run", "--config", p.to_str().unwrap()]);
        let e = super::super::Cli::try_parse_from(expand_args(args).unwrap())
            .expect_err("an unknown hook is refused")
            .to_string();
        assert!(
            e.contains("ebpf") && e.contains("xdp") && e.contains("tc"),
            "{e}"
        );
    }

    #[test]
    fn file_values_come_first_and_command_line_flags_replace_them() {
        let (p, _rm) = write(
            "iface = [\"lan0\", \"wan0\"]\nmode = \"enforce\"\nevent_rate = 5\nno-kernel-learning = false\n",
        );
        let args = os(&[
            "nsdb",
            "run",
            "--config",
            p.to_str().unwrap(),
            "--mode",
            "monitor",
        ]);
        let out = expand_args(args).unwrap();
        let text: Vec<String> = out
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            text,
            [
                "nsdb",
                "run",
                "--event-rate",
                "5",
                "--iface",
                "lan0",
                "--iface",
                "wan0",
                "--config",
                p.to_str().unwrap(),
                "--mode",
                "monitor"
            ]
        );
        // A repeated flag on the command line replaces the file's whole list.
        let args = os(&[
            "nsdb",
            "run",
            &format!("--config={}", p.display()),
            "--iface=eth9",
        ]);
        let text: Vec<String> = expand_args(args)
            .unwrap()
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert!(!text.contains(&"lan0".to_string()), "{text:?}");
        assert!(text.contains(&"enforce".to_string()), "{text:?}");
    }

    #[test]
    fn bad_files_give_one_line_errors_naming_the_file() {
        let (p, _rm) = write("mode = \"enforce\"\nfrobnicate = 1\n");
        let e = flags_from_file(&p, &BTreeSet::new())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("unknown key \"frobnicate\"") && e.contains(p.to_str().unwrap()),
            "{e}"
        );
        let (p, _rm) = write("mode = \n");
        let e = flags_from_file(&p, &BTreeSet::new())
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with(p.to_str().unwrap()) && !e.contains('\n'),
            "{e}"
        );
        let (p, _rm) = write("[section]\nx = 1\n");
        let e = flags_from_file(&p, &BTreeSet::new())
            .unwrap_err()
            .to_string();
        assert!(e.contains("unknown key \"section\""), "{e}");
        let (p, _rm) = write("mode = { a = 1 }\n");
        let e = flags_from_file(&p, &BTreeSet::new())
            .unwrap_err()
            .to_string();
        assert!(e.contains("expected a string or a number"), "{e}");
        let e = flags_from_file(Path::new("/nonexistent/nsdb.toml"), &BTreeSet::new()).unwrap_err();
        assert!(format!("{e:#}").contains("/nonexistent/nsdb.toml"), "{e:#}");
        // Other commands are untouched.
        let args = os(&["nsdb", "learn", "x.pcap", "--db", "h.db"]);
        assert_eq!(expand_args(args.clone()).unwrap(), args);
    }
}
