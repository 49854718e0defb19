"""How a source or registry is authenticated: credentials by reference, never values."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Auth:
    """Where the credential is: a key file (ssh), or the names of environment variables
    (an account: user and password or token). The values are read where they are used."""

    ssh_key_file: str | None = None
    username_env: str | None = None
    password_env: str | None = None
    token_realm: str | None = None      # oci://: a token service on another origin trusted too
