"""Mail accounts shared by every protocol of one running server.

IMAP and SMTP check credentials against the same `Accounts`, so a password
changed during a test is changed for both, as on a real server.
"""

from __future__ import annotations

import enum
import ipaddress
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import field, replace

from mailharness.servers.errors import ConfigError
from mailharness.servers.ratelimit import RateLimit, TokenBuckets
from mailharness.servers.records import lazy_dataclass, record


@record
class User:
    """One mailbox owner.

    `login` defaults to the address because that is what most providers use as
    the IMAP/SMTP user name. `app_password` is the second secret a provider
    hands out when two-factor auth is on; `oauth_token` is accepted by XOAUTH2.
    """

    #: The mail address (also the login unless `login` is set).
    address: str
    #: The password LOGIN and AUTH accept.
    password: str
    #: The user name to log in with (default: the address).
    login: str = ""
    #: A second secret, as providers hand out with two-factor auth on.
    app_password: str | None = None
    #: The bearer token XOAUTH2 accepts.
    oauth_token: str | None = None
    # Account states a provider can put a mailbox in; each fails login its own way.
    require_app_password: bool = False  # 2FA on: the normal password is refused
    imap_enabled: bool = True  # Gmail's "IMAP access" switch; SMTP still works
    web_login_required: bool = False  # Gmail's "please log in via your web browser"
    #: Login fails as the provider says for an expired password.
    password_expired: bool = False
    #: Login fails as for a disabled account.
    disabled: bool = False
    # Dovecot's passdb allow_nets: logins from elsewhere fail like a wrong password.
    allow_nets: tuple[str, ...] | None = None
    # The user's mailbox quota in bytes (Dovecot's quota_rule *:storage=): at or over it,
    # APPEND/COPY get NO [OVERQUOTA] and SMTP RCPT to the user 552. None: no limit.
    quota_bytes: int | None = None
    # The same, counted in messages (quota_rule *:messages=).
    quota_messages: int | None = None

    def __post_init__(self) -> None:
        if "@" not in self.address:
            raise ConfigError(
                f"user address={self.address!r}: expected a mail address like 'alice@example.test'"
            )
        if not self.password:
            raise ConfigError(f"user {self.address!r}: password must not be empty")
        if not self.login:
            object.__setattr__(self, "login", self.address)
        for name in ("quota_bytes", "quota_messages"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or value < 0):
                raise ConfigError(f"user {self.address!r}: {name}={value!r}: expected >= 0 or None")
        if self.require_app_password and not self.app_password:
            raise ConfigError(f"user {self.address!r}: require_app_password needs app_password")
        if self.allow_nets is not None:
            for net in self.allow_nets:
                try:
                    ipaddress.ip_network(net, strict=False)
                except ValueError:
                    raise ConfigError(
                        f"user {self.address!r}: allow_nets entry {net!r} is not a network "
                        "like '127.0.0.1/32'"
                    ) from None

    def allows(self, source: str | None) -> bool:
        if self.allow_nets is None or source is None:
            return True
        address = ipaddress.ip_address(source)
        return any(address in ipaddress.ip_network(n, strict=False) for n in self.allow_nets)


# Documented test defaults; nothing else is ever accepted unless a test adds it.
DEFAULT_USERS: tuple[User, ...] = (
    User(address="alice@example.test", password="alice-password", oauth_token="alice-token"),
    User(address="bob@example.test", password="bob-password", oauth_token="bob-token"),
)


class AuthOutcome(enum.Enum):
    """Why a login succeeded or failed; each protocol and personality has its own reply text."""

    OK = "ok"
    BAD_CREDENTIALS = "bad-credentials"
    APP_PASSWORD_REQUIRED = "app-password-required"
    IMAP_DISABLED = "imap-disabled"
    WEB_LOGIN_REQUIRED = "web-login-required"
    PASSWORD_EXPIRED = "password-expired"
    ACCOUNT_DISABLED = "account-disabled"
    LOCKED_OUT = "locked-out"
    RATE_LIMITED = "rate-limited"
    BACKEND_DOWN = "backend-down"


