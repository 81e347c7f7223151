"""The layering rules of docs/architecture.md, checked on the source (no services needed)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
APP = ROOT / "app"


def _modules(under: Path) -> list[Path]:
    return sorted(p for p in under.rglob("*.py") if "translations" not in p.parts)


def _imported(path: Path) -> set[str]:
    """Every module a file imports, at the top or inside a function."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def _calls(path: Path, attribute: str) -> list[int]:
    return [node.lineno for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == attribute]


def test_app_never_imports_tasks():
    offenders = {str(p.relative_to(ROOT)): sorted(m for m in _imported(p) if m == "tasks" or m.startswith("tasks."))
                 for p in _modules(APP)}
    assert {p: m for p, m in offenders.items() if m} == {}


def test_lua_runs_only_through_the_script_registry():
    # app/redis/scripts.py registers every script once (EVALSHA); nobody sends Lua source per call
    offenders = {str(p.relative_to(ROOT)): _calls(p, "eval") + _calls(p, "register_script")
                 for p in _modules(APP) if p.parent.name != "redis"}
    assert {p: lines for p, lines in offenders.items() if lines} == {}


def test_every_script_is_called_through_its_one_typed_wrapper():
    """Named keys and a named reply for every script: only app/redis/calls.py and intake_calls.py
    call ``script(...)``, each registered script from exactly one function there, and nobody else
    indexes KEYS or a reply by position."""
    from app.redis import scripts

    wrappers = {"app/redis/calls.py", "app/redis/intake_calls.py"}
    called: dict[str, list[str]] = {}
    for path in _modules(APP):
        where = str(path.relative_to(ROOT))
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "script":
                assert where in wrappers or where == "app/redis/scripts.py", f"{where}:{node.lineno} calls script()"
                if node.args and isinstance(node.args[0], ast.Constant):
                    called.setdefault(node.args[0].value, []).append(where)
    assert set(called) == set(scripts.SCRIPTS), set(called) ^ set(scripts.SCRIPTS)
    assert all(len(places) == 1 for places in called.values()), {n: p for n, p in called.items() if len(p) > 1}


# The owners of units of work: transaction() itself and the two long-running loops that batch
# their own commits (the hold writer, the outbox relay). Everything else opens `with transaction()`
# in a view, task, CLI command or flows.py, and services only flush.
COMMIT_OWNERS = {"app/db.py", "app/booking/writer.py", "app/outbox/relay.py"}


def test_only_the_unit_of_work_owners_commit():
    offenders = {str(p.relative_to(ROOT)): _calls(p, "commit") for p in _modules(APP)
                 if str(p.relative_to(ROOT)) not in COMMIT_OWNERS}
    assert {p: lines for p, lines in offenders.items() if lines} == {}


def test_service_modules_never_roll_back():
    """Services only flush: ending a unit (commit or rollback) is its owner's (docs/architecture.md)."""
    services = [p for p in _modules(APP) if p.name == "services.py"]
    offenders = {str(p.relative_to(ROOT)): _calls(p, "rollback") for p in services}
    assert {p: lines for p, lines in offenders.items() if lines} == {}


def test_service_modules_never_open_a_unit_of_work():
    services = [p for p in _modules(APP) if p.name == "services.py" or p.name in {"refunds.py", "waitlist.py"}]
    assert len(services) >= 7
    offenders = {}
    for path in services:
        opened = [node.lineno for node in ast.walk(ast.parse(path.read_text()))
                  if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", "")) in
                  {"transaction", "transactional"}]
        if opened:
            offenders[str(path.relative_to(ROOT))] = opened
    assert offenders == {}


def test_the_private_apis_we_lean_on_are_still_there():
    """Two private APIs, pinned in requirements.txt and checked here so that an upgrade fails
    loudly, with the place to look, instead of quietly changing behaviour:
    - app/auth/jwt_setup.py verifies hot-path tokens with its lean HS256 verifier and leaves what
      flask-jwt-extended's own verification leaves in `g._jwt_extended_*`, so get_jwt() works as
      usual (flask-jwt-extended has no public hook to hand it an already-verified token; see its
      `view_decorators.verify_jwt_in_request` and `utils.get_jwt`);
    - tasks/celery_app.py wraps kombu's Redis `Channel._connparams` to turn the AttributeError of a
      released connection into the ConnectionError it is (celery/celery#10205, celery/kombu#970)."""
    import inspect

    import flask_jwt_extended
    import kombu
    from flask_jwt_extended import utils, view_decorators
    from kombu.transport import redis as kombu_redis

    assert flask_jwt_extended.__version__ == "4.7.4", "re-check app/auth/jwt_setup.py against the new version"
    used = {"_jwt_extended_jwt", "_jwt_extended_jwt_header", "_jwt_extended_jwt_user", "_jwt_extended_jwt_location"}
    source = inspect.getsource(utils) + inspect.getsource(view_decorators)
    assert all(f'"{name}"' in source or f"g.{name}" in source for name in used), "flask-jwt-extended renamed them"
    assert kombu.__version__ == "5.7.0", "re-check tasks/celery_app.py's _connparams wrapper against the new kombu"
    params = inspect.signature(kombu_redis.Channel._connparams).parameters
    assert list(params) == ["self", "asynchronous"], "kombu changed Channel._connparams"


