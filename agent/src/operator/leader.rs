//! One active operator replica through a single Lease. The decisions are the agent's pure
//! [`Election`] (the same rules as the per-IP leases, without the keep-on-outage exception:
//! a leader whose renewals fail stops writing at its renew deadline); this file watches the
//! one Lease and makes the writes the election asks for, each conditioned on the
//! resourceVersion it was decided on.
//!
//! The operator's Lease carries no `app.kubernetes.io/managed-by: l2announcer` label, so the
//! agents' lease watch (and its garbage collection) never sees it, even in the same namespace.

use std::{collections::BTreeMap, time::Duration};

use futures::TryStreamExt;
use k8s_openapi::{
    api::coordination::v1::Lease, apimachinery::pkg::apis::meta::v1::ObjectMeta, jiff::Timestamp,
};
use kube::{
    Api, Client,
    api::PostParams,
    runtime::watcher::{self, Event},
};
use tokio::{
    sync::{mpsc, watch},
    time::Instant,
};
use tracing::{info, warn};

use crate::k8s::{
    election::{Election, Timings, Write, WriteResult},
    leases::{self, classify, record},
};

/// Which Lease, and who this replica is.
#[derive(Clone, Debug)]
pub struct LeaderConfig {
    pub namespace: String,
    pub name: String,
    pub identity: String,
    pub timings: Timings,
}

// Moved one at a time through a channel: boxing the large variant buys nothing.
#[allow(clippy::large_enum_variant)]
enum Input {
    Watch(Event<Lease>),
    /// The watch failed: blind until it has listed again.
    Lost,
}

/// The Lease `write` should leave on the server (`current`: as last seen).
pub fn lease_to_write(
    config: &LeaderConfig,
    current: Option<&Lease>,
    write: &Write,
    now: Timestamp,
) -> Option<Lease> {
    let metadata = ObjectMeta {
        name: Some(config.name.clone()),
        namespace: Some(config.namespace.clone()),
        labels: Some(BTreeMap::from([(
            "app.kubernetes.io/name".to_owned(),
            "l2announcer-operator".to_owned(),
        )])),
        ..ObjectMeta::default()
    };
    leases::lease_to_write(
        metadata,
        &config.identity,
        config.timings.lease_duration,
        current,
        write,
        now,
    )
}

async fn execute(
    api: &Api<Lease>,
    config: &LeaderConfig,
    current: Option<&Lease>,
    write: &Write,
) -> (WriteResult, Option<Lease>) {
    let Some(lease) = lease_to_write(config, current, write, Timestamp::now()) else {
        return (WriteResult::Conflict, None);
    };
    let request = async {
        match write {
            Write::Create => api.create(&PostParams::default(), &lease).await,
            _ => {
                api.replace(&config.name, &PostParams::default(), &lease)
                    .await
            }
        }
    };
    // A write that hangs past the renew deadline is as good as failed.
    match tokio::time::timeout(config.timings.renew_deadline, request).await {
        Ok(Ok(lease)) => (WriteResult::Ok(record(&lease)), Some(lease)),
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "operator lease write failed");
            (classify(&e), None)
        }
        Err(_) => (WriteResult::Unavailable, None),
    }
}

