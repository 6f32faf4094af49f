//! The operator's exception list: one IP address or CIDR prefix per line, `#` starts a comment.

use std::{net::IpAddr, path::Path};

use ipnet::IpNet;

#[derive(Debug, thiserror::Error)]
pub enum AllowListError {
    #[error("cannot read allow file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}:{line}: {text:?} is not an IP address or CIDR prefix")]
    Parse {
        path: String,
        line: usize,
        text: String,
    },
}

/// Parses one address or prefix; a bare address is a host prefix (/32, /128).
pub fn parse_net(s: &str) -> Option<IpNet> {
    if let Ok(n) = s.parse::<IpNet>() {
        return Some(n.trunc());
    }
    s.parse::<IpAddr>().ok().map(IpNet::from)
}

/// Parses the text of an allow file; `path` only names it in errors.
pub fn parse(text: &str, path: &str) -> Result<Vec<IpNet>, AllowListError> {
    let mut nets = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let s = line.split('#').next().unwrap_or("").trim();
        if s.is_empty() {
            continue;
        }
        let n = parse_net(s).ok_or_else(|| AllowListError::Parse {
            path: path.to_string(),
            line: i + 1,
            text: s.to_string(),
        })?;
        nets.push(n);
    }
    Ok(nets)
}

/// Reads and parses an allow file.
pub fn load(path: &Path) -> Result<Vec<IpNet>, AllowListError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| AllowListError::Read {
        path: shown.clone(),
        source,
    })?;
    parse(&text, &shown)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_addresses_prefixes_and_comments() {
        let nets = parse(
            "# resolvers\n8.8.8.8\n 2001:db8::/32 # v6\n\n192.0.2.77/24\n",
            "f",
        )
        .unwrap();
        let shown: Vec<String> = nets.iter().map(|n| n.to_string()).collect();
        assert_eq!(shown, ["8.8.8.8/32", "2001:db8::/32", "192.0.2.0/24"]);
    }

    #[test]
    fn names_the_bad_line() {
        let e = parse("8.8.8.8\nnot-an-ip\n", "allow.txt").unwrap_err();
        assert_eq!(
            e.to_string(),
            "allow.txt:2: \"not-an-ip\" is not an IP address or CIDR prefix"
        );
    }
}
