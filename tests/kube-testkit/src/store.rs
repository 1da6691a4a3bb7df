//! The object store: one global resourceVersion counter, bounded event history, watchers, and
//! the object semantics of every write (create, update, patch, apply, delete).

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Mutex, MutexGuard};

use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::patch::{self, PatchError};
use crate::registry::{Registry, ResourceInfo, crd_problems};
use crate::schema::validate_custom;
use crate::selector::{FieldSelector, LabelSelector};
use crate::ssa::{self, Scope};
use crate::status::ApiError;
use crate::util::{self, meta_mut, meta_str};

type StoreKey = (String, String);
type ObjKey = (String, String);

/// A message on a watch stream.
#[derive(Debug, Clone, PartialEq)]
pub enum WatchMsg {
    /// `ADDED`, `MODIFIED` or `DELETED` with the object.
    Event(&'static str, Value),
    /// A `BOOKMARK` object.
    Bookmark(Value),
    /// An `ERROR` event (a `Status`); the stream ends after it.
    Error(Value),
}

/// Which objects a list or watch selects.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    pub namespace: Option<String>,
    pub labels: LabelSelector,
    pub fields: FieldSelector,
}

impl Selection {
    fn matches(&self, obj: &Value) -> bool {
        if let Some(ns) = &self.namespace
            && meta_str(obj, "namespace") != Some(ns.as_str())
        {
            return false;
        }
        self.labels.matches(obj) && self.fields.matches(obj)
    }
}

/// Options of a write request.
#[derive(Debug, Clone, Default)]
pub struct WriteOptions {
    /// `fieldManager` (or the default derived from the user agent).
    pub manager: String,
    /// `force` (server-side apply).
    pub force: bool,
    /// `dryRun=All`: compute and validate, store nothing.
    pub dry_run: bool,
}

/// Paging and selection of a list.
#[derive(Debug, Clone, Default)]
pub struct ListOptions {
    pub selection: Selection,
    pub limit: Option<usize>,
    pub continue_token: Option<String>,
}

/// Where a watch starts.
#[derive(Debug, Clone, Default)]
pub struct WatchOptions {
    pub selection: Selection,
    pub resource_version: Option<String>,
    pub bookmarks: bool,
    pub send_initial_events: bool,
}

struct HistEvent {
    rv: u64,
    key: StoreKey,
    ty: &'static str,
    old: Option<Value>,
    new: Value,
}

struct Watcher {
    key: StoreKey,
    api_version: String,
    kind: String,
    selection: Selection,
    bookmarks: bool,
    tx: mpsc::UnboundedSender<WatchMsg>,
}

impl Watcher {
    /// The event this watcher sees for a change (label/field selection turns modifications
    /// into ADDED/DELETED as objects enter or leave the selection).
    fn event_for(
        &self,
        ty: &'static str,
        old: Option<&Value>,
        new: &Value,
    ) -> Option<(&'static str, Value)> {
        let now = self.selection.matches(new);
        let before = old.is_some_and(|o| self.selection.matches(o));
        let ty = match (ty, before, now) {
            ("ADDED", _, true) => "ADDED",
            ("DELETED", _, true) => "DELETED",
            ("MODIFIED", true, true) => "MODIFIED",
            ("MODIFIED", false, true) => "ADDED",
            ("MODIFIED", true, false) => "DELETED",
            _ => return None,
        };
        Some((ty, render(new, &self.api_version, &self.kind)))
    }
}

fn render(obj: &Value, api_version: &str, kind: &str) -> Value {
    let mut o = obj.clone();
    o["apiVersion"] = json!(api_version);
    o["kind"] = json!(kind);
    o
}

fn obj_key(obj: &Value) -> ObjKey {
    (
        meta_str(obj, "namespace").unwrap_or_default().to_string(),
        meta_str(obj, "name").unwrap_or_default().to_string(),
    )
}

fn is_crd(ri: &ResourceInfo) -> bool {
    ri.group == "apiextensions.k8s.io" && ri.plural == "customresourcedefinitions"
}

/// Everything but metadata and status: what `generation` counts changes of.
fn spec_part(obj: &Value) -> Value {
    let mut o = obj.clone();
    if let Some(m) = o.as_object_mut() {
        for k in ["metadata", "status", "apiVersion", "kind"] {
            m.remove(k);
        }
    }
    o
}

fn without_volatile(obj: &Value) -> Value {
    let mut o = obj.clone();
    if let Some(m) = o.get_mut("metadata").and_then(Value::as_object_mut) {
        m.remove("resourceVersion");
        m.remove("managedFields");
    }
    o
}

fn crd_status(crd: &Value) -> Value {
    let now = util::now();
    let storage: Vec<Value> = crd["spec"]["versions"]
        .as_array()
        .map(|vs| {
            vs.iter()
                .filter(|v| v["storage"].as_bool() == Some(true))
                .map(|v| v["name"].clone())
                .collect()
        })
        .unwrap_or_default();
    json!({
        "conditions": [
            {"type": "NamesAccepted", "status": "True", "reason": "NoConflicts", "message": "no conflicts found", "lastTransitionTime": now},
            {"type": "Established", "status": "True", "reason": "InitialNamesAccepted", "message": "the initial names have been accepted", "lastTransitionTime": now},
        ],
        "acceptedNames": crd["spec"]["names"],
        "storedVersions": storage,
    })
}