def test_every_lua_file_is_a_registered_script_or_an_included_helper():
    """The scripts live as files (app/redis/lua); each is registered under its name, and each
    helper is included by a script that is."""
    import re

    from app.redis import scripts

    files = {p.stem for p in scripts.LUA.glob("*.lua")}
    registered = {name.lower() for name in scripts.SCRIPTS}
    included = {m for name in files for m in re.findall(r"^--! include (\w+)$", (scripts.LUA / f"{name}.lua")
                                                        .read_text(), re.M)}
    assert files == registered | included, files ^ (registered | included)
    assert included <= files and not (registered & included)
    # an include comes once, in front: RESERVE is the gate's helpers, the intake's, then its own
    reserve = scripts.SCRIPTS["RESERVE"]
    assert reserve.count("local function put_back") == 1
    assert reserve.index("local function put_back") < reserve.index("refused_before") < reserve.index(
        "local early = refused_before()")


def test_the_catalogue_stores_what_is_on_sale_and_imports_no_booking():
    """Units of a section live in app/inventory; the catalogue's rules import neither booking nor
    inventory nor the waiting room (the booking/gate <-> catalogue/services cycle is gone)."""
    offenders = {str(p.relative_to(ROOT)): sorted(m for m in _imported(p)
                                                  if m.startswith(("app.booking", "app.inventory", "app.queue")))
                 for p in [APP / "catalogue" / "services.py", APP / "catalogue" / "models.py"]}
    assert {p: m for p, m in offenders.items() if m} == {}


def test_inventory_reads_bookings_holds_by_the_same_names():
    """app/inventory/counts.py reads the reservations table without importing booking (which
    builds on inventory): the table, its columns and the held status are booking's own."""
    from app.booking.models import HELD, Reservation
    from app.inventory import counts

    assert counts.RESERVATIONS.name == Reservation.__tablename__ and counts.HELD == HELD
    assert {c.name for c in counts.RESERVATIONS.c} <= {c.name for c in Reservation.__table__.c}


def _package_graph() -> dict[str, set[str]]:
    """Domain package -> the domain packages it imports (at the top or inside a function)."""
    packages = {p.name for p in APP.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    graph: dict[str, set[str]] = {name: set() for name in packages}
    for path in _modules(APP):
        parts = path.relative_to(APP).parts
        if len(parts) < 2:
            continue  # app/*.py: the factory, entry points and shared modules compose the domains
        for module in _imported(path):
            target = module.split(".")[1] if module.startswith("app.") else None
            if target in packages and target != parts[0]:
                graph[parts[0]].add(target)
    return graph


def test_the_domain_packages_import_each_other_without_a_cycle():
    """docs/architecture.md, "Layers": a package imports only packages below it, so the import
    graph is a DAG (imports inside functions count)."""
    graph = _package_graph()
    cycles: list[list[str]] = []

    def visit(node: str, path: list[str]) -> None:
        for nxt in sorted(graph[node]):
            if nxt in path:
                cycles.append(path[path.index(nxt):] + [nxt])
            elif len(path) < len(graph):
                visit(nxt, [*path, nxt])

    for start in sorted(graph):
        visit(start, [start])
    assert cycles == [], cycles[:5]
    # the layers, lowest first: each imports only from the layers before it
    layers = [{"redis", "catalogue"}, {"observability"}, {"outbox", "auth"}, {"notifications", "queue", "inventory"},
              {"booking"}, {"checkin", "sales"}, {"web"}]
    assert set().union(*layers) == set(graph), set(graph) ^ set().union(*layers)
    below: set[str] = set()
    for layer in layers:
        for package in layer:
            assert graph[package] <= below, (package, graph[package] - below)
        below |= layer
