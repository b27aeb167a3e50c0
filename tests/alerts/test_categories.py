from __future__ import annotations

import pytest

from alerts.categories import DEFAULT_CATEGORIES, load_policy
from pipelines.errors import ConfigError


def test_shipped_policy_loads_and_pricing_requires_outreach():
    p = load_policy(DEFAULT_CATEGORIES)
    pricing = p.get("pricing")
    assert pricing.outreach and pricing.gate == 0.80 and pricing.severity == "critical"
    assert p.get("no-such-category").name == p.default
    assert p.by_hint("Fees") == "pricing"


@pytest.mark.parametrize("text,match", [
    ("default: x\ncategories: [{name: other}]\n", "default category"),
    ("default: other\ncategories: [{name: other}, {name: other}]\n", "unique"),
    ("default: other\ncategories: [{name: other, gate: 2}]\n", "gate"),
    ("default: other\ncategories: [{name: other}]\noverrides: [{match: x, category: nope}]\n", "unknown category"),
    ("categories: [", "categories file"),
])
def test_bad_policy_files_are_clear_errors(tmp_path, text, match):
    f = tmp_path / "c.yaml"
    f.write_text(text)
    with pytest.raises(ConfigError, match=match):
        load_policy(f)


def test_missing_policy_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_policy(tmp_path / "none.yaml")


def test_shipped_policy_has_stricter_irreversible_gates_and_incident_policies():
    p = load_policy(DEFAULT_CATEGORIES)
    assert p.get("pricing").on_incident == "defer" and p.get("pricing").strict_gate == 0.90
    assert p.get("policy").on_incident.raise_to == 0.95
    assert p.get("other").on_incident == "none" and p.get("other").strict_gate == p.get("other").gate
    assert all(c.strict_gate >= c.gate for c in p.categories)


def test_an_irreversible_gate_below_the_gate_is_a_clear_error(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("default: other\ncategories: [{name: other, gate: 0.9, irreversible_gate: 0.8}]\n")
    with pytest.raises(ConfigError, match="irreversible_gate"):
        load_policy(f)
