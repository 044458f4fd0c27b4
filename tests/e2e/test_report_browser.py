"""The report of a rollout stored in a real Redis, rendered by headless Chromium from Debian."""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import struct
import subprocess
import time
import zlib
from pathlib import Path

import pytest

from canary import report
from canary.probing.result import TransactionResult
from canary.store import Store
from tests.fixtures.proxies import package_install_lock

pytestmark = pytest.mark.e2e

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
]


def ensure_chromium(*, driver: bool = False) -> str:
    """Debian's chromium (and, with ``driver``, its chromedriver), installed with apt-get when
    missing; the test fails if that is impossible."""
    packages = {"/usr/bin/chromium": "chromium"}
    if driver:
        packages["/usr/bin/chromedriver"] = "chromium-driver"

    def present() -> bool:
        return all(os.access(path, os.X_OK) for path in packages)

    found = shutil.which("chromium") or "/usr/bin/chromium"
    if os.access(found, os.X_OK) and (not driver or present()):
        return found
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    # Wait for apt's own lock rather than fail on it: something else may be installing.
    wait = ["-o", "DPkg::Lock::Timeout=600"]
    install = ["apt-get", *wait, "install", "-y", *packages.values()]
    log = []
    with package_install_lock():
        if present():
            return "/usr/bin/chromium"
        for cmd in (install, ["apt-get", *wait, "update"], install):
            try:
                r = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env)
            except (OSError, subprocess.TimeoutExpired) as exc:
                log.append(f"{' '.join(cmd)}: {exc}")
                continue
            log.append(f"{' '.join(cmd)}: exit {r.returncode}\n{r.stderr[-800:]}")
            if r.returncode == 0 and present():
                return "/usr/bin/chromium"
    pytest.fail(
        "headless Chromium is needed and could not be installed (run `apt-get update && "
        f"apt-get install -y {' '.join(packages.values())}` as root):\n" + "\n".join(log),
        pytrace=False,
    )


