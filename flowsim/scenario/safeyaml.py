"""Bounded reading of the files a user names: scenarios, sweep and calibration configs, snapshots.

Why this exists: a scenario path comes from a planner's command line, but ``extends:`` and
``snapshot_file:`` come from *file contents*, which may be someone else's or a typo away from
``/dev/zero``.  PyYAML on its own reads whatever it is given: a 1 KB "billion laughs" alias bomb
expands to gigabytes in anything that walks the tree, a thousand nested brackets overflow the
Python stack, a character device never ends, and a repeated key silently drops the first block.
Every limit here fails with one clear line naming the file (and line), never with a traceback,
and never by echoing what the file holds.

The limits are far above any real scenario (the Rotherham baseline is 15 KB, ~1,500 YAML nodes,
nested 7 deep) and far below what hurts a laptop.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import yaml

from flowsim.errors import ScenarioError


class YamlSyntaxError(ScenarioError):
    """Text that is not YAML at all (as opposed to YAML that breaks a limit)."""


class Unreadable(ScenarioError):
    """A file that could not be read as text (missing, a device, too big, not UTF-8)."""


Loc = tuple[Any, ...]
LineMap = dict[Loc, tuple[str, int]]

#: Largest file read (bytes): scenarios, configs and snapshot CSVs are kilobytes.
MAX_FILE_BYTES = 8 * 1024 * 1024
#: Most YAML nodes after expanding aliases (each alias counted as a copy of what it names).
MAX_NODES = 1_000_000
#: Deepest nesting of mappings and lists, aliases expanded.
MAX_DEPTH = 64


def read_text(path: Path, limit: int = MAX_FILE_BYTES, encoding: str = "utf-8") -> str:
    """The UTF-8 text of a regular file of at most ``limit`` bytes, or a ScenarioError naming it.

    Devices (``/dev/zero``), pipes and directories are refused before they are opened for reading,
    so nothing is read from them; the size is checked again while reading, for a file that grows.
    """
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise Unreadable([f"{path}: file not found"]) from None
    except OSError as exc:
        raise Unreadable([f"{path}: cannot read ({exc.strerror or exc})"]) from None
    if stat.S_ISDIR(info.st_mode):
        raise Unreadable([f"{path}: is a directory, not a file"])
    if not stat.S_ISREG(info.st_mode):
        raise Unreadable([f"{path}: not a regular file (a device, pipe or socket); give a file"])
    if info.st_size > limit:
        raise Unreadable([f"{path}: {info.st_size:,} bytes, more than the {limit:,} allowed for this file"])
    try:
        with open(path, "rb") as fh:
            raw = fh.read(limit + 1)
    except OSError as exc:
        raise Unreadable([f"{path}: cannot read ({exc.strerror or exc})"]) from None
    if len(raw) > limit:
        raise Unreadable([f"{path}: more than the {limit:,} bytes allowed for this file"])
    try:
        return raw.decode(encoding)
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise Unreadable([f"{path}:{line}: not UTF-8 text (byte 0x{raw[exc.start]:02x}); save the file as "
                             "UTF-8"]) from None


class SafeLoader(yaml.SafeLoader):
    """SafeLoader that leaves dates as text and refuses nesting deeper than ``MAX_DEPTH``.

    Dates: PyYAML's timestamp constructor raises a bare ValueError on an impossible date such as
    2024-04-31, with no line number; pydantic parses the text instead and reports the field, the
    line and what is allowed.  Depth: the composer recurses once per level, so a thousand nested
    brackets would end in RecursionError; counting levels here stops it first.
    """

    def __init__(self, stream: str):
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        """PyYAML's composer with a nesting limit: a deeply nested file is an error, not a stack overflow."""
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark
                raise yaml.composer.ComposerError(None, None, f"nested deeper than {MAX_DEPTH} levels", mark)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


SafeLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def load_value(text: str) -> Any:
    """One YAML value (a ``--set`` right-hand side), with the same limits as a file."""
    data, _ = parse_yaml(text, "--set")
    return data


