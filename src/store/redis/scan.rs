//! Walking the broker's names with `SCAN … MATCH {key_prefix}*`: on one server (or a Sentinel
//! master) with its own cursor; on a cluster master after master, each named by the lowest slot
//! it serves (the cursor is `<slot>:<SCAN cursor>`), the command routed to the master of that
//! slot. `scan` (records only), `export` and `is_empty` (records and indexes) page through it.

use ::redis::cluster_async::ClusterConnection;
use ::redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, Slot, SlotAddr};
use ::redis::{Cmd, Value};

use super::{Conn, INDEX_PREFIX, RedisStore};
use crate::store::StoreError;

impl RedisStore {
    /// The names `SCAN` returned with the prefix removed, records and indexes alike. Names that
    /// are not UTF-8 were not written by the broker and are left out.
    pub(super) fn stripped(&self, names: Vec<Vec<u8>>) -> Vec<String> {
        names
            .into_iter()
            .filter_map(|n| String::from_utf8(n).ok())
            .filter_map(|n| n.strip_prefix(self.prefix.as_str()).map(str::to_string))
            .collect()
    }

    /// The record keys (prefix removed) among the names `SCAN` returned.
    pub(super) fn unprefixed(&self, names: Vec<Vec<u8>>) -> Vec<String> {
        let mut keys = self.stripped(names);
        keys.retain(|k| !k.starts_with(INDEX_PREFIX));
        keys
    }

    /// One page of `SCAN … MATCH {prefix}*` (see [`Store::scan`] for the cursor): the names as
    /// Redis returned them, records and indexes.
    pub(super) async fn scan_names(
        &self,
        cursor: Option<String>,
        count: usize,
    ) -> Result<(Vec<Vec<u8>>, Option<String>), StoreError> {
        match &self.conn {
            Conn::Standalone(_) | Conn::Sentinel(_) => {
                let from = match cursor {
                    None => 0,
                    Some(c) => c
                        .parse::<u64>()
                        .map_err(|e| StoreError::backend_from(format!("redis SCAN: invalid cursor {c:?}"), e))?,
                };
                let (next, names): (u64, Vec<Vec<u8>>) =
                    self.command("SCAN", self.scan_cmd(from, count), false).await?;
                Ok((names, (next != 0).then(|| next.to_string())))
            }
            Conn::Cluster(conn) => self.scan_cluster(conn, cursor, count).await,
        }
    }

    /// `SCAN cursor MATCH {prefix}* COUNT count`.
    fn scan_cmd(&self, cursor: u64, count: usize) -> Cmd {
        let mut cmd = ::redis::cmd("SCAN");
        cmd.arg(cursor)
            .arg("MATCH")
            .arg(format!("{}*", glob_escape(&self.prefix)))
            .arg("COUNT")
            .arg(count);
        cmd
    }

    /// The masters of the cluster, each named by the lowest slot it serves, in slot order (from
    /// `CLUSTER SLOTS`, asked again for every page so that the walk follows the current layout).
    async fn masters(&self, conn: &ClusterConnection) -> Result<Vec<u16>, StoreError> {
        let mut conn = conn.clone();
        let reply: Value = self
            .bounded("CLUSTER SLOTS", async move {
                ::redis::cmd("CLUSTER").arg("SLOTS").query_async(&mut conn).await
            })
            .await?;
        lowest_slot_per_master(&reply).ok_or_else(|| StoreError::backend("redis CLUSTER SLOTS: unexpected reply"))
    }

    /// One page of a cluster scan; see the module documentation for the cursor.
    async fn scan_cluster(
        &self,
        conn: &ClusterConnection,
        cursor: Option<String>,
        count: usize,
    ) -> Result<(Vec<Vec<u8>>, Option<String>), StoreError> {
        let masters = self.masters(conn).await?;
        let (slot, node_cursor) = match cursor {
            None => match masters.first() {
                Some(first) => (*first, 0),
                None => return Ok((Vec::new(), None)),
            },
            Some(c) => parse_cluster_cursor(&c)
                .ok_or_else(|| StoreError::backend(format!("redis SCAN: invalid cursor {c:?}")))?,
        };
        let route = Slot::new(slot)
            .map(|s| {
                RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(Route::with_slot(
                    s,
                    SlotAddr::Master,
                )))
            })
            .ok_or_else(|| StoreError::backend(format!("redis SCAN: slot {slot} out of range")))?;
        let cmd = self.scan_cmd(node_cursor, count);
        let mut c = conn.clone();
        let reply = self
            .bounded("SCAN", async move { c.route_command(cmd, route).await })
            .await?;
        let (next, names): (u64, Vec<Vec<u8>>) = ::redis::from_redis_value(reply)
            .map_err(|e| StoreError::backend_from(format!("redis SCAN: unexpected reply: {e}"), e))?;
        let next = match next {
            0 => masters.iter().find(|m| **m > slot).map(|m| format!("{m}:0")),
            n => Some(format!("{slot}:{n}")),
        };
        Ok((names, next))
    }
}

/// `text` with the glob characters of `SCAN … MATCH` escaped, so that a prefix is matched
/// literally.
pub(super) fn glob_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\' | '^' | '-') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// `<slot>:<cursor>` of a cluster scan.
pub(super) fn parse_cluster_cursor(cursor: &str) -> Option<(u16, u64)> {
    let (slot, node) = cursor.split_once(':')?;
    Some((slot.parse().ok()?, node.parse().ok()?))
}

/// From a `CLUSTER SLOTS` reply (`[[start, end, [host, port, node id, …], replicas…], …]`): the
/// lowest slot of each master, sorted. Masters are told apart by node id (host and port when a
/// reply lacks it).
pub(super) fn lowest_slot_per_master(reply: &Value) -> Option<Vec<u16>> {
    let Value::Array(ranges) = reply else {
        return None;
    };
    let mut lowest: std::collections::HashMap<String, u16> = std::collections::HashMap::new();
    for range in ranges {
        let Value::Array(fields) = range else {
            return None;
        };
        let start = match fields.first()? {
            Value::Int(n) => u16::try_from(*n).ok()?,
            _ => return None,
        };
        let Value::Array(master) = fields.get(2)? else {
            return None;
        };
        let text = |v: &Value| match v {
            Value::BulkString(b) => Some(String::from_utf8_lossy(b).into_owned()),
            Value::SimpleString(s) => Some(s.clone()),
            Value::Int(n) => Some(n.to_string()),
            _ => None,
        };
        let id = match master.get(2).and_then(text) {
            Some(id) => id,
            None => format!("{}:{}", text(master.first()?)?, text(master.get(1)?)?),
        };
        let slot = lowest.entry(id).or_insert(start);
        *slot = (*slot).min(start);
    }
    let mut slots: Vec<u16> = lowest.into_values().collect();
    slots.sort_unstable();
    Some(slots)
}
