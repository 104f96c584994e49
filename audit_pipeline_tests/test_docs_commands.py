"""Every shell command the README and the docs show either runs as written, or is allow-listed here with the reason.

The commands are read from the pages' ``bash``/``sh``/``console`` code blocks and from the README's cheat sheet
(its table's inline commands).  A documented command is run with ``bash -c`` exactly as the page shows it, with
``.venv/bin`` first on ``PATH`` (the pages ask for an activated venv), from a project folder in ``tmp_path`` that
holds ``pyproject.toml``, ``dagster.yaml`` and ``workspace.yaml`` (``dg`` and the local profile need them), against:

* a throwaway PostgreSQL database (conftest's ``pg``) seeded with the days the pages name, read by the read-only role
  (``AUDIT_DATABASE_URL``, as the pages' ``export AUDIT_DATABASE_URL=…`` lines say);
* an export store in ``tmp_path`` (``AUDIT_EXPORT_URL``) where the demo's days are exported first;
* an ``audit_pipeline.yaml`` with the ``elasticsearch`` sink the pages forward to, at an Elasticsearch stand-in.

Two forms are completed before they run, and only these: a synopsis's optional ``[…]`` parts are left out (the
shortest form of the command), and the placeholder ``DAY`` is a day the store holds.  In a ``console`` block a
command whose shown output starts with ``error:`` must fail with that line; every other command must exit 0.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from audit_pipeline.sources.synthetic import generate_events

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
SHELL_BLOCKS = ("bash", "sh", "shell", "console")
EXAMPLE_DAY = "2024-01-15"  # what DAY stands for: one of the demo's days, exported before the commands run
SEEDED_DAYS = [dt.date(2024, 1, 13) + dt.timedelta(days=i) for i in range(4)] + [dt.date(2025, 6, 10) + dt.timedelta(days=i) for i in range(3)]

_SENT_ELSEWHERE = "needs {what}; audit_pipeline_tests/sinks/ forward to a stand-in that follows its published API"
_FOLLOWS = "keeps following until stopped (Ctrl-C); the --once form of the same command is run"
_INSTALL = "creates a virtual environment and installs from the package index (what .ci/run does on a fresh machine)"
_ENV = "points at the reader's own {what}; the test sets it to its throwaway {ours}"

#: Documented commands that are not run, each with why.  An entry no page shows any more fails the test.
ALLOWED: dict[str, str] = {
    'python3 -m venv .venv && .venv/bin/pip install -e ".[dev]" && .venv/bin/audit-pipeline demo': _INSTALL
    + "; `audit-pipeline demo` itself runs in audit_pipeline_tests/cli/test_days_and_demo.py",
    'python3 -m venv .venv && .venv/bin/pip install -e ".[dev]"': _INSTALL,
    "git clone <this repository> audit_pipeline && cd audit_pipeline": "clones from the network",
    "source .venv/bin/activate": "activates the venv in the reader's shell; "
    "the test runs every command with .venv/bin first on PATH, which is what activating does",
    ".venv/bin/python -m pytest": "runs the whole suite, this test included",
    "export AUDIT_DATABASE_URL=postgresql://exporter@db.internal:5432/hellojohn": _ENV.format(what="database", ours="PostgreSQL database"),
    "export AUDIT_DATABASE_URL='postgresql://audit_exporter:change-me@db.internal:5432/hellojohn'": _ENV.format(
        what="database", ours="PostgreSQL database's read-only role"
    ),
    "export AUDIT_EXPORT_URL=s3://acme-audit/hellojohn": _ENV.format(what="bucket", ours="folder"),
    "export ES_API_KEY='…'": _ENV.format(what="Elasticsearch key", ours="Elasticsearch stand-in (no key)"),
    "psql \"postgresql://postgres@db.internal:5432/hellojohn\" <<'SQL'": "creates a role on the reader's database server; conftest's "
    "make_database creates the same read-only role (CONNECT, SELECT on audit_logs) for every test",
    "cat > audit_pipeline.yaml <<'YAML'": "writes a configuration naming the reader's bucket and Elasticsearch; the test writes the "
    "same sections pointing at its folder and an Elasticsearch stand-in",
    "dg dev": "a server that runs until stopped; audit_pipeline_tests/dagster_defs/test_dg.py starts it and waits for the code location",
    "audit-pipeline forward elasticsearch": _FOLLOWS,
    "audit-pipeline forward --all --metrics-port 9108": "follows every sink until stopped; audit_pipeline_tests/forwarding/test_forward_all.py "
    "runs it (and its --once form) against four sink stand-ins and scrapes the metrics",
    "audit-pipeline forward datadog --once": _SENT_ELSEWHERE.format(what="Datadog's intake and an API key"),
    "audit-pipeline forward splunk --once": _SENT_ELSEWHERE.format(what="a Splunk HTTP Event Collector and its token"),
    'audit-pipeline forward "webhook:SIEM Audit Forward" --once': _SENT_ELSEWHERE.format(what="the reader's webhook receiver"),
    "audit-pipeline retention": "deletes rows, objects and indices (the read-only role cannot); audit_pipeline_tests/retention/ run it, "
    "and the --dry-run forms are run here",
    'audit-pipeline query "SQL"': "a synopsis (SQL, PATH); the page's examples below it are run",
    "audit-pipeline export --format csv|ndjson|json|parquet --from TIME --to TIME": "a synopsis (TIME, PATTERN, ID, FILE); the page's examples below it are run",
    "audit-pipeline prove 3f0c9a52-... -o event.json": "names an event of the "
    "reader's archive (3f0c9a52-...); audit_pipeline_tests/integrity/ prove and verify real events",
    "audit-pipeline prove EVENT_ID -o proof.json": "names an event of the reader's archive (EVENT_ID); audit_pipeline_tests/integrity/ prove real events",
    "audit-pipeline verify-proof proof.json --public-key manifest_public.pem": "needs the proof above and the key pair of a signed archive; "
    "audit_pipeline_tests/integrity/ run it",
    "audit-pipeline prove --consistency march-checkpoint.txt -o consistency.json": "needs a checkpoint the reader saved earlier; "
    "audit_pipeline_tests/integrity/ save one and prove consistency",
    "audit-pipeline verify-proof event.json --public-key public_key.pem --known-checkpoint march-checkpoint.txt": "needs the proof, "
    "key and checkpoint of the two lines above; audit_pipeline_tests/integrity/ run it",
    "python -m audit_pipeline.integrity.proof_verify event.json --public-key public_key.pem": "needs the proof and "
    "key above; audit_pipeline_tests/integrity/ run it",
    "dg scaffold defs audit_pipeline.defs.AuditLogs audit_logs": "scaffolds into another dg project (made with create-dagster); "
    "audit_pipeline_tests/dagster_defs/test_component.py loads the component",
    "dagster instance concurrency set audit_source 4": "the production profile's instance (PostgreSQL storage, deploy/); the scale-out test sets it",
    "dagster-webserver -w deploy/workspace.yaml -h 0.0.0.0 -p 3000 &": "the production profile's webserver (RabbitMQ, Celery, "
    "a shared PostgreSQL instance); audit_pipeline_tests/operations/ start it",
    "dagster-daemon run -w deploy/workspace.yaml &": "the production profile's daemon; audit_pipeline_tests/operations/ start it",
    "dagster-celery worker start -A dagster_celery.app -y deploy/celery/celery.yaml -n audit -- --concurrency 1": "a Celery worker "
    "host (RabbitMQ); the scale-out test starts three",
}


@dataclass(frozen=True)
class DocCommand:
    """One documented command: where it is, its text, and what the page shows it prints."""

    page: str
    line: int
    text: str
    shown_error: str | None = None  # a console block's `error: …` line shown after it

    def __str__(self) -> str:
        return f"{self.page}:{self.line}: {self.text}"


def _complete(text: str) -> bool:
    """Whether the shell would stop reading here: quotes closed, no trailing backslash."""
    if text.rstrip().endswith("\\"):
        return False
    try:
        shlex.split(text, comments=True)
    except ValueError:
        return False
    return True


def _block_commands(page: str, first_line: int, lines: list[str], console: bool) -> list[DocCommand]:
    commands: list[DocCommand] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if console and not line.startswith("$ "):
            if commands and commands[-1].shown_error is None and line.startswith("error:") and i > 0:
                last = commands[-1]
                commands[-1] = DocCommand(last.page, last.line, last.text, line)
            i += 1
            continue
        start = i
        text = line[2:] if console else line
        if not text.strip() or text.lstrip().startswith("#"):
            i += 1
            continue
        heredoc = re.search(r"<<-?'?(\w+)'?", text)
        while not _complete(text) and i + 1 < len(lines):
            i += 1
            text += "\n" + lines[i]
        if heredoc:  # the body up to the delimiter belongs to the command
            while i + 1 < len(lines) and lines[i].strip() != heredoc.group(1):
                i += 1
                text += "\n" + lines[i]
        commands.append(DocCommand(page, first_line + start, text))
        i += 1
    return commands


def documented_commands() -> list[DocCommand]:
    """The shell commands of README.md and docs/, in page order, then the README cheat sheet's inline commands."""
    found: list[DocCommand] = []
    for path in PAGES:
        page = str(path.relative_to(REPO))
        lines = path.read_text(encoding="utf-8").splitlines()
        i = 0
        while i < len(lines):
            fence = re.match(r"^(\s*)```(\w*)\s*$", lines[i])
            if not fence:
                i += 1
                continue
            indent, language = fence.groups()
            end = next(j for j in range(i + 1, len(lines)) if lines[j].strip() == "```")
            if language in SHELL_BLOCKS:
                body = [line[len(indent) :] if line.startswith(indent) else line for line in lines[i + 1 : end]]
                found += _block_commands(page, i + 2, body, console=language == "console")
            i = end + 1
        if path.name == "README.md":  # the cheat sheet's "run" column
            section = lines[lines.index("## Cheat sheet") :]
            section = section[: next((i for i, line in enumerate(section[1:], 1) if line.startswith("## ")), len(section))]
            offset = lines.index("## Cheat sheet") + 1
            for number, line in enumerate(section, offset):
                if line.startswith("|") and line.count("|") >= 3:
                    run_column = line.rstrip().rstrip("|").rsplit("|", 1)[-1]
                    for cell in re.findall(r"`((?:audit-pipeline|dg) [^`]+)`", run_column):
                        found.append(DocCommand(page, number, cell))
    return found


