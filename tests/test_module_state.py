"""State lives in objects that are handed around, not in modules: no module of the package
changes a module-level value after import (loggers aside), and no test patches one."""

from __future__ import annotations

import ast
from collections.abc import Iterator, Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
Trees = Mapping[Path, ast.Module]  # conftest's package_trees
_MUTATORS = frozenset(
    {"append", "extend", "insert", "update", "setdefault", "pop", "popitem", "clear", "add"}
    | {"remove", "discard", "sort", "reverse"}
)


def _sources(folder: str, holding: str = "") -> Iterator[tuple[Path, ast.Module]]:
    """The folder's modules, parsed; only those whose text holds `holding`, where the check
    looks for a name no other module can call (parsing and walking every test module costs
    seconds)."""
    for path in sorted((ROOT / folder).rglob("*.py")):
        text = path.read_text()
        if holding in text:
            yield path, ast.parse(text, str(path))


def _is_logger(value: ast.expr | None) -> bool:
    return isinstance(value, ast.Call) and ast.unparse(value.func) == "logging.getLogger"


def _module_names(tree: ast.Module) -> set[str]:
    """Names bound at the top of a module (loggers aside) or imported from the package."""
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.Assign | ast.AnnAssign) and not _is_logger(node.value):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            names.update(t.id for t in targets if isinstance(t, ast.Name) and t.id != "__all__")
        elif isinstance(node, ast.ImportFrom) and (
            node.level or "reconciler" in (node.module or "")
        ):
            names.update(alias.asname or alias.name for alias in node.names)
    return names


def _local_names(
    function: ast.FunctionDef | ast.AsyncFunctionDef, nodes: list[ast.AST]
) -> set[str]:
    """The names `function` binds; `nodes` are its own (ast.walk), walked once for both uses."""
    local = {a.arg for a in ast.walk(function.args) if isinstance(a, ast.arg)}
    for node in nodes:
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            local.add(node.id)
    return local


def _changes(tree: ast.Module, names: set[str]) -> Iterator[tuple[int, str]]:
    """Where a module-level name is rebound or mutated from inside a function."""
    for function in ast.walk(tree):
        if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        nodes = list(ast.walk(function))
        watched = names - _local_names(function, nodes)
        for node in nodes:
            if isinstance(node, ast.Global):
                yield node.lineno, f"global {', '.join(node.names)}"
            targets: list[ast.expr] = []
            if isinstance(node, ast.Assign):
                targets = node.targets
            elif isinstance(node, ast.AugAssign | ast.AnnAssign | ast.Delete):
                targets = node.targets if isinstance(node, ast.Delete) else [node.target]
            for target in targets:
                for part in ast.walk(target):
                    if (
                        isinstance(part, ast.Attribute | ast.Subscript)
                        and isinstance(part.value, ast.Name)
                        and part.value.id in watched
                    ):
                        yield target.lineno, ast.unparse(part)
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in _MUTATORS
                and isinstance(node.func.value, ast.Name)
                and node.func.value.id in watched
            ):
                yield node.lineno, ast.unparse(node.func)


def test_no_module_of_the_package_changes_module_level_state(package_trees: Trees) -> None:
    found = [
        f"{path.relative_to(ROOT)}:{line}: {what}"
        for path, tree in package_trees.items()
        for line, what in _changes(tree, _module_names(tree))
    ]
    assert found == []


def test_no_test_patches_a_module_or_what_it_holds() -> None:
    # Such a patch reaches past the interface: make the value a parameter and pass it in.
    found = []
    for path, tree in _sources("tests", holding="setattr"):
        names = _module_names(tree) | {
            (alias.asname or alias.name).partition(".")[0]
            for node in tree.body
            if isinstance(node, ast.Import)
            for alias in node.names
            if alias.name.startswith("reconciler")
        }
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Call)
                and ast.unparse(node.func) == "monkeypatch.setattr"
                and node.args
                and isinstance(node.args[0], ast.Name | ast.Attribute | ast.Constant)
                and (
                    isinstance(node.args[0], ast.Constant)  # "package.module.NAME"
                    or ast.unparse(node.args[0]).partition(".")[0] in names
                )
            ):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {ast.unparse(node)}")
    assert found == []


