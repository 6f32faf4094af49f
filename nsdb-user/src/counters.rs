//! The XDP program's counters, summed over CPUs, with names.

use std::collections::BTreeMap;

use nsdb_common::{action, counter, family, transport, verdict};

/// A snapshot of every counter.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Counters {
    raw: Vec<u64>,
}

impl Counters {
    pub fn from_raw(raw: Vec<u64>) -> Self {
        assert_eq!(raw.len(), counter::COUNT as usize, "one value per counter");
        Self { raw }
    }

    /// Queries with this verdict × action × family × transport.
    pub fn query(&self, v: u8, a: u8, f: u8, t: u8) -> u64 {
        self.raw[counter::query_index(v, a, f, t) as usize]
    }

    /// Queries with this verdict, over every action, family and transport.
    pub fn verdict_total(&self, v: u8) -> u64 {
        let mut n = 0;
        for a in 0..action::COUNT as u8 {
            for f in 0..family::COUNT as u8 {
                for t in 0..transport::COUNT as u8 {
                    n += self.query(v, a, f, t);
                }
            }
        }
        n
    }

    /// Dropped queries (all verdicts).
    pub fn dropped(&self) -> u64 {
        (0..verdict::COUNT as u8)
            .flat_map(|v| {
                (0..family::COUNT as u8)
                    .flat_map(move |f| (0..transport::COUNT as u8).map(move |t| (v, f, t)))
            })
            .map(|(v, f, t)| self.query(v, action::DROP, f, t))
            .sum()
    }

    /// One of the counters after the query counters (`nsdb_common::counter::NOT_IP` …).
    pub fn get(&self, index: u32) -> u64 {
        self.raw[index as usize]
    }

    /// Every counter by a stable name: `query_<verdict>_<action>_<family>_<transport>` and the
    /// names of `nsdb_common::counter::OTHER_NAMES`.
    pub fn named(&self) -> BTreeMap<String, u64> {
        let mut m = BTreeMap::new();
        for (vi, v) in verdict::NAMES.iter().enumerate() {
            for (ai, a) in action::NAMES.iter().enumerate() {
                for (fi, f) in family::NAMES.iter().enumerate() {
                    for (ti, t) in transport::NAMES.iter().enumerate() {
                        let n = self.query(vi as u8, ai as u8, fi as u8, ti as u8);
                        m.insert(format!("query_{v}_{a}_{f}_{t}"), n);
                    }
                }
            }
        }
        for (i, name) in counter::OTHER_NAMES.iter().enumerate() {
            m.insert(
                (*name).to_string(),
                self.raw[counter::QUERY_COUNTERS as usize + i],
            );
        }
        m
    }

    /// The named counters as one JSON object.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self.named()).expect("a map of integers serializes")
    }
}
