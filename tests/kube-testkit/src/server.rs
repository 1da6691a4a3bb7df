//! HTTP: routing, faults, authentication, authorization, audit, and the watch stream body.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{HeaderValue, Method, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, StreamBody, combinators::UnsyncBoxBody};
use hyper::body::Frame;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

use crate::audit::{Audit, AuditEntry};
use crate::auth::{Attributes, RbacObjects, User, rbac_allows};
use crate::faults::{FaultConfig, Faults};
use crate::registry::ResourceInfo;
use crate::selector::{FieldSelector, LabelSelector};
use crate::status::ApiError;
use crate::store::{ListOptions, Selection, Store, WatchMsg, WatchOptions, WriteOptions};
use crate::table;
use crate::util;

/// Response body of every answer (plain or streaming).
pub type Body = UnsyncBoxBody<Bytes, Infallible>;

/// The user every request runs as when no token file is configured.
pub const ANONYMOUS_ADMIN: &str = "system:admin";

/// Request extension: the request skips fault injection (the kit's backdoor client).
#[derive(Debug, Clone, Copy)]
pub struct BypassFaults;

/// Shared state of one server.
pub struct Server {
    pub store: Arc<Store>,
    pub faults: Faults,
    pub audit: Arc<Audit>,
    /// Bearer tokens; `None` means authentication is off (every request is `system:admin`).
    pub tokens: Option<HashMap<String, User>>,
    pub rbac: bool,
}

fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed_unsync()
}

fn json_response(code: u16, v: &Value) -> Response<Body> {
    let mut r = Response::new(full(serde_json::to_vec(v).unwrap_or_default()));
    *r.status_mut() = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

fn error_response(e: &ApiError) -> Response<Body> {
    let mut r = json_response(e.code, &e.to_status());
    if e.code == 429 {
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    r
}

/// A parsed API path.
#[derive(Debug, Clone, PartialEq)]
pub enum Route {
    Version,
    Health,
    Api,
    Apis,
    ApiGroup(String),
    ApiResources(String, String),
    OpenApiV3Root,
    OpenApiV3(String, String),
    OpenApi,
    Resource(ResourcePath),
    NotFound,
}

/// `/api/v1/namespaces/ns/services/name/status` and friends.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ResourcePath {
    pub group: String,
    pub version: String,
    pub resource: String,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub subresource: Option<String>,
}

/// Parses a request path.
pub fn parse_path(path: &str) -> Route {
    let segs: Vec<&str> = path
        .trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let (group, version, rest) = match segs.as_slice() {
        ["version"] => return Route::Version,
        ["healthz" | "livez" | "readyz", ..] => return Route::Health,
        ["openapi", "v3"] => return Route::OpenApiV3Root,
        ["openapi", "v3", "api", v] => return Route::OpenApiV3(String::new(), v.to_string()),
        ["openapi", "v3", "apis", g, v] => return Route::OpenApiV3(g.to_string(), v.to_string()),
        ["openapi", ..] => return Route::OpenApi,
        ["api"] => return Route::Api,
        ["apis"] => return Route::Apis,
        ["apis", g] => return Route::ApiGroup(g.to_string()),
        ["api", v] => return Route::ApiResources(String::new(), v.to_string()),
        ["apis", g, v] => return Route::ApiResources(g.to_string(), v.to_string()),
        ["api", v, rest @ ..] => (String::new(), v.to_string(), rest),
        ["apis", g, v, rest @ ..] => (g.to_string(), v.to_string(), rest),
        _ => return Route::NotFound,
    };
    let s = |x: &&str| x.to_string();
    let mut p = ResourcePath {
        group,
        version,
        ..Default::default()
    };
    match rest {
        ["namespaces", ns, res, tail @ ..]
            if !(tail.is_empty() && matches!(*res, "status" | "finalize")) =>
        {
            p.namespace = Some(ns.to_string());
            p.resource = res.to_string();
            p.name = tail.first().map(s);
            p.subresource = tail.get(1).map(s);
            if tail.len() > 2 {
                return Route::NotFound;
            }
        }
        [res, tail @ ..] => {
            p.resource = res.to_string();
            p.name = tail.first().map(s);
            p.subresource = tail.get(1).map(s);
            if tail.len() > 2 {
                return Route::NotFound;
            }
        }
        [] => return Route::NotFound,
    }
    Route::Resource(p)
}

fn query_map(query: Option<&str>) -> HashMap<String, String> {
    url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .into_owned()
        .collect()
}

fn truthy(q: &HashMap<String, String>, k: &str) -> bool {
    q.get(k).is_some_and(|v| v == "true" || v == "1")
}

/// The Kubernetes verb of a resource request.
pub fn verb_of(method: &Method, p: &ResourcePath, q: &HashMap<String, String>) -> &'static str {
    match (method.as_str(), p.name.is_some()) {
        ("GET" | "HEAD", true) => "get",
        ("GET" | "HEAD", false) if truthy(q, "watch") => "watch",
        ("GET" | "HEAD", false) => "list",
        ("POST", _) => "create",
        ("PUT", _) => "update",
        ("PATCH", _) => "patch",
        ("DELETE", true) => "delete",
        ("DELETE", false) => "deletecollection",
        _ => "unknown",
    }
}

