"""IMAP command semantics for one connection, still without I/O.

:meth:`Session.handle` turns one parsed command into a generator of output
bytes and :class:`Effect` requests (wait, start TLS, read a bare line,
disconnect). The asyncio shell drains it while the transport accepts data,
so a FETCH of gigabytes respects flow control and a failed login waits on a
timer, never blocking the loop. Every handler returns its tagged completion;
the unsolicited updates of the selected mailbox go out just before it.

Login, TLS and IDLE handlers live here with the state they change; mailbox
commands are in ``mailbox_commands``, selected-state ones in
``message_commands``; :data:`COMMANDS` maps every name to its handler.
Those two modules (with FETCH, SEARCH, SORT, THREAD and NOTIFY beneath them) are
imported when a client first sends one of their commands, not before the greeting
(issue 13: they are a third of the core's import).
"""

from __future__ import annotations

from array import array
from collections.abc import Callable, Generator
from datetime import datetime
from typing import TYPE_CHECKING, Any

from mailharness.servers.accounts import Accounts, AuthOutcome, AuthResult, Mechanism
from mailharness.servers.errors import ConfigError
from mailharness.servers.imap import sasl
from mailharness.servers.imap.commands import (
    SYSTEM_FLAGS,
    CommandHandler,
    Delay,
    Disconnect,
    Effect,
    Fail,
    Handler,
    Output,
    ReadLine,
    StartTLS,
)
from mailharness.servers.imap.protocol import BadInput, Command, ContinuationRequest, Token
from mailharness.servers.imap.replies import AUTH_SLOT, Replies, Reply
from mailharness.servers.imap.responses import (
    Continuation,
    Status,
    Tagged,
    Untagged,
    UntaggedStatus,
)
from mailharness.servers.imap.settings import IMAPSettings
from mailharness.servers.imap.states import COMMAND_STATES, State, Transition, next_state
from mailharness.servers.imap.store import (
    Mailbox,
    MailStore,
    UserMailboxes,
)

if TYPE_CHECKING:
    from mailharness.servers.imap.fetch import FetchPlan
    from mailharness.servers.imap.notify import NotifyState
    from mailharness.servers.imap.view import Lost, SelectedView

# And `COMMANDS`, made at first use (see `commands()`).
__all__ = ["Session", "commands"]


_SYSTEM_LOWER = {f.lower(): f for f in SYSTEM_FLAGS}