/// Validation every object gets: names, labels, annotations; plus the CRD schema for custom
/// resources and the CRD rules for CRDs.
fn validate(ri: &ResourceInfo, obj: &mut Value) -> Result<(), ApiError> {
    let name = meta_str(obj, "name").unwrap_or_default().to_string();
    let mut causes: Vec<(String, String)> = Vec::new();
    let name_ok = if ri.plural == "namespaces" {
        util::is_dns_label(&name)
    } else {
        util::is_dns_subdomain(&name)
    };
    if !name_ok {
        causes.push(("metadata.name".into(), format!("Invalid value: {name:?}: a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character")));
    }
    for field in ["labels", "annotations"] {
        match obj["metadata"].get(field) {
            None | Some(Value::Null) => {}
            Some(Value::Object(m)) if m.values().all(Value::is_string) => {}
            Some(_) => causes.push((
                format!("metadata.{field}"),
                "Invalid value: must be a map of strings".into(),
            )),
        }
    }
    if let Some(f) = obj["metadata"].get("finalizers")
        && !f.as_array().is_some_and(|a| a.iter().all(Value::is_string))
    {
        causes.push((
            "metadata.finalizers".into(),
            "Invalid value: must be a list of strings".into(),
        ));
    }
    if is_crd(ri) {
        causes.extend(crd_problems(obj));
    }
    if ri.custom
        && let Some(schema) = &ri.schema
    {
        causes.extend(validate_custom(schema, obj));
    }
    if causes.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid(&ri.group, &ri.kind, &name, &causes))
    }
}

fn patch_error(ri: &ResourceInfo, name: &str, e: PatchError) -> ApiError {
    match e {
        PatchError::Malformed(m) => ApiError::bad_request(m),
        PatchError::Failed(m) => {
            ApiError::invalid(&ri.group, &ri.kind, name, &[("patch".into(), m)])
        }
    }
}

fn parse_json(body: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("the request body is not valid JSON: {e}")))
}

struct Inner {
    rv: u64,
    /// Shared with readers; copied on write (CRD changes only).
    registry: std::sync::Arc<Registry>,
    objects: BTreeMap<StoreKey, BTreeMap<ObjKey, Value>>,
    history: VecDeque<HistEvent>,
    history_cap: usize,
    /// Events with a resourceVersion at or below this are gone; watches from older versions get 410.
    compacted: u64,
    watchers: Vec<Watcher>,
    allocators: crate::defaults::Allocators,
}

/// The server's state. All methods are synchronous and never block on I/O.
pub struct Store {
    inner: Mutex<Inner>,
}

impl Store {
    /// A store with the built-in kinds and the namespaces a cluster starts with.
    pub fn new(history_cap: usize) -> Self {
        let store = Store {
            inner: Mutex::new(Inner {
                rv: 0,
                registry: std::sync::Arc::new(Registry::builtin()),
                objects: BTreeMap::new(),
                history: VecDeque::new(),
                history_cap: history_cap.max(1),
                compacted: 0,
                watchers: Vec::new(),
                allocators: Default::default(),
            }),
        };
        for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
            let ri = store
                .resource("", "v1", "namespaces")
                .unwrap_or_else(|| unreachable!("namespaces are built in"));
            let body = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
            let _ = store.create(
                &ri,
                None,
                body,
                &WriteOptions {
                    manager: "kube-testkit".into(),
                    ..Default::default()
                },
            );
        }
        store
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The served resource for a group/version/resource, if any.
    pub fn resource(&self, group: &str, version: &str, plural: &str) -> Option<ResourceInfo> {
        self.lock().registry.lookup(group, version, plural).cloned()
    }

    /// A snapshot of the served resources (cheap: shared until a CRD changes).
    pub fn registry(&self) -> std::sync::Arc<Registry> {
        self.lock().registry.clone()
    }

    /// Every stored object of a group/resource (all namespaces), unrendered.
    pub fn all_objects(&self, group: &str, plural: &str) -> Vec<Value> {
        self.lock()
            .objects
            .get(&(group.to_string(), plural.to_string()))
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default()
    }

    /// The latest resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.lock().rv
    }

    pub fn create(
        &self,
        ri: &ResourceInfo,
        ns: Option<&str>,
        body: Value,
        opts: &WriteOptions,
    ) -> Result<Value, ApiError> {
        self.lock().create(ri, ns, body, opts, true)
    }

    pub fn get(&self, ri: &ResourceInfo, ns: Option<&str>, name: &str) -> Result<Value, ApiError> {
        let inner = self.lock();
        let obj = inner
            .get(ri, ns, name)
            .ok_or_else(|| ApiError::not_found(&ri.group, &ri.plural, name))?;
        Ok(render(obj, &ri.api_version(), &ri.kind))
    }

    pub fn list(&self, ri: &ResourceInfo, opts: &ListOptions) -> Result<Value, ApiError> {
        self.lock().list(ri, opts)
    }

    pub fn update(
        &self,
        ri: &ResourceInfo,
        ns: Option<&str>,
        name: &str,
        sub: Option<&str>,
        body: Value,
        opts: &WriteOptions,
    ) -> Result<Value, ApiError> {
        self.lock().update(ri, ns, name, sub, body, opts)
    }

    #[expect(
        clippy::too_many_arguments,
        reason = "one argument per part of a PATCH request"
    )]
    pub fn patch(
        &self,
        ri: &ResourceInfo,
        ns: Option<&str>,
        name: &str,
        sub: Option<&str>,
        content_type: &str,
        body: &[u8],
        opts: &WriteOptions,
    ) -> Result<Value, ApiError> {
        self.lock()
            .patch(ri, ns, name, sub, content_type, body, opts)
    }

    pub fn delete(
        &self,
        ri: &ResourceInfo,
        ns: Option<&str>,
        name: &str,
        options: &Value,
        opts: &WriteOptions,
    ) -> Result<Value, ApiError> {
        self.lock().delete(ri, ns, name, options, opts)
    }

    pub fn delete_collection(
        &self,
        ri: &ResourceInfo,
        selection: &Selection,
        options: &Value,
        opts: &WriteOptions,
    ) -> Result<Value, ApiError> {
        let mut inner = self.lock();
        let key = ri.store_key();
        let names: Vec<ObjKey> = inner
            .objects
            .get(&key)
            .map(|m| {
                m.iter()
                    .filter(|(_, o)| selection.matches(o))
                    .map(|(k, _)| k.clone())
                    .collect()
            })
            .unwrap_or_default();
        let mut items = Vec::new();
        for (ns, name) in names {
            let ns = if ri.namespaced {
                Some(ns.as_str())
            } else {
                None
            };
            items.push(inner.delete(ri, ns, &name, options, opts)?);
        }
        let rv = inner.rv.to_string();
        Ok(
            json!({"kind": format!("{}List", ri.kind), "apiVersion": ri.api_version(),
                  "metadata": {"resourceVersion": rv}, "items": items}),
        )
    }

    /// Starts a watch: the returned receiver gets the events in resourceVersion order.
    pub fn watch(
        &self,
        ri: &ResourceInfo,
        opts: &WatchOptions,
    ) -> mpsc::UnboundedReceiver<WatchMsg> {
        self.lock().watch(ri, opts)
    }

    /// Sends a BOOKMARK with the current resourceVersion to every watch that asked for them.
    pub fn send_bookmarks(&self) {
        let mut inner = self.lock();
        let rv = inner.rv.to_string();
        inner.watchers.retain(|w| {
            !w.bookmarks
                || w.tx
                    .send(WatchMsg::Bookmark(
                        json!({"kind": w.kind, "apiVersion": w.api_version,
                                                    "metadata": {"resourceVersion": rv}}),
                    ))
                    .is_ok()
        });
    }

    /// Ends every open watch (clients see the stream close and must re-watch).
    pub fn close_watches(&self) {
        self.lock().watchers.clear();
    }

    /// Number of open watches.
    pub fn watch_count(&self) -> usize {
        let mut inner = self.lock();
        inner.watchers.retain(|w| !w.tx.is_closed());
        inner.watchers.len()
    }

    /// Forgets the event history: a watch from any resourceVersion seen so far gets 410 Gone.
    /// Objects are untouched.
    pub fn compact(&self) {
        let mut inner = self.lock();
        inner.rv += 1;
        inner.compacted = inner.rv;
        inner.history.clear();
    }
}

