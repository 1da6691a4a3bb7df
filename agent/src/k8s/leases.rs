//! The I/O half of the election: Lease objects to and from [`LeaseRecord`], and the writes
//! [`Election`](super::election::Election) asks for, each conditioned on a resourceVersion.

use std::{collections::BTreeMap, net::IpAddr, time::Duration};

use k8s_openapi::{
    api::coordination::v1::{Lease, LeaseSpec},
    apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta},
    jiff::Timestamp,
};
use kube::{
    Api,
    api::{DeleteParams, PostParams, Preconditions},
};

use super::election::{LeaseRecord, Timings, Write, WriteResult};

/// Label on every lease l2announcer manages: the lease watch selects on it.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
pub const MANAGED_BY: &str = "l2announcer";
/// Annotation with the IP a lease is for (its name encodes it too, less readably).
pub const IP_ANNOTATION: &str = "l2announcer.io/ip";

/// What the watch shows of a lease, for the election.
pub fn record(lease: &Lease) -> LeaseRecord {
    let spec = lease.spec.clone().unwrap_or_default();
    LeaseRecord {
        holder: spec.holder_identity.filter(|h| !h.is_empty()),
        duration: spec
            .lease_duration_seconds
            .and_then(|s| u64::try_from(s).ok())
            .map(Duration::from_secs),
        renew_time: spec.renew_time.map(|t| t.0.to_string()),
        transitions: spec.lease_transitions.unwrap_or(0),
        resource_version: lease.metadata.resource_version.clone().unwrap_or_default(),
    }
}

/// The IP a managed lease is for.
pub fn lease_ip(lease: &Lease) -> Option<IpAddr> {
    lease
        .metadata
        .annotations
        .as_ref()?
        .get(IP_ANNOTATION)?
        .parse()
        .ok()
}

/// How a failed write is taken by the election.
pub fn classify(e: &kube::Error) -> WriteResult {
    match e {
        kube::Error::Api(status) => match status.code {
            409 => WriteResult::Conflict,
            404 => WriteResult::Conflict,
            429 | 500..=599 => WriteResult::Unavailable,
            _ => WriteResult::Rejected,
        },
        _ => WriteResult::Unavailable,
    }
}

/// The Lease `write` should leave on the server. A create makes a new lease from `metadata`;
/// the others change the lease as last seen (`current`, `None`: nothing to change) and carry
/// the resourceVersion the decision was made on, so the server refuses a stale one.
pub fn lease_to_write(
    metadata: ObjectMeta,
    holder: &str,
    lease_duration: Duration,
    current: Option<&Lease>,
    write: &Write,
    now: Timestamp,
) -> Option<Lease> {
    let now = MicroTime(now);
    let duration = i32::try_from(lease_duration.as_secs()).unwrap_or(i32::MAX);
    match write {
        Write::Create => Some(Lease {
            metadata,
            spec: Some(LeaseSpec {
                holder_identity: Some(holder.to_owned()),
                lease_duration_seconds: Some(duration),
                acquire_time: Some(now.clone()),
                renew_time: Some(now),
                lease_transitions: Some(0),
                ..LeaseSpec::default()
            }),
        }),
        Write::Renew { resource_version }
        | Write::Acquire {
            resource_version, ..
        }
        | Write::Release { resource_version } => {
            let mut lease = current?.clone();
            lease.metadata.resource_version = Some(resource_version.clone());
            let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
            match write {
                Write::Renew { .. } => spec.renew_time = Some(now),
                Write::Acquire { transitions, .. } => {
                    spec.holder_identity = Some(holder.to_owned());
                    spec.lease_duration_seconds = Some(duration);
                    spec.acquire_time = Some(now.clone());
                    spec.renew_time = Some(now);
                    spec.lease_transitions = Some(*transitions);
                }
                Write::Release { .. } => spec.holder_identity = None,
                Write::Create => {}
            }
            Some(lease)
        }
    }
}

/// Everything a write needs besides the decision.
pub struct LeaseWriter {
    pub api: Api<Lease>,
    pub me: String,
    pub timings: Timings,
}

impl LeaseWriter {
    /// Performs `write` for the lease `name` of `ip`; `current` is the lease as last watched
    /// (a replace sends it back with the fields changed, so nothing else is lost).
    pub async fn execute(
        &self,
        name: &str,
        ip: IpAddr,
        current: Option<&Lease>,
        write: &Write,
    ) -> (WriteResult, Option<Lease>) {
        // A write that hangs must not hold the election forever: past the renew deadline it
        // counts as the API being unavailable.
        match tokio::time::timeout(
            self.timings.renew_deadline,
            self.execute_once(name, ip, current, write),
        )
        .await
        {
            Ok(done) => done,
            Err(_) => {
                tracing::debug!(lease = name, "lease write timed out");
                (WriteResult::Unavailable, None)
            }
        }
    }

    async fn execute_once(
        &self,
        name: &str,
        ip: IpAddr,
        current: Option<&Lease>,
        write: &Write,
    ) -> (WriteResult, Option<Lease>) {
        let metadata = ObjectMeta {
            name: Some(name.to_owned()),
            labels: Some(BTreeMap::from([(
                MANAGED_BY_LABEL.to_owned(),
                MANAGED_BY.to_owned(),
            )])),
            annotations: Some(BTreeMap::from([(IP_ANNOTATION.to_owned(), ip.to_string())])),
            ..ObjectMeta::default()
        };
        let Some(lease) = lease_to_write(
            metadata,
            &self.me,
            self.timings.lease_duration,
            current,
            write,
            Timestamp::now(),
        ) else {
            return (WriteResult::Conflict, None);
        };
        let result = match write {
            Write::Create => self.api.create(&PostParams::default(), &lease).await,
            _ => self.api.replace(name, &PostParams::default(), &lease).await,
        };
        match result {
            Ok(lease) => (WriteResult::Ok(record(&lease)), Some(lease)),
            Err(e) => {
                tracing::debug!(lease = name, error = %e, "lease write failed");
                (classify(&e), None)
            }
        }
    }

    /// Deletes a lease nobody needs any more, if it is still as last seen.
    pub async fn delete(&self, name: &str, resource_version: &str) -> Result<(), kube::Error> {
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                resource_version: Some(resource_version.to_owned()),
                uid: None,
            }),
            ..DeleteParams::default()
        };
        self.api.delete(name, &params).await.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_holder_is_no_holder() {
        let lease = Lease {
            metadata: ObjectMeta {
                resource_version: Some("7".into()),
                ..ObjectMeta::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(String::new()),
                lease_duration_seconds: Some(15),
                ..LeaseSpec::default()
            }),
        };
        let r = record(&lease);
        assert_eq!(r.holder, None);
        assert_eq!(r.duration, Some(Duration::from_secs(15)));
        assert_eq!(r.resource_version, "7");
    }

    #[test]
    fn errors_are_classified() {
        let api = |code| {
            kube::Error::Api(Box::new(kube::core::Status {
                code,
                ..kube::core::Status::default()
            }))
        };
        assert_eq!(classify(&api(409)), WriteResult::Conflict);
        assert_eq!(classify(&api(503)), WriteResult::Unavailable);
        assert_eq!(classify(&api(429)), WriteResult::Unavailable);
        assert_eq!(classify(&api(403)), WriteResult::Rejected);
    }
}