def run_chromium(
    binary: str, profile: Path, *args: str, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run Chromium once in its own process group, and make sure none of its helpers survive."""
    proc = subprocess.Popen(
        [binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    finally:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def png_pixels(path: Path) -> tuple[int, int, list[bytes]]:
    """Decode an 8-bit RGB(A), non-interlaced PNG (what Chromium writes) into rows of bytes."""
    raw = path.read_bytes()
    assert raw[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, width = 8, b"", 0
    height = depth = ctype = 0
    while pos < len(raw):
        (length,) = struct.unpack(">I", raw[pos : pos + 4])
        kind, body = raw[pos + 4 : pos + 8], raw[pos + 8 : pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, ctype = struct.unpack(">IIBB", body[:10])
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    assert depth == 8 and ctype in (2, 6), f"unexpected PNG type depth={depth} color={ctype}"
    bpp = 4 if ctype == 6 else 3
    data, stride = zlib.decompress(idat), width * bpp
    rows: list[bytes] = []
    prev = bytearray(stride)
    for y in range(height):
        f, line = (
            data[y * (stride + 1)],
            bytearray(data[y * (stride + 1) + 1 : (y + 1) * (stride + 1)]),
        )
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b, c = prev[i], prev[i - bpp] if i >= bpp else 0
            if f == 1:
                line[i] = (line[i] + a) & 255
            elif f == 2:
                line[i] = (line[i] + b) & 255
            elif f == 3:
                line[i] = (line[i] + (a + b) // 2) & 255
            elif f == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
        rows.append(bytes(line))
        prev = line
    return width, height, rows


def _seed(store: Store) -> str:
    """A rolled-back rollout: events backdated over 40 s, results in three windows."""
    rid = "shop-20260101-120000-e2e001"
    t0 = time.time() - 60
    store.create_rollout(
        {
            "id": rid,
            "name": "shop",
            "service": "shop",
            "created_at": t0,
            "updated_at": t0 + 40,
            "finished_at": t0 + 40,
            "config": {"stable": {"version": "1.0.0"}, "canary": {"version": "1.2.0"}},
            "weights": [0, 20, 60, 100],
            "slo": {"success_threshold": 95.0, "latency_p95_ms": 400},
            "state": "rolled_back",
            "outcome": "rolled_back",
            "reasons": ["checkout: canary success 80.0% (16/20) vs stable 100.0% (20/20)"],
            "weight": 0,
            "step": 2,
            "fence": 0,
        }
    )

    def event(dt: float, kind: str, data: dict[str, object]) -> None:
        # Backdated: append_event stamps "now", and a report needs time to pass between events.
        entry = {"type": kind, "t": f"{t0 + dt:.3f}", "data": json.dumps(data)}
        store.r.xadd(store.keys.events(rid), entry)

    stats = {
        "n": 20,
        "ok": 20,
        "success_rate": 100.0,
        "error_rate_pct": 0.0,
        "p50_ms": 40.0,
        "p95_ms": 80.0,
        "mean_ms": 45.0,
    }
    event(0.0, "created", {"name": "shop"})
    for i, (w, action) in enumerate(((0, "increase"), (20, "increase"), (60, "rollback"))):
        start = i * 13.0
        event(start + 0.1, "weight", {"weight": w, "verified": None})
        window = f"s{i}a0"
        store.add_window(rid, window)
        results = []
        for k in range(40):
            t = t0 + start + k * 0.3
            bad = i == 2 and k % 4 == 0
            lat = 30.0 + (k % 7) * 5 + (i * 60 if i == 2 else 0)
            results.append(TransactionResult(t, "stable", "checkout", True, 30.0 + (k % 5) * 4))
            results.append(
                TransactionResult(
                    t,
                    "canary",
                    "checkout",
                    not bad,
                    lat,
                    500 if bad else 200,
                    "<b>boom</b>" if bad else None,
                )
            )
        store.record_batch(rid, window, f"{window}.b", results)
        reasons = (
            ["all checks within tolerance"]
            if action == "increase"
            else [
                "checkout: canary success 80.0% (16/20) vs stable 100.0% (20/20)",
                "<img src=x onerror=alert(1)>",
            ]
        )
        metrics: dict[str, object] = {"canary": stats, "stable": stats}
        if action == "rollback":
            metrics["forecast"] = {
                "metric": "error_rate_pct",
                "threshold": 5.0,
                "probability": 0.9,
                "points": [
                    {"dt": d, "mean": 10 + d / 2, "lo": 5 + d / 4, "hi": 15 + d}
                    for d in range(0, 11, 2)
                ],
            }
        event(
            start + 12.5,
            "decision",
            {
                "action": action,
                "weight": w,
                "reasons": reasons,
                "predictive": action == "rollback",
                "metrics": metrics,
            },
        )
    event(39.0, "state", {"state": "rolled_back", "weight": 0, "reasons": ["rolled back"]})
    return rid


@pytest.fixture(scope="module")
def chromium() -> str:
    return ensure_chromium()


def test_cli_reads_a_rollout_id_from_redis(
    redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import argparse

    from canary.cli import report as cli
    from canary.errors import CanaryError

    rid = _seed(Store.from_url(redis_url))
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers())
    monkeypatch.setenv("CANARY_REDIS_URL", redis_url)
    out = tmp_path / "r.html"
    args = parser.parse_args(["report", rid, "-o", str(out)])
    assert args.func(args) == 0
    assert "1.2.0" in out.read_text()
    with pytest.raises(CanaryError, match="no rollout nope"):
        args.func(parser.parse_args(["report", "nope"]))


def test_report_renders_with_plots_in_chromium(
    redis_url: str, tmp_path: Path, chromium: str
) -> None:
    store = Store.from_url(redis_url)
    rid = _seed(store)
    out = report.write_report(report.from_store(store, rid), tmp_path / "report.html")
    page = out.read_text()
    assert "<script" not in page and "<img" not in page and "<b>boom" not in page
    assert not re.search(r"""(src|href)\s*=\s*["']?https?:""", page)

    dom = run_chromium(chromium, tmp_path / "profile", "--dump-dom", out.as_uri()).stdout
    assert "shop" in dom and "1.2.0" in dom and "rolled back" in dom
    svgs = re.findall(r'<svg id="(\w+)"', dom)
    assert svgs == ["errors", "latency", "weight"]
    paths = re.findall(r'<path class="series (\w+)" data-points="(\d+)" d="([^"]+)"', dom)
    by_css = {}
    for css, n, d in paths:
        by_css.setdefault(css, []).append((int(n), d))
    # Both versions are drawn with a point per time bucket; the weight is a step line.
    for version in ("stable", "canary"):
        assert all(n >= 4 and d.count("L") == n - 1 for n, d in by_css[version])
    assert "V" in by_css["weight"][0][1]
    assert dom.count('class="decision ') == 3 * 3
    assert 'class="band"' in dom  # the forecast band, on the error chart
    assert "SLO: p95 ≤ 400 ms" in dom
    assert "checkout: canary success 80.0%" in dom

    png = tmp_path / "report.png"
    r = run_chromium(
        chromium,
        tmp_path / "profile",
        f"--screenshot={png}",
        "--window-size=1400,2000",
        out.as_uri(),
    )
    assert png.is_file(), r.stderr[-2000:]
    width, height, rows = png_pixels(png)
    assert (width, height) == (1400, 2000)
    # Non-blank: the page background, white panels and the series' orange and blue all appear.
    sample = {bytes(row[i : i + 3]) for row in rows[::7] for i in range(0, len(row), 3 * 5)}
    assert len(sample) > 50
    orange = sum(
        1
        for row in rows
        for i in range(0, len(row), 4 if len(row) == width * 4 else 3)
        if row[i] > 200 and 60 < row[i + 1] < 120 and row[i + 2] < 40
    )
    assert orange > 500, "the canary series (orange) is not visible in the screenshot"
