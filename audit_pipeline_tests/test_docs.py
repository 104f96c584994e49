"""The README stays a front page and its links lead somewhere; the pages themselves are checked by `mkdocs build --strict`."""

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"


def test_readme_is_a_front_page():
    assert len(README.read_text(encoding="utf-8").splitlines()) <= 200, "README.md grew past 200 lines: move the detail to a page in docs/"


def test_every_relative_link_of_the_readme_names_an_existing_file():
    targets = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", README.read_text(encoding="utf-8"))
    local = [t for t in targets if not re.match(r"[a-z]+://", t)]
    assert local, "README.md links to no page at all"
    missing = [t for t in local if not (REPO / t).exists()]
    assert not missing, f"README.md links to files that do not exist: {missing}"
