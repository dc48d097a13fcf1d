"""Image size split into the base image, the kit's layers and the demo's, and RSS and PSS per uvicorn worker."""

from __future__ import annotations

import json
import statistics
from typing import Any

from bench import wrk
from bench.commands import bare_uvicorn
from bench.containers import Spec, docker, running, wait_for_200
from bench.plan import Plan
from bench.procstat import MB, pss_bytes, uvicorn_workers

VARIANTS = ("production", "proxy", "websocket")


def _inspect(*images: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = json.loads(docker("image", "inspect", *images))
    return found


def _base_of(image: dict[str, Any]) -> dict[str, Any]:
    """The local image whose layers are the longest strict prefix of `image`'s, other than our own."""
    layers = image["RootFS"]["Layers"]
    names = [n for n in docker("image", "ls", "--format", "{{.Repository}}:{{.Tag}}").split() if "<none>" not in n]
    others = [n for n in names if not n.startswith(("djserve:", "djserve-demo:", "djserve-bench:"))]
    candidates = [c for c in _inspect(*others) if len(c["RootFS"]["Layers"]) < len(layers)] if others else []
    prefixes = [c for c in candidates if layers[: len(c["RootFS"]["Layers"])] == c["RootFS"]["Layers"]]
    if not prefixes:
        raise RuntimeError(f"no local base image found under {image['RepoTags']}")
    return max(prefixes, key=lambda c: len(c["RootFS"]["Layers"]))


def sizes() -> dict[str, Any]:
    """MB (10^6 bytes, as `docker images` counts) of base, kit and demo layers of each variant."""
    out: dict[str, Any] = {}
    for variant in VARIANTS:
        kit, demo = _inspect(f"djserve:{variant}", f"djserve-demo:{variant}")
        base = _base_of(kit)
        out[variant] = {
            "base_image": base["RepoTags"][0],
            "base_mb": round(base["Size"] / MB, 1),
            "kit_layers_mb": round((kit["Size"] - base["Size"]) / MB, 1),
            "demo_layers_mb": round((demo["Size"] - kit["Size"]) / MB, 1),
        }
    return out


def rss_per_worker(plan: Plan) -> dict[str, Any]:
    """Mean RSS and PSS of two warmed-up workers: djserve's preset (preload on), the same with preload off,
    and bare uvicorn. RSS counts every page a worker maps, shared or not; PSS splits the shared ones."""
    image = "djserve-demo:production"
    env = {"UVICORN_WORKERS": "2"}
    specs = {
        "djserve": Spec(image, (), env),
        "djserve_no_preload": Spec(image, (), {**env, "DJSERVE_PRELOAD": "false"}),
        "uvicorn": Spec(image, bare_uvicorn(image, env), {}),
    }
    out: dict[str, Any] = {}
    with running(*specs.values()) as containers:
        for name, container in zip(specs, containers, strict=True):
            wait_for_200(container, "/async", plan.ready_timeout)
            # Several connections spread the load so that both workers import and serve the app.
            for path in ("/async", "/sync"):
                wrk.run(container, path, plan.rss_load_seconds, plan.connections)
            workers = uvicorn_workers(container)
            if len(workers) != 2:
                raise RuntimeError(f"{name}: expected 2 uvicorn workers, found {workers}")
            out[name] = {
                "rss_mb": round(statistics.mean(w.rss_bytes for w in workers) / MB, 1),
                "pss_mb": round(statistics.mean(pss_bytes(w) for w in workers) / MB, 1),
            }
    return out
