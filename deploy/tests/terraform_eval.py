#!/usr/bin/env python3
"""Evaluates the Terraform module in deploy/terraform for a network_interfaces map, as
Terraform would, and prints the Kubernetes objects its kubectl_manifest resources create.

Terraform cannot run here (its providers come from a registry this machine does not reach),
so this parses the HCL with python-hcl2 and evaluates the expressions the module uses with a
small evaluator: object and tuple constructors, string templates, references to var.*,
local.* and each.*, literals, and the functions yamlencode / merge / tostring. Anything else is
an error, never a guess.

    terraform_eval.py MODULE_DIR SEED_MD
prints JSON: {"module": [objects...], "seed": [objects...], "inputs": {...}}
where "seed" are the objects the seed document's own HCL (its locals and its two
kubectl_manifest blocks) evaluates to, and "inputs" the network_interfaces map used (the
seed's, read from the seed document, checked equal to examples/seed/main.tf's).
"""

import glob
import json
import os
import re
import sys

import hcl2
import yaml


class EvalError(Exception):
    pass


# ----------------------------------------------------------------------------------------
# Expressions


TOKEN = re.compile(
    r"""\s*(?:
      (?P<num>\d+(?:\.\d+)?)
    | (?P<ident>[A-Za-z_][A-Za-z0-9_-]*)
    | (?P<str>")
    | (?P<punct>==|!=|[{}\[\]().,=:?])
    )""",
    re.X,
)


class Parser:
    def __init__(self, text):
        self.s = text
        self.i = 0

    def peek(self):
        m = TOKEN.match(self.s, self.i)
        if not m:
            rest = self.s[self.i :].strip()
            if not rest:
                return None, None
            raise EvalError(f"cannot tokenize at: {self.s[self.i:self.i+40]!r}")
        for kind in ("num", "ident", "str", "punct"):
            if m.group(kind) is not None:
                return kind, m.group(kind)
        return None, None

    def take(self, expected=None):
        m = TOKEN.match(self.s, self.i)
        if not m:
            raise EvalError(f"unexpected end in {self.s!r}")
        kind = next(k for k in ("num", "ident", "str", "punct") if m.group(k) is not None)
        value = m.group(kind)
        if expected is not None and value != expected:
            raise EvalError(f"expected {expected!r}, got {value!r} in {self.s!r}")
        self.i = m.end()
        return kind, value

    def expr(self):
        kind, value = self.peek()
        if kind == "num":
            self.take()
            return ("lit", float(value) if "." in value else int(value))
        if kind == "str":
            self.take()
            return self.template()
        if value == "{":
            return self.obj()
        if value == "[":
            return self.tup()
        if value == "(":
            self.take("(")
            e = self.expr()
            self.take(")")
            return e
        if kind == "ident":
            self.take()
            if value in ("true", "false"):
                return ("lit", value == "true")
            if value == "null":
                return ("lit", None)
            if self.peek()[1] == "(":
                self.take("(")
                args = []
                while self.peek()[1] != ")":
                    args.append(self.expr())
                    if self.peek()[1] == ",":
                        self.take(",")
                self.take(")")
                return ("call", value, args)
            path = [value]
            while self.peek()[1] == ".":
                self.take(".")
                path.append(self.take()[1])
            return ("ref", path)
        raise EvalError(f"unsupported expression at {self.s[self.i:self.i+40]!r}")

    def template(self):
        # After the opening quote: literal text and ${...} parts up to the closing quote.
        parts = []
        buf = ""
        while True:
            if self.i >= len(self.s):
                raise EvalError("unterminated string")
            c = self.s[self.i]
            if c == "\\":
                nxt = self.s[self.i + 1]
                buf += {"n": "\n", "t": "\t", '"': '"', "\\": "\\"}.get(nxt, nxt)
                self.i += 2
            elif c == '"':
                self.i += 1
                break
            elif self.s.startswith("${", self.i):
                if buf:
                    parts.append(("lit", buf))
                    buf = ""
                self.i += 2
                parts.append(self.expr())
                self.take("}")
            else:
                buf += c
                self.i += 1
        if buf or not parts:
            parts.append(("lit", buf))
        return ("template", parts)

    def obj(self):
        self.take("{")
        items = []
        while self.peek()[1] != "}":
            kind, value = self.peek()
            if kind == "str":
                self.take()
                key = self.template()
            elif kind == "ident":
                self.take()
                key = ("lit", value)
            else:
                raise EvalError(f"bad object key {value!r}")
            sep = self.take()[1]
            if sep not in ("=", ":"):
                raise EvalError(f"expected = after key, got {sep!r}")
            items.append((key, self.expr()))
            if self.peek()[1] == ",":
                self.take(",")
        self.take("}")
        return ("obj", items)

    def tup(self):
        self.take("[")
        items = []
        while self.peek()[1] != "]":
            items.append(self.expr())
            if self.peek()[1] == ",":
                self.take(",")
        self.take("]")
        return ("tuple", items)


def parse(text):
    p = Parser(text)
    e = p.expr()
    if p.peek()[0] is not None:
        raise EvalError(f"trailing text in {text!r}: {p.s[p.i:]!r}")
    return e