def _expanded_size(root: yaml.Node, source: str) -> None:
    """Refuse alias bombs, self-referencing aliases and alias chains deeper than ``MAX_DEPTH``.

    Iterative and memoised per node, so the check costs one visit per *distinct* node however
    many times aliases repeat it.
    """
    size: dict[int, int] = {}
    depth: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        key = id(node)
        children = _children(node)
        if done:
            on_path.discard(key)
            size[key] = 1 + sum(size[id(c)] for c in children)
            depth[key] = 1 + max((depth[id(c)] for c in children), default=0)
            if size[key] > MAX_NODES:
                raise ScenarioError([f"{source}:{node.start_mark.line + 1}: more than {MAX_NODES:,} values once "
                                     "aliases are expanded (an alias bomb?); write the data out instead"])
            if depth[key] > MAX_DEPTH:
                raise ScenarioError([f"{source}:{node.start_mark.line + 1}: nested deeper than {MAX_DEPTH} levels "
                                     "once aliases are expanded"])
            continue
        if key in size:
            continue
        if key in on_path:
            raise ScenarioError([f"{source}:{node.start_mark.line + 1}: an alias refers to the mapping or list "
                                 "that contains it (a structure without end)"])
        on_path.add(key)
        stack.append((node, True))
        stack.extend((c, False) for c in children if id(c) not in size)


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        return [n for pair in node.value for n in pair]
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    return []


class _LineWalker:
    """Where every key was written, and every repeated key; never follows an alias twice.

    A node met a second time is an alias: its position is recorded for the path that uses it and
    the walk does not descend again, so the map is as big as the file, not as the expanded tree.
    """

    def __init__(self, loader: SafeLoader, source: str):
        self.loader = loader
        self.source = source
        self.lines: LineMap = {}
        self.problems: list[str] = []
        self._seen: set[int] = set()

    def _key(self, node: yaml.Node) -> Any:
        if not isinstance(node, yaml.ScalarNode):
            self.problems.append(f"{self.source}:{node.start_mark.line + 1}: a mapping key must be plain text or "
                                 "a number, not a list or mapping")
            return None
        value = self.loader.construct_object(node)
        try:
            hash(value)
        except TypeError:  # pragma: no cover - scalar constructors return hashable values
            return None
        return value

    def walk(self, root: yaml.Node) -> None:
        stack: list[tuple[yaml.Node, Loc]] = [(root, ())]
        while stack:
            node, loc = stack.pop()
            self.lines.setdefault(loc, (self.source, node.start_mark.line + 1))
            if id(node) in self._seen:
                continue
            self._seen.add(id(node))
            if isinstance(node, yaml.SequenceNode):
                stack.extend((item, (*loc, i)) for i, item in enumerate(node.value))
            elif isinstance(node, yaml.MappingNode):
                stack.extend(self._mapping(node, loc))

    def _mapping(self, node: yaml.MappingNode, loc: Loc) -> list[tuple[yaml.Node, Loc]]:
        first_line: dict[Any, int] = {}
        out = []
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # '<<: *base' merges a mapping: its keys may be overridden, that is its purpose
            key = self._key(key_node)
            if key is None:
                continue
            line = key_node.start_mark.line + 1
            if key in first_line:
                path = ".".join(str(k) for k in (*loc, key))
                self.problems.append(f"{self.source}:{line}: {path}: written twice (lines {first_line[key]} and "
                                     f"{line}); YAML would silently keep only the second: merge them into one")
                continue
            first_line[key] = line
            where = (*loc, key)
            self.lines[where] = (self.source, line)
            out.append((value_node, where))
        return out


def parse_yaml(text: str, source: str) -> tuple[Any, LineMap]:
    """Parse one YAML document with the limits above; returns the data and where each key was written.

    ``source`` names the file in messages.  Syntax errors name the line and PyYAML's description of
    the problem, never the text around it.
    """
    loader = SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, {}
        _expanded_size(node, source)
        walker = _LineWalker(loader, source)
        walker.walk(node)
        if walker.problems:
            raise ScenarioError(walker.problems)
        data = loader.construct_document(node)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark is not None else source
        problem = getattr(exc, "problem", None) or "the YAML syntax is broken"
        raise YamlSyntaxError([f"{where}: not valid YAML ({problem})"]) from None
    finally:
        loader.dispose()
    return data, walker.lines
