"""Scenarios against kube-testkit with the official Python `kubernetes` client.

Usage: python3 scenarios.py <scenario>. Environment: KUBECONFIG (admin), TESTKIT_ADMIN (admin
endpoint URL), READER_KUBECONFIG and STRANGER_KUBECONFIG (for the rbac scenario).
"""

import json
import os
import sys
import urllib.request

from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

NS = "default"


def admin(path, body=None):
    req = urllib.request.Request(os.environ["TESTKIT_ADMIN"] + path, method="POST" if body is None else "PUT",
                                 data=json.dumps(body).encode() if body is not None else b"",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=5) as r:
        return json.load(r)


def api_client(kubeconfig=None):
    return config.new_client_from_config(config_file=kubeconfig or os.environ["KUBECONFIG"])


def expect_status(code, fn, *args, **kwargs):
    try:
        fn(*args, **kwargs)
    except ApiException as e:
        assert e.status == code, f"expected {code}, got {e.status}: {e.body}"
        return json.loads(e.body) if e.body else {}
    raise AssertionError(f"expected HTTP {code}, the call succeeded")


def cm(name, data=None, labels=None):
    return client.V1ConfigMap(metadata=client.V1ObjectMeta(name=name, labels=labels), data=data)


CRD = {
    "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
    "metadata": {"name": "gadgets.example.io"},
    "spec": {"group": "example.io", "scope": "Namespaced",
             "names": {"plural": "gadgets", "singular": "gadget", "kind": "Gadget"},
             "versions": [{"name": "v1", "served": True, "storage": True, "subresources": {"status": {}},
                           "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                               "spec": {"type": "object", "properties": {"size": {"type": "integer"}}},
                               "status": {"type": "object", "properties": {"ready": {"type": "boolean"}}}}}}}]},
}


def crd():
    c = api_client()
    ext = client.ApiextensionsV1Api(c)
    created = ext.create_custom_resource_definition(CRD)
    conds = {x.type: x.status for x in created.status.conditions}
    assert conds.get("Established") == "True", conds
    groups = [g.name for g in client.ApisApi(c).get_api_versions().groups]
    assert "example.io" in groups, groups
    co = client.CustomObjectsApi(c)
    g = co.create_namespaced_custom_object("example.io", "v1", NS, "gadgets",
                                           {"apiVersion": "example.io/v1", "kind": "Gadget",
                                            "metadata": {"name": "g1", "labels": {"app": "py"}}, "spec": {"size": 1}})
    assert g["metadata"]["generation"] == 1
    g = co.patch_namespaced_custom_object("example.io", "v1", NS, "gadgets", "g1", {"spec": {"size": 2}})
    assert g["metadata"]["generation"] == 2 and g["spec"]["size"] == 2
    g = co.patch_namespaced_custom_object_status("example.io", "v1", NS, "gadgets", "g1", {"status": {"ready": True}})
    assert g["status"]["ready"] is True and g["metadata"]["generation"] == 2
    items = co.list_namespaced_custom_object("example.io", "v1", NS, "gadgets", label_selector="app=py")["items"]
    assert [i["metadata"]["name"] for i in items] == ["g1"]
    st = expect_status(422, co.patch_namespaced_custom_object, "example.io", "v1", NS, "gadgets", "g1", {"spec": {"size": "big"}})
    assert st["reason"] == "Invalid", st
    co.delete_namespaced_custom_object("example.io", "v1", NS, "gadgets", "g1")
    expect_status(404, co.get_namespaced_custom_object, "example.io", "v1", NS, "gadgets", "g1")


