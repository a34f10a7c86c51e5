"""Every page needs a login; allauth's pages and the admin's login stay reachable and use the site's look."""

import uuid

import pytest
from django.contrib.auth import get_user_model
from django.urls import reverse

from tests.web.conftest import make_user

SOME_ID = str(uuid.uuid4())
PAGES = [
    "/",
    "/sessions/",
    "/sessions/?status=live",
    f"/sessions/{SOME_ID}/",
    f"/sessions/{SOME_ID}/statements.jsonl",
    f"/sessions/{SOME_ID}/statements.csv",
    f"/sessions/{SOME_ID}/cast",
    "/reviews/",
    f"/reviews/{SOME_ID}/",
]
POSTS = [f"/sessions/{SOME_ID}/terminate", f"/reviews/{SOME_ID}/decide"]


@pytest.mark.parametrize("path", PAGES)
def test_it_sends_anonymous_visitors_to_the_login_page(client, db, path):
    response = client.get(path)

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("account_login") + "?next=")


@pytest.mark.parametrize("path", POSTS)
def test_it_refuses_anonymous_posts(client, db, path):
    response = client.post(path, {"decision": "approve"})

    assert response.status_code == 302
    assert response["Location"].startswith(reverse("account_login"))


@pytest.mark.parametrize("name", ["account_login", "account_reset_password"])
def test_it_keeps_allauth_pages_open_and_in_the_site_look(client, db, name):
    response = client.get(reverse(name))

    assert response.status_code == 200
    html = response.content.decode()
    assert "gatehouse/gatehouse.css" in html
    assert 'class="entrance"' in html
    assert 'class="nav"' not in html  # no navigation before logging in


def test_it_keeps_sign_up_closed_unless_configured(client, db, settings):
    closed = client.post(reverse("account_signup"), {"email": "eve@example.com", "password1": "x" * 20})
    settings.GATEHOUSE_OPEN_SIGNUP = True
    opened = client.get(reverse("account_signup"))

    assert "the sign up is currently closed" in closed.content.decode()
    assert not get_user_model().objects.filter(email="eve@example.com").exists()
    assert opened.status_code == 200 and 'name="password1"' in opened.content.decode()


def test_it_keeps_the_admin_login_open(client, db):
    response = client.get("/admin/login/")

    assert response.status_code == 200
    assert b'name="password"' in response.content


def test_it_logs_in_with_email_and_password_and_lands_on_the_dashboard(client, db):
    make_user("carol", password="a long enough passphrase")

    response = client.post(
        reverse("account_login"), {"login": "carol@example.com", "password": "a long enough passphrase"}, follow=True
    )

    assert response.redirect_chain[-1][0] == "/"
    assert response.status_code == 200
    assert b"<h1>Dashboard</h1>" in response.content
    assert b"carol@example.com" in response.content  # the user menu


def test_it_refuses_a_wrong_password(client, db):
    make_user("carol", password="a long enough passphrase")

    response = client.post(reverse("account_login"), {"login": "carol@example.com", "password": "wrong"})

    assert response.status_code == 200
    assert "_auth_user_id" not in client.session
    assert b"not correct" in response.content


def test_it_signs_out_with_a_post_from_the_user_menu(client, personas):
    client.force_login(personas.reviewer)
    page = client.get("/").content.decode()
    assert f'action="{reverse("account_logout")}"' in page

    response = client.post(reverse("account_logout"))

    assert response.status_code == 302
    assert client.get("/").status_code == 302


def test_it_shows_the_admin_link_to_staff_only(client, personas):
    client.force_login(personas.reviewer)
    assert b'href="/admin/"' not in client.get("/").content
    personas.reviewer.is_staff = True
    personas.reviewer.save()
    assert b'href="/admin/"' in client.get("/").content


def test_it_answers_missing_pages_with_the_sites_404(client, personas):
    client.force_login(personas.reviewer)

    response = client.get("/no-such-page/")

    assert response.status_code == 404
    assert b"nothing you may see" in response.content
