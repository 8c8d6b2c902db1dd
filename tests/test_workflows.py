"""The GitHub workflows (.github/workflows/): valid against GitHub's workflow schema, clean under zizmor, and doing
what the README promises, checked offline.

``check-jsonschema`` validates with its vendored ``github-workflows`` schema (no download), and ``zizmor --offline``
audits them (no finding at medium severity or above, in the regular persona). Both are test dependencies.
"""
from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
WORKFLOWS = REPO / ".github" / "workflows"
FILES = ("book.yml", "tests.yml")
SHA = re.compile(r"^[\w.-]+/[\w.-]+(?:/[\w./-]+)?@[0-9a-f]{40}$")


def tool(name: str) -> str:
    exe = Path(sys.executable).parent / name
    found = str(exe) if exe.is_file() else shutil.which(name)
    assert found, f"{name} is not installed: it is a test dependency (pip install -e '.[test]')"
    return found


def load(name: str) -> dict:
    data = yaml.safe_load((WORKFLOWS / name).read_text(encoding="utf-8"))
    data["on"] = data.pop(True, data.get("on"))  # YAML 1.1 reads the key `on` as True
    return data


def steps(workflow: dict) -> list[dict]:
    return [step for job in workflow["jobs"].values() for step in job.get("steps", [])]


def test_workflows_match_githubs_schema():
    proc = subprocess.run([tool("check-jsonschema"), "--builtin-schema", "vendor.github-workflows",
                           *(str(WORKFLOWS / f) for f in FILES)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "ok -- validation done" in proc.stdout


def test_zizmor_finds_nothing_at_medium_or_above():
    proc = subprocess.run([tool("zizmor"), "--offline", "--format", "json", "--min-severity", "medium",
                           str(WORKFLOWS)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    findings = json.loads(proc.stdout)
    assert findings == [], [(f["ident"], f["determinations"]["severity"]) for f in findings]


@pytest.mark.parametrize("name", FILES)
def test_actions_are_pinned_and_credentials_not_kept(name):
    """Every action is pinned to a full commit (the tag in a comment), and checkout does not keep its token."""
    text = (WORKFLOWS / name).read_text(encoding="utf-8")
    uses = re.findall(r"uses:\s*(\S+)(.*)", text)
    assert uses
    for ref, comment in uses:
        assert SHA.match(ref), f"{name}: {ref} is not pinned to a commit"
        assert re.search(r"#\s*v\d+", comment), f"{name}: {ref} does not name its version in a comment"
    for step in steps(load(name)):
        if step.get("uses", "").startswith("actions/checkout@"):
            assert step["with"]["persist-credentials"] is False


def test_book_workflow_builds_checks_and_deploys():
    """On a push to the branch that _config.yml names (and by hand): install as the README does, `make book` from the
    committed results, the link check of that very site, then the official Pages actions with minimal rights."""
    flow = load("book.yml")
    config = yaml.safe_load((REPO / "_config.yml").read_text(encoding="utf-8"))
    assert flow["on"]["push"]["branches"] == [config["repository"]["branch"]]
    assert "workflow_dispatch" in flow["on"]
    assert flow["permissions"] == {}
    build, deploy = flow["jobs"]["build"], flow["jobs"]["deploy"]
    assert build["permissions"] == {"contents": "read"}
    assert deploy["permissions"] == {"pages": "write", "id-token": "write"}
    assert deploy["needs"] == "build" and deploy["environment"]["name"] == "github-pages"
    runs = [s.get("run", "") for s in build["steps"]]
    assert runs.index("make install") < runs.index("make book")
    check = next(s for s in build["steps"] if "tests/test_book.py" in s.get("run", ""))
    assert check["env"]["ZEGCLIP_BOOK_HTML"] == "_build/html" and "links_resolve" in check["run"]
    uses = [s.get("uses", "").split("@")[0] for s in build["steps"] + deploy["steps"]]
    assert "actions/upload-pages-artifact" in uses and "actions/deploy-pages" in uses
    upload = next(s for s in build["steps"] if s.get("uses", "").startswith("actions/upload-pages-artifact@"))
    assert upload["with"]["path"] == "_build/html"
    setup = next(s for s in build["steps"] if s.get("uses", "").startswith("actions/setup-python@"))
    assert setup["with"]["cache"] == "pip"


def test_tests_workflow_runs_the_readme_command_in_two_halves():
    """On push and pull request: `make test` (the README's command), the slow tests as a job of their own; the two
    selections cover every test."""
    flow = load("tests.yml")
    assert "push" in flow["on"] and "pull_request" in flow["on"]
    assert flow["permissions"] == {"contents": "read"}
    runs = sorted(s["run"] for s in steps(flow) if "run" in s)
    assert runs == ["make test PYTEST_ARGS='-m \"not slow\"'", "make test PYTEST_ARGS='-m slow'"]
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert re.search(r"^make test\b", readme, flags=re.M), "the README's test command is `make test`"
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    assert re.search(r"^test:.*\n\t\$\(VENV\)/bin/python -m pytest -q \$\(PYTEST_ARGS\)$", makefile, flags=re.M)
    for setup in (s for s in steps(flow) if s.get("uses", "").startswith("actions/setup-python@")):
        assert setup["with"]["cache"] == "pip"


def test_publishing_settings_live_in_one_place():
    """_config.yml names the repository and branch (with its buttons on); the README says what to set for a fork
    and why there are no launch buttons."""
    config = yaml.safe_load((REPO / "_config.yml").read_text(encoding="utf-8"))
    assert re.match(r"^https://github\.com/[\w.-]+/[\w.-]+$", config["repository"]["url"])
    assert config["html"]["use_repository_button"] is True
    assert config["sphinx"]["config"]["html_theme_options"]["use_download_button"] is True
    launch = config["launch_buttons"]
    assert not any(launch.get(k) for k in ("binderhub_url", "colab_url", "jupyterhub_url", "thebe"))
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Read the book", 1)[1].split("\n## ", 1)[0]
    for part in ("repository.url", "repository.branch", "_config.yml", "python -m http.server", "launch button"):
        assert part in section, f"README's 'Read the book' does not mention {part!r}"
