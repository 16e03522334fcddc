"""The house reads top-down (DESIGN.md "Shape"): each concern in its room, one meaning per
class name, no module too long to read in one sitting."""

from __future__ import annotations

import ast
from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "reconciler"

Trees = Mapping[Path, ast.Module]


@pytest.fixture(scope="module")
def trees(package_trees: Trees) -> Trees:
    """Each module of the package parsed, in path order (conftest's package_trees: parsed once
    for the tests that only read them)."""
    assert all(path.is_relative_to(PACKAGE) for path in package_trees)
    return package_trees


@pytest.fixture(scope="module")
def imports(trees: Trees) -> dict[str, set[str]]:
    """_package_imports, once for the tests of this file."""
    return _package_imports(trees)


def _classes(trees: Trees) -> dict[str, list[str]]:
    """Where each class name of the package is defined."""
    where: defaultdict[str, list[str]] = defaultdict(list)
    for path, tree in trees.items():
        for node in tree.body:
            if isinstance(node, ast.ClassDef):
                where[node.name].append(str(path.relative_to(PACKAGE)))
    return where


# DESIGN's rooms at the top, and the small utilities every room uses. metrics.py stays here:
# the pass (reconcile.py, passes/) records into it and server/ imports the poller, so in server/
# it would close an import cycle; notify.py is shared by server/ and writes/ for the same reason,
# terminal.py by commands/ and writes/, key_fold.py by sources/, server/ and writes/.
ROOT_MODULES = {
    *("__init__", "__main__", "cli", "stdio", "daemon", "scheduler", "systemd", "runtime"),
    *("model", "diff", "schedule", "reconcile", "delivery", "metrics"),
    *("events", "logs", "json_text", "strict_json", "redact", "secret_encodings", "exits"),
    "key_fold",
    *("eventloop", "notify", "order_view", "terminal", "paths", "taken"),
}


def test_the_top_holds_the_rooms_of_the_design_and_shared_utilities_only() -> None:
    assert {p.stem for p in PACKAGE.glob("*.py")} == ROOT_MODULES


def test_no_module_is_longer_than_400_lines() -> None:
    lengths = {
        str(p.relative_to(PACKAGE)): len(p.read_text().splitlines()) for p in PACKAGE.rglob("*.py")
    }
    assert {path: n for path, n in lengths.items() if n > 400} == {}


def test_the_dispatcher_is_delivery_and_sinks_only_deliver() -> None:
    assert (PACKAGE / "delivery.py").is_file()
    sinks = {p.name for p in (PACKAGE / "sinks").glob("*.py")}
    # retries.py: what a sink's failed attempt becomes (retry or dead letter), for delivery.py;
    # command_launch.py: the command sink's program run without blocking the event loop.
    assert sinks == {
        *("__init__.py", "base.py", "log.py", "jsonl.py", "webhook.py", "command.py"),
        *("retries.py", "command_launch.py"),
    }


def test_the_dispatcher_and_the_stores_outbox_rows_have_a_name_each(trees: Trees) -> None:
    classes = _classes(trees)
    assert "Outbox" not in classes
    assert classes["Delivery"] == ["delivery.py"]
    assert classes["OutboxRows"] == ["store/events.py"]


def _package_imports(trees: Trees) -> dict[str, set[str]]:
    """Which of the package's subpackages and top-level modules each of them imports
    (TYPE_CHECKING ones too)."""
    packages = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()}
    nodes = packages | {p.stem for p in PACKAGE.glob("*.py")}
    edges: defaultdict[str, set[str]] = defaultdict(set)
    for path, tree in trees.items():
        parts = path.relative_to(PACKAGE).parts
        here = parts[:-1]
        node_here = here[0] if here else path.stem
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                if node.level:
                    base = list(here[: len(here) - node.level + 1])
                    target = [*base, *(node.module or "").split(".")] if node.module else base
                else:
                    target = (node.module or "").split(".")[1:] if node.module else []
                    if not (node.module or "").startswith("reconciler."):
                        continue
                names = [target] if node.module else [[*target, a.name] for a in node.names]
            elif isinstance(node, ast.Import):
                names = [
                    a.name.split(".")[1:] for a in node.names if a.name.startswith("reconciler.")
                ]
            else:
                continue
            for name in names:
                if name and name[0] in nodes and name[0] != node_here:
                    edges[node_here].add(name[0])
    return edges


def test_no_import_cycle_between_subpackages_and_top_level_modules(
    imports: dict[str, set[str]],
) -> None:
    edges = imports

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        for nxt in edges.get(start, ()):
            if nxt == goal or (nxt not in seen and reaches(nxt, goal, seen | {nxt})):
                return True
        return False

    assert sorted(p for p in edges if reaches(p, p, {p})) == []


def test_no_module_imports_another_modules_private_names(trees: Trees) -> None:
    # ccnow_cut.py read ccnow_answer's `_DOCUMENTED`, `_is_page` and `_order_line`: a rename
    # or a change there, made as a private one, broke reading an answer's last line. What
    # another module needs is public where it lives.
    found = []
    for path, tree in trees.items():
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (
                node.level or (node.module or "").startswith("reconciler")
            ):
                private = [a.name for a in node.names if a.name[:1] == "_" != a.name[-1:]]
                if private:
                    found.append(f"{path.relative_to(PACKAGE)}: {', '.join(private)}")
    assert found == []


def test_the_store_holds_sql_and_no_rules(imports: dict[str, set[str]]) -> None:
    # store/taken.py imported diff for rules of its own (whether a read contradicts an action,
    # the unconfirmed event and its id): the rules live beside diff.py, the store only reads.
    rules = {"diff", "schedule", "taken", "reconcile"}
    assert sorted(imports["store"] & rules) == []
