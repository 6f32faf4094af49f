//! nsdb: catches DNS-based botnet C&C traffic at the gateway by checking the destination of
//! every outbound DNS query against a history of name servers learned from DNS responses.
//!
//! Modules, one per concern:
//! - [`cli`]: the `nsdb` command line (one file per subcommand).
pub mod alerts;
pub mod allowlist;
pub mod capture;
pub mod cli;
pub mod clock;
pub mod control;
pub mod counters;
pub mod events;
pub mod learn;
pub mod live;
pub mod loader;
pub mod metrics;
pub mod offline;
pub mod roots;
pub mod status;
pub mod store;
pub mod wire;
