"""The gradebook's database, whatever it is (a SQLite file, PostgreSQL...): reaching it, its nbgrader tables, and
copying them into a private SQLite file.

nbgrader's ``Gradebook(url)`` creates its tables on a database that has none; several processes doing that at
once on an empty PostgreSQL database collide (``UniqueViolation``). So the tables are created once, by
``release`` (:func:`require_schema` with ``create=True``), and every other step refuses a database without them
(:class:`~autograder.course.InputError`: exit status 2, nothing written).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from .course import InputError

#: The environment variable that chooses the gradebook (read by ``autograder/nbgrader_config.py``).
GRADEBOOK_URL_ENV = "LRDIFF_GRADEBOOK_URL"
#: Seconds to wait for a database server before giving up (an unreachable host, a firewall).
CONNECT_TIMEOUT = 10
#: Rows read from the course's database at a time when it is copied.
BATCH_ROWS = 5000


def sqlite_file(url: str) -> Path | None:
    """The file of a SQLite gradebook URL, or ``None`` for any other database (an in-memory one, or a URL
    SQLAlchemy cannot parse)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except ArgumentError:
        return None
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)


def shown(url: str) -> str:
    """``url`` as it may be printed: without its password."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return repr(url)


def engine(url: str):
    """A SQLAlchemy engine for ``url`` that gives up on an unreachable server after :data:`CONNECT_TIMEOUT`;
    :class:`InputError` for a URL that SQLAlchemy cannot use."""
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        backend = make_url(url).get_backend_name()
        connect_args = {"connect_timeout": CONNECT_TIMEOUT} if backend in ("postgresql", "mysql") else {}
        return create_engine(url, connect_args=connect_args)
    except ArgumentError as err:
        raise InputError(f"the gradebook URL {shown(url)} is not a database URL SQLAlchemy can use ({err}); "
                         "for PostgreSQL: postgresql+psycopg://USER@HOST:PORT/DATABASE") from None
    except ImportError as err:
        raise InputError(f"the gradebook URL {shown(url)} needs a database driver that is not installed "
                         f"({err}); for PostgreSQL use postgresql+psycopg://...") from None


def table_names(url: str) -> set[str]:
    """The tables of the database at ``url``; :class:`InputError` when it cannot be opened (a bad URL, a server
    that does not answer, a database or a user that does not exist)."""
    from sqlalchemy import inspect
    from sqlalchemy.exc import DBAPIError

    eng = engine(url)
    try:
        return set(inspect(eng).get_table_names())
    except DBAPIError as err:
        reason = " ".join(str(err.orig).split()) if err.orig is not None else str(err)
        raise InputError(f"cannot open the gradebook at {shown(url)}: {reason}") from None
    finally:
        eng.dispose()


def nbgrader_tables() -> list:
    """nbgrader's tables, parents before children (the order in which rows can be inserted)."""
    from nbgrader.api import Base

    return list(Base.metadata.sorted_tables)


def require_schema(url: str, create=None) -> None:
    """Stop unless the gradebook at ``url`` can be opened and holds nbgrader's tables.

    A SQLite file is not checked (nbgrader creates it, and its tables, on first use, with one writer). For any
    other database, ``create`` (a callable: opening nbgrader's ``Gradebook`` on the URL creates the tables) is
    called when they are missing; without it that is an :class:`InputError` asking for ``release``.
    """
    if sqlite_file(url) is not None:
        return
    wanted = {t.name for t in nbgrader_tables()}
    missing = sorted(wanted - table_names(url))
    if not missing:
        return
    if create is None:
        what = "no nbgrader tables"
        if len(missing) < len(wanted):
            what = f"not all nbgrader tables (no {', '.join(missing)})"
        raise InputError(f"the gradebook at {shown(url)} has {what}: run `./course grade release` once first; it "
                         "creates them (graders creating them at the same time collide)")
    create()


def snapshot(db: Path, dst: Path) -> None:
    """A consistent copy of a SQLite database (SQLite's backup API, not a file copy)."""
    src = sqlite3.connect(db)  # only read (the backup API copies page by page under a read lock)
    try:
        out = sqlite3.connect(dst)
        try:
            src.backup(out)
        finally:
            out.close()
    finally:
        src.close()


def copy_rows(src_url: str, dst_url: str) -> None:
    """Replace every row of nbgrader's tables at ``dst_url`` (which has them) with those at ``src_url``.

    The source is read in one transaction (``REPEATABLE READ`` where the database has it: one consistent state,
    as SQLite's backup gives), the tables in foreign-key order, :data:`BATCH_ROWS` at a time.
    """
    from sqlalchemy import insert, select

    tables = nbgrader_tables()
    src_engine, dst_engine = engine(src_url), engine(dst_url)
    consistent = {} if src_engine.dialect.name == "sqlite" else {"isolation_level": "REPEATABLE READ"}
    try:
        with src_engine.connect().execution_options(**consistent) as src, dst_engine.begin() as dst:
            for table in reversed(tables):
                dst.execute(table.delete())
            for table in tables:
                result = src.execution_options(yield_per=BATCH_ROWS).execute(select(table))
                for rows in result.mappings().partitions():
                    dst.execute(insert(table), [dict(r) for r in rows])
    finally:
        src_engine.dispose()
        dst_engine.dispose()