class Session:
    """Command semantics of one connection (state, login, selected view)."""

    def __init__(
        self,
        *,
        accounts: Accounts,
        store: MailStore,
        settings: IMAPSettings,
        secure: bool,
        starttls_available: bool,
        record_error: Callable[[str], None] = lambda text: None,
        record_client_error: Callable[[str], None] = lambda text: None,
        peer: str | None = None,
        sessions_of: Callable[[str], int] = lambda login: 0,
    ) -> None:
        self.accounts = accounts
        self.store = store
        self._settings, self._replies = _checked(settings)
        self.secure = secure
        self.starttls_available = starttls_available and not secure
        self.record_error = record_error  # our faults
        self.record_client_error = record_client_error  # the client's mistakes
        self.peer = peer  # client IP, for per-user allow_nets
        #: Other logged-in sessions of a login from this peer (mail_max_userip_connections).
        self.sessions_of = sessions_of
        #: FETCH response bytes sent so far (Gmail's bandwidth limit).
        self.fetched_bytes = 0
        self.state = State.NOT_AUTHENTICATED
        self.login: str | None = None
        self.mailboxes: UserMailboxes | None = None
        self.view: SelectedView | None = None
        self.condstore = False
        #: RFC 7162 QRESYNC enabled (implies CONDSTORE): VANISHED instead of EXPUNGE.
        self.qresync = False
        self.idling = False
        self.in_auth = False
        self._unwatch: Callable[[], None] | None = None
        #: NOTIFY SET in force (RFC 5465), and how to stop hearing of the user's mailboxes.
        self.notify: NotifyState | None = None
        self._unwatch_user: Callable[[], None] | None = None
        self.on_mailbox_change: Callable[[], None] = lambda: None

    @property
    def settings(self) -> IMAPSettings:
        """The settings in force; never None (checked when set, see :meth:`use_settings`)."""
        return self._settings

    @property
    def replies(self) -> Replies:
        """The wording in force: always that of :attr:`settings`."""
        return self._replies

    def use_settings(self, settings: IMAPSettings) -> None:
        """Switch to settings replaced at run time (the shell calls this between commands).

        Settings and wording change together, in one assignment, after the new
        settings are checked: a bad value raises here and the old ones stay.
        """
        self._settings, self._replies = _checked(settings)

    # -- capabilities ----------------------------------------------------------

    def _plaintext_ok(self) -> bool:
        return self.secure or not self._settings.plaintext_auth_requires_tls

    def _auth_capabilities(self) -> list[str]:
        """STARTTLS, LOGINDISABLED and AUTH=: what TLS and the settings allow now."""
        caps = []
        if self.starttls_available:
            caps.append("STARTTLS")
        if not self._plaintext_ok() or self.settings.login_disabled:
            caps.append("LOGINDISABLED")
        for mech in self.settings.auth_mechanisms:
            if mech == "XOAUTH2" or self._plaintext_ok():
                caps.append("AUTH=" + mech)
        return caps

    def capabilities(self) -> str:
        """The capability list in force: what the settings, TLS, the state and the
        user's APPENDLIMIT make it (cached per settings: every greeting and login sends it)."""
        before_login = self.state is State.NOT_AUTHENTICATED
        limit = self.mailboxes.append_limit if self.mailboxes is not None else None
        key = (before_login, self.secure, self.starttls_available, limit)
        cache = _per_settings(self._settings)
        text = cache.get(key)
        if text is None:
            text = cache[key] = self._list_capabilities(before_login)
        return text

    def _list_capabilities(self, before_login: bool) -> str:
        listed = (
            self.replies.capabilities_before_login
            if before_login
            else self.replies.capabilities_after_login
        )
        if listed is not None:  # a provider's own list (servers.imap.replies)
            caps = []
            for cap in listed:
                caps.extend(self._auth_capabilities() if cap == AUTH_SLOT else [cap])
            return " ".join(caps if before_login else self._scenario_capabilities(caps))
        caps = ["IMAP4rev1", "SASL-IR", "LOGIN-REFERRALS", "ID", "ENABLE", "IDLE"]
        if before_login:
            caps.append("LITERAL+")
            return " ".join(caps + self._auth_capabilities())
        # In Dovecot 2.3's order.
        caps += [
            "SORT",
            "SORT=DISPLAY",
            "THREAD=REFERENCES",
            "THREAD=REFS",
            "THREAD=ORDEREDSUBJECT",
            "MULTIAPPEND",
            "URL-PARTIAL",
            "CATENATE",
            "UNSELECT",
            "CHILDREN",
            "NAMESPACE",
            "UIDPLUS",
            "LIST-EXTENDED",
            "I18NLEVEL=1",
            "CONDSTORE",
            "QRESYNC",
            "ESEARCH",
            "ESORT",
            "SEARCHRES",
            "WITHIN",
            "CONTEXT=SEARCH",
            "LIST-STATUS",
            "BINARY",
            "MOVE",
            "SNIPPET=FUZZY",
            "PREVIEW=FUZZY",
            "PREVIEW",
            "STATUS=SIZE",
            "SAVEDATE",
            "LITERAL+",
            "NOTIFY",
            "SPECIAL-USE",
            "QUOTA",
        ]
        return " ".join(self._scenario_capabilities(caps))

    def _scenario_capabilities(self, caps: list[str]) -> list[str]:
        """What the scenario adds after login: ACL, APPENDLIMIT."""
        if self.settings.acl:
            caps.append("ACL")
        limit = self.mailboxes.append_limit if self.mailboxes is not None else None
        if limit is not None:
            caps.append(f"APPENDLIMIT={limit}")
        return caps

    def _capability_code(self) -> str | None:
        """The [CAPABILITY ...] code, for a provider that sends one unasked."""
        return "CAPABILITY " + self.capabilities() if self._replies.capability_codes else None

    def greeting(self) -> bytes:
        key = _greeting_key(self.secure, self.starttls_available, self.peer)
        cache = _per_settings(self._settings)
        greeting = cache.get(key)
        if greeting is None:
            peer = key[3]
            text = (self.settings.greeting or self.replies.greeting).replace("{ip}", peer)
            greeting = UntaggedStatus(Status.OK, text, self._capability_code()).to_bytes()
            cache[key] = greeting
        return greeting

    # -- entry points ------------------------------------------------------------

    def bad_input(self, bad: BadInput) -> bytes:
        """The reply to a protocol error of the peer."""
        if bad.fatal:
            return UntaggedStatus(Status.BYE, self.replies.bye_literal_too_large).to_bytes()
        text = self.replies.bad(bad.command, bad.reason) if bad.tag else bad.reason
        if bad.tag is None:
            return UntaggedStatus(Status.BAD, self.replies.bad_untagged).to_bytes()
        return Tagged(bad.tag, Status.BAD, text).to_bytes()

    def refuse_literal(self, request: ContinuationRequest) -> bytes | None:
        """A tagged NO instead of ``+`` for an APPEND over APPENDLIMIT, as Dovecot does.

        The client is spared uploading a message we would refuse anyway.
        """
        limit = self.mailboxes.append_limit if self.mailboxes is not None else None
        if request.command != "APPEND" or limit is None or request.size <= limit:
            return None
        reply = self.replies.too_big
        return Tagged(request.tag, Status.NO, reply.text, reply.code).to_bytes()

    def handle(self, cmd: Command) -> Output:
        """Run one command; yields output bytes and effects, ends after the tagged reply."""
        after: list[Effect] = []
        handler = self._handler_for(cmd)
        if isinstance(handler, Tagged):
            reply = handler
        else:
            if self.notify is not None:
                yield self.notify_updates()
            try:
                reply = yield from handler(self, cmd, after)
            except Exception as exc:
                reply = self._raised_reply(cmd, exc)
        self._record_bad(cmd, reply)
        if self.view is not None and self.state is State.SELECTED:
            lost = self.view.lost()
            if lost is not None:
                yield self._bye_lost(lost)
                yield Disconnect()
                return
            updates = b""
            if cmd.name in _SYNCING:
                updates = self._sync(expunge=cmd.name not in _NO_EXPUNGE or cmd.uid)
            if updates:
                yield updates
            highest = self.view.highest_modseq_news() if self.qresync else None
            if highest is not None:
                if reply.status is Status.OK and reply.code is None:
                    reply = Tagged(reply.tag, reply.status, reply.text, f"HIGHESTMODSEQ {highest}")
                else:
                    yield UntaggedStatus(
                        Status.OK, self.replies.highest_modseq, f"HIGHESTMODSEQ {highest}"
                    ).to_bytes()
        if self.notify is not None and self.mailboxes is not None:
            self.notify.refresh(self.mailboxes)  # our own changes are not news to us
        yield reply.to_bytes()
        yield from after

    def _handler_for(self, cmd: Command) -> CommandHandler | Tagged:
        """The command's handler, or the BAD for a command unknown or not allowed now."""
        allowed = COMMAND_STATES.get(cmd.name)
        handler = _handler(cmd.name)
        if (
            allowed is None
            or handler is None
            or (cmd.uid and cmd.name not in _UID_COMMANDS)
            or (cmd.name in _ACL_COMMANDS and not self._settings.acl)
        ):
            return Tagged(
                cmd.tag, Status.BAD, self._replies.bad(cmd.name, self._replies.unknown_command)
            )
        if self.state not in allowed:
            return Tagged(cmd.tag, Status.BAD, self._wrong_state_text(cmd.name))
        return handler

    def _raised_reply(self, cmd: Command, exc: Exception) -> Tagged:
        """A handler's early exit (`Fail`) as its tagged reply; any other exception is
        our bug: answered, recorded, and the server keeps serving."""
        if isinstance(exc, Fail):
            return Tagged(cmd.tag, exc.status, exc.text, exc.code)
        self.record_error(f"server error in {cmd.transcript!r}: {exc!r}")
        bug = self.replies.server_bug
        return Tagged(cmd.tag, Status.NO, bug.text, bug.code)

    def _record_bad(self, cmd: Command, reply: Tagged) -> None:
        if reply.status is Status.BAD:
            shown = cmd.name if cmd.name in _SECRET_COMMANDS else cmd.transcript
            self.record_client_error(f"client error: {shown!r} -> {reply.to_bytes()!r}")

    def answers_at_once(self, cmd: Command) -> bool:
        """Can `answer_at_once` run `cmd`: LOGIN or LOGOUT, where nothing makes it wait
        (no failure delay, no TLS alert first) and `handle` would add nothing around
        it (no NOTIFY news, no selected mailbox to sync)."""
        if self.notify is not None or self.view is not None:
            return False
        if cmd.name == "LOGOUT":
            return True
        return cmd.name == "LOGIN" and self._settings.failure_delay <= 0 and self._plaintext_ok()

    def answer_at_once(self, cmd: Command) -> tuple[list[bytes], bool]:
        """What `handle` would send for a command `answers_at_once`, and whether the
        connection closes after it, without the engine's generators around the handler.

        Most connections of a load test only log in and out (issue 13). The handler
        is the same; on these terms it yields only bytes and adds only a Disconnect
        (tests/imap/test_at_once.py holds both paths to the same output, state and
        transcript).
        """
        after: list[Effect] = []
        out: list[bytes] = []
        handler = self._handler_for(cmd)
        if isinstance(handler, Tagged):
            reply = handler
        else:
            run = handler(self, cmd, after)
            try:
                while True:
                    item = run.send(None)
                    if not isinstance(item, bytes):  # pragma: no cover - answers_at_once
                        raise RuntimeError(f"{cmd.name} waits on {item!r}: not at once")
                    out.append(item)
            except StopIteration as done:
                reply = done.value
            except Exception as exc:
                reply = self._raised_reply(cmd, exc)
        self._record_bad(cmd, reply)
        out.append(reply.to_bytes())
        return out, bool(after)  # on these terms only ever a Disconnect

    def _sync(self, *, expunge: bool) -> bytes:
        """The selected mailbox's news, as far as NOTIFY (if set) asks for them."""
        assert self.view is not None
        events = self.notify.spec.selected_events if self.notify is not None else None
        plan = self.notify.new_mail_fetch if self.notify is not None else None
        return b"".join(
            self.view.sync(
                expunge=expunge,
                condstore=self.condstore,
                qresync=self.qresync,
                counts=events is None or "MessageNew" in events,
                flag_changes=events is None or "FlagChange" in events,
                new_mail=None if plan is None else self._fetch_new_mail(plan),
            )
        )

    def _fetch_new_mail(self, plan: FetchPlan) -> Callable[[array[int]], list[bytes]]:
        """NOTIFY's ``MessageNew (fetch-att)``: a FETCH of each new message, as Dovecot."""
        view = self.selected()
        plan = plan.bind_flags(view.render_flags)

        def fetch(uids: array[int]) -> list[bytes]:
            lines = []
            for msg in view.mailbox.get_many(uids):
                seq = view.seq(msg.uid)
                if seq is not None:
                    body = b" ".join([render(msg) for render in plan.renders])
                    lines.append(b"* %d FETCH (%s)\r\n" % (seq, body))
            return lines

        return fetch

    def idle_sync(self) -> bytes:
        return self._sync(expunge=True)

    def notify_updates(self) -> bytes:
        """NOTIFY's news of the user's other mailboxes (any time the client is not mid-command)."""
        if self.notify is None or self.mailboxes is None:
            return b""
        selected = self.view.mailbox if self.view is not None else None
        return b"".join(self.notify.updates(self.mailboxes, selected, self.condstore))

    def idle_updates(self) -> bytes:
        """Pending changes while IDLE (called when the store reports a change)."""
        if not self.idling:
            return b""
        news = self.notify_updates()
        if self.view is None:
            return news
        lost = self.view.lost()
        if lost is not None:
            return news + self._bye_lost(lost)
        return news + self.idle_sync()

    def shutdown(self) -> None:
        """The connection is gone: stop watching the mailbox."""
        self.unselect()
        self._stop_notify()

    def _stop_notify(self) -> None:
        if self._unwatch_user is not None:
            self._unwatch_user()
            self._unwatch_user = None
        self.notify = None

    # -- helpers -----------------------------------------------------------------

    def _wrong_state_text(self, name: str) -> str:
        if self.state is State.NOT_AUTHENTICATED:
            return self.replies.bad(name, self.replies.not_logged_in)
        if COMMAND_STATES[name] == frozenset({State.NOT_AUTHENTICATED}):
            return self.replies.bad(name, self.replies.already_logged_in)
        return self.replies.no_mailbox_selected

    def _bye_lost(self, lost: Lost) -> bytes:
        from mailharness.servers.imap.view import Lost  # loaded with the view that lost it

        text = (
            self.replies.bye_mailbox_deleted
            if lost is Lost.DELETED
            else self.replies.bye_uidvalidity
        )
        self.unselect()
        self.state = State.LOGOUT
        return UntaggedStatus(Status.BYE, text).to_bytes()

    def transition(self, transition: Transition) -> None:
        self.state = next_state(self.state, transition)

    def ok(self, cmd: Command, text: str, code: str | None = None) -> Tagged:
        return Tagged(cmd.tag, Status.OK, text, code)

    def bad(self, cmd: Command, reason: str) -> Fail:
        return Fail(Status.BAD, self.replies.bad(_display(cmd), reason))

    def no(self, reply: Reply, **fmt: str) -> Fail:
        return Fail(Status.NO, reply.text.format(**fmt) if fmt else reply.text, reply.code)

    def args(self, cmd: Command, count: int) -> tuple[Token, ...]:
        if len(cmd.args) < count:
            raise self.bad(cmd, self.replies.missing_arguments)
        return cmd.args

    def astring(self, cmd: Command, token: Token) -> str:
        if isinstance(token, bytes):
            return token.decode("utf-8", "replace")
        if isinstance(token, str):
            return token
        raise self.bad(cmd, self.replies.invalid_arguments)

    def user(self) -> UserMailboxes:
        assert self.mailboxes is not None, "only called after login"
        return self.mailboxes

    def selected(self) -> SelectedView:
        assert self.view is not None, "only called in the selected state"
        return self.view

    def mailbox_name(self, cmd: Command, token: Token) -> str:
        """The UTF-8 name a client's modified UTF-7 names, checked as Dovecot does."""
        from mailharness.servers.imap import mailbox_commands

        return mailbox_commands.wire_name(self, cmd, token)

    def mailbox(self, name: str) -> Mailbox | None:
        return self.user().get(name)

    def nonexistent(self, name: str, trycreate: bool = False) -> Fail:
        reply = self.replies.nonexistent
        code = "TRYCREATE" if trycreate else reply.code
        return Fail(Status.NO, reply.text.format(mailbox=name), code)

    def unselect(self) -> None:
        if self._unwatch is not None:
            self._unwatch()
            self._unwatch = None
        self.view = None

    # -- any state -----------------------------------------------------------------

    def cmd_CAPABILITY(self, cmd: Command, after: list[Effect]) -> Handler:
        yield Untagged(b"CAPABILITY " + self.capabilities().encode()).to_bytes()
        return self.ok(cmd, self.replies.capability)

    def cmd_NOOP(self, cmd: Command, after: list[Effect]) -> Handler:
        return self.ok(cmd, self.replies.noop)
        yield b""  # pragma: no cover - unreachable; makes this a generator

    def cmd_LOGOUT(self, cmd: Command, after: list[Effect]) -> Handler:
        cache = _per_settings(self._settings)  # the same BYE every time
        bye = cache.get("bye_logout")
        if bye is None:
            bye = UntaggedStatus(Status.BYE, self._replies.bye_logout).to_bytes()
            cache["bye_logout"] = bye
        yield bye
        self.unselect()
        self.transition(Transition.LOGGED_OUT)
        after.append(Disconnect())
        return self.ok(cmd, self._replies.logout_ok)

    def cmd_ID(self, cmd: Command, after: list[Effect]) -> Handler:
        from mailharness.servers.imap import message as mime  # the MIME parser: not at start

        name = mime.quote(self.replies.server_id_name)
        yield Untagged(b'ID ("name" ' + name + b")").to_bytes()
        return self.ok(cmd, self.replies.id_ok)

    # -- not authenticated --------------------------------------------------------------

    def cmd_STARTTLS(self, cmd: Command, after: list[Effect]) -> Handler:
        if self.secure:
            raise Fail(Status.BAD, self.replies.starttls_active)
        if not self.starttls_available:
            raise Fail(Status.BAD, self.replies.starttls_unavailable)
        self.secure = True
        self.starttls_available = False
        after.append(StartTLS())
        return self.ok(cmd, self.replies.starttls_ok)
        yield b""  # pragma: no cover - unreachable; makes this a generator

    def cmd_LOGIN(self, cmd: Command, after: list[Effect]) -> Handler:
        args = self.args(cmd, 2)
        if not self._plaintext_ok():
            yield UntaggedStatus(Status.BAD, self._replies.plaintext_alert, "ALERT").to_bytes()
            raise self.no(self._replies.privacy_required)
        if self._settings.login_disabled:
            return self._auth_reply(cmd, self._replies.login_disabled)
        login = self.astring(cmd, args[0])
        secret = self.astring(cmd, args[1])
        result = self._authenticate(login, secret, Mechanism.PASSWORD)
        return (yield from self._finish_auth(cmd, result, self._replies.auth_failed, after))

    def _finish_auth(
        self, cmd: Command, result: AuthResult, failed: Reply, after: list[Effect]
    ) -> Handler:
        if result.ok and result.user is not None:
            return self._logged_in(cmd, result.user.login, after)
        if self._settings.failure_delay > 0:
            yield Delay(self._settings.failure_delay)
        if result.outcome is not AuthOutcome.BAD_CREDENTIALS:
            failed = self._replies.auth_outcome(result.outcome.value)
        return self._auth_reply(cmd, failed)

    def _logged_in(self, cmd: Command, login: str, after: list[Effect]) -> Tagged:
        """The right credentials: refusals that come after them, else the session starts."""
        if self._settings.backend_maintenance:
            return self._auth_reply(cmd, self._replies.backend_maintenance)
        limit = self._settings.max_userip_connections
        if limit is not None and self.sessions_of(login) >= limit:
            after.append(Disconnect())  # Dovecot's imap process says why, then exits
            return self._auth_reply(cmd, self._replies.too_many_connections, limit=str(limit))
        self.login = login
        self.mailboxes = self.store.user(login)
        self.transition(Transition.LOGGED_IN)
        text = self._replies.logged_in.replace("{command}", cmd.name.upper())
        return self.ok(cmd, text, self._capability_code())

    def _auth_reply(self, cmd: Command, reply: Reply, limit: str = "") -> Tagged:
        """A refused login, its text filled in (``[host:time]``, ``{command} failed.``)."""
        text = reply.text.format(
            host=self.settings.hostname,
            time=datetime.now().strftime("%Y-%m-%d %H:%M:%S"),
            command=cmd.name,
            limit=limit,
        )
        return Tagged(cmd.tag, Status.NO, text, reply.code)

    def cmd_AUTHENTICATE(self, cmd: Command, after: list[Effect]) -> Handler:
        args = self.args(cmd, 1)
        mech = self.astring(cmd, args[0]).upper()
        if mech not in self.settings.auth_mechanisms:
            raise Fail(Status.NO, self.replies.auth_unsupported)
        if mech != "XOAUTH2" and not self._plaintext_ok():
            raise self.no(self.replies.privacy_required)
        initial: bytes | None = None
        if len(args) > 1:
            token = args[1]
            initial = token if isinstance(token, bytes) else self.astring(cmd, token).encode()
        self.in_auth = True
        try:
            if mech == "PLAIN":
                data = yield from self._sasl_step(cmd, initial, "")
                creds = sasl.parse_plain(data)
                result = self._check(creds, Mechanism.PASSWORD)
                return (yield from self._finish_auth(cmd, result, self.replies.auth_failed, after))
            if mech == "LOGIN":
                user = yield from self._sasl_step(cmd, initial, sasl.LOGIN_USERNAME_PROMPT)
                secret = yield from self._sasl_step(cmd, None, sasl.LOGIN_PASSWORD_PROMPT)
                creds = sasl.Credentials(
                    user.decode("utf-8", "replace"), secret.decode("utf-8", "replace")
                )
                result = self._check(creds, Mechanism.PASSWORD)
                return (yield from self._finish_auth(cmd, result, self.replies.auth_failed, after))
            data = yield from self._sasl_step(cmd, initial, "")
            creds = sasl.parse_xoauth2(data)
            result = self._check(creds, Mechanism.XOAUTH2)
            challenge = self.replies.xoauth2_challenge
            if result.outcome is AuthOutcome.BAD_CREDENTIALS and challenge is not None:
                # Google's dance: an error JSON as a challenge, the client answers empty.
                yield Continuation(challenge).to_bytes()
                yield ReadLine()
            return (yield from self._finish_auth(cmd, result, self.replies.xoauth2_failed, after))
        finally:
            self.in_auth = False

    def _check(self, creds: sasl.Credentials | None, mechanism: Mechanism) -> AuthResult:
        if creds is None:
            return AuthResult(AuthOutcome.BAD_CREDENTIALS)
        return self._authenticate(creds.login, creds.secret, mechanism)

    def _authenticate(self, login: str, secret: str, mechanism: Mechanism) -> AuthResult:
        return self.accounts.authenticate(
            login, secret, mechanism, protocol="imap", source=self.peer
        )

    def _sasl_step(
        self, cmd: Command, initial: bytes | None, prompt: str
    ) -> Generator[bytes | Effect, bytes | None, bytes]:
        if initial is None:
            yield Continuation(prompt).to_bytes()
            line = yield ReadLine()
            if line is None:
                raise Fail(Status.BAD, self.replies.auth_aborted)
            initial = line
        if initial.strip() == b"*":
            raise Fail(Status.BAD, self.replies.auth_aborted)
        try:
            return sasl.decode_response(initial)
        except sasl.Base64Error:
            raise Fail(Status.BAD, self.replies.auth_bad_base64) from None

    # -- authenticated ---------------------------------------------------------------------

    def cmd_ENABLE(self, cmd: Command, after: list[Effect]) -> Handler:
        """As Dovecot: every known extension named is listed, enabled before or not;
        no ``* ENABLED`` line when none is; CONDSTORE in the selected state says
        HIGHESTMODSEQ first."""
        self.args(cmd, 1)
        enabled = []
        for token in cmd.args:
            name = self.astring(cmd, token).upper()
            if name in ("CONDSTORE", "QRESYNC"):
                yield self.enable_condstore()  # RFC 7162 §3.2.3: QRESYNC implies CONDSTORE
                self.qresync = self.qresync or name == "QRESYNC"
                enabled.append(name)
        if enabled:
            yield Untagged(b" ".join([b"ENABLED", *(e.encode() for e in enabled)])).to_bytes()
        return self.ok(cmd, self.replies.enable_ok)

    def enable_condstore(self) -> bytes:
        """CONDSTORE switched on by a command that uses it (RFC 7162 §3.1).

        In the selected state Dovecot then tells the client the HIGHESTMODSEQ
        at once, so it has a starting point.
        """
        if self.condstore:
            return b""
        self.condstore = True
        if self.view is None:
            return b""
        self.view.mailbox.modseqs_tracked = True
        return UntaggedStatus(
            Status.OK,
            self.replies.highest_modseq,
            f"HIGHESTMODSEQ {self.view.modseq}",  # what this session has seen, as Dovecot
        ).to_bytes()

    def cmd_NOTIFY(self, cmd: Command, after: list[Effect]) -> Handler:
        """RFC 5465, as Dovecot 2.3: STATUS/LIST news of the user's other mailboxes."""
        from mailharness.servers.imap.fetch import FetchError, compile_fetch
        from mailharness.servers.imap.notify import NotifyError, NotifyState, parse_notify

        try:
            spec = parse_notify(cmd.args, self.replies)
        except NotifyError as exc:
            if exc.code is not None:
                raise Fail(Status.NO, str(exc), exc.code) from None
            raise self.bad(cmd, str(exc)) from None
        self._stop_notify()
        if spec is not None and any("FlagChange" in g.events for g in spec.groups):
            yield self.enable_condstore()  # as Dovecot: FlagChange reports HIGHESTMODSEQ
        if spec is not None:
            user = self.user()
            state = NotifyState(spec)
            if spec.new_mail_fetch is not None:
                try:
                    state.new_mail_fetch = compile_fetch(spec.new_mail_fetch, self.replies)
                except FetchError as exc:
                    raise self.bad(cmd, str(exc)) from None
            if spec.status:
                selected = self.view.mailbox if self.view is not None else None
                yield b"".join(state.initial_status(user, selected))
            state.refresh(user)
            self.notify = state
            self._unwatch_user = user.watch(self._changed)
        return self.ok(cmd, self.replies.notify_ok)

    def watch(self, box: Mailbox) -> None:
        """Hear about changes of the selected mailbox (for IDLE)."""
        self._unwatch = box.watch(self._changed)

    def _changed(self) -> None:
        self.on_mailbox_change()

    def parse_flags(self, cmd: Command, token: Token) -> list[str]:
        items = token if isinstance(token, list) else [token]
        flags = []
        for item in items:
            if not isinstance(item, str):
                raise self.bad(cmd, self.replies.invalid_arguments)
            if item.startswith("\\"):
                system = _SYSTEM_LOWER.get(item.lower())
                if system is None:
                    if item.lower() == "\\recent":
                        continue
                    raise self.bad(cmd, self.replies.invalid_flags.format(flag=item))
                flags.append(system)
            else:
                flags.append(item)
        return flags

    def cmd_IDLE(self, cmd: Command, after: list[Effect]) -> Handler:
        if self.view is not None:
            yield self.idle_sync()
        yield self.notify_updates()
        yield Continuation(self.replies.idle_continuation).to_bytes()
        self.idling = True
        try:
            line = yield ReadLine()
        finally:
            self.idling = False
        if line is None or line.strip().upper() != b"DONE":
            raise Fail(Status.BAD, self.replies.bad("IDLE", self.replies.idle_expected_done))
        return self.ok(cmd, self.replies.idle_ok)


