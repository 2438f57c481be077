"""The folder hierarchy as a trie, and LIST patterns matched along it.

A client controls the names, so both costs stay linear in what it sent:

- Memory: each level of a name is one node holding its own component, so a
  mailbox ``a/b/.../z`` costs its length, never the sum of its prefixes
  (the 127 prefixes of a 4 KiB name would be 256 KiB as separate strings).
- Time: a pattern runs as a bit-parallel NFA (a few integer operations per
  character, never regex backtracking, which ``*a*a*a*a*b`` makes
  exponential) and it runs along the trie: a level is read once for all the
  names below it, a subtree is skipped as soon as no name in it can match,
  and one that all matches (``Work/*``) is listed without matching.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

__all__ = ["Glob", "Tree"]

_STAR, _PERCENT = -1, -2


class Glob:
    """One LIST pattern (``*`` any run, ``%`` any run within a level) as an NFA.

    A state is an int whose bit i means "the first i tokens are matched".

    >>> g = Glob("Work/%", "/")
    >>> [n for n in ("Work", "Work/A", "Work/A/B", "Worx") if g.matches(n)]
    ['Work/A']
    """

    __slots__ = (
        "_accept",
        "_delimiter",
        "_every",
        "_literal",
        "_percent",
        "_star",
        "_wild",
        "start",
    )

    def __init__(self, pattern: str, delimiter: str) -> None:
        tokens: list[int] = []
        for ch in pattern:
            if ch in "*%":
                kind = _STAR if ch == "*" else _PERCENT
                if tokens and tokens[-1] < 0:  # collapse runs: "%*" is "*", "%%" is "%"
                    tokens[-1] = _STAR if _STAR in (kind, tokens[-1]) else _PERCENT
                    continue
                tokens.append(kind)
            else:
                tokens.append(ord(ch))
        literal: dict[str, int] = {}
        star = percent = 0
        for i, token in enumerate(tokens):
            if token == _STAR:
                star |= 1 << i
            elif token == _PERCENT:
                percent |= 1 << i
            else:
                literal[chr(token)] = literal.get(chr(token), 0) | 1 << i
        self._delimiter = delimiter
        self._literal = literal
        self._star = star
        self._percent = percent
        self._wild = star | percent
        self._accept = 1 << len(tokens)
        # A final "*" reached: every longer name matches too.
        self._every = 1 << (len(tokens) - 1) if tokens and tokens[-1] == _STAR else 0
        self.start = 1 | ((1 & self._wild) << 1)

    def advance(self, state: int, text: str) -> int:
        """The state after `text`; 0 once nothing can match any more."""
        literal, star, percent, wild = self._literal, self._star, self._percent, self._wild
        delimiter = self._delimiter
        for ch in text:
            state = (
                ((state & literal.get(ch, 0)) << 1)
                | (state & star)
                | (0 if ch == delimiter else state & percent)
            )
            if not state:
                return 0
            state |= (state & wild) << 1
        return state

    def accepts(self, state: int) -> bool:
        return bool(state & self._accept)

    def every(self, state: int) -> bool:
        """Does every name that extends this state's name match?"""
        return bool(state & self._every)

    def matches(self, name: str) -> bool:
        return self.accepts(self.advance(self.start, name))

    def matching_levels(self, name: str) -> list[int]:
        """Lengths of the prefixes of `name` that end a level and match, in one pass.

        >>> Glob("a*", "/").matching_levels("a/b/c")
        [1, 3, 5]
        """
        out: list[int] = []
        state = self.start
        end = -1
        for part in name.split(self._delimiter):
            if end >= 0:
                state = self.advance(state, self._delimiter)
            end += len(part) + 1
            state = self.advance(state, part)
            if not state:
                break
            if self.accepts(state):
                out.append(end)
        return out


class _Node:
    __slots__ = ("below", "children", "hollow", "mailbox")

    def __init__(self) -> None:
        self.children: dict[str, _Node] = {}
        self.below = 0  # mailboxes in the subtree, this node excluded
        self.mailbox = False
        self.hollow = False


