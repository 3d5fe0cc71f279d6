//! Which transactions a snapshot already contains. The initial copy of the tables runs in a
//! snapshot taken just after the replication slot was created; the slot then streams every
//! transaction that commits after its consistent point, some of which the copy already saw.
//! A transaction is skipped exactly when it is visible in the snapshot, so the copy and the
//! stream neither overlap nor leave a gap.

use serde::{Deserialize, Serialize};

/// A `pg_current_snapshot()` value: `xmin:xmax:xip,...` with 64-bit transaction ids.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotXids {
    /// Every transaction below this had finished when the snapshot was taken.
    pub xmin: u64,
    /// No transaction at or above this had finished.
    pub xmax: u64,
    /// Transactions in `[xmin, xmax)` still running at the time.
    pub xip: Vec<u64>,
}

impl SnapshotXids {
    /// Parses PostgreSQL's text form.
    pub fn parse(text: &str) -> Option<Self> {
        let mut parts = text.trim().split(':');
        let xmin = parts.next()?.parse().ok()?;
        let xmax = parts.next()?.parse().ok()?;
        let xip = match parts.next() {
            Some("") | None => Vec::new(),
            Some(list) => list
                .split(',')
                .map(|x| x.parse().ok())
                .collect::<Option<Vec<u64>>>()?,
        };
        Some(SnapshotXids { xmin, xmax, xip })
    }

    /// Widens a 32-bit xid (as the change stream sends it) to the 64-bit id nearest `xmax`,
    /// which is right for any transaction within two billion ids of the snapshot.
    fn widen(&self, xid: u32) -> u64 {
        let epoch = self.xmax & !0xFFFF_FFFF;
        let candidate = epoch | xid as u64;
        let half = 1u64 << 31;
        if candidate > self.xmax + half && candidate >= 1 << 32 {
            candidate - (1 << 32)
        } else if candidate + half < self.xmax {
            candidate + (1 << 32)
        } else {
            candidate
        }
    }

    /// Whether the snapshot sees the committed transaction `xid` (its changes are in the copy).
    pub fn sees(&self, xid: u32) -> bool {
        let xid = self.widen(xid);
        xid < self.xmin || (xid < self.xmax && !self.xip.contains(&xid))
    }
}

impl std::fmt::Display for SnapshotXids {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let xip: Vec<String> = self.xip.iter().map(u64::to_string).collect();
        write!(f, "{}:{}:{}", self.xmin, self.xmax, xip.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn running_and_later_transactions_are_not_seen() {
        let s = SnapshotXids::parse("100:105:101,103").unwrap();
        assert_eq!(s.to_string(), "100:105:101,103");
        assert!(s.sees(99) && s.sees(100) && s.sees(102) && s.sees(104));
        assert!(!s.sees(101) && !s.sees(103) && !s.sees(105) && !s.sees(4000));
        assert_eq!(SnapshotXids::parse("7:7:").unwrap().xip, Vec::<u64>::new());
        assert!(SnapshotXids::parse("x").is_none());
    }

    #[test]
    fn ids_across_the_32_bit_wrap_widen_to_the_right_epoch() {
        let base = (3u64 << 32) + 10;
        let s = SnapshotXids {
            xmin: base - 20,
            xmax: base,
            xip: vec![],
        };
        // 0xFFFF_FFF0 belongs to the previous epoch: before xmin, seen.
        assert!(s.sees(0xFFFF_FFF0));
        // 12 is just after xmax in the current epoch: not seen.
        assert!(!s.sees(12));
    }
}
