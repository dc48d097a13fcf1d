"""Rules that span settings. Single values are checked by their click types as they are read."""

from __future__ import annotations

import ipaddress
import os
import ssl

from djserve import project
from djserve.config.model import KitConfig, Problem

SPOOFING = (
    "with '*', uvicorn believes the leftmost X-Forwarded-For entry, which any client can forge through a "
    "proxy that appends to the header; bind to loopback behind a sidecar proxy, list the proxy's "
    "addresses, or set trust_any_proxy if something in front really strips the header"
)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _trusts_anyone(config: KitConfig) -> bool:
    allowed = config["forwarded_allow_ips"] or ""
    return "*" in (ip.strip() for ip in str(allowed).split(","))


def check(config: KitConfig) -> list[Problem]:
    problems = []

    def problem(name: str, message: str) -> None:
        problems.append(Problem(config.where(name), message))

    if config["reload"] and config["workers"] > 1:
        problem("reload", f"reload cannot run {config['workers']} workers ({config.where('workers')})")
    if config["reload"] and config["preload"]:
        problem(
            "preload",
            f"preload cannot run with reload ({config.where('reload')}): the reloader imports the app afresh on "
            "purpose; set preload = false",
        )
    if config["interface"] == "wsgi" and config["preset"] == "websocket":
        problem(
            "interface",
            f"the websocket preset needs auto, asgi or hybrid; WSGI has no WebSockets ({config.where('preset')})",
        )
    if (
        config["proxy_headers"]
        and _trusts_anyone(config)
        and config["uds"] is None
        and not is_loopback(config["host"])
        and not config["trust_any_proxy"]
    ):
        problem(
            "forwarded_allow_ips",
            f"trusting '*' while listening on {config['host']} ({config.where('host')}) is unsafe: {SPOOFING}",
        )
    if config["log_format"] == "json" and config["log_config"] is not None:
        problem("log_config", f"log_format json ({config.where('log_format')}) replaces log_config; set one")
    for name in ("health_path", "ready_path"):
        if not str(config[name]).startswith("/"):
            problem(name, f"{config[name]!r} must start with '/'")
    if config["health_path"] == config["ready_path"]:
        problem("ready_path", f"must differ from health_path ({config.where('health_path')})")
    problems += _tls(config)
    script = config["prestart"]
    if script and not os.access(script, os.X_OK):
        problem("prestart", f"{script} is not an executable file")
    return problems + served_paths(config)


def served_paths(config: KitConfig) -> list[Problem]:
    """The paths djserve answers itself must not hide each other or the static files."""
    problems = []
    claimed = [(name, str(config[name])) for name in ("health_path", "ready_path")]
    if config["metrics"]:
        path = str(config["metrics_path"])
        if not path.startswith("/"):
            problems.append(Problem(config.where("metrics_path"), f"{path!r} must start with '/'"))
        problems += [
            Problem(config.where("metrics_path"), f"must differ from {name} ({config.where(name)})")
            for name, other in claimed
            if other == path
        ]
        claimed.append(("metrics_path", path))
    found = project.static_location() if config["serve_static"] else None
    if found is not None:
        prefix = found[1]
        problems += [
            Problem(config.where(name), f"{path!r} is under STATIC_URL {prefix!r} (Django settings)")
            for name, path in claimed
            if path.startswith(prefix) or path == prefix.rstrip("/")
        ]
    return problems


def _tls(config: KitConfig) -> list[Problem]:
    """Key and certificate come together and load; click already checked that the files are readable."""
    key, cert = config["ssl_keyfile"], config["ssl_certfile"]
    if bool(key) != bool(cert):
        given, missing = ("ssl_keyfile", "ssl_certfile") if key else ("ssl_certfile", "ssl_keyfile")
        return [Problem(config.where(given), f"TLS needs both a key and a certificate: set {missing} too")]
    if not key:
        return []
    password = config["ssl_keyfile_password"] or ""  # never OpenSSL's prompt on the terminal
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(cert, key, lambda: password)
    except (OSError, ssl.SSLError) as error:
        where = f"{config.where('ssl_certfile')}, {config.where('ssl_keyfile')}"
        return [Problem(where, f"the certificate and key do not load: {error}")]
    return []