@record
class Lockout:
    """After `max_failures` failed logins of one account, refuse even the right password
    for `seconds` (counted from the last failure)."""

    max_failures: int = 3
    seconds: float = 60.0

    def __post_init__(self) -> None:
        if self.max_failures < 1:
            raise ConfigError(f"lockout max_failures={self.max_failures!r}: expected >= 1")
        if self.seconds <= 0:
            raise ConfigError(f"lockout seconds={self.seconds!r}: expected > 0")


class Mechanism(enum.Enum):
    PASSWORD = "password"  # LOGIN, AUTH PLAIN, AUTH LOGIN
    XOAUTH2 = "xoauth2"


@lazy_dataclass(frozen=True, slots=True)
class AuthResult:
    """What a login attempt came to, and whose account it was when it succeeded."""

    outcome: AuthOutcome
    user: User | None = None

    @property
    def ok(self) -> bool:
        return self.outcome is AuthOutcome.OK


@record(kw_only=False)
class AccountChange:
    """What one change did: users added or replaced (new state), users removed."""

    added: tuple[User, ...] = ()
    removed: tuple[User, ...] = ()
    # The new `backend_down` switch when it was flipped; None: unchanged.
    backend_down: bool | None = None


@record(frozen=False, kw_only=False)
class Accounts:
    """Thread-safe user directory: tests change it from their thread, servers read it in theirs.

    Besides passwords it holds the server-wide auth situations a scenario can
    switch at run time: `backend_down`, a `lockout` policy and a `login_rate`
    limit (a token bucket per login and source address).
    """

    _users: dict[str, User] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _backend_down: bool = False
    lockout: Lockout | None = None
    login_rate: RateLimit | None = None
    clock: Callable[[], float] = time.monotonic
    _failures: dict[str, list[float]] = field(default_factory=dict)
    _login_buckets: TokenBuckets = field(default_factory=TokenBuckets)
    _listeners: list[Callable[[AccountChange], None]] = field(default_factory=list)
    # Held across a change and its notification, so callbacks see changes in order.
    _change_lock: threading.RLock = field(default_factory=threading.RLock)
    # Changes made (each notified), and (id of the users, that count) at the last replace_all.
    _changes: int = 0
    _reset_to: tuple[int, int] = (0, -1)

    def on_change(self, callback: Callable[[AccountChange], None]) -> Callable[[], None]:
        """Call `callback(change)` after every add, update, set_password and replace_all.

        A real backend (Dovecot) keeps its own copy of the accounts and uses
        this to rewrite it. Callbacks run in the thread that made the change,
        after the lock is released and in the order of the changes, so a
        callback sees the change made. Returns a function that unsubscribes.
        """
        with self._lock:
            self._listeners.append(callback)

        def unsubscribe() -> None:
            with self._lock:
                if callback in self._listeners:
                    self._listeners.remove(callback)

        return unsubscribe

    def _notify(self, change: AccountChange) -> None:
        with self._lock:
            self._changes += 1
            listeners = list(self._listeners)
        for callback in listeners:
            callback(change)

    @property
    def backend_down(self) -> bool:
        """Every login fails temporarily (the provider's auth backend is down)."""
        return self._backend_down

    @backend_down.setter
    def backend_down(self, down: bool) -> None:
        with self._change_lock:
            with self._lock:
                changed = self._backend_down != down
                self._backend_down = down
            if changed:
                self._notify(AccountChange(backend_down=down))

    @classmethod
    def of(cls, users: Iterable[User]) -> Accounts:
        accounts = cls()
        for user in users:
            accounts.add(user)
        return accounts

    def add(self, user: User) -> User:
        with self._change_lock:
            with self._lock:
                key = user.login.lower()
                if key in self._users:
                    raise ConfigError(f"user login={user.login!r}: already exists")
                self._users[key] = user
            self._notify(AccountChange(added=(user,)))
            return user

    def are(self, users: Sequence[User]) -> bool:
        """Whether nothing changed since `replace_all(users)` (this very sequence): no user
        change, no failure counted, no login bucket; the per-test reset's shortcut."""
        return (
            self._reset_to == (id(users), self._changes)
            and not self._failures
            and not self._backend_down
            and not len(self._login_buckets)
        )

    def replace_all(self, users: Iterable[User]) -> None:
        """Reset to these users and forget every failure count and switch."""
        with self._change_lock:
            fresh = {u.login.lower(): u for u in users}
            with self._lock:
                old = self._users
                self._users = fresh
                self._failures.clear()
                self._login_buckets.clear()
                was_down, self._backend_down = self._backend_down, False
            changed = tuple(u for k, u in fresh.items() if old.get(k) != u)
            removed = tuple(u for k, u in old.items() if k not in fresh)
            if changed or removed or was_down:
                self._notify(
                    AccountChange(
                        added=changed, removed=removed, backend_down=False if was_down else None
                    )
                )
            self._reset_to = (id(users), self._changes)

    def update(self, login: str, **changes: object) -> User:
        """Change a user at run time: `accounts.update("alice@example.test", disabled=True)`."""
        with self._change_lock:
            with self._lock:
                user = self._require(login)
                try:
                    updated = replace(user, **changes)  # type: ignore[arg-type]
                except TypeError:
                    known = [f for f in User.__dataclass_fields__ if f not in ("address", "login")]
                    bad = [k for k in changes if k not in User.__dataclass_fields__]
                    raise ConfigError(
                        f"user field={bad[0] if bad else changes!r}: expected one of "
                        + ", ".join(repr(k) for k in known)
                    ) from None
                self._users[login.lower()] = updated
            self._notify(AccountChange(added=(updated,)))
            return updated

    def set_password(self, login: str, password: str) -> User:
        """Change a password at run time (the `auth-password-changed` situation)."""
        with self._change_lock:
            with self._lock:
                user = self._require(login)
                updated = replace(user, password=password)
                self._users[login.lower()] = updated
            self._notify(AccountChange(added=(updated,)))
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
        self,
        login: str,
        secret: str,
        mechanism: Mechanism = Mechanism.PASSWORD,
        *,
        protocol: str = "imap",
        source: str | None = None,
    ) -> AuthResult:
        """Decide a login the way a provider does, in the order a provider checks.

        Server-wide refusals first (backend down, rate limit, lockout), then the
        secret, then the account's state. Only a wrong secret counts towards a
        lockout, and a success clears the count.
        """
        key = login.lower()
        now = self.clock()
        with self._lock:
            if self._backend_down:
                return AuthResult(AuthOutcome.BACKEND_DOWN)
            if self.login_rate is not None and not self._login_buckets.take(
                (key, source or ""), self.login_rate, now
            ):
                return AuthResult(AuthOutcome.RATE_LIMITED)
            if self._locked_out(key, now):
                return AuthResult(AuthOutcome.LOCKED_OUT, self._users.get(key))
            user = self._users.get(key)
            verdict = self._verify(user, secret, mechanism, protocol, source)
            if verdict is AuthOutcome.BAD_CREDENTIALS:
                self._failures.setdefault(key, []).append(now)
            elif verdict is AuthOutcome.OK:
                self._failures.pop(key, None)
        return AuthResult(verdict, user)

    @staticmethod
    def _verify(
        user: User | None, secret: str, mechanism: Mechanism, protocol: str, source: str | None
    ) -> AuthOutcome:
        if user is None or not user.allows(source):
            return AuthOutcome.BAD_CREDENTIALS
        if mechanism is Mechanism.XOAUTH2:
            if user.oauth_token is None or secret != user.oauth_token:
                return AuthOutcome.BAD_CREDENTIALS
        elif secret == user.password:
            if user.require_app_password:
                return AuthOutcome.APP_PASSWORD_REQUIRED
        elif user.app_password is None or secret != user.app_password:
            return AuthOutcome.BAD_CREDENTIALS
        if user.disabled:
            return AuthOutcome.ACCOUNT_DISABLED
        if user.password_expired:
            return AuthOutcome.PASSWORD_EXPIRED
        if user.web_login_required:
            return AuthOutcome.WEB_LOGIN_REQUIRED
        if protocol == "imap" and not user.imap_enabled:
            return AuthOutcome.IMAP_DISABLED
        return AuthOutcome.OK

    def _locked_out(self, key: str, now: float) -> bool:
        policy = self.lockout
        if policy is None:
            return False
        recent = [t for t in self._failures.get(key, []) if now - t < policy.seconds]
        self._failures[key] = recent
        return len(recent) >= policy.max_failures

    def _require(self, login: str) -> User:
        user = self._users.get(login.lower())
        if user is None:
            known = ", ".join(sorted(u.login for u in self._users.values()))
            raise ConfigError(f"login={login!r}: no such user; known: {known}")
        return user
