"""The server's token file, scopes and applications, and the CSRF token: pure, no server."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from scheduler.server import csrf, tokens
from scheduler.server.access import required_scope
from scheduler.server.config import load_tokens
from shared.errors import FleetsyncError

A, B, C, D = "a" * 32, "b" * 32, "c" * 32, "d" * 32


def test_bare_lines_keep_working_with_every_scope(tmp_path: Path) -> None:
    path = tmp_path / "tokens"
    path.write_text("# operators\n" + A + "\n\n" + B + "  # ci\n")
    env = {"FLEETSYNC_SERVER_TOKEN_FILE": str(path), "FLEETSYNC_SERVER_TOKEN_ENV": "MY_TOKEN",
           "MY_TOKEN": C}
    found = load_tokens(env)
    assert [(t.name, t.secret) for t in found] == [("token-line-2", A), ("token-line-4", B),
                                                    ("MY_TOKEN", C)]
    assert all(t.scopes == set(tokens.SCOPES) and t.apps is None for t in found)
    with pytest.raises(FleetsyncError, match="names MISSING, which is not set"):
        load_tokens({"FLEETSYNC_SERVER_TOKEN_ENV": "MISSING"})
    with pytest.raises(FleetsyncError, match="shorter than 16"):
        load_tokens({"FLEETSYNC_SERVER_TOKEN_ENV": "T", "T": "short"})
    with pytest.raises(FleetsyncError, match="FLEETSYNC_SERVER_TOKEN_FILE"):
        load_tokens({"FLEETSYNC_SERVER_TOKEN_FILE": str(tmp_path / "none")})


def test_named_tokens_with_scopes_and_applications(tmp_path: Path) -> None:
    path = tmp_path / "tokens"
    path.write_text(f"ops scopes=read,sync,hold,rollout {A}\n"
                    f"web-team  scopes=read,sync apps=web,api {B}   # the web team\n"
                    f"viewer scopes=read {C}\n")
    ops, team, viewer = load_tokens({"FLEETSYNC_SERVER_TOKEN_FILE": str(path)})
    assert ops.refusal("rollout", "anything") == ""
    assert team.refusal("sync", "web") == "" and team.refusal("read") == ""
    assert "lacks the scope 'hold'" in team.refusal("hold", "web")
    assert "may not act on application 'billing'" in team.refusal("sync", "billing")
    assert "lacks the scope 'sync' (it has: read)" in viewer.refusal("sync", "web")
    assert A not in repr(ops)                   # a token is never shown


@pytest.mark.parametrize("line, problem", [
    (f"ops {A}", "give scopes="),
    (f"ops scopes=read,write {A}", "unknown scope 'write'"),
    (f"ops scopes=read colour=blue {A}", "'colour' is not one of scopes=, apps="),
    (f"ops scopes=read scopes=sync {A}", "scopes= given twice"),
    (f"ops scopes=read apps=web,,api {A}", "without empty entries"),
    (f"ops scopes=read apps=web", "the last field must be the token"),
    ("o/ps scopes=read " + A, "the token's name must be"),
    ("ops scopes=read short", "token ops is shorter than 16"),
    ("ops scopes=read change-me-please-now", "example value 'change-me'"),
])
def test_bad_lines_name_file_and_line_never_the_token(tmp_path: Path, line: str,
                                                      problem: str) -> None:
    path = tmp_path / "tokens"
    path.write_text(f"# first\n{line}\n")
    with pytest.raises(FleetsyncError) as err:
        load_tokens({"FLEETSYNC_SERVER_TOKEN_FILE": str(path)})
    assert f"{path} line 2: " in str(err.value) and problem in str(err.value)
    assert A not in str(err.value)


def test_a_name_or_a_token_given_twice_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "tokens"
    path.write_text(f"ops scopes=read {A}\nops scopes=sync {B}\n")
    with pytest.raises(FleetsyncError, match="line 2: a second token named ops"):
        load_tokens({"FLEETSYNC_SERVER_TOKEN_FILE": str(path)})
    path.write_text(f"ops scopes=read {A}\nci scopes=sync {A}\n")
    with pytest.raises(FleetsyncError, match="token ci has the same value as token ops") as err:
        load_tokens({"FLEETSYNC_SERVER_TOKEN_FILE": str(path)})
    assert A not in str(err.value)


def test_bearer_and_basic_find_the_token() -> None:
    found = (tokens.Token("t", A), tokens.Token("u", B))
    assert tokens.find(tokens.presented("Bearer " + A)[1], found).name == "t"
    basic = base64.b64encode(b"ops:" + B.encode()).decode()
    assert tokens.presented(f"Basic {basic}") == ("basic", B)
    assert tokens.find(B, found).name == "u"
    assert tokens.find(D, found) is None and tokens.find("", found) is None
    assert tokens.presented("Basic !!!") is None and tokens.presented("Token " + A) is None
    assert tokens.presented("") is None


def test_each_request_needs_its_scope() -> None:
    assert required_scope("GET", "/api/v1/units") == "read"
    assert required_scope("GET", "/") == "read"
    assert required_scope("POST", "/api/v1/sync") == "sync"
    assert required_scope("POST", "/api/v1/suspend") == "hold"
    assert required_scope("POST", "/api/v1/resume") == "hold"
    assert required_scope("POST", "/api/v1/rollouts/web/promote") == "rollout"


def test_the_csrf_token_is_bound_to_session_and_caller() -> None:
    session = csrf.new_session()
    key = csrf.key_of(A, b"")
    given = csrf.value(key, "ops", session)
    assert csrf.matches(key, "ops", session, given)
    assert not csrf.matches(key, "ops", csrf.new_session(), given)      # another session
    assert not csrf.matches(key, "viewer", session, given)             # another caller
    assert not csrf.matches(csrf.key_of(B, b""), "ops", session, given)  # another token
    assert not csrf.matches(key, "ops", None, given) and not csrf.matches(key, "ops", session, "")
    assert csrf.session_of(f"x=1; {csrf.COOKIE}={session}") == session
    assert csrf.session_of(f"{csrf.COOKIE}=short") is None
    cookie = csrf.set_cookie(session, secure=True).decode()
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Secure" in cookie
    assert "Secure" not in csrf.set_cookie(session, secure=False).decode()
