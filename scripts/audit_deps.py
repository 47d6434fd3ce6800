"""Audit the locked dependencies (uv.lock) for known vulnerabilities with pip-audit, and report.

Exports the lock as a hashed requirements file, runs ``pip-audit`` against PyPI's advisory data
without resolving anything again, and prints one line per finding, then a summary: packages
audited, vulnerabilities found, packages the service could not answer for (offline, a proxy that
serves no per-version data). Exit status: 0 unless ``--strict`` is given and something is
vulnerable, so a network outage never turns CI red while findings are always printed.

    uv run --frozen python scripts/audit_deps.py [--strict] [--timeout-s 180]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def export_lock(dest: Path) -> None:
    subprocess.run(
        ["uv", "export", "--frozen", "--no-emit-project", "--format", "requirements-txt", "-o", str(dest)],
        cwd=ROOT,
        check=True,
        capture_output=True,
    )


def run_audit(requirements: Path, timeout_s: float) -> dict[str, Any]:
    """pip-audit's JSON report for ``requirements`` (raises on a time-out or an unreadable answer)."""
    cmd = [
        sys.executable, "-m", "pip_audit", "-r", str(requirements), "--disable-pip",
        "--vulnerability-service", "pypi", "--format", "json", "--progress-spinner", "off", "--timeout", "10",
    ]  # fmt: skip
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=timeout_s)
    if not done.stdout.strip():
        reason = done.stderr.strip()[-2000:] or f"pip-audit exited {done.returncode} with no report"
        raise RuntimeError(reason)
    report: dict[str, Any] = json.loads(done.stdout)
    return report


def summarise(report: dict[str, Any]) -> tuple[list[str], int, int, Counter[str]]:
    """Finding lines, packages audited, vulnerabilities, and why packages were skipped (by reason)."""
    findings: list[str] = []
    audited, skipped = 0, Counter[str]()
    for dep in report.get("dependencies", []):
        if "skip_reason" in dep:
            skipped[dep["skip_reason"].split(":")[0]] += 1
            continue
        audited += 1
        for vuln in dep.get("vulns", []):
            fix = ", ".join(vuln.get("fix_versions") or []) or "no fixed release"
            aliases = ", ".join(vuln.get("aliases") or [])
            findings.append(f"{dep['name']} {dep['version']}: {vuln['id']} ({aliases}) fixed in {fix}")
    return findings, audited, len(findings), skipped


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--strict", action="store_true", help="exit 1 when a vulnerability is found")
    parser.add_argument("--timeout-s", type=float, default=180.0, help="give up on the audit after this long")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        requirements = Path(tmp) / "requirements.txt"
        export_lock(requirements)
        locked = sum(1 for line in requirements.read_text().splitlines() if "==" in line)
        try:
            report = run_audit(requirements, args.timeout_s)
        except (subprocess.TimeoutExpired, RuntimeError, json.JSONDecodeError) as e:
            print(f"dependency audit: could not run pip-audit on {locked} locked packages: {e}")
            return 0
    findings, audited, vulnerable, skipped = summarise(report)
    for line in findings:
        print(f"VULNERABLE {line}")
    print(f"dependency audit: {locked} locked, {audited} audited, {vulnerable} known vulnerabilities")
    for reason, n in skipped.most_common():
        print(f"  {n} not audited: {reason} (the advisory service did not answer for them)")
    return 1 if args.strict and vulnerable else 0


if __name__ == "__main__":
    raise SystemExit(main())
