"""The compiled modules: built beside their sources by Cython, typed by their .pxd, never run stale.

Each build here compiles a small real module in a temporary source tree, with the same
code path as `make core`; one test checks that the suite itself runs every listed module compiled in CI.
"""

import importlib
import os
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from Cython.Compiler.Errors import CompileError
from django.core.management import CommandError, call_command

from connections.protocols import compiled
from connections.protocols.compiled import CompiledModule

COUNTER_SOURCE = """
class Counter:
    def __init__(self) -> None:
        self.total = 0

    def add(self, amount):
        self.total += amount
        return self.total
"""
COUNTER_DECLARATIONS = """
cdef class Counter:
    cdef public Py_ssize_t total
    cpdef add(self, Py_ssize_t amount)
"""


@pytest.fixture
def counter_module(tmp_path: Path) -> Iterator[CompiledModule]:
    """A package with one module and its .pxd, under a fresh source root on sys.path."""
    package = f"gatehouse_probe_{uuid.uuid4().hex[:8]}"
    (tmp_path / package).mkdir()
    (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / package / "counter.py").write_text(COUNTER_SOURCE)
    (tmp_path / package / "counter.pxd").write_text(COUNTER_DECLARATIONS)
    sys.path.insert(0, str(tmp_path))
    yield CompiledModule(f"{package}/counter", tmp_path)
    sys.path.remove(str(tmp_path))


def import_module(module: CompiledModule):
    return importlib.import_module(module.name.replace("/", "."))


def test_it_builds_the_module_beside_its_source_typed_by_its_pxd(counter_module, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path.parent)  # the build must not depend on where it runs from
    counter_module.build()
    assert counter_module.compiled.exists()
    assert counter_module.is_current and not counter_module.is_stale
    imported = import_module(counter_module)
    assert imported.__file__ == str(counter_module.compiled)
    counter = imported.Counter()
    assert counter.add(2) == 2
    with pytest.raises(TypeError):  # the .pxd made `total` a C integer
        counter.total = "two"
    assert not list(tmp_path.rglob("*.c")), "the generated C stays in the build's temporary directory"


def test_an_edited_source_makes_the_build_stale_until_it_is_rebuilt(counter_module):
    counter_module.build()
    built = counter_module.compiled.stat().st_mtime_ns
    counter_module.source.write_text(COUNTER_SOURCE + "\nLIMIT = 10\n")
    assert counter_module.is_stale and not counter_module.is_current
    counter_module.declarations.write_text(COUNTER_DECLARATIONS + "\n")
    assert counter_module.is_stale
    counter_module.build()
    assert counter_module.is_current
    assert counter_module.compiled.stat().st_mtime_ns > built


def test_a_build_that_fails_leaves_the_module_interpreted(counter_module):
    counter_module.build()
    counter_module.source.write_text(COUNTER_SOURCE + "\nEXTRA = 1\n")
    counter_module.declarations.write_text("cdef class Counter:\n    cdef public undeclared_type total\n")
    with pytest.raises(CompileError):
        counter_module.build()
    assert not counter_module.compiled.exists()
    assert not counter_module.is_stale
    assert import_module(counter_module).__file__ == str(counter_module.source)


def test_the_gateway_refuses_to_start_on_a_stale_build(counter_module, monkeypatch):
    counter_module.build()
    counter_module.source.write_text(COUNTER_SOURCE + "\n# edited after the build\n")
    monkeypatch.setattr(compiled, "SOURCE_ROOT", counter_module.root)
    monkeypatch.setattr(compiled, "MODULES", (counter_module.name,))
    with pytest.raises(CommandError, match="make core"):
        call_command("rungateway", "--no-pg")


def test_a_build_made_elsewhere_counts_as_stale(counter_module):
    counter_module.build()
    counter_module.digest_file.unlink()  # a compiled file nobody can say the sources of
    assert counter_module.is_stale


@pytest.mark.skipif(os.environ.get("CI") != "true", reason="CI runs the suite on the compiled modules (make test)")
def test_ci_runs_every_listed_module_compiled():
    for module in compiled.modules():
        imported = importlib.import_module(module.name.replace("/", "."))
        assert module.is_current, module.name
        assert imported.__file__ == str(module.compiled)