_ACL_COMMANDS = frozenset({"GETACL", "MYRIGHTS", "LISTRIGHTS"})
_SECRET_COMMANDS = frozenset({"LOGIN", "AUTHENTICATE"})
_UID_COMMANDS = frozenset({"FETCH", "STORE", "COPY", "MOVE", "SEARCH", "EXPUNGE", "SORT", "THREAD"})
#: Commands after which the selected mailbox's news is sent: Dovecot's that call
#: cmd_sync(). CAPABILITY, ID, ENABLE, LIST, STATUS, CREATE... send none, as there.
_SYNCING = frozenset(
    {
        "APPEND",
        "CHECK",
        "COPY",
        "MOVE",
        "EXPUNGE",
        "FETCH",
        "NOOP",
        "NOTIFY",
        "STORE",
        "SEARCH",
        "SORT",
        "THREAD",
        "IDLE",
    }
)
#: RFC 3501 §7.4.1: no EXPUNGE responses while answering these (unless UID form).
_NO_EXPUNGE = frozenset({"FETCH", "STORE", "SEARCH", "SORT", "THREAD"})


# What a session derives from its settings alone (capability lists, greetings), per
# settings object: the entry holds the settings, so its id is not reused meanwhile.
_DERIVED: dict[int, tuple[IMAPSettings, dict[object, Any]]] = {}
_DERIVED_MAX = 64  # settings objects (and texts per settings) kept; then start afresh