impl Inner {
    fn get(&self, ri: &ResourceInfo, ns: Option<&str>, name: &str) -> Option<&Value> {
        self.objects
            .get(&ri.store_key())?
            .get(&(ns.unwrap_or_default().to_string(), name.to_string()))
    }

    fn namespace_exists(&self, ns: &str) -> bool {
        self.objects
            .get(&(String::new(), "namespaces".into()))
            .is_some_and(|m| m.contains_key(&(String::new(), ns.to_string())))
    }

    /// Stores a change: bumps the resourceVersion, records history and notifies watchers.
    fn commit(
        &mut self,
        ri: &ResourceInfo,
        ty: &'static str,
        old: Option<Value>,
        mut new: Value,
    ) -> Value {
        self.rv += 1;
        meta_mut(&mut new).insert("resourceVersion".into(), json!(self.rv.to_string()));
        let key = ri.store_key();
        let okey = obj_key(&new);
        if ty == "DELETED" {
            if let Some(m) = self.objects.get_mut(&key) {
                m.remove(&okey);
            }
        } else {
            self.objects
                .entry(key.clone())
                .or_default()
                .insert(okey, new.clone());
        }
        if is_crd(ri) {
            if ty == "DELETED" {
                std::sync::Arc::make_mut(&mut self.registry).unregister_crd(&new);
                let gone = (
                    new["spec"]["group"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                    new["spec"]["names"]["plural"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                );
                self.objects.remove(&gone);
                self.watchers.retain(|w| w.key != gone);
            } else {
                std::sync::Arc::make_mut(&mut self.registry).register_crd(&new);
            }
        }
        self.watchers.retain(|w| {
            if w.key != key {
                return true;
            }
            match w.event_for(ty, old.as_ref(), &new) {
                Some((t, obj)) => w.tx.send(WatchMsg::Event(t, obj)).is_ok(),
                None => !w.tx.is_closed(),
            }
        });
        self.history.push_back(HistEvent {
            rv: self.rv,
            key,
            ty,
            old,
            new: new.clone(),
        });
        while self.history.len() > self.history_cap {
            if let Some(e) = self.history.pop_front() {
                self.compacted = e.rv;
            }
        }
        render(&new, &ri.api_version(), &ri.kind)
    }

    fn create(
        &mut self,
        ri: &ResourceInfo,
        ns: Option<&str>,
        body: Value,
        opts: &WriteOptions,
        track: bool,
    ) -> Result<Value, ApiError> {
        let mut obj = body;
        if !obj.is_object() {
            return Err(ApiError::bad_request(
                "the request body must be a JSON object",
            ));
        }
        if let Some(kind) = obj.get("kind").and_then(Value::as_str)
            && kind != ri.kind
        {
            return Err(ApiError::bad_request(format!(
                "the kind {kind:?} does not match the resource {:?} (kind {:?})",
                ri.plural, ri.kind
            )));
        }
        if obj.get("metadata").is_some_and(|m| !m.is_object()) {
            return Err(ApiError::bad_request("metadata must be an object"));
        }
        obj["apiVersion"] = json!(ri.api_version());
        obj["kind"] = json!(ri.kind);
        let meta = meta_mut(&mut obj);
        if meta
            .get("resourceVersion")
            .and_then(Value::as_str)
            .is_some_and(|s| !s.is_empty())
        {
            return Err(ApiError::bad_request(
                "resourceVersion should not be set on objects to be created",
            ));
        }
        if ri.namespaced {
            let Some(ns) = ns else {
                return Err(ApiError::bad_request(format!(
                    "{} must be created in a namespace",
                    ri.plural
                )));
            };
            match meta.get("namespace").and_then(Value::as_str) {
                Some(b) if !b.is_empty() && b != ns => {
                    return Err(ApiError::bad_request(
                        "the namespace of the provided object does not match the namespace sent on the request",
                    ));
                }
                _ => {
                    meta.insert("namespace".into(), json!(ns));
                }
            }
        } else {
            meta.remove("namespace");
        }
        let name = meta
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let generate = meta
            .get("generateName")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let name = if !name.is_empty() {
            name
        } else if !generate.is_empty() {
            loop {
                let candidate = format!("{generate}{}", util::name_suffix());
                if self.get(ri, ns, &candidate).is_none() {
                    break candidate;
                }
            }
        } else {
            return Err(ApiError::invalid(
                &ri.group,
                &ri.kind,
                "",
                &[(
                    "metadata.name".into(),
                    "Required value: name or generateName is required".into(),
                )],
            ));
        };
        let now = util::now();
        let tracks_generation = ri.tracks_generation();
        let meta = meta_mut(&mut obj);
        meta.insert("name".into(), json!(name));
        meta.insert("uid".into(), json!(util::new_uid()));
        meta.insert("creationTimestamp".into(), json!(now));
        for k in [
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "selfLink",
            "generation",
        ] {
            meta.remove(k);
        }
        if track {
            meta.remove("managedFields");
        }
        if tracks_generation {
            meta.insert("generation".into(), json!(1));
        }
        if ri.status
            && let Some(m) = obj.as_object_mut()
        {
            m.remove("status");
        }
        if ri.group.is_empty() && ri.plural == "services" && !opts.dry_run {
            crate::defaults::default_service(&mut obj, &mut self.allocators);
        }
        if ri.plural == "namespaces" {
            obj["status"] = json!({"phase": "Active"});
        }
        validate(ri, &mut obj)?;
        if is_crd(ri) {
            obj["status"] = crd_status(&obj);
        }
        if let Some(ns) = ns.filter(|_| ri.namespaced)
            && !self.namespace_exists(ns)
        {
            return Err(ApiError::not_found("", "namespaces", ns));
        }
        if self.get(ri, ns, &name).is_some() {
            return Err(ApiError::already_exists(&ri.group, &ri.plural, &name));
        }
        if track {
            ssa::track_update(
                None,
                &mut obj,
                &opts.manager,
                &ri.schema(),
                Scope::Main {
                    exclude_status: false,
                },
                &ri.api_version(),
                &now,
            );
        }
        if opts.dry_run {
            return Ok(obj);
        }
        Ok(self.commit(ri, "ADDED", None, obj))
    }

    fn list(&self, ri: &ResourceInfo, opts: &ListOptions) -> Result<Value, ApiError> {
        let (list_rv, after) = match &opts.continue_token {
            Some(tok) if !tok.is_empty() => {
                let bad = || ApiError::bad_request("invalid continue token");
                let raw = util::hex_decode(tok).ok_or_else(bad)?;
                let v: Value = serde_json::from_slice(&raw).map_err(|_| bad())?;
                let rv = v["rv"].as_u64().ok_or_else(bad)?;
                if rv < self.compacted {
                    return Err(ApiError::gone(
                        "The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.",
                    ));
                }
                let ns = v["ns"].as_str().unwrap_or_default().to_string();
                let name = v["name"].as_str().unwrap_or_default().to_string();
                (rv, Some((ns, name)))
            }
            _ => (self.rv, None),
        };
        let api_version = ri.api_version();
        let mut items = Vec::new();
        let mut more = None;
        let mut remaining = 0usize;
        if let Some(objs) = self.objects.get(&ri.store_key()) {
            for ((ns, name), obj) in objs {
                if after.as_ref().is_some_and(|a| (ns, name) <= (&a.0, &a.1))
                    || !opts.selection.matches(obj)
                {
                    continue;
                }
                if opts.limit.is_some_and(|l| l > 0 && items.len() >= l) {
                    if more.is_none() {
                        let last = items.last().map(obj_key).unwrap_or_default();
                        more = Some(last);
                    }
                    remaining += 1;
                    continue;
                }
                items.push(render(obj, &api_version, &ri.kind));
            }
        }
        let mut metadata = json!({"resourceVersion": list_rv.to_string()});
        if let Some((ns, name)) = more {
            let token = json!({"rv": list_rv, "ns": ns, "name": name}).to_string();
            metadata["continue"] = json!(util::hex_encode(token.as_bytes()));
            metadata["remainingItemCount"] = json!(remaining);
        }
        Ok(
            json!({"kind": format!("{}List", ri.kind), "apiVersion": api_version, "metadata": metadata, "items": items}),
        )
    }

    fn update(
        &mut self,
        ri: &ResourceInfo,
        ns: Option<&str>,
        name: &str,
        sub: Option<&str>,
        body: Value,
        opts: &WriteOptions,
    ) -> Result<Value, ApiError> {
        let old = self
            .get(ri, ns, name)
            .cloned()
            .ok_or_else(|| ApiError::not_found(&ri.group, &ri.plural, name))?;
        if !body.is_object() || body.get("metadata").is_some_and(|m| !m.is_object()) {
            return Err(ApiError::bad_request(
                "the request body must be a JSON object with object metadata",
            ));
        }
        if let Some(n) = meta_str(&body, "name")
            && n != name
        {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({n}) does not match the name on the URL ({name})"
            )));
        }
        match meta_str(&body, "resourceVersion").filter(|s| !s.is_empty()) {
            None if ri.custom => {
                return Err(ApiError::invalid(
                    &ri.group,
                    &ri.kind,
                    name,
                    &[(
                        "metadata.resourceVersion".into(),
                        "Invalid value: 0x0: must be specified for an update".into(),
                    )],
                ));
            }
            Some(rv) if rv != meta_str(&old, "resourceVersion").unwrap_or_default() => {
                return Err(ApiError::stale(&ri.group, &ri.plural, name));
            }
            _ => {}
        }
        self.finish_update(ri, old, body, sub, opts, true)
    }

    /// The common end of every update: server-managed metadata, status subresource rules,
    /// generation, validation, field ownership, no-op detection, finalization.
    fn finish_update(
        &mut self,
        ri: &ResourceInfo,
        old: Value,
        mut new: Value,
        sub: Option<&str>,
        opts: &WriteOptions,
        track: bool,
    ) -> Result<Value, ApiError> {
        let name = meta_str(&old, "name").unwrap_or_default().to_string();
        let now = util::now();
        let scope = if sub == Some("status") {
            Scope::Status
        } else {
            Scope::Main {
                exclude_status: ri.status,
            }
        };
        if sub == Some("status") {
            let status = new.get("status").cloned();
            let managed = new["metadata"].get("managedFields").cloned();
            new = old.clone();
            match status {
                Some(s) => new["status"] = s,
                None => {
                    if let Some(m) = new.as_object_mut() {
                        m.remove("status");
                    }
                }
            }
            if let Some(mf) = managed {
                meta_mut(&mut new).insert("managedFields".into(), mf);
            }
        } else if ri.status {
            match old.get("status") {
                Some(s) => new["status"] = s.clone(),
                None => {
                    if let Some(m) = new.as_object_mut() {
                        m.remove("status");
                    }
                }
            }
        }
        new["apiVersion"] = json!(ri.api_version());
        new["kind"] = json!(ri.kind);
        let old_meta = old["metadata"].clone();
        let meta = meta_mut(&mut new);
        for k in [
            "name",
            "namespace",
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
            "resourceVersion",
        ] {
            match old_meta.get(k) {
                Some(v) => meta.insert(k.into(), v.clone()),
                None => meta.remove(k),
            };
        }
        meta.remove("selfLink");
        if old_meta.get("deletionTimestamp").is_some() {
            let before: Vec<&Value> = old_meta["finalizers"]
                .as_array()
                .map(|a| a.iter().collect())
                .unwrap_or_default();
            if meta
                .get("finalizers")
                .and_then(Value::as_array)
                .is_some_and(|a| a.iter().any(|f| !before.contains(&f)))
            {
                return Err(ApiError::invalid(
                    &ri.group,
                    &ri.kind,
                    &name,
                    &[(
                        "metadata.finalizers".into(),
                        "Forbidden: no new finalizers can be added if the object is being deleted"
                            .into(),
                    )],
                ));
            }
        }
        validate(ri, &mut new)?;
        if is_crd(ri) {
            new["status"] = crd_status(&new);
        }
        if ri.tracks_generation() && spec_part(&old) != spec_part(&new) {
            let g = old_meta["generation"].as_i64().unwrap_or(0) + 1;
            meta_mut(&mut new).insert("generation".into(), json!(g));
        }
        if track {
            ssa::track_update(
                Some(&old),
                &mut new,
                &opts.manager,
                &ri.schema(),
                scope,
                &ri.api_version(),
                &now,
            );
        }
        let finalized = new["metadata"].get("deletionTimestamp").is_some()
            && new["metadata"]["finalizers"]
                .as_array()
                .is_none_or(Vec::is_empty);
        if without_volatile(&new) == without_volatile(&old) && !finalized {
            return Ok(render(&old, &ri.api_version(), &ri.kind));
        }
        if opts.dry_run {
            return Ok(new);
        }
        if finalized {
            return Ok(self.remove(ri, old, new));
        }
        Ok(self.commit(ri, "MODIFIED", Some(old), new))
    }

    #[expect(
        clippy::too_many_arguments,
        reason = "one argument per part of a PATCH request"
    )]
    fn patch(
        &mut self,
        ri: &ResourceInfo,
        ns: Option<&str>,
        name: &str,
        sub: Option<&str>,
        content_type: &str,
        body: &[u8],
        opts: &WriteOptions,
    ) -> Result<Value, ApiError> {
        let media = content_type.split(';').next().unwrap_or_default().trim();
        let old = self.get(ri, ns, name).cloned();
        if media == "application/apply-patch+yaml" {
            return self.apply(ri, ns, name, sub, old, body, opts);
        }
        let old = old.ok_or_else(|| ApiError::not_found(&ri.group, &ri.plural, name))?;
        let p = parse_json(body)?;
        let mut new = old.clone();
        match media {
            "application/merge-patch+json" => patch::merge_patch(&mut new, &p),
            "application/json-patch+json" => {
                patch::json_patch(&mut new, &p).map_err(|e| patch_error(ri, name, e))?
            }
            "application/strategic-merge-patch+json" if !ri.custom => {
                patch::strategic_merge(&mut new, &p, &ri.schema())
                    .map_err(|e| patch_error(ri, name, e))?
            }
            other => return Err(ApiError::unsupported_media_type(other)),
        }
        if !new.is_object() {
            return Err(ApiError::bad_request("the patch did not produce an object"));
        }
        if meta_str(&new, "resourceVersion") != meta_str(&old, "resourceVersion") {
            return Err(ApiError::stale(&ri.group, &ri.plural, name));
        }
        self.finish_update(ri, old, new, sub, opts, true)
    }

    #[expect(
        clippy::too_many_arguments,
        reason = "one argument per part of an apply request"
    )]
    fn apply(
        &mut self,
        ri: &ResourceInfo,
        ns: Option<&str>,
        name: &str,
        sub: Option<&str>,
        old: Option<Value>,
        body: &[u8],
        opts: &WriteOptions,
    ) -> Result<Value, ApiError> {
        if opts.manager.is_empty() {
            return Err(ApiError::bad_request(
                "PATCH, application/apply-patch+yaml requests require fieldManager",
            ));
        }
        let config: Value = serde_yaml::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?;
        if !config.is_object() {
            return Err(ApiError::bad_request(
                "an applied configuration must be an object",
            ));
        }
        let api_version = config
            .get("apiVersion")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let kind = config
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if api_version.is_empty() || kind.is_empty() {
            return Err(ApiError::bad_request(
                "apiVersion and kind must be set in an applied configuration",
            ));
        }
        if api_version != ri.api_version() || kind != ri.kind {
            return Err(ApiError::bad_request(format!(
                "the applied configuration is a {api_version}/{kind}, the request is for {}",
                ri.plural
            )));
        }
        if let Some(n) = meta_str(&config, "name")
            && n != name
        {
            return Err(ApiError::bad_request(format!(
                "the name of the object ({n}) does not match the name on the URL ({name})"
            )));
        }
        let scope = if sub == Some("status") {
            Scope::Status
        } else {
            Scope::Main {
                exclude_status: ri.status,
            }
        };
        let now = util::now();
        let conflict = |c: Vec<ssa::Conflict>| {
            let mut e = ApiError::new(
                409,
                "Conflict",
                format!(
                    "Apply failed with {} conflict{}: {}",
                    c.len(),
                    if c.len() == 1 { "" } else { "s" },
                    c.iter()
                        .map(|c| format!("conflict with {:?}: {}", c.manager, c.field))
                        .collect::<Vec<_>>()
                        .join("\n")
                ),
            );
            let causes: Vec<Value> = c.iter().map(|c| json!({"reason": "FieldManagerConflict", "message": format!("conflict with {:?}", c.manager), "field": c.field})).collect();
            e.details =
                Some(json!({"name": name, "group": ri.group, "kind": ri.plural, "causes": causes}));
            e
        };
        match old {
            None => {
                if sub.is_some() {
                    return Err(ApiError::not_found(&ri.group, &ri.plural, name));
                }
                let mut base =
                    json!({"apiVersion": api_version, "kind": kind, "metadata": {"name": name}});
                if let Some(ns) = ns {
                    base["metadata"]["namespace"] = json!(ns);
                }
                let mut new = ssa::apply(
                    &base,
                    &config,
                    &opts.manager,
                    opts.force,
                    &ri.schema(),
                    Scope::Main {
                        exclude_status: false,
                    },
                    api_version,
                    &now,
                )
                .map_err(conflict)?;
                meta_mut(&mut new).remove("resourceVersion");
                if let Some(g) = config["metadata"].get("generateName") {
                    meta_mut(&mut new).insert("generateName".into(), g.clone());
                }
                self.create(ri, ns, new, opts, false)
            }
            Some(old) => {
                if let Some(rv) = meta_str(&config, "resourceVersion").filter(|s| !s.is_empty())
                    && Some(rv) != meta_str(&old, "resourceVersion")
                {
                    return Err(ApiError::stale(&ri.group, &ri.plural, name));
                }
                let new = ssa::apply(
                    &old,
                    &config,
                    &opts.manager,
                    opts.force,
                    &ri.schema(),
                    scope,
                    api_version,
                    &now,
                )
                .map_err(conflict)?;
                self.finish_update(ri, old, new, sub, opts, false)
            }
        }
    }

    /// Removes an object for good (after its finalizers are gone).
    fn remove(&mut self, ri: &ResourceInfo, old: Value, last: Value) -> Value {
        if ri.plural == "namespaces" {
            let ns = meta_str(&old, "name").unwrap_or_default().to_string();
            self.purge_namespace(&ns);
        }
        self.commit(ri, "DELETED", Some(old), last)
    }

    /// Deletes everything in a namespace (namespace deletion; no finalizers honoured).
    fn purge_namespace(&mut self, ns: &str) {
        let registry = self.registry.clone();
        let keys: Vec<StoreKey> = self.objects.keys().cloned().collect();
        for key in keys {
            let Some(ri) = registry
                .versions_of(&key.0, &key.1)
                .into_iter()
                .next()
                .cloned()
            else {
                continue;
            };
            if !ri.namespaced {
                continue;
            }
            let victims: Vec<Value> = self
                .objects
                .get(&key)
                .map(|m| {
                    m.iter()
                        .filter(|((n, _), _)| n == ns)
                        .map(|(_, o)| o.clone())
                        .collect()
                })
                .unwrap_or_default();
            for v in victims {
                self.commit(&ri, "DELETED", Some(v.clone()), v);
            }
        }
    }

    fn delete(
        &mut self,
        ri: &ResourceInfo,
        ns: Option<&str>,
        name: &str,
        options: &Value,
        opts: &WriteOptions,
    ) -> Result<Value, ApiError> {
        let old = self
            .get(ri, ns, name)
            .cloned()
            .ok_or_else(|| ApiError::not_found(&ri.group, &ri.plural, name))?;
        let pre = &options["preconditions"];
        if let Some(uid) = pre.get("uid").and_then(Value::as_str)
            && Some(uid) != meta_str(&old, "uid")
        {
            return Err(ApiError::conflict(
                &ri.group,
                &ri.plural,
                name,
                &format!(
                    "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                    meta_str(&old, "uid").unwrap_or_default()
                ),
            ));
        }
        if let Some(rv) = pre.get("resourceVersion").and_then(Value::as_str)
            && Some(rv) != meta_str(&old, "resourceVersion")
        {
            return Err(ApiError::conflict(
                &ri.group,
                &ri.plural,
                name,
                &format!(
                    "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                    meta_str(&old, "resourceVersion").unwrap_or_default()
                ),
            ));
        }
        if opts.dry_run {
            return Ok(render(&old, &ri.api_version(), &ri.kind));
        }
        let has_finalizers = old["metadata"]["finalizers"]
            .as_array()
            .is_some_and(|a| !a.is_empty());
        if has_finalizers {
            if old["metadata"].get("deletionTimestamp").is_some() {
                return Ok(render(&old, &ri.api_version(), &ri.kind));
            }
            let mut new = old.clone();
            let meta = meta_mut(&mut new);
            meta.insert("deletionTimestamp".into(), json!(util::now()));
            meta.insert("deletionGracePeriodSeconds".into(), json!(0));
            if ri.tracks_generation() {
                let g = old["metadata"]["generation"].as_i64().unwrap_or(0) + 1;
                meta.insert("generation".into(), json!(g));
            }
            return Ok(self.commit(ri, "MODIFIED", Some(old), new));
        }
        let last = old.clone();
        Ok(self.remove(ri, old, last))
    }

    fn watch(
        &mut self,
        ri: &ResourceInfo,
        opts: &WatchOptions,
    ) -> mpsc::UnboundedReceiver<WatchMsg> {
        let (tx, rx) = mpsc::unbounded_channel();
        let key = ri.store_key();
        let w = Watcher {
            key: key.clone(),
            api_version: ri.api_version(),
            kind: ri.kind.clone(),
            selection: opts.selection.clone(),
            bookmarks: opts.bookmarks,
            tx,
        };
        let rv = opts.resource_version.as_deref().unwrap_or("");
        let initial = opts.send_initial_events || rv.is_empty() || rv == "0";
        if initial {
            if let Some(objs) = self.objects.get(&key) {
                for obj in objs.values().filter(|o| w.selection.matches(o)) {
                    let _ = w.tx.send(WatchMsg::Event(
                        "ADDED",
                        render(obj, &w.api_version, &w.kind),
                    ));
                }
            }
            if opts.send_initial_events {
                let _ = w.tx.send(WatchMsg::Bookmark(
                    json!({"kind": w.kind, "apiVersion": w.api_version,
                    "metadata": {"resourceVersion": self.rv.to_string(),
                                 "annotations": {"k8s.io/initial-events-end": "true"}}}),
                ));
            }
        } else {
            let Ok(n) = rv.parse::<u64>() else {
                let _ = w.tx.send(WatchMsg::Error(
                    ApiError::bad_request(format!("invalid resourceVersion {rv:?}")).to_status(),
                ));
                return rx;
            };
            if n < self.compacted {
                let e = ApiError::gone(format!(
                    "too old resource version: {n} ({})",
                    self.compacted + 1
                ));
                let _ = w.tx.send(WatchMsg::Error(e.to_status()));
                return rx;
            }
            for e in self.history.iter().filter(|e| e.rv > n && e.key == key) {
                if let Some((t, obj)) = w.event_for(e.ty, e.old.as_ref(), &e.new) {
                    let _ = w.tx.send(WatchMsg::Event(t, obj));
                }
            }
        }
        self.watchers.push(w);
        rx
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rv_of(obj: &Value) -> u64 {
        meta_str(obj, "resourceVersion")
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    }

    fn opts() -> WriteOptions {
        WriteOptions {
            manager: "test".into(),
            ..Default::default()
        }
    }

    fn cm(store: &Store) -> ResourceInfo {
        store.resource("", "v1", "configmaps").unwrap()
    }

    #[test]
    fn create_get_conflict_and_rv() {
        let s = Store::new(100);
        let ri = cm(&s);
        let a = s
            .create(
                &ri,
                Some("default"),
                json!({"metadata": {"name": "a"}, "data": {"k": "v"}}),
                &opts(),
            )
            .unwrap();
        assert_eq!(a["kind"], "ConfigMap");
        assert!(a["metadata"]["uid"].is_string());
        assert_eq!(rv_of(&a), s.resource_version());
        let e = s
            .create(
                &ri,
                Some("default"),
                json!({"metadata": {"name": "a"}}),
                &opts(),
            )
            .unwrap_err();
        assert_eq!((e.code, e.reason), (409, "AlreadyExists"));
        let e = s
            .create(
                &ri,
                Some("nope"),
                json!({"metadata": {"name": "b"}}),
                &opts(),
            )
            .unwrap_err();
        assert_eq!(e.code, 404);
        let e = s
            .create(
                &ri,
                Some("default"),
                json!({"metadata": {"name": "B"}}),
                &opts(),
            )
            .unwrap_err();
        assert_eq!(e.code, 422);
        let g = s
            .create(
                &ri,
                Some("default"),
                json!({"metadata": {"generateName": "x-"}}),
                &opts(),
            )
            .unwrap();
        assert!(g["metadata"]["name"].as_str().unwrap().starts_with("x-"));
    }

    #[test]
    fn stale_update_conflicts_and_noop_keeps_rv() {
        let s = Store::new(100);
        let ri = cm(&s);
        let a = s
            .create(
                &ri,
                Some("default"),
                json!({"metadata": {"name": "a"}, "data": {"k": "v"}}),
                &opts(),
            )
            .unwrap();
        let mut b = a.clone();
        b["data"]["k"] = json!("w");
        let b2 = s
            .update(&ri, Some("default"), "a", None, b.clone(), &opts())
            .unwrap();
        assert!(rv_of(&b2) > rv_of(&a));
        let e = s
            .update(&ri, Some("default"), "a", None, b, &opts())
            .unwrap_err();
        assert_eq!((e.code, e.reason), (409, "Conflict"));
        let same = s
            .update(&ri, Some("default"), "a", None, b2.clone(), &opts())
            .unwrap();
        assert_eq!(rv_of(&same), rv_of(&b2));
    }

    #[test]
    fn watch_replays_history_and_410s_after_compaction() {
        let s = Store::new(100);
        let ri = cm(&s);
        let start = s.resource_version();
        s.create(
            &ri,
            Some("default"),
            json!({"metadata": {"name": "a"}}),
            &opts(),
        )
        .unwrap();
        s.delete(&ri, Some("default"), "a", &json!({}), &opts())
            .unwrap();
        let mut rx = s.watch(
            &ri,
            &WatchOptions {
                resource_version: Some(start.to_string()),
                ..Default::default()
            },
        );
        assert!(matches!(
            rx.try_recv().unwrap(),
            WatchMsg::Event("ADDED", _)
        ));
        assert!(matches!(
            rx.try_recv().unwrap(),
            WatchMsg::Event("DELETED", _)
        ));
        s.compact();
        let mut rx = s.watch(
            &ri,
            &WatchOptions {
                resource_version: Some(start.to_string()),
                ..Default::default()
            },
        );
        match rx.try_recv().unwrap() {
            WatchMsg::Error(st) => assert_eq!(st["code"], 410),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn finalizers_delay_deletion() {
        let s = Store::new(100);
        let ri = cm(&s);
        s.create(
            &ri,
            Some("default"),
            json!({"metadata": {"name": "a", "finalizers": ["x/y"]}}),
            &opts(),
        )
        .unwrap();
        let d = s
            .delete(&ri, Some("default"), "a", &json!({}), &opts())
            .unwrap();
        assert!(d["metadata"]["deletionTimestamp"].is_string());
        let e = s
            .patch(
                &ri,
                Some("default"),
                "a",
                None,
                "application/merge-patch+json",
                br#"{"metadata":{"finalizers":["x/y","z/w"]}}"#,
                &opts(),
            )
            .unwrap_err();
        assert_eq!(e.code, 422);
        s.patch(
            &ri,
            Some("default"),
            "a",
            None,
            "application/merge-patch+json",
            br#"{"metadata":{"finalizers":null}}"#,
            &opts(),
        )
        .unwrap();
        assert_eq!(s.get(&ri, Some("default"), "a").unwrap_err().code, 404);
    }

    #[test]
    fn status_subresource_is_separate() {
        let s = Store::new(100);
        let ri = s.resource("", "v1", "services").unwrap();
        s.create(&ri, Some("default"), json!({"metadata": {"name": "a"}, "spec": {"type": "LoadBalancer"}, "status": {"x": 1}}), &opts()).unwrap();
        let got = s.get(&ri, Some("default"), "a").unwrap();
        assert!(got.get("status").is_none());
        assert_eq!(got["metadata"]["generation"], 1);
        let st = s.patch(&ri, Some("default"), "a", Some("status"), "application/merge-patch+json",
            br#"{"spec":{"type":"ClusterIP"},"status":{"loadBalancer":{"ingress":[{"ip":"10.0.0.1"}]}}}"#, &opts()).unwrap();
        assert_eq!(st["spec"]["type"], "LoadBalancer");
        assert_eq!(st["status"]["loadBalancer"]["ingress"][0]["ip"], "10.0.0.1");
        assert_eq!(st["metadata"]["generation"], 1);
        let main = s
            .patch(
                &ri,
                Some("default"),
                "a",
                None,
                "application/merge-patch+json",
                br#"{"spec":{"type":"ClusterIP"},"status":null}"#,
                &opts(),
            )
            .unwrap();
        assert_eq!(main["spec"]["type"], "ClusterIP");
        assert_eq!(
            main["status"]["loadBalancer"]["ingress"][0]["ip"],
            "10.0.0.1"
        );
        assert_eq!(main["metadata"]["generation"], 2);
    }

    #[test]
    fn list_pages_and_label_watch_transitions() {
        let s = Store::new(100);
        let ri = cm(&s);
        for i in 0..5 {
            s.create(
                &ri,
                Some("default"),
                json!({"metadata": {"name": format!("c{i}"), "labels": {"n": i.to_string()}}}),
                &opts(),
            )
            .unwrap();
        }
        let mut names = Vec::new();
        let mut token = None;
        loop {
            let page = s
                .list(
                    &ri,
                    &ListOptions {
                        limit: Some(2),
                        continue_token: token.clone(),
                        ..Default::default()
                    },
                )
                .unwrap();
            names.extend(
                page["items"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|i| i["metadata"]["name"].as_str().unwrap().to_string()),
            );
            match page["metadata"]["continue"].as_str() {
                Some(t) => token = Some(t.to_string()),
                None => break,
            }
        }
        assert_eq!(names, ["c0", "c1", "c2", "c3", "c4"]);
        let sel = Selection {
            labels: LabelSelector::parse("n=1").unwrap(),
            ..Default::default()
        };
        let mut rx = s.watch(
            &ri,
            &WatchOptions {
                selection: sel,
                resource_version: Some(s.resource_version().to_string()),
                ..Default::default()
            },
        );
        s.patch(
            &ri,
            Some("default"),
            "c0",
            None,
            "application/merge-patch+json",
            br#"{"metadata":{"labels":{"n":"1"}}}"#,
            &opts(),
        )
        .unwrap();
        s.patch(
            &ri,
            Some("default"),
            "c0",
            None,
            "application/merge-patch+json",
            br#"{"metadata":{"labels":{"n":"0"}}}"#,
            &opts(),
        )
        .unwrap();
        assert!(matches!(
            rx.try_recv().unwrap(),
            WatchMsg::Event("ADDED", _)
        ));
        assert!(matches!(
            rx.try_recv().unwrap(),
            WatchMsg::Event("DELETED", _)
        ));
        assert!(rx.try_recv().is_err());
    }

    #[test]
    fn crds_serve_their_resources() {
        let s = Store::new(100);
        let crds = s
            .resource("apiextensions.k8s.io", "v1", "customresourcedefinitions")
            .unwrap();
        let crd = json!({"metadata": {"name": "pools.example.io"}, "spec": {"group": "example.io", "scope": "Namespaced",
            "names": {"plural": "pools", "kind": "Pool"},
            "versions": [{"name": "v1", "served": true, "storage": true, "subresources": {"status": {}},
                "schema": {"openAPIV3Schema": {"type": "object", "properties": {"spec": {"type": "object", "properties": {"size": {"type": "integer"}}}}}}}]}});
        let created = s.create(&crds, None, crd, &opts()).unwrap();
        assert_eq!(created["status"]["conditions"][1]["type"], "Established");
        let ri = s.resource("example.io", "v1", "pools").unwrap();
        let e = s
            .create(
                &ri,
                Some("default"),
                json!({"metadata": {"name": "p"}, "spec": {"size": "big"}}),
                &opts(),
            )
            .unwrap_err();
        assert_eq!(e.code, 422);
        s.create(
            &ri,
            Some("default"),
            json!({"metadata": {"name": "p"}, "spec": {"size": 3}}),
            &opts(),
        )
        .unwrap();
        let e = s
            .patch(
                &ri,
                Some("default"),
                "p",
                None,
                "application/strategic-merge-patch+json",
                b"{}",
                &opts(),
            )
            .unwrap_err();
        assert_eq!(e.code, 415);
        s.delete(&crds, None, "pools.example.io", &json!({}), &opts())
            .unwrap();
        assert!(s.resource("example.io", "v1", "pools").is_none());
    }

    #[test]
    fn apply_creates_and_conflicts() {
        let s = Store::new(100);
        let ri = cm(&s);
        let a = |m: &str, body: &str, force: bool| {
            s.patch(
                &ri,
                Some("default"),
                "c",
                None,
                "application/apply-patch+yaml",
                body.as_bytes(),
                &WriteOptions {
                    manager: m.into(),
                    force,
                    dry_run: false,
                },
            )
        };
        a(
            "one",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {k: a}\n",
            false,
        )
        .unwrap();
        let e = a(
            "two",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {k: b}\n",
            false,
        )
        .unwrap_err();
        assert_eq!((e.code, e.reason), (409, "Conflict"));
        assert!(e.message.contains("conflict with \"one\""), "{}", e.message);
        let v = a(
            "two",
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {k: b}\n",
            true,
        )
        .unwrap();
        assert_eq!(v["data"]["k"], "b");
        let e = s
            .patch(
                &ri,
                Some("default"),
                "c",
                None,
                "application/apply-patch+yaml",
                b"kind: ConfigMap",
                &opts(),
            )
            .unwrap_err();
        assert_eq!(e.code, 400);
    }
}
