"""Mail accounts shared by every protocol of one running server.

IMAP and SMTP check credentials against the same `Accounts`, so a password
changed during a test is changed for both, as on a real server.
"""

from __future__ import annotations

import enum
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace

from servers.errors import ConfigError


@dataclass(frozen=True, slots=True, kw_only=True)
class User:
    """One mailbox owner.

    `login` defaults to the address because that is what most providers use as
    the IMAP/SMTP user name. `app_password` is the second secret a provider
    hands out when two-factor auth is on; `oauth_token` is accepted by XOAUTH2.
    """

    address: str
    password: str
    login: str = ""
    app_password: str | None = None
    oauth_token: str | None = None

    def __post_init__(self) -> None:
        if "@" not in self.address:
            raise ConfigError(
                f"user address={self.address!r}: expected a mail address like 'alice@example.test'"
            )
        if not self.password:
            raise ConfigError(f"user {self.address!r}: password must not be empty")
        if not self.login:
            object.__setattr__(self, "login", self.address)


# Documented test defaults; nothing else is ever accepted unless a test adds it.
DEFAULT_USERS: tuple[User, ...] = (
    User(address="alice@example.test", password="alice-password", oauth_token="alice-token"),
    User(address="bob@example.test", password="bob-password", oauth_token="bob-token"),
)


class AuthOutcome(enum.Enum):
    """Why a login succeeded or failed; each protocol turns it into its own reply text."""

    OK = "ok"
    BAD_CREDENTIALS = "bad-credentials"


class Mechanism(enum.Enum):
    PASSWORD = "password"  # LOGIN, AUTH PLAIN, AUTH LOGIN
    XOAUTH2 = "xoauth2"


@dataclass(frozen=True, slots=True)
class AuthResult:
    outcome: AuthOutcome
    user: User | None = None

    @property
    def ok(self) -> bool:
        return self.outcome is AuthOutcome.OK


@dataclass(slots=True)
class Accounts:
    """Thread-safe user directory: tests change it from their thread, servers read it in theirs."""

    _users: dict[str, User] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def of(cls, users: Iterable[User]) -> Accounts:
        accounts = cls()
        for user in users:
            accounts.add(user)
        return accounts

    def add(self, user: User) -> User:
        with self._lock:
            key = user.login.lower()
            if key in self._users:
                raise ConfigError(f"user login={user.login!r}: already exists")
            self._users[key] = user
        return user

    def replace_all(self, users: Iterable[User]) -> None:
        fresh = {u.login.lower(): u for u in users}
        with self._lock:
            self._users = fresh

    def set_password(self, login: str, password: str) -> User:
        """Change a password at run time (the `auth-password-changed` situation)."""
        with self._lock:
            user = self._require(login)
            updated = replace(user, password=password)
            self._users[login.lower()] = updated
        return updated

    def get(self, login: str) -> User | None:
        with self._lock:
            return self._users.get(login.lower())

    def by_address(self, address: str) -> User | None:
        wanted = address.strip("<>").lower()
        with self._lock:
            for user in self._users.values():
                if user.address.lower() == wanted:
                    return user
        return None

    def __iter__(self) -> Iterator[User]:
        with self._lock:
            return iter(list(self._users.values()))

    def __len__(self) -> int:
        with self._lock:
            return len(self._users)

    def authenticate(
        self, login: str, secret: str, mechanism: Mechanism = Mechanism.PASSWORD
    ) -> AuthResult:
        user = self.get(login)
        if user is None:
            return AuthResult(AuthOutcome.BAD_CREDENTIALS)
        if mechanism is Mechanism.XOAUTH2:
            good = user.oauth_token is not None and secret == user.oauth_token
        else:
            good = secret == user.password or (
                user.app_password is not None and secret == user.app_password
            )
        return AuthResult(AuthOutcome.OK if good else AuthOutcome.BAD_CREDENTIALS, user)

    def _require(self, login: str) -> User:
        user = self._users.get(login.lower())
        if user is None:
            known = ", ".join(sorted(u.login for u in self._users.values()))
            raise ConfigError(f"login={login!r}: no such user; known: {known}")
        return user
