"""The dashboard's settings (what it refuses to start with) and its access rules taken one at a
time: loopback addresses, the redirect after login, CSRF tokens per session, the auth cookie."""

from __future__ import annotations

from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from producer.dashboard import DashboardSettings, SettingsError
from producer.dashboard.access import SESSION, Access, safe_next
from producer.dashboard.settings import is_loopback

URL = "redis://127.0.0.1:6390/0"
TOKEN = "a-dashboard-token-long-enough-0123"


@pytest.mark.parametrize("host", ["127.0.0.1", "127.8.9.10", "::1", "[::1]", "localhost"])
def test_loopback_addresses_need_no_token(host: str) -> None:
    assert is_loopback(host)
    assert DashboardSettings(redis_url=URL, host=host).token is None


@pytest.mark.parametrize(
    "host", ["0.0.0.0", "::", "10.1.2.3", "2001:db8::1", "dashboard.internal", "localhost.evil"]
)
def test_any_other_address_needs_a_token_and_the_error_names_it(host: str) -> None:
    assert not is_loopback(host)
    with pytest.raises(SettingsError) as refused:
        DashboardSettings(redis_url=URL, host=host)
    assert f"--host {host} is reachable from other machines" in str(refused.value)
    assert "COROQ_DASHBOARD_TOKEN" in str(refused.value)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"token": "short"}, "the token is 5 characters long: use at least 16"),
        ({"refresh": 0.5}, "--refresh 0.5: give 1 to 3600 seconds"),
        ({"refresh": 7200.0}, "--refresh 7200.0"),
        ({"port": 70000}, "--port 70000: not a TCP port"),
        ({"queues": ("fine", "not{fine}")}, "invalid queue name 'not{fine}'"),
        ({"prefix": "has space"}, "invalid key prefix 'has space'"),
    ],
)
def test_a_setting_the_dashboard_cannot_start_with_is_named(
    options: dict[str, Any], message: str
) -> None:
    with pytest.raises(SettingsError, match=message):
        DashboardSettings(redis_url=URL, **options)


@pytest.mark.parametrize(
    ("target", "followed"),
    [
        ("/", "/"),
        ("/queues/emails?tab=delayed&offset=50", "/queues/emails?tab=delayed&offset=50"),
        ("//evil.example/", "/"),
        ("https://evil.example/", "/"),
        ("/\\evil.example", "/"),
        ("evil.example", "/"),
        ("", "/"),
    ],
)
def test_after_login_a_browser_goes_back_to_this_site_only(target: str, followed: str) -> None:
    assert safe_next(target) == followed


def request_of_session(session: str, **headers: str) -> web.Request:
    request = make_mocked_request("POST", "/queues/q/pause", headers=headers)
    request[SESSION] = session
    return request


def test_each_session_has_its_own_csrf_token_and_each_process_its_own_secret() -> None:
    access = Access(token=None, read_only=False)
    alice, bob = request_of_session("alice"), request_of_session("bob")
    assert access.csrf_token(alice) != access.csrf_token(bob)
    assert access.csrf_token(alice) == access.csrf_token(request_of_session("alice"))
    restarted = Access(token=None, read_only=False)
    assert restarted.csrf_token(alice) != access.csrf_token(alice)


def test_a_form_is_accepted_with_its_sessions_token_from_this_site_only() -> None:
    access = Access(token=None, read_only=False)
    host = {"Host": "127.0.0.1:8080"}
    token = access.csrf_token(request_of_session("alice"))
    access.check_csrf(request_of_session("alice", **host), token)
    same_site = {**host, "Origin": "http://127.0.0.1:8080"}
    access.check_csrf(request_of_session("alice", **same_site), token)
    refused = [
        (request_of_session("alice", **host), "", "missing or stale"),
        (request_of_session("alice", **host), token.upper(), "missing or stale"),
        (request_of_session("bob", **host), token, "missing or stale"),
        (
            request_of_session("alice", **host, Origin="http://127.0.0.1:9999"),
            token,
            "a form from another site (http://127.0.0.1:9999) is refused",
        ),
    ]
    for request, given, message in refused:
        with pytest.raises(web.HTTPForbidden) as forbidden:
            access.check_csrf(request, given)
        assert message in str(forbidden.value.text)


def test_the_auth_cookie_holds_a_digest_never_the_token() -> None:
    access = Access(token=TOKEN, read_only=False)
    assert TOKEN not in access.auth_cookie_value()
    assert access.auth_cookie_value() != Access(token=TOKEN, read_only=False).auth_cookie_value()
    assert access.token_matches(TOKEN)
    assert not access.token_matches(TOKEN[:-1])
    assert not access.token_matches("")
    assert not Access(token=None, read_only=False).token_matches("")
