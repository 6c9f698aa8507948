"""The README's settings table names every setting, and nothing that does not exist."""

import re

from scp_operator.settings import OperatorSettings, ScpSettings
from tests.conftest import REPO


def test_readme_settings_table_matches_the_settings_classes() -> None:
    readme = (REPO / "README.md").read_text()
    documented = set(re.findall(r"^\| `(SCP_[A-Z_]+)` \|", readme, flags=re.M))
    actual = {f"SCP_{n.upper()}" for n in ScpSettings.model_fields}
    actual |= {f"SCP_OPERATOR_{n.upper()}" for n in OperatorSettings.model_fields}
    assert documented == actual


def test_readme_opens_with_the_two_commands() -> None:
    head = (REPO / "README.md").read_text().split("---")[0]
    assert "make sandbox" in head
    assert "make test" in head
    assert "make test" in (REPO / ".ci" / "run").read_text()