def watch_relist():
    v1 = client.CoreV1Api(api_client())
    rv = v1.list_namespaced_config_map(NS).metadata.resource_version
    for i in range(3):
        v1.create_namespaced_config_map(NS, cm(f"w{i}"))
    v1.delete_namespaced_config_map("w0", NS)
    seen = []
    for ev in watch.Watch().stream(v1.list_namespaced_config_map, NS, resource_version=rv, timeout_seconds=1):
        seen.append((ev["type"], ev["object"].metadata.name))
    assert seen == [("ADDED", "w0"), ("ADDED", "w1"), ("ADDED", "w2"), ("DELETED", "w0")], seen
    admin("/_testkit/compact")
    try:
        for _ in watch.Watch().stream(v1.list_namespaced_config_map, NS, resource_version=rv, timeout_seconds=1):
            raise AssertionError("a watch from a compacted resourceVersion must fail")
        raise AssertionError("no 410")
    except ApiException as e:
        assert e.status == 410, e
    # Relist, then watch from the new version.
    listed = v1.list_namespaced_config_map(NS)
    assert sorted(c.metadata.name for c in listed.items) == ["w1", "w2"]
    v1.create_namespaced_config_map(NS, cm("w3"))
    seen = [(ev["type"], ev["object"].metadata.name) for ev in
            watch.Watch().stream(v1.list_namespaced_config_map, NS, resource_version=listed.metadata.resource_version, timeout_seconds=1)]
    assert seen == [("ADDED", "w3")], seen


def conflict():
    v1 = client.CoreV1Api(api_client())
    v1.create_namespaced_config_map(NS, cm("race", {"n": "0"}))
    first = v1.read_namespaced_config_map("race", NS)
    second = v1.read_namespaced_config_map("race", NS)
    first.data = {"n": "1"}
    v1.replace_namespaced_config_map("race", NS, first)
    second.data = {"n": "2"}
    st = expect_status(409, v1.replace_namespaced_config_map, "race", NS, second)
    assert st["reason"] == "Conflict" and "the object has been modified" in st["message"], st
    assert v1.read_namespaced_config_map("race", NS).data == {"n": "1"}
    expect_status(409, v1.create_namespaced_config_map, NS, cm("race"))
    expect_status(404, v1.read_namespaced_config_map, "missing", NS)


def ssa():
    v1 = client.CoreV1Api(api_client())
    body = lambda owner: {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "applied"}, "data": {"owner": owner}}
    v1.patch_namespaced_config_map("applied", NS, body("alpha"), field_manager="alpha",
                                   _content_type="application/apply-patch+yaml")
    st = expect_status(409, v1.patch_namespaced_config_map, "applied", NS, body("beta"), field_manager="beta",
                       _content_type="application/apply-patch+yaml")
    assert "alpha" in st["message"], st
    got = v1.patch_namespaced_config_map("applied", NS, body("beta"), field_manager="beta", force=True,
                                         _content_type="application/apply-patch+yaml")
    assert got.data == {"owner": "beta"}
    managers = sorted(m.manager for m in got.metadata.managed_fields)
    assert managers == ["beta"], managers


def rbac():
    reader = client.CoreV1Api(api_client(os.environ["READER_KUBECONFIG"]))
    names = [c.metadata.name for c in reader.list_namespaced_config_map(NS).items]
    assert "visible" in names, names
    st = expect_status(403, reader.delete_namespaced_config_map, "visible", NS)
    assert st["reason"] == "Forbidden", st
    expect_status(403, reader.list_namespaced_config_map, "kube-system")
    stranger = client.CoreV1Api(api_client(os.environ["STRANGER_KUBECONFIG"]))
    expect_status(401, stranger.list_namespaced_config_map, NS)


def outage():
    v1 = client.CoreV1Api(api_client())
    rv = v1.list_namespaced_config_map(NS).metadata.resource_version
    v1.create_namespaced_config_map(NS, cm("before"))
    admin("/_testkit/faults", {"outage": True})
    try:
        v1.read_namespaced_config_map("before", NS, _request_timeout=2)
        raise AssertionError("requests must fail during the outage")
    except ApiException:
        raise
    except Exception:
        pass
    admin("/_testkit/faults", {})
    v1.create_namespaced_config_map(NS, cm("after"))
    seen = [(ev["type"], ev["object"].metadata.name) for ev in
            watch.Watch().stream(v1.list_namespaced_config_map, NS, resource_version=rv, timeout_seconds=1)]
    assert seen == [("ADDED", "before"), ("ADDED", "after")], seen


if __name__ == "__main__":
    globals()[sys.argv[1]]()
    print(f"python scenario {sys.argv[1]}: ok")
