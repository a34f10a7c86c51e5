"""Settings for the test run: gateway_site.settings with GATEHOUSE_DATA_DIR in a throwaway dir.

pytest-django imports the settings before any conftest.py runs, and the
settings already create files under the data dir when imported (the secret
key). So the test data dir has to be chosen here, in the settings module
that pyproject.toml names. Subprocesses that inherit this environment share
the same dir; only the process that made it deletes it.
"""

import atexit
import os
import shutil
import tempfile

if not os.environ.get("GATEHOUSE_TEST_DATA_DIR"):
    os.environ["GATEHOUSE_TEST_DATA_DIR"] = tempfile.mkdtemp(prefix="gatehouse-test-data-")
    atexit.register(shutil.rmtree, os.environ["GATEHOUSE_TEST_DATA_DIR"], ignore_errors=True)
os.environ["GATEHOUSE_DATA_DIR"] = os.environ["GATEHOUSE_TEST_DATA_DIR"]

# This module is the project settings plus the line above.
from gateway_site import settings as _project  # noqa: E402

globals().update({name: value for name, value in vars(_project).items() if name.isupper()})
