"""Rules that span settings. Single values are checked by their click types as they are read."""

from __future__ import annotations

import ipaddress
import os
import ssl
from typing import TYPE_CHECKING

from djserve.sources import Problem

if TYPE_CHECKING:
    from djserve.settings import Settings

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


def _trusts_anyone(settings: Settings) -> bool:
    allowed = settings["forwarded_allow_ips"] or ""
    return "*" in (ip.strip() for ip in str(allowed).split(","))


def check(settings: Settings) -> list[Problem]:
    problems = []

    def problem(name: str, message: str) -> None:
        problems.append(Problem(settings.where(name), message))

    if settings["reload"] and settings["workers"] > 1:
        problem("reload", f"reload cannot run {settings['workers']} workers ({settings.where('workers')})")
    if settings["interface"] == "wsgi" and settings["preset"] == "websocket":
        problem(
            "interface",
            f"the websocket preset needs asgi or hybrid; WSGI has no WebSockets ({settings.where('preset')})",
        )
    if (
        settings["proxy_headers"]
        and _trusts_anyone(settings)
        and settings["uds"] is None
        and not is_loopback(settings["host"])
        and not settings["trust_any_proxy"]
    ):
        problem(
            "forwarded_allow_ips",
            f"trusting '*' while listening on {settings['host']} ({settings.where('host')}) is unsafe: {SPOOFING}",
        )
    if settings["log_format"] == "json" and settings["log_config"] is not None:
        problem("log_config", f"log_format json ({settings.where('log_format')}) replaces log_config; set one")
    for name in ("health_path", "ready_path"):
        if not str(settings[name]).startswith("/"):
            problem(name, f"{settings[name]!r} must start with '/'")
    if settings["health_path"] == settings["ready_path"]:
        problem("ready_path", f"must differ from health_path ({settings.where('health_path')})")
    problems += _tls(settings)
    script = settings["prestart"]
    if script and not os.access(script, os.X_OK):
        problem("prestart", f"{script} is not an executable file")
    return problems + served_paths(settings)


def served_paths(settings: Settings) -> list[Problem]:
    """The paths djserve answers itself must not hide each other or the static files."""
    from djserve import static

    problems = []
    claimed = [(name, str(settings[name])) for name in ("health_path", "ready_path")]
    if settings["metrics"]:
        path = str(settings["metrics_path"])
        if not path.startswith("/"):
            problems.append(Problem(settings.where("metrics_path"), f"{path!r} must start with '/'"))
        problems += [
            Problem(settings.where("metrics_path"), f"must differ from {name} ({settings.where(name)})")
            for name, other in claimed
            if other == path
        ]
        claimed.append(("metrics_path", path))
    found = static.location() if settings["serve_static"] else None
    if found is not None:
        prefix = found[1]
        problems += [
            Problem(settings.where(name), f"{path!r} is under STATIC_URL {prefix!r} (Django settings)")
            for name, path in claimed
            if path.startswith(prefix) or path == prefix.rstrip("/")
        ]
    return problems


def _tls(settings: Settings) -> list[Problem]:
    """Key and certificate come together and load; click already checked that the files are readable."""
    key, cert = settings["ssl_keyfile"], settings["ssl_certfile"]
    if bool(key) != bool(cert):
        given, missing = ("ssl_keyfile", "ssl_certfile") if key else ("ssl_certfile", "ssl_keyfile")
        return [Problem(settings.where(given), f"TLS needs both a key and a certificate: set {missing} too")]
    if not key:
        return []
    password = settings["ssl_keyfile_password"] or ""  # never OpenSSL's prompt on the terminal
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(cert, key, lambda: password)
    except (OSError, ssl.SSLError) as error:
        where = f"{settings.where('ssl_certfile')}, {settings.where('ssl_keyfile')}"
        return [Problem(where, f"the certificate and key do not load: {error}")]
    return []
