"""Time from `docker run` to the first 200 on /async: each preset against a bare uvicorn command.

Both sides run the same image with the settings `djserve command` prints for it, so the ratio is what
the entrypoint adds: resolving and validating the configuration, prestart checks and the app factory.
The bare side runs Django's ASGI application; the preset side runs whichever interface it defaults to.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from bench.commands import bare_uvicorn
from bench.containers import Spec, remove, start, wait_for_200
from bench.plan import Plan

# Served by Django itself on both sides: the first answer that needs the app loaded.
PATH = "/async"
# preset -> (image, environment of both sides)
PRESETS: dict[str, tuple[str, dict[str, str]]] = {
    "production": ("djserve-demo:production", {}),
    # The proxy preset listens on 127.0.0.1 for a sidecar; a published port needs 0.0.0.0.
    "proxy": ("djserve-demo:proxy", {"UVICORN_HOST": "0.0.0.0"}),
    "websocket": ("djserve-demo:websocket", {}),
}
IMAGES = tuple(image for image, _ in PRESETS.values())


def time_to_200(spec: Spec, timeout: float) -> float:
    began = time.perf_counter()
    container = start(spec)
    try:
        wait_for_200(container, PATH, timeout)
        return time.perf_counter() - began
    finally:
        remove(container)


def measure_preset(preset: str, plan: Plan) -> dict[str, Any]:
    image, env = PRESETS[preset]
    kit = Spec(image, (), env)
    bare = Spec(image, bare_uvicorn(image, env), {})
    if plan.startup_reps > 1:  # the first start after a build reads the image from disk
        time_to_200(kit, plan.ready_timeout)
        time_to_200(bare, plan.ready_timeout)
    kit_s: list[float] = []
    bare_s: list[float] = []
    for rep in range(plan.startup_reps):
        # Alternate who goes first so neither side always inherits the other's warm caches.
        for spec, times in ((kit, kit_s), (bare, bare_s))[:: 1 if rep % 2 == 0 else -1]:
            times.append(time_to_200(spec, plan.ready_timeout))
    return {
        "image": image,
        "bare_command": " ".join(bare.command),
        "preset_s": [round(t, 3) for t in kit_s],
        "bare_uvicorn_s": [round(t, 3) for t in bare_s],
        "ratio": round(statistics.median(k / b for k, b in zip(kit_s, bare_s, strict=True)), 3),
    }


def measure(plan: Plan) -> dict[str, dict[str, Any]]:
    return {preset: measure_preset(preset, plan) for preset in plan.startup_presets}