def first_line(command: DocCommand) -> str:
    return command.text.splitlines()[0] if "<<" in command.text.splitlines()[0] else command.text.replace("\\\n", "").replace("\n", " ")


def _normalised(text: str) -> str:
    """The command without its comment and a synopsis's optional ``[…]`` parts, spaces collapsed."""
    if not text.lstrip().startswith(("python3 -m venv", "psql", "cat")):
        text = re.sub(r"\s*\[[^\]\n\"']*\]", "", text)
    text = re.sub(r"\s+#\s.*$", "", text)
    return re.sub(r"\s+", " ", text).strip()


ALLOWED_NORMALISED = {_normalised(k): v for k, v in ALLOWED.items()}


def allowed_reason(command: DocCommand) -> str | None:
    return ALLOWED_NORMALISED.get(_normalised(first_line(command)))


def as_run(command: DocCommand) -> str:
    """The command as it runs: a synopsis's optional ``[…]`` parts left out, ``DAY`` a day the store holds."""
    text = command.text
    if not text.lstrip().startswith(("psql", "cat")):
        text = re.sub(r"\s*\[[^\]\n\"']*\]", "", text)
    return re.sub(r"\bDAY\b", EXAMPLE_DAY, text)


def test_every_documented_command_is_run_or_allow_listed_with_a_reason():
    commands = documented_commands()
    assert len(commands) > 40, "the extraction found too few commands: the pages' code blocks changed shape?"
    texts = {_normalised(first_line(c)) for c in commands}
    stale = sorted(k for k in ALLOWED_NORMALISED if k not in texts)
    assert not stale, f"allow-listed commands no page shows any more (remove them): {stale}"
    placeholders = [
        str(c)
        for c in commands
        if allowed_reason(c) is None and re.search(r"\b(TIME|SQL|PATH|FILE|PATTERN|YYYY-MM-DD|EVENT_ID|[A-Z]+_ID)\b|<\w|\.\.\.\b", as_run(c))
    ]
    assert not placeholders, f"documented commands with placeholders the test cannot fill (allow-list them with a reason): {placeholders}"


