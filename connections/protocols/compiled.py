"""The modules that run compiled: building them with Cython, and refusing a stale build.

The PostgreSQL proxy's per-message path is most of the gateway's CPU per transaction: framing
(messages, tracker), following the conversation (tracker) and taking each event into its
recording (recordings/writer). Cython compiles each module in MODULES from its .py file, typed by
the .pxd file beside it (Cython's "augmenting .pxd"); untyped compilation gains nothing measurable,
so a module is listed only with types that pay. The .py file stays the code of record, and runs as
it is where nothing was built. Python imports a compiled module before its .py file, so a build
records the digest of the sources it was made from: after an edit, the gateway and the test suite
refuse to start on old code.

Build with `make core` (`python -m connections.protocols.compiled`). It needs a C compiler and the
Python headers (Debian: gcc, python3-dev).
"""

import hashlib
import logging
import sys
import sysconfig
import tempfile
from pathlib import Path

logger = logging.getLogger(__name__)

SOURCE_ROOT = Path(__file__).resolve().parents[2]
MODULES = (
    "connections/protocols/pgwire/messages",
    "connections/protocols/pgwire/tracker",
    "recordings/writer",
)
# The .py files' annotations are for readers and ruff; the .pxd files alone type the compiled code.
DIRECTIVES = {"language_level": 3, "annotation_typing": False}


class CompiledModule:
    """One module of MODULES under a source root: its sources, its compiled file and what that was built from."""

    def __init__(self, name: str, root: Path) -> None:
        self.name = name
        self.root = root
        self.source = root / f"{name}.py"
        self.declarations = root / f"{name}.pxd"
        self.compiled = root / (name + sysconfig.get_config_var("EXT_SUFFIX"))
        self.digest_file = self.compiled.with_name(self.compiled.name + ".sha256")

    def source_digest(self) -> str:
        """SHA-256 of the .py and .pxd files as they are now."""
        return hashlib.sha256(self.source.read_bytes() + b"\0" + self.declarations.read_bytes()).hexdigest()

    def built_from(self) -> str | None:
        """The source digest the compiled file was built from; None if there is no compiled file."""
        if not self.compiled.exists():
            return None
        try:
            return self.digest_file.read_text().strip()
        except FileNotFoundError:
            return ""  # compiled by something else than build(): what it was made from is unknown

    @property
    def is_stale(self) -> bool:
        built_from = self.built_from()
        return built_from is not None and built_from != self.source_digest()

    @property
    def is_current(self) -> bool:
        return self.built_from() == self.source_digest()

    def build(self) -> None:
        """Compile the module if its compiled file is missing or stale; raises what Cython or the compiler raise."""
        if self.is_current:
            return
        digest = self.source_digest()
        # Nothing old is left behind: if this build fails, the module runs from its .py file.
        self.compiled.unlink(missing_ok=True)
        self.digest_file.unlink(missing_ok=True)
        _compile(self.source, self.root)
        self.digest_file.write_text(digest + "\n")


def _compile(source: Path, root: Path) -> None:
    # Imported here: the gateway imports this module to check its build, and needs neither.
    from Cython.Build import cythonize
    from setuptools import Distribution
    from setuptools.command.build_ext import build_ext

    with tempfile.TemporaryDirectory(prefix="gatehouse-build-") as work:
        extensions = cythonize([str(source)], compiler_directives=DIRECTIVES, build_dir=work, quiet=True)
        # package_dir: the compiled file goes beside its source, wherever the build runs from.
        distribution = Distribution({"ext_modules": extensions, "package_dir": {"": str(root)}})
        command = build_ext(distribution)
        command.inplace, command.build_temp, command.build_lib = True, work, work
        command.ensure_finalized()
        command.run()


def modules() -> list[CompiledModule]:
    return [CompiledModule(name, SOURCE_ROOT) for name in MODULES]


def current_names() -> list[str]:
    """The modules that run compiled: built, and from the sources beside them now."""
    return [module.name for module in modules() if module.is_current]


def stale_build_error() -> str | None:
    """Why the gateway must not start on this checkout's compiled modules, or None if it may."""
    stale = [module.name for module in modules() if module.is_stale]
    if not stale:
        return None
    return f"the compiled {', '.join(stale)} was built from other sources than the ones beside it: run `make core`"


def main() -> int:
    from Cython.Compiler.Errors import CompileError
    from setuptools.errors import BaseError, CCompilerError

    logging.basicConfig(format="%(message)s")
    try:
        for module in modules():
            module.build()
    except (CompileError, CCompilerError, BaseError, OSError) as exc:
        logger.error(
            "Could not compile the per-message modules (%s); they run interpreted. Compiling needs a C compiler"
            " and the Python headers (Debian: gcc, python3-dev).",
            exc,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