def _per_settings(settings: IMAPSettings) -> dict[object, Any]:
    entry = _DERIVED.get(id(settings))
    if entry is None or entry[0] is not settings:
        if len(_DERIVED) >= _DERIVED_MAX:
            _DERIVED.clear()
        entry = _DERIVED[id(settings)] = (settings, {})
    elif len(entry[1]) >= _DERIVED_MAX:  # many peers named in a greeting
        entry[1].clear()
    return entry[1]


def cached_greeting(
    settings: IMAPSettings, *, secure: bool, starttls_available: bool, peer: str
) -> bytes | None:
    """The greeting a new session on these terms sends, if one did before: the shell
    sends it before it makes the session (a client waits on the greeting)."""
    key = _greeting_key(secure, starttls_available, peer)
    greeting: bytes | None = _per_settings(settings).get(key)
    return greeting


def _greeting_key(
    secure: bool, starttls_available: bool, peer: str | None
) -> tuple[str, bool, bool, str]:
    """What a greeting depends on beyond the settings, as `Session` sees it (a secure
    session offers no STARTTLS; an unknown peer greets as loopback)."""
    return ("greeting", secure, starttls_available and not secure, peer or "127.0.0.1")


def _checked(settings: object) -> tuple[IMAPSettings, Replies]:
    """Settings and their wording, or ConfigError: a session never holds None."""
    if not isinstance(settings, IMAPSettings):
        raise ConfigError(f"settings={settings!r}: expected IMAPSettings")
    replies = settings.texts
    if not isinstance(replies, Replies):
        raise ConfigError(f"settings.texts={replies!r}: expected Replies")
    return settings, replies


