"""The server's rooms: which package may import which, read from the source (ast), and no private names across
modules. The README's rooms table states the same rules."""

import ast
import os

import pytest

from testing.paths import REPO

SERVER = os.path.join(REPO, "server")

# room -> the rooms it may import (besides itself). A room is a package; a module in it belongs to the deepest
# room listed that contains it.
ALLOWED = {
    "server": {"server.model_servers"},  # __main__: the command
    "server.util": set(),
    "server.core": {"server.util"},
    "server.servables": {"server.util"},
    "server.model_servers": {"server.util", "server.core", "server.servables", "server.model_servers.grpc",
                             "server.model_servers.rest"},
    # The front doors: adapters around the Predictor. They read tensors and a Predict's answer, never a core or
    # a servable, and never each other.
    "server.model_servers.grpc": {"server.util", "server.model_servers.predictor", "server.servables.predict_io",
                                  "server.servables.tensors"},
    "server.model_servers.rest": {"server.util", "server.model_servers.predictor", "server.servables.predict_io",
                                  "server.servables.tensors"},
}


def product_modules():
    """{dotted module name: path} of every module under server/ but its tests."""
    found = {}
    for folder, dirs, files in os.walk(SERVER):
        dirs[:] = sorted(d for d in dirs if d not in ("tests", "__pycache__"))
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                dotted = os.path.relpath(path, REPO)[:-3].replace(os.sep, ".")
                found[dotted.removesuffix(".__init__")] = path
    return found


MODULES = product_modules()


def room_of(module):
    candidates = [room for room in ALLOWED if module == room or module.startswith(room + ".")]
    return max(candidates, key=len)


def imports(module, path):
    """[(line, imported module or package, names taken from it)] of every server import in the module."""
    tree = ast.parse(open(path).read(), path)
    package = module if path.endswith("__init__.py") else module.rsplit(".", 1)[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name, []) for alias in node.names if alias.name.split(".")[0] == "server"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "server":
                continue
            for alias in node.names:  # `from package import module` imports that module
                sub = f"{target}.{alias.name}"
                found.append((node.lineno, sub, []) if sub in MODULES else (node.lineno, target, [alias.name]))
    return found


def allowed(importer_room, target):
    if target == importer_room or target.startswith(importer_room + "."):
        return room_of(target) == importer_room or target in ALLOWED[importer_room] or \
            room_of(target) in ALLOWED[importer_room]
    return any(target == rule or target.startswith(rule + ".") for rule in ALLOWED[importer_room])


def violations(modules=MODULES):
    found = []
    for module, path in sorted(modules.items()):
        room = room_of(module)
        for line, target, names in imports(module, path):
            where = f"{os.path.relpath(path, REPO)}:{line}"
            if not allowed(room, target):
                found.append(f"{where}: {room} may not import {target}")
            for name in names:
                if name.startswith("_") and not name.startswith("__"):
                    found.append(f"{where}: {name} is private to {target}")
        found += private_attributes(module, path)
    return found


def private_attributes(module, path):
    """Uses of `other_module._name`, where other_module is a server module imported here."""
    tree = ast.parse(open(path).read(), path)
    aliases = {}
    for line, target, names in imports(module, path):
        if not names and target in MODULES:
            aliases[target.rsplit(".", 1)[-1]] = target
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            for alias in node.names:
                if alias.asname and alias.name in aliases:
                    aliases[alias.asname] = aliases[alias.name]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases \
                and node.attr.startswith("_") and not node.attr.startswith("__"):
            found.append(f"{os.path.relpath(path, REPO)}:{node.lineno}: {node.attr} is private to "
                         f"{aliases[node.value.id]}")
    return found


def test_every_module_keeps_to_its_rooms_imports():
    assert violations() == []


def test_every_module_lives_in_a_room_of_the_readme():
    readme = open(os.path.join(REPO, "README.md")).read()
    for room in ALLOWED:
        if room != "server":
            assert f"`{room.replace('.', '/')}/`" in readme, f"README.md's rooms table does not list {room}"


@pytest.mark.parametrize("room, line, planted", [
    ("server.core", "from ..model_servers import flags", "server.core may not import server.model_servers.flags"),
    ("server.servables", "from ..model_servers.predictor import Predictor",
     "server.servables may not import server.model_servers.predictor"),
    ("server.model_servers.rest", "from ...servables import saved_model",
     "server.model_servers.rest may not import server.servables.saved_model"),
    ("server.model_servers.rest", "from ..grpc import wire",
     "server.model_servers.rest may not import server.model_servers.grpc.wire"),
    ("server.servables", "from .tensors import _DTYPES", "_DTYPES is private to server.servables.tensors"),
    ("server.servables", "from . import tensors\nx = tensors._DTYPES",
     "_DTYPES is private to server.servables.tensors"),
])
def test_a_forbidden_import_is_found(tmp_path, room, line, planted):
    path = tmp_path / "planted.py"
    path.write_text(line + "\n")
    found = violations({f"{room}.planted": str(path)})
    assert any(planted in v for v in found), found