class Tree:
    """Every mailbox name and, implicitly, their parents; see the module's docstring.

    `first` is the top-level name listed before all others (INBOX).
    """

    def __init__(self, delimiter: str, first: str) -> None:
        self._delimiter = delimiter
        self._first = first
        self._root = _Node()

    def add(self, name: str) -> None:
        node = self._root
        for part in name.split(self._delimiter):
            node.below += 1  # the root and every parent: one more mailbox below
            child = node.children.get(part)
            if child is None:
                child = node.children[part] = _Node()
            node = child
        node.mailbox = True
        node.hollow = False

    def remove(self, name: str) -> None:
        """Forget a mailbox. If it has children, it stays as a hollow name (see `hollow`)."""
        path = [self._root]
        parts = name.split(self._delimiter)
        for part in parts:
            path.append(path[-1].children[part])
        leaf = path[-1]
        leaf.mailbox = False
        leaf.hollow = leaf.below > 0
        for node in path[:-1]:
            node.below -= 1
            if not node.below:
                node.hollow = False
        for depth in range(len(parts), 0, -1):  # prune what no longer leads to a mailbox
            node = path[depth]
            if node.mailbox or node.below:
                break
            del path[depth - 1].children[parts[depth - 1]]

    def has_children(self, name: str) -> bool:
        node = self._find(name)
        return node is not None and node.below > 0

    def hollow(self, name: str) -> bool:
        """Deleted while it had children, which are still there."""
        node = self._find(name)
        return node is not None and node.hollow

    def match(self, globs: Sequence[Glob], first_globs: Sequence[Glob] = ()) -> Iterator[str]:
        """Names matching any glob, parents first, `first` and its children before the rest.

        `first_globs` apply under `first` only (INBOX's case-insensitive spellings).
        Lazy, so a LIST streams: the caller takes names in batches, and a change
        of the tree between them is safe (a name deleted meanwhile may still come).
        """
        root = self._root.children
        for part in sorted(root, key=lambda p: (p != self._first, p)):
            node = root.get(part)
            if node is not None:
                these = [*globs, *first_globs] if part == self._first else list(globs)
                yield from self._walk(node, part, these)

    def _walk(self, top: _Node, top_part: str, globs: list[Glob]) -> Iterator[str]:
        delimiter = self._delimiter
        stack = [(top, "", top_part, [g.start for g in globs])]
        while stack:
            node, prefix, part, states = stack.pop()
            name = prefix + part
            states = [g.advance(s, part) if s else 0 for g, s in zip(globs, states, strict=True)]
            if not any(states):
                continue
            if any(g.accepts(s) for g, s in zip(globs, states, strict=True)):
                yield name
            if not node.children:
                continue
            if any(g.every(s) for g, s in zip(globs, states, strict=True)):
                yield from self._names_below(node, name)
                continue
            states = [
                g.advance(s, delimiter) if s else 0 for g, s in zip(globs, states, strict=True)
            ]
            if not any(states):
                continue
            prefix = name + delimiter
            for child in sorted(node.children, reverse=True):
                stack.append((node.children[child], prefix, child, states))

    def _names_below(self, top: _Node, top_name: str) -> Iterator[str]:
        """Every name under `top` (not its own), in preorder."""
        delimiter = self._delimiter
        stack = [(top, top_name + delimiter, part) for part in sorted(top.children, reverse=True)]
        while stack:
            parent, prefix, part = stack.pop()
            node = parent.children.get(part)
            if node is None:  # removed since
                continue
            name = prefix + part
            yield name
            if node.children:
                inner = name + delimiter
                stack.extend((node, inner, c) for c in sorted(node.children, reverse=True))

    def _find(self, name: str) -> _Node | None:
        node: _Node | None = self._root
        for part in name.split(self._delimiter):
            node = node.children.get(part) if node is not None else None
            if node is None:
                return None
        return node