impl Server {
    fn authenticate(&self, headers: &http::HeaderMap) -> Result<User, ApiError> {
        let Some(tokens) = &self.tokens else {
            return Ok(User {
                name: ANONYMOUS_ADMIN.into(),
                uid: String::new(),
                groups: vec!["system:masters".into(), "system:authenticated".into()],
            });
        };
        let token = headers
            .get(header::AUTHORIZATION)
            .and_then(|h| h.to_str().ok())
            .and_then(|h| h.strip_prefix("Bearer "))
            .map(str::trim)
            .ok_or_else(ApiError::unauthorized)?;
        let mut user = tokens
            .get(token)
            .cloned()
            .ok_or_else(ApiError::unauthorized)?;
        user.groups.push("system:authenticated".into());
        Ok(user)
    }

    fn rbac_objects(&self) -> RbacObjects {
        let g = "rbac.authorization.k8s.io";
        RbacObjects {
            roles: self.store.all_objects(g, "roles"),
            role_bindings: self.store.all_objects(g, "rolebindings"),
            cluster_roles: self.store.all_objects(g, "clusterroles"),
            cluster_role_bindings: self.store.all_objects(g, "clusterrolebindings"),
        }
    }

    /// Waits out the hang and latency faults; answers an injected error if one is due.
    async fn apply_faults(&self) -> Option<ApiError> {
        let mut rx = self.faults.subscribe();
        let _ = rx.wait_for(|c: &FaultConfig| !c.hang).await;
        let latency = self.faults.config().latency_ms;
        if latency > 0 {
            tokio::time::sleep(Duration::from_millis(latency)).await;
        }
        let code = self.faults.next_error()?;
        Some(match code {
            429 => ApiError::new(
                429,
                "TooManyRequests",
                "the server has received too many requests and has asked us to try again later",
            ),
            503 => ApiError::new(
                503,
                "ServiceUnavailable",
                "the server is currently unable to handle the request",
            ),
            500 => ApiError::new(
                500,
                "InternalError",
                "an error on the server (\"injected\") has prevented the request from succeeding",
            ),
            c => ApiError::new(c, "InternalError", format!("injected error {c}")),
        })
    }
}

/// Splits a `/_token/<token>` prefix off a path. Kubeconfigs written by the kit carry the
/// token there too, because client-go (kubectl) sends no credentials over plain HTTP.
pub fn split_token_prefix(path: &str) -> (&str, Option<&str>) {
    match path.strip_prefix("/_token/") {
        Some(rest) => {
            let (token, tail) = rest.split_once('/').unwrap_or((rest, ""));
            (
                &path[path.len() - tail.len() - usize::from(!tail.is_empty())..],
                Some(token),
            )
        }
        None => (path, None),
    }
}

