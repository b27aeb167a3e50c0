"""``faithwatch dashboards render``: every panel drawn from the store into a PNG and one HTML page,
which headless Chromium (Debian's ``chromium``, installed when missing) loads with every image."""

from __future__ import annotations

import re

import matplotlib.image
import pytest
from click.testing import CliRunner
from dashboard_sample import populate

from dashboards.generate import dashboards
from services.cli import main, open_store
from services.settings import load_settings
from services.testing.chromium import dump_dom


def drawn_panels() -> list[str]:
    return [panel["title"] for model in dashboards().values() for panel in model["panels"] if panel.get("targets")]


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    data = tmp_path_factory.mktemp("render-data")
    with open_store(load_settings(data_dir=data)) as store:
        store.migrate()
        populate(store)
    out = tmp_path_factory.mktemp("render-out")
    result = CliRunner().invoke(main, ["dashboards", "render", str(out), "--data-dir", str(data)])
    assert result.exit_code == 0, result.output
    return out


def test_every_panel_is_a_png(rendered):
    pngs = sorted(rendered.glob("*.png"))
    assert len(pngs) == len(drawn_panels())
    for png in pngs:
        height, width = matplotlib.image.imread(png).shape[:2]
        assert width >= 600 and height >= 150, png.name


def test_chromium_loads_the_page_with_every_panel(rendered):
    dom = dump_dom(rendered / "index.html")
    images = re.findall(r"<img [^>]*>", dom)
    assert len(images) == len(drawn_panels())
    assert all('data-loaded="yes"' in img for img in images), [i for i in images if 'data-loaded="yes"' not in i]
    assert f'data-panels="{len(images)}"' in dom and f'data-loaded="{len(images)}"' in dom
    for title in drawn_panels():
        assert f'alt="{title}"' in dom
    assert "incident = inc-c-fee-open" in dom  # the latest incident


def test_an_empty_store_says_there_is_nothing_to_draw(tmp_path):
    result = CliRunner().invoke(main, ["dashboards", "render", str(tmp_path / "out"), "--data-dir",
                                       str(tmp_path / "data")])
    assert result.exit_code == 2 and "no answers yet" in result.output
