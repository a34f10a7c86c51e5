"""The vendored assets and Gatehouse's own are served by whitenoise after collectstatic, as `make run` does."""

from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command

VENDOR = Path(settings.BASE_DIR) / "gateway_site" / "static" / "vendor"
SERVED = {
    "/static/vendor/htmx.org/htmx.min.js": b"htmx",
    "/static/vendor/htmx-ext-ws/ws.min.js": b"ws-connect",
    "/static/vendor/asciinema-player/asciinema-player.min.js": b"AsciinemaPlayer",
    "/static/vendor/asciinema-player/asciinema-player.css": b".ap-",
    "/static/gatehouse/gatehouse.css": b"prefers-color-scheme",
    "/static/gatehouse/gatehouse.js": b"data-review-row",
}


@pytest.fixture
def collected(settings, tmp_path):
    settings.STATIC_ROOT = tmp_path / "static"
    call_command("collectstatic", interactive=False, verbosity=0)
    return settings.STATIC_ROOT


def test_it_serves_the_collected_static_files_without_a_login(client, db, collected):
    for path, marker in SERVED.items():
        response = client.get(path)
        assert response.status_code == 200, path
        assert marker in b"".join(response.streaming_content), path


def test_it_serves_them_compressed_to_browsers_that_ask(client, db, collected):
    response = client.get("/static/vendor/htmx.org/htmx.min.js", headers={"accept-encoding": "gzip"})

    assert response.status_code == 200
    assert response["Content-Encoding"] == "gzip"


def test_it_vendors_each_package_with_its_license_and_pinned_versions():
    readme = (VENDOR / "README.md").read_text()
    script = (VENDOR / "update.sh").read_text()

    for package, version, license_start in [
        ("htmx.org", "2.0.11", "Zero-Clause BSD"),
        ("htmx-ext-ws", "2.0.4", "BSD Zero Clause"),
        ("asciinema-player", "3.18.0", "Apache License"),
    ]:
        assert (VENDOR / package / "LICENSE").read_text().lstrip().startswith(license_start)
        assert f"| {package} | {version} |" in readme
        assert version in script
    assert not list(VENDOR.rglob("node_modules"))


def test_it_links_the_assets_from_every_page(client, personas):
    client.force_login(personas.reviewer)

    html = client.get("/").content.decode()

    for path in ("vendor/htmx.org/htmx.min.js", "vendor/htmx-ext-ws/ws.min.js", "gatehouse/gatehouse.css"):
        assert f'/static/{path}"' in html
