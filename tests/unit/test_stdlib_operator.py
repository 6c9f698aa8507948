"""``operator/`` is a source root: the standard library's ``operator`` must stay importable."""

import collections
import operator
import sysconfig
from pathlib import Path

from tests.conftest import REPO


def test_import_operator_gives_the_standard_library() -> None:
    stdlib = Path(sysconfig.get_paths()["stdlib"]).resolve()
    assert Path(operator.__file__).resolve().parent == stdlib
    assert operator.add(2, 3) == 5
    assert collections.OrderedDict is not None


def test_operator_directory_is_not_a_package() -> None:
    assert not (REPO / "operator" / "__init__.py").exists()