_CACHES = frozenset({"lru_cache", "cache"})


def _cache_names(tree: ast.Module) -> set[str]:
    """How the module may name functools' caches: `functools.lru_cache`, `lru_cache`, and
    under the names it imports them or functools as."""
    names = {f"functools.{name}" for name in _CACHES}
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module == "functools":
            names |= {alias.asname or alias.name for alias in node.names if alias.name in _CACHES}
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "functools" and alias.asname:
                    names |= {f"{alias.asname}.{name}" for name in _CACHES}
    return names


def _module_caches(tree: ast.Module) -> Iterator[tuple[int, str]]:
    """Where a cache that lives as long as the module is made: a module's function or a
    class's method decorated with one (a method's keeps every instance it saw), or one made
    by a call at the top of the module."""
    names = _cache_names(tree)

    def named(node: ast.expr) -> bool:
        return ast.unparse(node.func if isinstance(node, ast.Call) else node) in names

    for node in tree.body:
        functions: list[ast.FunctionDef | ast.AsyncFunctionDef] = []
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            functions = [node]
        elif isinstance(node, ast.ClassDef):
            functions = [
                f for f in node.body if isinstance(f, ast.FunctionDef | ast.AsyncFunctionDef)
            ]
        else:
            for call in (n for n in ast.walk(node) if isinstance(n, ast.Call)):
                if ast.unparse(call.func) in names:
                    yield call.lineno, ast.unparse(call)
        for function in functions:
            for decorator in function.decorator_list:
                if named(decorator):
                    yield decorator.lineno, f"@{ast.unparse(decorator)} {function.name}"


def test_no_module_of_the_package_keeps_a_cache(package_trees: Trees) -> None:
    # A cache is state: it belongs to the object that owns what it keeps (the Secrets it was
    # made of), or, for a few inputs known at import, is an immutable mapping built once.
    found = [
        f"{path.relative_to(ROOT)}:{line}: {what}"
        for path, tree in package_trees.items()
        if "functools" in path.read_text()
        for line, what in _module_caches(tree)
    ]
    assert found == []


# What a module-level table may be declared as: abstract types with no mutating methods, so
# mypy --strict refuses a change, and the immutable builtins. Capitalised names not listed as
# mutable are the package's own types (frozen dataclasses, NamedTuples, Literal aliases).
_IMMUTABLE = frozenset(
    {"frozenset", "tuple", "str", "bytes", "int", "float", "bool", "object", "None", "type"}
)
_MUTABLE_TYPES = frozenset(
    {"Dict", "List", "Set", "MutableMapping", "MutableSequence", "MutableSet", "DefaultDict"}
    | {"OrderedDict", "Counter", "Deque", "ChainMap"}
)
_MUTABLE_CALLS = frozenset(
    {"dict", "list", "set", "bytearray", "defaultdict", "OrderedDict", "Counter", "deque"}
    | {"fromkeys", "maketrans", "copy"}  # dict.fromkeys, str.maketrans, a table's copy
)
_DISPLAYS = (ast.List, ast.Set, ast.Dict, ast.ListComp, ast.SetComp, ast.DictComp)