/// Handles one request whose body has been read.
pub async fn handle(
    server: Arc<Server>,
    mut parts: http::request::Parts,
    body: Bytes,
) -> Response<Body> {
    let (stripped, url_token) = split_token_prefix(parts.uri.path());
    let path = if stripped.is_empty() {
        "/".to_string()
    } else {
        stripped.to_string()
    };
    if let Some(t) = url_token
        && !parts.headers.contains_key(header::AUTHORIZATION)
        && let Ok(v) = HeaderValue::from_str(&format!("Bearer {t}"))
    {
        parts.headers.insert(header::AUTHORIZATION, v);
    }
    tracing::debug!(method = %parts.method, uri = %parts.uri, content_type = ?parts.headers.get(header::CONTENT_TYPE),
                    accept = ?parts.headers.get(header::ACCEPT), body = %String::from_utf8_lossy(&body[..body.len().min(300)]), "request");
    let route = parse_path(&path);
    let q = query_map(parts.uri.query());
    let mut entry = AuditEntry {
        time: SystemTime::now(),
        timestamp: util::now(),
        user: String::new(),
        verb: parts.method.as_str().to_lowercase(),
        group: String::new(),
        resource: String::new(),
        subresource: String::new(),
        namespace: String::new(),
        name: String::new(),
        path: path.clone(),
        code: 0,
    };
    if let Route::Resource(p) = &route {
        entry.verb = verb_of(&parts.method, p, &q).to_string();
        entry.group = p.group.clone();
        entry.resource = p.resource.clone();
        entry.subresource = p.subresource.clone().unwrap_or_default();
        entry.namespace = p.namespace.clone().unwrap_or_default();
        entry.name = p.name.clone().unwrap_or_default();
    }
    let response = match dispatch(&server, &parts, &route, &q, body, &mut entry).await {
        Ok(r) => r,
        Err(e) => error_response(&e),
    };
    entry.code = response.status().as_u16();
    server.audit.record(entry);
    response
}

