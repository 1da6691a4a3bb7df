#!/usr/bin/env python3
"""Real Helm (the Go library shipped in the helm-sdkpy package) against the chart:

    helm_check.py lint CHART
        prints Helm's lint result as JSON.
    helm_check.py install CHART KUBECONFIG NAMESPACE RELEASE VALUES_JSON
        installs the chart (create-namespace, no wait: the API test kit runs no pods), prints
        the release (with its rendered "manifest") as one JSON line, then reads requests on
        standard input, one a line, each answered with one JSON line: "upgrade VALUES_JSON"
        upgrades the release to those values, "uninstall" uninstalls it and ends; end of
        input leaves it installed.

The release is kept by Helm's "memory" storage driver (HELM_DRIVER=memory, one process):
Helm writes its release Secrets with protobuf, which the API test kit does not speak (it
is JSON only). The chart's own objects go through Helm's JSON client, as in a cluster.

Install with: pip install --ignore-requires-python helm-sdkpy (cargo xtask setup does).
"""

import asyncio
import json
import sys

import os

os.environ["HELM_DRIVER"] = "memory"

import helm_sdkpy as helm  # noqa: E402


def main():
    cmd = sys.argv[1]
    if cmd == "lint":
        config = helm.Configuration(namespace="default")
        result = asyncio.run(helm.Lint(config).run(sys.argv[2]))
        json.dump(result, sys.stdout)
    elif cmd == "install":
        chart, kubeconfig, namespace, release, values = sys.argv[2:7]
        config = helm.Configuration(namespace=namespace, kubeconfig=kubeconfig)
        result = asyncio.run(
            helm.Install(config).run(
                release,
                chart,
                values=json.loads(values),
                create_namespace=True,
                wait=False,
                timeout=120,
            )
        )
        print(json.dumps(result), flush=True)
        for line in sys.stdin:
            verb, _, arg = line.strip().partition(" ")
            if verb == "upgrade":
                result = asyncio.run(
                    helm.Upgrade(config).run(
                        release, chart, values=json.loads(arg), wait=False, timeout=120
                    )
                )
            elif verb == "uninstall":
                result = asyncio.run(helm.Uninstall(config).run(release, wait=False, timeout=120))
            else:
                sys.exit(f"unknown request {verb}")
            print(json.dumps(result), flush=True)
            if verb == "uninstall":
                break
    else:
        sys.exit(f"unknown command {cmd}")


if __name__ == "__main__":
    main()
