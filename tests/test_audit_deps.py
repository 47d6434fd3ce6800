"""scripts/audit_deps.py turns pip-audit's JSON report into findings and a summary."""

from __future__ import annotations

import importlib.util
from types import ModuleType

from tests.helpers import ROOT

NOT_FOUND = "Dependency not found on PyPI and could not be audited"


def load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("audit_deps", ROOT / "scripts" / "audit_deps.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_findings_name_package_advisory_and_fix() -> None:
    report = {
        "dependencies": [
            {"name": "jinja2", "version": "3.1.2", "vulns": [
                {"id": "GHSA-h5c8-rqwp-cp95", "aliases": ["CVE-2024-22195"], "fix_versions": ["3.1.3"]},
            ]},
            {"name": "fastapi", "version": "0.121.0", "vulns": []},
            {"name": "torch", "skip_reason": f"{NOT_FOUND}: torch (2.9.1)"},
        ]
    }  # fmt: skip
    findings, audited, vulnerable, skipped = load().summarise(report)
    assert findings == ["jinja2 3.1.2: GHSA-h5c8-rqwp-cp95 (CVE-2024-22195) fixed in 3.1.3"]
    assert (audited, vulnerable) == (2, 1)
    assert skipped == {NOT_FOUND: 1}