async fn dispatch(
    server: &Arc<Server>,
    parts: &http::request::Parts,
    route: &Route,
    q: &HashMap<String, String>,
    body: Bytes,
    entry: &mut AuditEntry,
) -> Result<Response<Body>, ApiError> {
    if parts.extensions.get::<BypassFaults>().is_none()
        && let Some(e) = server.apply_faults().await
    {
        return Err(e);
    }
    let user = server.authenticate(&parts.headers)?;
    entry.user = user.name.clone();
    let registry = server.store.registry();
    let p = match route {
        Route::Version => {
            return Ok(json_response(
                200,
                &json!({"major": "1", "minor": "33", "gitVersion": "v1.33.0-kube-testkit",
                "gitCommit": "", "gitTreeState": "clean", "buildDate": "2026-01-01T00:00:00Z",
                "goVersion": "go1.24", "compiler": "gc", "platform": "linux/amd64"}),
            ));
        }
        Route::Health => {
            let mut r = Response::new(full("ok"));
            r.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
            return Ok(r);
        }
        Route::Api => return Ok(json_response(200, &registry.api_versions())),
        Route::Apis => return Ok(json_response(200, &registry.api_group_list())),
        Route::ApiGroup(g) => {
            return registry
                .api_group(g)
                .map(|v| json_response(200, &v))
                .ok_or_else(ApiError::no_route);
        }
        Route::ApiResources(g, v) => {
            return registry
                .api_resource_list(g, v)
                .map(|v| json_response(200, &v))
                .ok_or_else(ApiError::no_route);
        }
        Route::OpenApiV3Root => return Ok(json_response(200, &registry.openapi_v3_root())),
        Route::OpenApiV3(g, v) => {
            return registry
                .openapi_v3_doc(g, v)
                .map(|d| json_response(200, &d))
                .ok_or_else(ApiError::no_route);
        }
        Route::OpenApi | Route::NotFound => return Err(ApiError::no_route()),
        Route::Resource(p) => p,
    };
    let ri = registry
        .lookup(&p.group, &p.version, &p.resource)
        .cloned()
        .ok_or_else(ApiError::no_route)?;
    if p.namespace.is_some() && !ri.namespaced {
        return Err(ApiError::no_route());
    }
    match p.subresource.as_deref() {
        None => {}
        Some("status") if ri.status => {}
        Some(_) => return Err(ApiError::no_route()),
    }
    let verb = verb_of(&parts.method, p, q);
    let fields = FieldSelector::parse(
        q.get("fieldSelector")
            .map(String::as_str)
            .unwrap_or_default(),
    )?;
    let labels = LabelSelector::parse(
        q.get("labelSelector")
            .map(String::as_str)
            .unwrap_or_default(),
    )?;
    if server.rbac {
        let name = p
            .name
            .clone()
            .or_else(|| fields.pinned_name().map(String::from));
        let attrs = Attributes {
            verb: verb.into(),
            group: p.group.clone(),
            resource: p.resource.clone(),
            subresource: p.subresource.clone().unwrap_or_default(),
            namespace: p.namespace.clone(),
            name,
        };
        if !rbac_allows(&server.rbac_objects(), &user, &attrs) {
            let gr = if p.group.is_empty() {
                p.resource.clone()
            } else {
                format!("{}.{}", p.resource, p.group)
            };
            let sub = p
                .subresource
                .as_ref()
                .map(|s| format!("/{s}"))
                .unwrap_or_default();
            let scope = match &p.namespace {
                Some(ns) => format!("in the namespace \"{ns}\""),
                None => "at the cluster scope".into(),
            };
            let named = p
                .name
                .as_ref()
                .map(|n| format!(" \"{n}\""))
                .unwrap_or_default();
            let mut e = ApiError::forbidden(format!(
                "{gr}{sub}{named} is forbidden: User \"{}\" cannot {verb} resource \"{}{sub}\" in API group \"{}\" {scope}",
                user.name, p.resource, p.group
            ));
            e.details = Some(
                json!({"name": p.name.clone().unwrap_or_default(), "group": p.group, "kind": p.resource}),
            );
            return Err(e);
        }
    }
    let ns = p.namespace.as_deref();
    let name = p.name.as_deref().unwrap_or_default();
    let sub = p.subresource.as_deref();
    let default_manager = parts
        .headers
        .get(header::USER_AGENT)
        .and_then(|h| h.to_str().ok())
        .and_then(|ua| ua.split('/').next())
        .unwrap_or("unknown")
        .to_string();
    let wopts = WriteOptions {
        manager: q.get("fieldManager").cloned().unwrap_or(default_manager),
        force: truthy(q, "force"),
        dry_run: q.get("dryRun").is_some_and(|v| v == "All"),
    };
    let selection = Selection {
        namespace: p.namespace.clone(),
        labels,
        fields,
    };
    let store = &server.store;
    let accept = parts
        .headers
        .get(header::ACCEPT)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    let shape = if table::wants_table(accept) {
        Shape::Table(Box::new(ri.clone()))
    } else if accept.contains("as=PartialObjectMetadata") {
        Shape::Metadata
    } else {
        Shape::Full
    };
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|h| h.to_str().ok())
        .unwrap_or_default();
    if !body.is_empty() && (content_type.contains("protobuf") || content_type.contains("cbor")) {
        return Err(ApiError::unsupported_media_type(content_type));
    }
    let json_body = || -> Result<Value, ApiError> {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad_request(format!("the request body is not valid JSON: {e}")))
    };
    let ok = |v: Value| Ok(json_response(200, &v));
    match verb {
        "get" => {
            let obj = store.get(&ri, ns, name)?;
            ok(shape.object(
                obj,
                json!({"resourceVersion": store.resource_version().to_string()}),
            ))
        }
        "list" => {
            let limit = q.get("limit").and_then(|l| l.parse().ok());
            let list = store.list(
                &ri,
                &ListOptions {
                    selection,
                    limit,
                    continue_token: q.get("continue").cloned(),
                },
            )?;
            ok(shape.list(list))
        }
        "watch" => {
            let opts = WatchOptions {
                selection,
                resource_version: q.get("resourceVersion").cloned(),
                bookmarks: truthy(q, "allowWatchBookmarks"),
                send_initial_events: truthy(q, "sendInitialEvents"),
            };
            let timeout = q
                .get("timeoutSeconds")
                .and_then(|t| t.parse::<u64>().ok())
                .filter(|t| *t > 0)
                .map(Duration::from_secs);
            let rx = store.watch(&ri, &opts);
            Ok(watch_response(rx, timeout, shape))
        }
        "create" => {
            let created = store.create(&ri, ns, json_body()?, &wopts)?;
            Ok(json_response(201, &created))
        }
        "update" => ok(store.update(&ri, ns, name, sub, json_body()?, &wopts)?),
        "patch" => {
            let ct = parts
                .headers
                .get(header::CONTENT_TYPE)
                .and_then(|h| h.to_str().ok())
                .unwrap_or_default();
            let existed = store.get(&ri, ns, name).is_ok();
            let v = store.patch(&ri, ns, name, sub, ct, &body, &wopts)?;
            Ok(json_response(if existed { 200 } else { 201 }, &v))
        }
        "delete" => {
            let options = if body.is_empty() {
                json!({})
            } else {
                json_body()?
            };
            ok(store.delete(&ri, ns, name, &options, &wopts)?)
        }
        "deletecollection" => {
            let options = if body.is_empty() {
                json!({})
            } else {
                json_body()?
            };
            ok(store.delete_collection(&ri, &selection, &options, &wopts)?)
        }
        _ => Err(ApiError::method_not_allowed()),
    }
}

