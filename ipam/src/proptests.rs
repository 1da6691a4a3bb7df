//! Property tests of the allocator over small, crowded address spaces (so that exhaustion,
//! overlaps, sharing and contested restart states happen often).

use std::collections::BTreeMap;
use std::net::IpAddr;

use proptest::prelude::*;

use crate::addr::{Block, Family};
use crate::allocator::{Allocator, Event};
use crate::model::{Config, IpFamilyPolicy, Pool, Port, Service, ServiceKey};
use crate::selector::PoolSelector;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

const BLOCKS: &[&str] = &[
    "10.0.0.0/29",
    "10.0.0.8/30",
    "10.0.0.4-10.0.0.9",
    "10.0.0.12",
    "10.0.1.0/31",
    "2001:db8::/126",
    "2001:db8::4-2001:db8::6",
];

const ADDRESSES: &[&str] = &[
    "10.0.0.0",
    "10.0.0.3",
    "10.0.0.5",
    "10.0.0.9",
    "10.0.0.12",
    "10.0.1.1",
    "192.0.2.1",
    "2001:db8::1",
    "2001:db8::5",
];

fn block(s: &str) -> Block {
    match s.split_once('-') {
        Some((a, b)) => Block::parse(None, Some(a), Some(b)).unwrap(),
        None if s.contains('/') => Block::parse(Some(s), None, None).unwrap(),
        None => Block::parse(None, Some(s), None).unwrap(),
    }
}

fn addr(i: usize) -> IpAddr {
    ADDRESSES[i % ADDRESSES.len()].parse().unwrap()
}

fn color_selector(color: &str) -> PoolSelector {
    PoolSelector::from(&LabelSelector {
        match_labels: Some([("color".to_string(), color.to_string())].into()),
        match_expressions: None,
    })
}

fn arb_pool(index: usize) -> impl Strategy<Value = Pool> {
    (
        0..3i64,
        proptest::collection::vec(0..BLOCKS.len(), 1..3),
        any::<bool>(),
        prop::bool::weighted(0.15),
        0..3usize,
    )
        .prop_map(move |(created, blocks, allow, disabled, sel)| {
            let mut p = Pool::new(
                format!("p{index}"),
                blocks.iter().map(|&b| block(BLOCKS[b])).collect(),
            );
            p.created = created;
            p.allow_first_last = allow;
            p.disabled = disabled;
            p.selector = match sel {
                0 => None,
                1 => Some(color_selector("red")),
                _ => Some(color_selector("blue")),
            };
            p
        })
}

fn arb_pools() -> impl Strategy<Value = Vec<Pool>> {
    (1..4usize).prop_flat_map(|n| (0..n).map(arb_pool).collect::<Vec<_>>())
}

fn arb_service(index: usize) -> impl Strategy<Value = Service> {
    (
        (0..2usize, 0..4i64, 0..3usize, 0..3usize, 0..3usize),
        (
            proptest::collection::vec(0..3usize, 0..3),
            any::<bool>(),
            0..2usize,
            0..5usize,
        ),
        (
            prop::bool::weighted(0.25),
            0..ADDRESSES.len(),
            proptest::collection::vec(0..ADDRESSES.len(), 0..3),
        ),
    )
        .prop_map(
            move |(
                (ns, created, color, key, cross),
                (ports, local, app, family),
                (req, req_ip, ingress),
            )| {
                let mut s = Service::new(ServiceKey::new(format!("ns{ns}"), format!("s{index}")));
                s.created = created;
                match color {
                    0 => {}
                    1 => drop(s.labels.insert("color".into(), "red".into())),
                    _ => drop(s.labels.insert("color".into(), "blue".into())),
                }
                s.sharing_key = ["", "k1", "k2"][key].to_string();
                s.sharing_cross_namespace = match cross {
                    0 => vec![],
                    1 => vec!["*".into()],
                    _ => vec!["ns0".into()],
                };
                s.ports = ports
                    .iter()
                    .map(|&p| match p {
                        0 => Port {
                            port: 80,
                            protocol: "TCP".into(),
                        },
                        1 => Port {
                            port: 443,
                            protocol: "TCP".into(),
                        },
                        _ => Port {
                            port: 80,
                            protocol: "UDP".into(),
                        },
                    })
                    .collect();
                s.ports.sort();
                s.ports.dedup();
                s.external_traffic_local = local;
                s.selector = [("app".to_string(), format!("a{app}"))].into();
                (s.ip_family_policy, s.ip_families) = match family {
                    0 => (None, vec![]),
                    1 => (Some(IpFamilyPolicy::SingleStack), vec![Family::V6]),
                    2 => (Some(IpFamilyPolicy::PreferDualStack), vec![]),
                    3 => (
                        Some(IpFamilyPolicy::RequireDualStack),
                        vec![Family::V4, Family::V6],
                    ),
                    _ => (None, vec![Family::V4]),
                };
                if req {
                    s.requested_ips = vec![addr(req_ip)];
                }
                // A restart state, possibly contested or nonsensical.
                s.ingress_ips = ingress.iter().map(|&i| addr(i)).collect();
                s
            },
        )
}