def _display(cmd: Command) -> str:
    return f"UID {cmd.name}" if cmd.uid else cmd.name


#: The session's own handlers (login, TLS, IDLE...): all a client needs before LOGIN.
_OWN_COMMANDS: dict[str, CommandHandler] = {
    name[4:]: func for name, func in vars(Session).items() if name.startswith("cmd_")
}
_COMMANDS: dict[str, CommandHandler] | None = None


def commands() -> dict[str, CommandHandler]:
    """Every command handler by name: the session's own, then mailbox and message ones.

    The first call imports the mailbox and message command modules; the same dict is
    returned ever after (it is `COMMANDS`).
    """
    global _COMMANDS
    if _COMMANDS is None:
        from mailharness.servers.imap import mailbox_commands, message_commands

        _COMMANDS = {**_OWN_COMMANDS, **mailbox_commands.COMMANDS, **message_commands.COMMANDS}
    return _COMMANDS


def _handler(name: str) -> CommandHandler | None:
    if _COMMANDS is None and name in _OWN_COMMANDS:
        return _OWN_COMMANDS[name]
    return commands().get(name)


def __getattr__(name: str) -> Any:
    """`COMMANDS`: every handler by name (the table `Session.handle` looks commands up in)."""
    if name == "COMMANDS":
        return commands()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
