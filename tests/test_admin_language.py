"""The admin speaks each staff user's language: French (the default, as for CMU staff) or English."""

from __future__ import annotations

import configparser
import re
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy.orm import Session
from werkzeug.test import TestResponse

from models.access.staff import StaffError, create_staff_user, find_staff_user
from models.base import Language, StaffRole
from tests.admin_helpers import csrf_token, text_of
from tests.conftest import ROOT

PASSWORD = "language-pass-123"
PLACEHOLDER = re.compile(r"%\((\w+)\)s")


def sign_in(app: Flask, session: Session, username: str, language: str | None = None) -> FlaskClient:
    """Create an admin (French unless told) and return a client signed in as them."""
    create_staff_user(session, username, PASSWORD, StaffRole.ADMIN, language=language)
    session.commit()
    client = app.test_client()
    data = {"username": username, "password": PASSWORD, "csrf_token": csrf_token(client)}
    assert client.post("/admin/login", data=data).status_code == 302
    return client


def switch(client: FlaskClient, language: str, next_page: str = "/admin/sms") -> TestResponse:
    """Post the header's language switch, as the browser does."""
    data = {"language": language, "next": next_page, "csrf_token": csrf_token(client, "/admin/")}
    return client.post("/admin/language", data=data)


def test_the_sign_in_page_speaks_french_unless_the_browser_asks_for_english(client: FlaskClient) -> None:
    page = client.get("/admin/login")
    assert '<html lang="fr">' in page.get_data(as_text=True) and "Se connecter" in text_of(page)
    english = client.get("/admin/login", headers={"Accept-Language": "en-GB,en;q=0.9"})
    assert '<html lang="en">' in english.get_data(as_text=True) and "Sign in" in text_of(english)
    khmer = client.get("/admin/login", headers={"Accept-Language": "km-KH,km;q=0.9"})
    assert '<html lang="fr">' in khmer.get_data(as_text=True)  # no admin in Khmer: French
    # Asked for a page while signed out: the prompt in the visitor's language.
    assert client.get("/admin/sms").status_code == 302
    assert "Connectez-vous pour voir cette page." in text_of(client.get("/admin/login"))


def test_staff_read_the_admin_in_french_by_default_and_switch_to_english(app: Flask, session: Session) -> None:
    client = sign_in(app, session, "awa")
    overview = client.get("/admin/")
    assert '<html lang="fr">' in overview.get_data(as_text=True)
    text = text_of(overview)
    assert "Tableau de bord" in text and "Rapprochement" in text and "Se déconnecter" in text
    assert "Overview" not in text and "Sign out" not in text

    response = switch(client, "en")
    assert response.status_code == 302 and response.headers["Location"] == "/admin/sms"
    page = client.get("/admin/sms")
    assert '<html lang="en">' in page.get_data(as_text=True)
    assert "Language saved: English." in text_of(page) and "SMS log" in text_of(page)
    session.expire_all()
    user = find_staff_user(session, "awa")
    assert user is not None and user.language == Language.EN
    # Kept: the next sign-in is in English too.
    again = app.test_client()
    data = {"username": "awa", "password": PASSWORD, "csrf_token": csrf_token(again)}
    again.post("/admin/login", data=data)
    assert "Overview" in text_of(again.get("/admin/"))

    refused = switch(client, "km")  # the admin speaks French and English only
    assert refused.status_code == 302
    assert "Choose French or English." in text_of(client.get("/admin/sms"))
    session.expire_all()
    assert find_staff_user(session, "awa").language == Language.EN  # type: ignore[union-attr]

    assert switch(client, "fr", "https://evil.example/").headers["Location"] == "/admin/"
    assert "Langue enregistrée : Français." in text_of(client.get("/admin/"))


def test_the_language_switch_needs_a_signed_in_user_and_its_csrf_token(app: Flask, session: Session) -> None:
    anonymous = app.test_client()
    assert anonymous.post("/admin/language", data={"language": "en"}).status_code == 400  # no CSRF token
    client = sign_in(app, session, "awa")
    assert client.post("/admin/language", data={"language": "en"}).status_code == 400
    session.expire_all()
    assert find_staff_user(session, "awa").language == Language.FR  # type: ignore[union-attr]


def test_flash_messages_and_form_errors_are_in_the_users_language(app: Flask, session: Session) -> None:
    client = sign_in(app, session, "awa")
    data = {"username": "moussa", "role": "viewer", "language": "en", "password": "moussa-pass-123"}
    data["csrf_token"] = csrf_token(client, "/admin/staff")
    created = client.post("/admin/staff", data=data, follow_redirects=True)
    assert "Utilisateur moussa créé avec le rôle viewer." in text_of(created)
    assert find_staff_user(session, "moussa").language == Language.EN  # type: ignore[union-attr]
    bad = {**data, "username": "fatou", "language": "wo", "csrf_token": csrf_token(client, "/admin/staff")}
    assert client.post("/admin/staff", data=bad).status_code == 400
    english = sign_in(app, session, "ousmane", language="en")
    token = csrf_token(english, "/admin/")
    assert "Signed out." in text_of(english.post("/admin/logout", data={"csrf_token": token}, follow_redirects=True))


def test_staff_create_user_takes_a_language(app: Flask, session: Session) -> None:
    runner = app.test_cli_runner()
    made = runner.invoke(args=["admin", "create-user", "binta", "--language", "en", "--password", "binta-pass-123"])
    assert made.exit_code == 0 and "language en" in made.output
    default = runner.invoke(args=["admin", "create-user", "codou", "--password", "codou-pass-123"])
    assert default.exit_code == 0 and "language fr" in default.output
    refused = runner.invoke(args=["admin", "create-user", "dior", "--language", "km", "--password", "dior-pass-123"])
    assert refused.exit_code != 0
    assert find_staff_user(session, "binta").language == Language.EN  # type: ignore[union-attr]
    with pytest.raises(StaffError):
        create_staff_user(session, "ngor", "ngor-pass-123", StaffRole.VIEWER, language="km")


def test_every_admin_text_has_its_french_translation() -> None:
    """Every text marked in templates/admin and handlers/admin is in the French catalogue, with its placeholders."""
    config = configparser.ConfigParser()
    config.read(ROOT / "babel-admin.cfg")
    method_map = [(pattern.strip(), method.strip()) for method, pattern in (s.split(":", 1) for s in config.sections())]
    marked: set[str] = set()
    for _file, _line, message, _comments, _context in extract_from_dir(str(ROOT), method_map):
        marked.add(message if isinstance(message, str) else message[0])
    assert len(marked) > 300
    with (ROOT / "locales/fr/LC_MESSAGES/admin.po").open("rb") as fp:
        french = {m.id: m for m in read_po(fp) if m.id}
    missing = sorted(text for text in marked if text not in french or not french[text].string)
    assert not missing, f"`make update-translations`, then translate in locales/fr/LC_MESSAGES/admin.po: {missing}"
    fuzzy = sorted(text for text in marked if french[text].fuzzy)
    assert not fuzzy, f"check these French translations and drop their fuzzy flag: {fuzzy}"
    for text in marked:
        translated = french[text].string
        assert isinstance(translated, str)
        assert set(PLACEHOLDER.findall(translated)) == set(PLACEHOLDER.findall(text)), text
    assert Path(ROOT / "locales/en/LC_MESSAGES/admin.po").exists()
