//! The audit log: one entry per request, and counters over it.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::time::SystemTime;

use serde::Serialize;

/// One request as the server saw it.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditEntry {
    #[serde(skip)]
    pub time: SystemTime,
    /// RFC 3339 rendering of `time`.
    pub timestamp: String,
    pub user: String,
    /// Kubernetes verb (`get`, `list`, `watch`, `create`, `update`, `patch`, `delete`,
    /// `deletecollection`), or the lowercase HTTP method for non-resource requests.
    pub verb: String,
    pub group: String,
    /// Plural resource name; empty for non-resource requests (discovery).
    pub resource: String,
    pub subresource: String,
    pub namespace: String,
    pub name: String,
    pub path: String,
    pub code: u16,
}

/// How many entries the log keeps (the oldest are dropped; counters keep counting).
pub const MAX_ENTRIES: usize = 1_000_000;

#[derive(Debug, Default)]
struct Log {
    entries: VecDeque<AuditEntry>,
    /// Requests by `(user, verb, resource)`, since the last `clear`.
    counts: BTreeMap<(String, String, String), u64>,
    total: u64,
}

/// The audit log of a server (shared; methods take `&self`). Counters cover every request
/// since the last [`clear`](Self::clear); [`entries`](Self::entries) keeps the most recent
/// [`MAX_ENTRIES`].
#[derive(Debug, Default)]
pub struct Audit {
    log: Mutex<Log>,
}

impl Audit {
    fn lock(&self) -> std::sync::MutexGuard<'_, Log> {
        self.log.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn record(&self, entry: AuditEntry) {
        let mut log = self.lock();
        let key = (
            entry.user.clone(),
            entry.verb.clone(),
            entry.resource.clone(),
        );
        *log.counts.entry(key).or_insert(0) += 1;
        log.total += 1;
        if log.entries.len() >= MAX_ENTRIES {
            log.entries.pop_front();
        }
        log.entries.push_back(entry);
    }

    /// The retained entries, oldest first.
    pub fn entries(&self) -> Vec<AuditEntry> {
        self.lock().entries.iter().cloned().collect()
    }

    /// Requests since the last `clear`.
    pub fn len(&self) -> usize {
        self.lock().total as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn clear(&self) {
        *self.lock() = Log::default();
    }

    /// Requests with this verb on this resource (plural name; `""` counts every resource).
    pub fn count(&self, verb: &str, resource: &str) -> usize {
        self.lock()
            .counts
            .iter()
            .filter(|((_, v, r), _)| v == verb && (resource.is_empty() || r == resource))
            .map(|(_, n)| *n as usize)
            .sum()
    }

    /// Counts by `(verb, resource)`.
    pub fn by_verb_resource(&self) -> BTreeMap<(String, String), u64> {
        let mut m = BTreeMap::new();
        for ((_, v, r), n) in self.lock().counts.iter() {
            *m.entry((v.clone(), r.clone())).or_insert(0) += n;
        }
        m
    }

    /// Counts by user.
    pub fn by_user(&self) -> BTreeMap<String, u64> {
        let mut m = BTreeMap::new();
        for ((u, _, _), n) in self.lock().counts.iter() {
            *m.entry(u.clone()).or_insert(0) += n;
        }
        m
    }

    /// Counts by `(user, verb, resource)`.
    pub fn by_user_verb_resource(&self) -> BTreeMap<(String, String, String), u64> {
        self.lock().counts.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(user: &str, verb: &str, resource: &str) -> AuditEntry {
        AuditEntry {
            time: SystemTime::now(),
            timestamp: String::new(),
            user: user.into(),
            verb: verb.into(),
            group: String::new(),
            resource: resource.into(),
            subresource: String::new(),
            namespace: String::new(),
            name: String::new(),
            path: String::new(),
            code: 200,
        }
    }

    #[test]
    fn counters() {
        let a = Audit::default();
        a.record(entry("u1", "get", "leases"));
        a.record(entry("u1", "update", "leases"));
        a.record(entry("u2", "get", "leases"));
        a.record(entry("u2", "list", "services"));
        assert_eq!(a.count("get", "leases"), 2);
        assert_eq!(a.count("get", ""), 2);
        assert_eq!(a.by_user()["u2"], 2);
        assert_eq!(
            a.by_verb_resource()[&("list".to_string(), "services".to_string())],
            1
        );
        assert_eq!(
            a.by_user_verb_resource()
                [&("u1".to_string(), "update".to_string(), "leases".to_string())],
            1
        );
        a.clear();
        assert!(a.is_empty());
    }
}