def evaluate(node, scope):
    kind = node[0]
    if kind == "lit":
        return node[1]
    if kind == "template":
        values = [evaluate(p, scope) for p in node[1]]
        if len(values) == 1 and node[1][0][0] != "lit":
            return values[0]
        return "".join(v if isinstance(v, str) else json.dumps(v) for v in values)
    if kind == "obj":
        return {str(evaluate(k, scope)): evaluate(v, scope) for k, v in node[1]}
    if kind == "tuple":
        return [evaluate(v, scope) for v in node[1]]
    if kind == "ref":
        cur = scope
        for part in node[1]:
            if not isinstance(cur, dict) or part not in cur:
                raise EvalError(f"unknown reference {'.'.join(node[1])}")
            cur = cur[part]
        return cur
    if kind == "call":
        name, args = node[1], [evaluate(a, scope) for a in node[2]]
        if name == "yamlencode":
            # The object as Terraform would encode it; decoding gives it back.
            return yaml.safe_load(yaml.safe_dump(args[0]))
        if name == "merge":
            out = {}
            for a in args:
                out.update(a)
            return out
        if name == "tostring":
            return str(args[0])
        raise EvalError(f"function {name} not supported")
    raise EvalError(f"node {kind}")


def value_of(raw, scope):
    """A value as python-hcl2 gives it: "${expr}", a quoted literal, or nested data."""
    if isinstance(raw, str):
        if raw.startswith("${") and raw.endswith("}"):
            return evaluate(parse(raw[2:-1]), scope)
        return evaluate(parse(raw), scope)
    if isinstance(raw, dict):
        return {
            str(evaluate(parse(k), scope)) if k.startswith('"') else k: value_of(v, scope)
            for k, v in raw.items()
            if not k.startswith("__")
        }
    if isinstance(raw, list):
        return [value_of(v, scope) for v in raw]
    return raw


# ----------------------------------------------------------------------------------------
# Module and seed


def unquote(k):
    return k[1:-1] if k.startswith('"') and k.endswith('"') else k


def manifests(doc, scope, for_each_ok):
    """The objects of every kubectl_manifest resource in a parsed HCL document."""
    out = []
    for block in doc.get("resource", []):
        for rtype, named in block.items():
            if unquote(rtype) != "kubectl_manifest":
                continue
            for name, body in named.items():
                for_each = value_of(body["for_each"], scope)
                if not for_each_ok(for_each):
                    raise EvalError(f"{unquote(name)}: for_each is not the network_interfaces map")
                for key in sorted(for_each):
                    each = {"key": key, "value": for_each[key]}
                    obj = value_of(body["yaml_body"], {**scope, "each": each})
                    out.append({"resource": unquote(name), "key": key, "object": obj})
    return out


def main():
    module_dir, seed_md = sys.argv[1], sys.argv[2]
    text = open(seed_md).read()
    blocks = re.findall(r"```hcl\n(.*?)```", text, re.S)
    if len(blocks) < 3:
        raise EvalError(f"expected 3 HCL blocks in {seed_md}, found {len(blocks)}")
    seed_docs = [hcl2.loads(b) for b in blocks]
    seed_locals = {}
    for d in seed_docs:
        for block in d.get("locals", []):
            seed_locals.update(value_of({k: v for k, v in block.items()}, {}))
    interfaces = seed_locals["network_interfaces"]

    example = hcl2.load(open(os.path.join(module_dir, "examples/seed/main.tf")))
    example_locals = {}
    for block in example.get("locals", []):
        example_locals.update(value_of(block, {}))
    if example_locals["network_interfaces"] != interfaces:
        raise EvalError("examples/seed/main.tf's network_interfaces differ from the seed's")
    (module_call,) = [
        body for block in example["module"] for body in block.values()
    ]
    module_inputs = {
        k: value_of(v, {"local": example_locals})
        for k, v in module_call.items()
        if k not in ("source",) and not k.startswith("__")
    }

    # The module: variables (defaults, then the example's inputs), then its resources.
    variables = {}
    module = {}
    for path in sorted(glob.glob(os.path.join(module_dir, "*.tf"))):
        doc = hcl2.load(open(path))
        for block in doc.get("variable", []):
            for name, body in block.items():
                if "default" in body:
                    variables[unquote(name)] = value_of(body["default"], {})
        for k in ("resource",):
            module.setdefault(k, []).extend(doc.get(k, []))
    variables.update(module_inputs)
    ni = variables["network_interfaces"]
    module_objects = manifests(module, {"var": variables}, lambda fe: fe == ni)

    seed_objects = []
    for d in seed_docs:
        seed_objects += manifests(d, {"local": seed_locals}, lambda fe: fe == interfaces)

    json.dump(
        {"module": module_objects, "seed": seed_objects, "inputs": interfaces},
        sys.stdout,
        sort_keys=True,
    )


if __name__ == "__main__":
    try:
        main()
    except EvalError as e:
        print(f"terraform_eval: {e}", file=sys.stderr)
        sys.exit(1)