fn arb_services() -> impl Strategy<Value = Vec<Service>> {
    (0..10usize).prop_flat_map(|n| (0..n).map(arb_service).collect::<Vec<_>>())
}

fn events(pools: &[Pool], services: &[Service]) -> Vec<Event> {
    pools
        .iter()
        .cloned()
        .map(Event::PoolUpserted)
        .chain(services.iter().cloned().map(Event::ServiceUpserted))
        .collect()
}

/// Everything a reconcile decided that the outside can see.
fn snapshot(
    a: &Allocator,
) -> (
    BTreeMap<ServiceKey, Vec<IpAddr>>,
    Vec<Option<crate::model::Condition>>,
) {
    let assignments = a.assignments();
    let conditions = assignments
        .keys()
        .map(|k| a.service_condition(k).cloned())
        .collect();
    (assignments, conditions)
}

/// The allocator's invariants: holders and services agree, sharers are compatible with each
/// other, held addresses are never free, and counts add up.
fn check_invariants(a: &Allocator) -> Result<(), TestCaseError> {
    let holders = a.holders();
    for (key, ips) in a.assignments() {
        for ip in ips {
            prop_assert!(
                holders.get(&ip).is_some_and(|h| h.contains(&key)),
                "{key} holds {ip} unrecorded"
            );
        }
    }
    for (ip, keys) in &holders {
        prop_assert!(!keys.is_empty());
        for k in keys {
            prop_assert!(
                a.service_ips(k).is_some_and(|ips| ips.contains(ip)),
                "{k} recorded on {ip}"
            );
        }
        for (i, x) in keys.iter().enumerate() {
            for y in &keys[i + 1..] {
                let (sx, sy) = (a.service(x).unwrap(), a.service(y).unwrap());
                prop_assert_eq!(
                    sx.sharing_incompatibility(sy),
                    None,
                    "{} and {} share {}",
                    x,
                    y,
                    ip
                );
                prop_assert_eq!(
                    sy.sharing_incompatibility(sx),
                    None,
                    "{} and {} share {}",
                    y,
                    x,
                    ip
                );
            }
        }
        for p in a.pools.values() {
            for r in &p.ranges {
                prop_assert!(
                    !r.free.is_free(*ip),
                    "{ip} held but free in pool {}",
                    p.pool.name
                );
            }
        }
    }
    let full: std::collections::BTreeSet<IpAddr> = holders
        .keys()
        .copied()
        .filter(|ip| a.is_outside(*ip))
        .collect();
    prop_assert_eq!(&a.outside, &full, "cached out-of-block addresses");
    for (name, c) in a.stats().pools {
        prop_assert_eq!(c.used + c.available, c.total, "pool {}", name);
    }
    Ok(())
}

#[derive(Clone, Debug)]
enum Op {
    Apply(Event),
    /// Upsert a service whose status claims the addresses another service holds now (a
    /// stale status, a hand edit, or a restart state from a buggy predecessor).
    Claim {
        victim: usize,
        thief: Service,
    },
    Reconcile,
}