def _held(value: ast.expr) -> Iterator[ast.expr]:
    """The mutable containers a module-level value holds: the value itself when it is a list,
    set or dict display, comprehension or call, and those its displays hold in turn (a call
    such as `frozenset(...)` or `tuple(...)` copies what it is given: that is not held)."""
    if isinstance(value, _DISPLAYS) or (
        isinstance(value, ast.Call) and ast.unparse(value.func).split(".")[-1] in _MUTABLE_CALLS
    ):
        yield value
    inner: list[ast.expr | None] = []
    if isinstance(value, ast.Dict):
        inner = [*value.keys, *value.values]
    elif isinstance(value, ast.DictComp):
        inner = [value.key, value.value]
    elif isinstance(value, ast.ListComp | ast.SetComp | ast.GeneratorExp):
        inner = [value.elt]  # a generator's items are held once it is unpacked: (*(...),)
    elif isinstance(value, ast.Tuple | ast.List | ast.Set):
        inner = list(value.elts)
    elif isinstance(value, ast.Starred):
        inner = [value.value]
    for part in inner:
        if part is not None:
            yield from _held(part)


def _aliases(tree: ast.Module) -> dict[str, ast.expr]:
    """Type aliases bound at the top of the module (`Lifecycle = Mapping[...]`)."""
    found: dict[str, ast.expr] = {}
    for node in tree.body:
        if (
            isinstance(node, ast.Assign)
            and len(node.targets) == 1
            and isinstance(node.targets[0], ast.Name)
            and isinstance(node.value, ast.Subscript | ast.BinOp)
        ):
            found[node.targets[0].id] = node.value
    return found


def _immutable(annotation: ast.expr, aliases: dict[str, ast.expr]) -> bool:
    """Whether every type `annotation` names (through the module's aliases) has no mutating
    methods: a lower-case one only if listed, a capitalised one unless listed as mutable."""
    if isinstance(annotation, ast.Constant):
        text = annotation.value
        return not isinstance(text, str) or _immutable(ast.parse(text, mode="eval").body, aliases)
    if isinstance(annotation, ast.Subscript):
        if ast.unparse(annotation.value).split(".")[-1] == "Literal":
            return True
        return _immutable(annotation.value, aliases) and _immutable(annotation.slice, aliases)
    if isinstance(annotation, ast.Tuple):
        return all(_immutable(part, aliases) for part in annotation.elts)
    if isinstance(annotation, ast.BinOp):  # X | Y
        return _immutable(annotation.left, aliases) and _immutable(annotation.right, aliases)
    name = ast.unparse(annotation).split(".")[-1]
    if name in aliases:  # an alias may not name itself: leave it out below
        rest = {k: v for k, v in aliases.items() if k != name}
        return _immutable(aliases[name], rest)
    return name in _IMMUTABLE or (name[:1].isupper() and name not in _MUTABLE_TYPES)


def _final(annotation: ast.expr | None) -> ast.expr | None:
    """What `Final[...]` wraps; None when the annotation is not `Final[...]`."""
    if (
        isinstance(annotation, ast.Subscript)
        and ast.unparse(annotation.value).split(".")[-1] == "Final"
    ):
        return annotation.slice
    return None


def _mutable_tables(tree: ast.Module) -> Iterator[tuple[int, str]]:
    """Module-level names bound to a list, set or dict (or holding one) without a declared
    immutable type; `__all__` too: the import system takes any sequence, and a tuple it is."""
    for node in tree.body:
        if not isinstance(node, ast.Assign | ast.AnnAssign) or node.value is None:
            continue
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        names = ", ".join(ast.unparse(t) for t in targets)
        if _is_logger(node.value) or not any(_held(node.value)):
            continue
        declared = _final(node.annotation) if isinstance(node, ast.AnnAssign) else None
        if declared is None or not _immutable(declared, _aliases(tree)):
            yield node.lineno, names


def test_no_module_level_table_can_be_changed(package_trees: Trees) -> None:
    # A table is a constant: a tuple, a frozenset, or a dict declared Final[Mapping[...]] so
    # mypy --strict refuses a change (MappingProxyType would add a call per lookup on paths a
    # catch-up walks per order).
    found = [
        f"{path.relative_to(ROOT)}:{line}: {names}"
        for path, tree in package_trees.items()
        for line, names in _mutable_tables(tree)
    ]
    assert found == []
