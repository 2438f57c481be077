"""IMAP connection states (RFC 3501 §3) and the one table of transitions.

Which commands a state accepts and where a successful command leads are
data, not scattered ``if`` tests, so a reader can check them in one place.
"""

from __future__ import annotations

import enum

__all__ = ["COMMAND_STATES", "TRANSITIONS", "State", "Transition", "next_state"]


class State(enum.Enum):
    # Members are singletons: identity hashing is right, and cheaper than Enum's
    # hash of the name (every command looks its state up in a frozenset).
    __hash__ = object.__hash__

    NOT_AUTHENTICATED = "not-authenticated"
    AUTHENTICATED = "authenticated"
    SELECTED = "selected"
    LOGOUT = "logout"


class Transition(enum.Enum):
    """What happened, as far as the state machine cares."""

    __hash__ = object.__hash__  # as State's

    LOGGED_IN = "logged-in"
    SELECTED = "selected"
    SELECT_FAILED = "select-failed"
    CLOSED = "closed"  # CLOSE, UNSELECT, mailbox gone
    LOGGED_OUT = "logged-out"


_S = State
_T = Transition

TRANSITIONS: dict[tuple[State, Transition], State] = {
    (_S.NOT_AUTHENTICATED, _T.LOGGED_IN): _S.AUTHENTICATED,
    (_S.AUTHENTICATED, _T.SELECTED): _S.SELECTED,
    (_S.AUTHENTICATED, _T.SELECT_FAILED): _S.AUTHENTICATED,
    (_S.SELECTED, _T.SELECTED): _S.SELECTED,
    # RFC 3501 §6.3.1: a failed SELECT leaves the session unselected.
    (_S.SELECTED, _T.SELECT_FAILED): _S.AUTHENTICATED,
    (_S.SELECTED, _T.CLOSED): _S.AUTHENTICATED,
    (_S.NOT_AUTHENTICATED, _T.LOGGED_OUT): _S.LOGOUT,
    (_S.AUTHENTICATED, _T.LOGGED_OUT): _S.LOGOUT,
    (_S.SELECTED, _T.LOGGED_OUT): _S.LOGOUT,
}


class IllegalTransition(RuntimeError):
    """Our own bug: the session asked for a transition the table does not allow."""


def next_state(state: State, transition: Transition) -> State:
    try:
        return TRANSITIONS[(state, transition)]
    except KeyError:
        raise IllegalTransition(
            f"transition {transition.value!r} is not allowed in state {state.value!r}"
        ) from None


_ANY = frozenset({_S.NOT_AUTHENTICATED, _S.AUTHENTICATED, _S.SELECTED})
_NOT_AUTH = frozenset({_S.NOT_AUTHENTICATED})
_AUTH = frozenset({_S.AUTHENTICATED, _S.SELECTED})
_SELECTED = frozenset({_S.SELECTED})

#: Command name -> states in which it is accepted.
COMMAND_STATES: dict[str, frozenset[State]] = {
    "CAPABILITY": _ANY,
    "NOOP": _ANY,
    "LOGOUT": _ANY,
    "ID": _ANY,
    "STARTTLS": _NOT_AUTH,
    "AUTHENTICATE": _NOT_AUTH,
    "LOGIN": _NOT_AUTH,
    "ENABLE": _AUTH,
    "SELECT": _AUTH,
    "EXAMINE": _AUTH,
    "CREATE": _AUTH,
    "DELETE": _AUTH,
    "RENAME": _AUTH,
    "SUBSCRIBE": _AUTH,
    "UNSUBSCRIBE": _AUTH,
    "LIST": _AUTH,
    "LSUB": _AUTH,
    "STATUS": _AUTH,
    "APPEND": _AUTH,
    "NAMESPACE": _AUTH,
    "IDLE": _AUTH,
    "GETQUOTA": _AUTH,
    "GETQUOTAROOT": _AUTH,
    "GETACL": _AUTH,
    "MYRIGHTS": _AUTH,
    "LISTRIGHTS": _AUTH,
    "CHECK": _SELECTED,
    "CLOSE": _SELECTED,
    "UNSELECT": _SELECTED,
    "EXPUNGE": _SELECTED,
    "SEARCH": _SELECTED,
    "SORT": _SELECTED,
    "THREAD": _SELECTED,
    "FETCH": _SELECTED,
    "STORE": _SELECTED,
    "COPY": _SELECTED,
    "MOVE": _SELECTED,
    "CANCELUPDATE": _SELECTED,
    "NOTIFY": _AUTH,
}
