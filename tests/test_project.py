"""Project invariants: one version, the configuration table complete, services independent."""

from __future__ import annotations

import re
from pathlib import Path

from biometrics_core import settings

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ["libs/core", "libs/testkit", *[f"services/{s}" for s in ("extract", "transform", "load", "validate",
                                                                     "backup")]]


def test_every_package_has_the_version_in_VERSION():
    version = (ROOT / "VERSION").read_text().strip()
    for package in PACKAGES:
        found = re.search(r'^version = "([^"]+)"', (ROOT / package / "pyproject.toml").read_text(), re.M)
        assert found and found.group(1) == version, f"{package}: run `make version`"


def test_readme_documents_every_setting():
    readme = (ROOT / "README.md").read_text()
    for setting in settings.SETTINGS:
        assert f"`{setting.name}`" in readme, setting.name


def test_services_never_import_each_other():
    stages = ("extract", "transform", "load", "validate", "backup")
    for stage in stages:
        for source in (ROOT / "services" / stage / "src").rglob("*.py"):
            text = source.read_text()
            for other in stages:
                if other != stage:
                    assert f"biometrics_{other}" not in text, f"{source} imports biometrics_{other}"
            assert "biometrics_testkit" not in text, f"{source} imports the testkit"


def test_the_dags_variable_stage_settings_takes_every_tuning_setting():
    """dags/ cannot import the core (the images carry it, Airflow does not): its list is checked here.
    Secrets come from Connections, and batch size and inbox from Variables of their own."""
    import ast
    tree = ast.parse((ROOT / "dags" / "biometrics_stage.py").read_text())
    listed = next(ast.literal_eval(node.value) for node in tree.body if isinstance(node, ast.Assign)
                  and any(getattr(t, "id", None) == "STAGE_SETTINGS" for t in node.targets))
    own_variables = {"BIOMETRICS_BATCH_SIZE", "BIOMETRICS_INBOX_PATH"}
    tuning = {s.name for s in settings.SETTINGS
              if not s.secret and s.name.startswith("BIOMETRICS_") and s.name not in own_variables}
    assert set(listed) == tuning and len(listed) == len(tuning)