fn spawn_watch(api: Api<Lease>, name: &str, tx: mpsc::Sender<Input>) {
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    tokio::spawn(async move {
        let mut backoff = Duration::from_millis(200);
        loop {
            let stream = watcher::watcher(api.clone(), config.clone());
            futures::pin_mut!(stream);
            loop {
                match stream.try_next().await {
                    Ok(Some(event)) => {
                        backoff = Duration::from_millis(200);
                        if tx.send(Input::Watch(event)).await.is_err() {
                            return;
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        warn!(error = %e, "operator lease watch lost; relisting");
                        if tx.send(Input::Lost).await.is_err() {
                            return;
                        }
                        break;
                    }
                }
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
        }
    });
}

/// Runs the election until `stop` turns true, publishing whether this replica leads (may
/// write) on `leading`; then stops leading and releases the Lease so that a standby takes
/// over at once. `watch_client` serves the watch, `write_client` only the lease writes, so
/// renewals never queue behind status writes.
pub async fn run(
    config: LeaderConfig,
    watch_client: Client,
    write_client: Client,
    leading: watch::Sender<bool>,
    mut stop: watch::Receiver<bool>,
) {
    let api: Api<Lease> = Api::namespaced(write_client, &config.namespace);
    let (tx, mut rx) = mpsc::channel(16);
    spawn_watch(
        Api::namespaced(watch_client, &config.namespace),
        &config.name,
        tx,
    );
    let mut election = Election::new(config.identity.clone(), config.timings, false);
    election.set_eligible(true, Vec::new(), Instant::now());
    let mut current: Option<Lease> = None;
    let mut listing: Option<Option<Lease>> = None;
    let mut wake: Option<Instant> = Some(Instant::now());
    loop {
        let sleep = async {
            match wake {
                Some(at) => tokio::time::sleep_until(at).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = stop.wait_for(|s| *s) => break,
            input = rx.recv() => {
                let Some(input) = input else { break };
                let now = Instant::now();
                match input {
                    Input::Watch(Event::Init) => listing = Some(None),
                    Input::Watch(Event::InitApply(lease)) => {
                        if let Some(l) = &mut listing {
                            *l = Some(lease);
                        }
                    }
                    Input::Watch(Event::InitDone) => {
                        current = listing.take().flatten();
                        election.relisted(current.as_ref().map(record), now);
                    }
                    Input::Watch(Event::Apply(lease)) => {
                        election.observe(Some(record(&lease)), now);
                        current = Some(lease);
                    }
                    Input::Watch(Event::Delete(_)) => {
                        current = None;
                        election.observe(None, now);
                    }
                    Input::Lost => election.set_blind(),
                }
            }
            _ = sleep => {}
        }
        let d = election.decide(Instant::now());
        wake = d.wake_at;
        if let Some(write) = d.write {
            let (result, lease) = execute(&api, &config, current.as_ref(), &write).await;
            let before = election.holds();
            if lease.is_some() {
                current = lease;
            }
            election.written(&write, result, Instant::now());
            if election.holds() && !before {
                info!(identity = %config.identity, lease = %config.name, "operator lease acquired");
            } else if before && !election.holds() {
                warn!(identity = %config.identity, "operator lease lost");
            }
            wake = Some(Instant::now());
        }
        let now_leading = election.announcing(Instant::now());
        leading.send_if_modified(|l| {
            let changed = *l != now_leading;
            *l = now_leading;
            changed
        });
    }
    leading.send_replace(false);
    if let Some(write) = election.release() {
        match execute(&api, &config, current.as_ref(), &write).await {
            (WriteResult::Ok(_), _) => info!("operator lease released"),
            (other, _) => {
                warn!(result = ?other, "releasing the operator lease failed; it will expire")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> LeaderConfig {
        LeaderConfig {
            namespace: "kube-system".into(),
            name: "l2announcer-operator".into(),
            identity: "op-a".into(),
            timings: Timings::default(),
        }
    }

    #[test]
    fn create_holds_with_the_duration() {
        let now: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let lease = lease_to_write(&config(), None, &Write::Create, now).unwrap();
        let spec = lease.spec.unwrap();
        assert_eq!(spec.holder_identity.as_deref(), Some("op-a"));
        assert_eq!(spec.lease_duration_seconds, Some(15));
        assert_eq!(lease.metadata.namespace.as_deref(), Some("kube-system"));
        // Not the agents' label: their lease garbage collection must never see it.
        assert!(
            !lease
                .metadata
                .labels
                .unwrap()
                .contains_key(crate::k8s::leases::MANAGED_BY_LABEL)
        );
    }

    #[test]
    fn acquire_and_release_carry_the_decided_resource_version() {
        let now: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let mut theirs = lease_to_write(&config(), None, &Write::Create, now).unwrap();
        theirs.spec.as_mut().unwrap().holder_identity = Some("op-b".into());
        theirs.metadata.resource_version = Some("10".into());
        let acquire = Write::Acquire {
            resource_version: "10".into(),
            transitions: 1,
        };
        let lease = lease_to_write(&config(), Some(&theirs), &acquire, now).unwrap();
        assert_eq!(lease.metadata.resource_version.as_deref(), Some("10"));
        let spec = lease.spec.as_ref().unwrap();
        assert_eq!(spec.holder_identity.as_deref(), Some("op-a"));
        assert_eq!(spec.lease_transitions, Some(1));
        let release = Write::Release {
            resource_version: "11".into(),
        };
        let released = lease_to_write(&config(), Some(&lease), &release, now).unwrap();
        assert_eq!(released.spec.unwrap().holder_identity, None);
        assert_eq!(released.metadata.resource_version.as_deref(), Some("11"));
        // Nothing seen to replace: no write.
        assert!(lease_to_write(&config(), None, &release, now).is_none());
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
        assert_eq!(classify(&api(403)), WriteResult::Rejected);
    }
}