/// The representation a client asked for with its `Accept` header.
#[derive(Debug, Clone)]
enum Shape {
    Full,
    /// `PartialObjectMetadata[List]`
    Metadata,
    /// `meta.k8s.io/v1` `Table` (server-side printing)
    Table(Box<ResourceInfo>),
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl Shape {
    fn object(&self, obj: Value, table_metadata: Value) -> Value {
        match self {
            Shape::Full => obj,
            Shape::Metadata => {
                json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata", "metadata": obj["metadata"]})
            }
            Shape::Table(ri) => table::table(ri, &[obj], table_metadata, now_secs()),
        }
    }

    fn list(&self, mut list: Value) -> Value {
        let items: Vec<Value> = match self {
            Shape::Full => return list,
            _ => list["items"]
                .as_array_mut()
                .map(std::mem::take)
                .unwrap_or_default(),
        };
        match self {
            Shape::Table(ri) => table::table(ri, &items, list["metadata"].clone(), now_secs()),
            _ => {
                let items: Vec<Value> = items
                    .into_iter()
                    .map(|o| self.object(o, Value::Null))
                    .collect();
                json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadataList", "metadata": list["metadata"], "items": items})
            }
        }
    }
}

fn watch_line(msg: &WatchMsg, shape: &Shape) -> (Value, bool) {
    match msg {
        WatchMsg::Event(t, o) => {
            let rv = json!({"resourceVersion": o["metadata"]["resourceVersion"]});
            (
                json!({"type": t, "object": shape.object(o.clone(), rv)}),
                false,
            )
        }
        WatchMsg::Bookmark(o) => {
            let object = match shape {
                Shape::Table(_) => o.clone(),
                _ => shape.object(o.clone(), Value::Null),
            };
            (json!({"type": "BOOKMARK", "object": object}), false)
        }
        WatchMsg::Error(s) => (json!({"type": "ERROR", "object": s}), true),
    }
}

fn watch_response(
    rx: mpsc::UnboundedReceiver<WatchMsg>,
    timeout: Option<Duration>,
    shape: Shape,
) -> Response<Body> {
    let deadline = timeout.map(|t| tokio::time::Instant::now() + t);
    let shape = Arc::new(shape);
    let stream = futures::stream::unfold((rx, false), move |(mut rx, done)| {
        let shape = shape.clone();
        async move {
            if done {
                return None;
            }
            let msg = match deadline {
                Some(d) => tokio::time::timeout_at(d, rx.recv()).await.ok().flatten()?,
                None => rx.recv().await?,
            };
            let (line, last) = watch_line(&msg, &shape);
            let mut bytes = serde_json::to_vec(&line).unwrap_or_default();
            bytes.push(b'\n');
            Some((
                Ok::<_, Infallible>(Frame::data(Bytes::from(bytes))),
                (rx, last),
            ))
        }
    });
    let mut r = Response::new(StreamBody::new(stream).boxed_unsync());
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// Serves HTTP/1.1 on `listener` until `shutdown` turns true. During an outage the listener is
/// closed (connections are refused) and open connections are dropped; afterwards the same
/// address is bound again.
pub async fn serve(
    server: Arc<Server>,
    listener: TcpListener,
    mut shutdown: watch::Receiver<bool>,
) {
    let addr = match listener.local_addr() {
        Ok(a) => a,
        Err(e) => {
            tracing::error!("listener has no address: {e}");
            return;
        }
    };
    let mut faults = server.faults.subscribe();
    let mut listener = Some(listener);
    loop {
        if *shutdown.borrow() {
            return;
        }
        let Some(l) = listener.as_ref() else {
            tokio::select! {
                _ = shutdown.changed() => continue,
                _ = faults.wait_for(|c| !c.outage) => {}
            }
            listener = rebind(addr, &mut shutdown).await;
            server.faults.set_listening(listener.is_some());
            continue;
        };
        tokio::select! {
            _ = shutdown.changed() => {}
            _ = faults.wait_for(|c| c.outage) => {
                listener = None;
                server.faults.set_listening(false);
            }
            accepted = l.accept() => {
                if let Ok((stream, _)) = accepted {
                    tokio::spawn(serve_connection(server.clone(), stream, shutdown.clone()));
                }
            }
        }
    }
}

async fn rebind(addr: SocketAddr, shutdown: &mut watch::Receiver<bool>) -> Option<TcpListener> {
    for _ in 0..200 {
        if *shutdown.borrow() {
            return None;
        }
        match TcpListener::bind(addr).await {
            Ok(l) => return Some(l),
            Err(_) => tokio::time::sleep(Duration::from_millis(25)).await,
        }
    }
    tracing::error!("could not bind {addr} again after an outage");
    None
}

async fn serve_connection(
    server: Arc<Server>,
    stream: tokio::net::TcpStream,
    mut shutdown: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let mut faults = server.faults.subscribe();
    let svc = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
        let server = server.clone();
        async move {
            let (parts, body) = req.into_parts();
            let resp = match body.collect().await {
                Ok(b) => handle(server, parts, b.to_bytes()).await,
                Err(e) => error_response(&ApiError::bad_request(format!(
                    "reading the request body: {e}"
                ))),
            };
            Ok::<_, Infallible>(resp)
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        .serve_connection(hyper_util::rt::TokioIo::new(stream), svc);
    tokio::select! {
        _ = conn => {}
        _ = shutdown.wait_for(|s| *s) => {}
        _ = faults.wait_for(|c| c.outage) => {}
    }
}

/// Admin endpoint (`/_testkit/...`) of the binary: fault injection and the audit log.
pub async fn handle_admin(
    server: Arc<Server>,
    parts: http::request::Parts,
    body: Bytes,
) -> Response<Body> {
    let faults = &server.faults;
    match (parts.method.as_str(), parts.uri.path()) {
        ("GET", "/_testkit/faults") => json_response(200, &json!(faults.config())),
        ("PUT" | "POST", "/_testkit/faults") => {
            match serde_json::from_slice::<FaultConfig>(&body) {
                Ok(c) => {
                    // `set` waits for the listener to follow an outage change: keep it off the
                    // async workers.
                    let f = faults.clone();
                    let applied = c.clone();
                    let _ = tokio::task::spawn_blocking(move || f.set(applied)).await;
                    json_response(200, &json!(c))
                }
                Err(e) => error_response(&ApiError::bad_request(e.to_string())),
            }
        }
        ("POST", "/_testkit/close-watches") => {
            faults.close_watches();
            json_response(200, &json!({"closed": true}))
        }
        ("POST", "/_testkit/compact") => {
            faults.compact();
            json_response(
                200,
                &json!({"resourceVersion": server.store.resource_version().to_string()}),
            )
        }
        ("GET", "/_testkit/audit") => {
            let counts: Vec<Value> = server
                .audit
                .by_user_verb_resource()
                .into_iter()
                .map(|((u, v, r), n)| json!({"user": u, "verb": v, "resource": r, "count": n}))
                .collect();
            json_response(200, &json!({"total": server.audit.len(), "counts": counts}))
        }
        ("GET", "/_testkit/audit/log") => json_response(200, &json!(server.audit.entries())),
        ("DELETE", "/_testkit/audit") => {
            server.audit.clear();
            json_response(200, &json!({"cleared": true}))
        }
        _ => error_response(&ApiError::no_route()),
    }
}

/// Serves the admin endpoint on its own listener (it stays reachable during an outage).
pub async fn serve_admin(
    server: Arc<Server>,
    listener: TcpListener,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = shutdown.wait_for(|s| *s) => return,
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let server = server.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let server = server.clone();
                        async move {
                            let (parts, body) = req.into_parts();
                            let bytes = body.collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                            Ok::<_, Infallible>(handle_admin(server, parts, bytes).await)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                        .await;
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_paths() {
        assert_eq!(parse_path("/api"), Route::Api);
        assert_eq!(parse_path("/apis/apps"), Route::ApiGroup("apps".into()));
        assert_eq!(
            parse_path("/api/v1"),
            Route::ApiResources(String::new(), "v1".into())
        );
        let Route::Resource(p) = parse_path("/api/v1/namespaces/ns/services/web/status") else {
            panic!()
        };
        assert_eq!(
            (
                p.namespace.as_deref(),
                p.resource.as_str(),
                p.name.as_deref(),
                p.subresource.as_deref()
            ),
            (Some("ns"), "services", Some("web"), Some("status"))
        );
        let Route::Resource(p) = parse_path("/api/v1/namespaces/ns") else {
            panic!()
        };
        assert_eq!(
            (p.resource.as_str(), p.name.as_deref(), p.namespace),
            ("namespaces", Some("ns"), None)
        );
        let Route::Resource(p) = parse_path("/api/v1/namespaces/ns/status") else {
            panic!()
        };
        assert_eq!(
            (p.name.as_deref(), p.subresource.as_deref()),
            (Some("ns"), Some("status"))
        );
        let Route::Resource(p) = parse_path("/apis/coordination.k8s.io/v1/namespaces/x/leases")
        else {
            panic!()
        };
        assert_eq!(
            (p.group.as_str(), p.resource.as_str(), p.name),
            ("coordination.k8s.io", "leases", None)
        );
        assert_eq!(parse_path("/bogus"), Route::NotFound);
    }

    #[test]
    fn token_prefixes() {
        assert_eq!(
            split_token_prefix("/_token/abc/api/v1"),
            ("/api/v1", Some("abc"))
        );
        assert_eq!(split_token_prefix("/_token/abc"), ("", Some("abc")));
        assert_eq!(split_token_prefix("/api"), ("/api", None));
    }

    #[test]
    fn verbs() {
        let p = ResourcePath {
            name: None,
            ..Default::default()
        };
        let mut q = HashMap::new();
        assert_eq!(verb_of(&Method::GET, &p, &q), "list");
        q.insert("watch".to_string(), "true".to_string());
        assert_eq!(verb_of(&Method::GET, &p, &q), "watch");
        assert_eq!(verb_of(&Method::DELETE, &p, &q), "deletecollection");
        let named = ResourcePath {
            name: Some("x".into()),
            ..Default::default()
        };
        assert_eq!(verb_of(&Method::GET, &named, &q), "get");
        assert_eq!(verb_of(&Method::PATCH, &named, &q), "patch");
    }
}
