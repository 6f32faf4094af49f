//! nsdb: catches DNS-based botnet C&C traffic at the gateway by checking the destination of
//! every outbound DNS query against a history of name servers learned from DNS responses.
//!
//! Modules, one per concern:
//! - [`cli`]: the `nsdb` command line (one file per subcommand).
pub mod cli;
pub mod capture;
pub mod learn;
pub mod roots;
pub mod wire;
pub mod store;
pub mod offline;