# --- running them ---------------------------------------------------------------------------------------------


#: Pages that start from nothing, as a new user does: their commands run in a fresh folder and store of their own,
#: with the partition start their configuration gives.
FRESH_START = {"docs/getting-started.md": "2025-06-01"}


def _world(root: Path, pg, store: Path, es_url: str, partition_start: str) -> dict[str, str]:
    """A project folder at ``root`` (the files `dg` and the local profile need) and the commands' environment."""
    root.mkdir()
    for name in ("pyproject.toml", "dagster.yaml", "workspace.yaml"):
        shutil.copy(REPO / name, root / name)
    (root / "audit_pipeline").symlink_to(REPO / "audit_pipeline", target_is_directory=True)
    (root / ".venv").symlink_to(Path(sys.prefix), target_is_directory=True)
    (root / "audit_pipeline.yaml").write_text(f"sinks:\n  elasticsearch:\n    url: {es_url}\n    start: earliest\n", encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AUDIT_", "DAGSTER_")) and k != "VIRTUAL_ENV"}
    return env | {
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")])),
        "AUDIT_DATABASE_URL": pg.readonly_url,
        "AUDIT_EXPORT_URL": str(store),
        "AUDIT_PARTITION_START": partition_start,
        "COLUMNS": "200",
    }


#: Longer than any documented one-off command takes here; a command still running then follows until stopped.
COMMAND_SECONDS = 300


def _run(text: str, root: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``bash -c TEXT`` with a terminal for its input, as the reader has, where the reader answers ``y`` to a question."""
    reader, typed = os.openpty()[::-1]  # (terminal side, our side)
    try:
        os.write(typed, b"y\n")
        try:
            return subprocess.run(["bash", "-c", text], cwd=root, env=env, stdin=reader, capture_output=True, text=True, timeout=COMMAND_SECONDS)
        except subprocess.TimeoutExpired as exc:
            output = "".join(part.decode(errors="replace") if isinstance(part, bytes) else part or "" for part in (exc.stdout, exc.stderr))
            return subprocess.CompletedProcess(
                text, -1, output, f"still running after {COMMAND_SECONDS} s: a command that follows until stopped? allow-list it"
            )
    finally:
        os.close(reader)
        os.close(typed)


@pytest.mark.slow  # about forty command-line start-ups, three of them `dg`
@pytest.mark.timeout(2400)  # 4-7 minutes on the shared 2-core machine, beyond the suite's default per-test limit
def test_the_documented_commands_run_as_written(pg, tmp_path):
    from audit_pipeline_tests.standins.elasticsearch import ElasticsearchStandIn

    for day in SEEDED_DAYS:
        pg.insert(generate_events(day, 200))
    failures: list[str] = []
    with ElasticsearchStandIn() as es:
        worlds = {"": _world(tmp_path / "project", pg, tmp_path / "store", es.url, "2024-01-01")}
        for page, start in FRESH_START.items():
            worlds[page] = _world(tmp_path / Path(page).stem, pg, tmp_path / f"{Path(page).stem}-store", es.url, start)
        # The demo's days, which the analysts' examples query: exported with the documented command.
        first, last = SEEDED_DAYS[0], SEEDED_DAYS[3]
        done = _run(f"audit-pipeline export-day {first} --to {last}", tmp_path / "project", worlds[""])
        assert done.returncode == 0, done.stderr
        for command in documented_commands():
            if allowed_reason(command) is not None:
                continue
            page = command.page if command.page in FRESH_START else ""
            root = tmp_path / (Path(page).stem if page else "project")
            text = as_run(command)
            done = _run(text, root, worlds[page])  # `sinks seek` asks to confirm: the reader answers yes
            output = (done.stdout + done.stderr)[-1500:]
            if command.shown_error is not None:
                if done.returncode == 0 or command.shown_error.split(":")[0] not in done.stderr:
                    failures.append(f"{command}\n  the page shows {command.shown_error!r}; exit {done.returncode}:\n{output}")
            elif done.returncode != 0:
                failures.append(f"{command}\n  ran as: {text}\n  exit {done.returncode}:\n{output}")
    assert not failures, "documented commands that fail as written:\n\n" + "\n\n".join(failures)
