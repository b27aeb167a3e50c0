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