fn arb_ops() -> impl Strategy<Value = Vec<Op>> {
    let op = prop_oneof![
        3 => (0..4usize).prop_flat_map(arb_pool).prop_map(|p| Op::Apply(Event::PoolUpserted(p))),
        1 => (0..4usize).prop_map(|i| Op::Apply(Event::PoolDeleted(format!("p{i}")))),
        6 => (0..8usize).prop_flat_map(arb_service).prop_map(|s| Op::Apply(Event::ServiceUpserted(s))),
        2 => (0..2usize, 0..8usize).prop_map(|(n, i)| Op::Apply(Event::ServiceDeleted(ServiceKey::new(format!("ns{n}"), format!("s{i}"))))),
        2 => (0..8usize, (0..8usize).prop_flat_map(arb_service)).prop_map(|(victim, thief)| Op::Claim { victim, thief }),
        3 => Just(Op::Reconcile),
    ];
    proptest::collection::vec(op, 1..40)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    /// No address is ever held by two services that may not share it, whatever the events,
    /// restart states and reconcile points.
    #[test]
    fn no_address_is_given_to_incompatible_services(ops in arb_ops()) {
        let mut a = Allocator::new(Config::default());
        for op in ops {
            match op {
                Op::Apply(e) => a.apply(e),
                Op::Claim { victim, mut thief } => {
                    let claimed = a.assignments().into_iter().find(|(k, _)| k.name == format!("s{victim}"));
                    if let Some((_, ips)) = claimed {
                        thief.ingress_ips = ips;
                        thief.condition = Some(crate::model::Condition {
                            type_: l2announcer_api::ip_pool::SERVICE_CONDITION_REQUEST_SATISFIED.into(),
                            status: "True".into(),
                            reason: "satisfied".into(),
                            message: String::new(),
                        });
                    }
                    a.apply(Event::ServiceUpserted(thief));
                }
                Op::Reconcile => {
                    a.reconcile();
                    check_invariants(&a)?;
                    // Skipping services that cannot gain anything must not miss one that can:
                    // re-evaluating everything changes nothing.
                    let mut full = a.clone();
                    full.mark_all_dirty();
                    full.reconcile();
                    prop_assert_eq!(snapshot(&full), snapshot(&a));
                }
            }
        }
        a.reconcile();
        check_invariants(&a)?;
    }

    /// Applying the same pools and services (with the same restart state) in any order, then
    /// reconciling, gives the same assignments, conditions and writes.
    #[test]
    fn allocations_survive_any_reordering_of_events(
        (pools, services, order) in (arb_pools(), arb_services()).prop_flat_map(|(p, s)| {
            let n = p.len() + s.len();
            (Just(p), Just(s), Just((0..n).collect::<Vec<_>>()).prop_shuffle())
        })
    ) {
        let all = events(&pools, &services);
        let mut a = Allocator::new(Config::default());
        for e in all.iter().cloned() {
            a.apply(e);
        }
        let da = a.reconcile();
        let mut b = Allocator::new(Config::default());
        for &i in &order {
            b.apply(all[i].clone());
        }
        let db = b.reconcile();
        prop_assert_eq!(snapshot(&a), snapshot(&b));
        prop_assert_eq!(da, db);
        check_invariants(&a)?;
    }

    /// A restart from the state the services carry, with the pools listed first and the
    /// services arriving one by one in any order (reconciling in between), reproduces every
    /// satisfied service's addresses and writes nothing for them.
    #[test]
    fn a_restart_in_any_order_keeps_every_address(
        (pools, services, order, cuts) in (arb_pools(), arb_services()).prop_flat_map(|(p, s)| {
            let n = s.len();
            (Just(p), Just(s), Just((0..n).collect::<Vec<_>>()).prop_shuffle(), proptest::collection::vec(any::<bool>(), n))
        })
    ) {
        let mut first = Allocator::new(Config::default());
        for e in events(&pools, &services) {
            first.apply(e);
        }
        first.reconcile();
        // The restart state: satisfied services as the API server now shows them.
        let restart: Vec<Service> = services
            .iter()
            .filter(|s| first.service_condition(&s.key).is_some_and(|c| c.status == "True"))
            .map(|s| {
                let mut s = s.clone();
                s.ingress_ips = first.service_ips(&s.key).unwrap_or_default().to_vec();
                s.condition = first.service_condition(&s.key).cloned();
                s
            })
            .collect();
        let mut second = Allocator::new(Config::default());
        let mut pools_rev = pools.clone();
        pools_rev.reverse();
        for p in pools_rev {
            second.apply(Event::PoolUpserted(p));
        }
        let mut writes = Vec::new();
        for (&i, &cut) in order.iter().zip(&cuts) {
            if let Some(s) = services.get(i).and_then(|s| restart.iter().find(|r| r.key == s.key)) {
                second.apply(Event::ServiceUpserted(s.clone()));
            }
            if cut {
                writes.extend(second.reconcile().services);
            }
        }
        writes.extend(second.reconcile().services);
        for s in &restart {
            prop_assert_eq!(second.service_ips(&s.key), first.service_ips(&s.key), "{}", s.key);
        }
        prop_assert!(writes.is_empty(), "writes after restart: {:?}", writes);
    }

    /// Another service's change, a pool widened, shrunk, disabled or reserving its ends never
    /// moves an address already assigned.
    #[test]
    fn unrelated_changes_move_no_address(
        pools in arb_pools(),
        services in arb_services(),
        change in 0..6usize,
        target in 0..10usize,
        extra in 0..BLOCKS.len(),
    ) {
        let mut a = Allocator::new(Config::default());
        for e in events(&pools, &services) {
            a.apply(e);
        }
        a.reconcile();
        let before = a.assignments();
        let mut touched = None;
        let pool = pools[target % pools.len()].clone();
        match change {
            0 => {
                if let Some(s) = services.get(target) {
                    touched = Some(s.key.clone());
                    a.apply(Event::ServiceDeleted(s.key.clone()));
                }
            }
            1 => a.apply(Event::ServiceUpserted(Service::new(ServiceKey::new("other", "new")))),
            2 => a.apply(Event::PoolUpserted(Pool { blocks: [pool.blocks.clone(), vec![block(BLOCKS[extra])]].concat(), ..pool })),
            3 => a.apply(Event::PoolUpserted(Pool { blocks: pool.blocks[..1].to_vec(), ..pool })),
            4 => a.apply(Event::PoolUpserted(Pool { disabled: true, ..pool })),
            _ => a.apply(Event::PoolUpserted(Pool { allow_first_last: false, ..pool })),
        }
        a.reconcile();
        for (key, ips) in before {
            if Some(&key) != touched.as_ref() {
                for ip in ips {
                    prop_assert!(a.service_ips(&key).unwrap_or_default().contains(&ip), "{key} lost {ip}");
                }
            }
        }
        check_invariants(&a)?;
    }
}
