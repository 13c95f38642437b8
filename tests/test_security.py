"""Hostile case files (tests/security/*.yaml) are refused with one clear message and leave no side effect.

Each file in tests/security is a complete-looking case carrying ONE attack; its top comment says what the
attack tries and what the refusal must say:

    # attack: what it tries
    # field: the field the refusal names (- for none; JSON for a list of alternatives or odd characters)
    # mentions: a regular expression the message must match (it names the offending thing)
    # line: the line the refusal names, for refusals that name no field (YAML-level)

Files too big to commit are made here: over 1 MiB of one repeated line, a 16 GiB sparse file, a symlink
to /dev/zero.

Every file is run through `oracle validate FILE` and `oracle run FILE --json` in a fresh subprocess (several
files per process, process state otherwise clean; address space capped so a huge allocation fails), from an
empty temporary working directory, under a `sys.addaudithook` hook that records what Python's audit events
can see: files opened for writing (or opened at all in the working directory or /etc/passwd), files and
folders created, removed or renamed, processes spawned, sockets, shared libraries loaded, unpickling, code
executed from strings, environment changes, and every module imported. A file refused while loading imports
no framework at all; one refused by the shape check imports JAX only (oracle traces shapes with it); `run`
never imports TensorFlow or PyTorch for a refused file. A hook that silently saw nothing would make every
test pass, so a control run proves it records each kind of event. Hostile files beside a good case never
stop it from running.
"""

from __future__ import annotations

import json
import os
import re
import selectors
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest

from oracle import yamlio

SECURITY = Path(__file__).parent / "security"
HOSTILE = sorted(SECURITY.glob("*.yaml"))
WORKERS = 4
VALIDATE_S, RUN_S = 20, 90  # per file and command; a refusal takes milliseconds (run's first file imports JAX)

# A clear reason, in words a user understands.
CLEAR = re.compile(r"not (an )?allowed|never allowed|not permitted|unknown|refuse|takes no|too |larger than|"
                   r"more than|longer than|cannot|invalid|duplicate|must|only|expected|not a number|no such|"
                   r"out of range|should|forbidden|rename", re.IGNORECASE)
FRAMEWORKS = ("tensorflow", "tensorflow_probability", "tf_keras", "keras", "torch", "jax", "jaxlib", "numpyro",
              "optax")

GOOD = """\
id: good-exp
title: exp(z) at z = 3
kind: loss
inputs:
  z: 3.0
formula: exp(z)
frameworks: [jax]
"""

# The subprocess: runs the CLI on each work item under an audit hook and prints one JSON line per item.
WORKER = r'''
import json, os, resource, sys, sysconfig, tempfile, time, traceback

PROTOCOL = os.fdopen(os.dup(1), "w")  # one JSON line per item; anything else written to fd 1 goes to stderr
os.dup2(2, 1)

LIMIT = 8 << 30
resource.setrlimit(resource.RLIMIT_AS, (LIMIT, LIMIT))  # a huge allocation fails instead of swapping
from typer.testing import CliRunner  # noqa: E402
from oracle.cli import app  # noqa: E402

items, base = json.loads(sys.argv[1]), sys.argv[2]
sys.path[:] = [p for p in sys.path if p not in ("", ".")]  # never import from the working directory
WATCHED = ("/etc/passwd", "/etc/shadow", "/proc/self/environ", os.path.expanduser("~/.ssh"))  # reading is leaking
WRITE = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC
FLAGGED = {"os.system", "os.fork", "os.forkpty", "os.kill", "os.killpg", "os.putenv", "os.unsetenv", "os.remove",
           "os.rmdir", "os.rename", "os.mkdir", "os.link", "os.symlink", "os.truncate", "os.chmod", "os.chown",
           "os.chflags", "os.utime", "os.startfile", "os.add_dll_directory", "subprocess.Popen", "pty.spawn",
           "builtins.breakpoint", "builtins.input", "ctypes.dlopen", "pickle.find_class", "marshal.load",
           "tempfile.mkstemp", "tempfile.mkdtemp", "resource.setrlimit", "resource.prlimit", "sys.addaudithook",
           "webbrowser.open", "urllib.Request", "http.client.connect", "glob.glob", "os.listdir", "os.scandir"}
PREFIXES = ("os.exec", "os.spawn", "os.posix_spawn", "shutil.", "socket.", "ftplib.", "smtplib.", "imaplib.",
            "poplib.", "telnetlib.", "nntplib.")
STDLIB = sysconfig.get_paths()["stdlib"]
STDLIB_CODEGEN = {os.path.join(STDLIB, f)
                  for f in ("typing.py", "inspect.py", "dataclasses.py", os.path.join("collections", "__init__.py"))}
# typer sets, then restores, PYDANTIC_DISABLE_PLUGINS around a command; importing JAX sets TPU_SKIP_MDS_QUERY
QUIET_ENV = {"PYDANTIC_DISABLE_PLUGINS", "TPU_SKIP_MDS_QUERY"}
state = {"on": False, "events": [], "imports": [], "cwd": ""}


def path_of(p):
    try:
        return os.fsdecode(p) if not isinstance(p, int) else f"<fd {p}>"
    except Exception:
        return repr(p)


def hook(event, args):
    if not state["on"]:
        return
    try:
        if event == "import":
            state["imports"].append(str(args[0]))
        elif event == "open":
            path, mode, flags = path_of(args[0]), args[1], args[2]
            writes = bool((flags or 0) & WRITE) or any(c in (mode or "") for c in "wax+")
            inside = not isinstance(args[0], int) and os.path.abspath(path).startswith((state["cwd"], *WATCHED))
            if (writes and "__pycache__" not in path) or inside:
                state["events"].append(f"open {path!r} mode={mode!r} flags={flags!r}")
        elif event == "exec":
            code = args[0]
            name = getattr(code, "co_filename", "?")
            caller = sys._getframe(1).f_code.co_filename
            # typing and inspect evaluate string annotations (typer reads the CLI's), dataclasses and namedtuple
            # generate methods: code from strings that the standard library writes itself
            if name.startswith("<") and not name.startswith("<frozen") and caller not in STDLIB_CODEGEN:
                state["events"].append(f"exec of code from {name} ({code.co_name}, names {code.co_names[:8]}) "
                                       f"called from {caller}")
        elif event in ("os.putenv", "os.unsetenv"):
            if os.fsdecode(args[0]) not in QUIET_ENV:
                state["events"].append(f"{event} {repr(args)[:200]}")
        elif event in ("os.listdir", "os.scandir", "glob.glob"):
            where = path_of(args[0]) if args and args[0] is not None else "."
            if os.path.abspath(where).startswith((state["cwd"], *WATCHED)):
                state["events"].append(f"{event} {where!r}")
        elif event in FLAGGED or event.startswith(PREFIXES):
            state["events"].append(f"{event} {repr(args)[:200]}")
    except Exception as e:  # never let the hook break the code under test; say so instead
        state["events"].append(f"hook error on {event}: {e!r}")


sys.addaudithook(hook)
runner = CliRunner()


def control(cwd):
    """Do one of each thing the hook must see, so a blind hook cannot make the tests pass."""
    import subprocess
    with open(os.path.join(cwd, "written.txt"), "w") as f:
        f.write("x")
    os.remove(os.path.join(cwd, "written.txt"))
    subprocess.run(["true"])
    with open("/etc/passwd") as f:
        f.read(1)
    import socket
    socket.socket().close()
    exec(compile("1 + 1", "<string>", "eval"))
    os.environ["ORACLE_CONTROL"] = "1"
    import wave  # noqa: F401  (a module nothing else imports: the import is recorded)


for item in items:
    key, argv = item["key"], item["argv"]
    if item.get("warm"):  # what `run` does for any file, outside the audit: import oracle.runner (which
        import oracle.runner  # imports JAX for the reference), and describe the platform for --json (Python's
        oracle.runner.environment([])  # platform module runs `uname -p` once)
    cwd = os.path.realpath(tempfile.mkdtemp(dir=base))
    os.chdir(cwd)
    if item.get("spare_gib"):  # at most this much more memory than the process holds now
        with open("/proc/self/statm") as f:
            held = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
        resource.setrlimit(resource.RLIMIT_AS, (min(LIMIT, held + (item["spare_gib"] << 30)), LIMIT))
    print(json.dumps({"begin": key}), file=PROTOCOL, flush=True)
    modules, environ = set(sys.modules), dict(os.environ)
    state.update(on=True, events=[], imports=[], cwd=cwd)
    start = time.perf_counter()
    crash = None
    try:
        if argv == ["<control>"]:
            control(cwd)
            exit_code, stdout, stderr = 0, "", ""
        else:
            result = runner.invoke(app, argv, catch_exceptions=True)
            exit_code, stdout, stderr = result.exit_code, result.stdout, result.stderr
            if result.exception is not None and not isinstance(result.exception, SystemExit):
                crash = "".join(traceback.format_exception(result.exception))[-3000:]
    except BaseException as e:  # noqa: BLE001
        exit_code, stdout, stderr, crash = None, "", "", "".join(traceback.format_exception(e))[-3000:]
    state["on"] = False
    resource.setrlimit(resource.RLIMIT_AS, (LIMIT, LIMIT))
    seconds = time.perf_counter() - start
    os.chdir(base)
    left = sorted(os.listdir(cwd))
    changed = sorted(k for k in set(environ) | set(os.environ)
                     if environ.get(k) != os.environ.get(k) and k not in QUIET_ENV)
    if changed and argv != ["<control>"]:
        state["events"].append(f"environment variables changed: {changed}")
    new = sorted({m.split(".")[0] for m in set(sys.modules) - modules})
    stage = None
    if item.get("stage_of"):  # refused while loading, or by the shape check (which traces with JAX)?
        from oracle import case as case_io
        try:
            case_io.load(item["stage_of"])
            stage = "shapes"
        except case_io.CaseError:
            stage = "load"
        except BaseException:  # noqa: BLE001
            stage = "crash"
    print(json.dumps({"key": key, "exit_code": exit_code, "stdout": stdout, "stderr": stderr, "crash": crash,
                      "events": state["events"], "imports": sorted(set(state["imports"])), "new_modules": new,
                      "left_in_cwd": left, "seconds": seconds, "stage": stage}), file=PROTOCOL, flush=True)
'''


def expectations(path: Path) -> dict:
    """The header of a hostile file: attack, field (None for -, a list of alternatives), mentions, line."""
    if path.name in GENERATED_HEADS:
        return GENERATED_HEADS[path.name]
    head = {}
    with open(path, "rb") as f:  # the header only: a generated hostile file is 16 GiB
        start = f.read(4096)
    for row in start.decode("utf-8", "replace").splitlines():
        m = re.match(r"# (attack|field|mentions|line): (.*)$", row)
        if not m:
            break
        head[m[1]] = m[2]
    field = head.get("field", "")
    fields = json.loads(field) if field[:1] in '["' else field
    fields = [fields] if isinstance(fields, str) else fields
    return {"attack": head.get("attack"), "fields": [None if f == "-" else f for f in fields],
            "mentions": head.get("mentions"), "line": int(head["line"]) if "line" in head else None}


def run_items(queues: list[list[dict]], base: Path) -> dict:
    """Run each queue of work items in a subprocess of its own; an item past its time limit is reported hung
    and its process replaced by a fresh one for the items that remain."""
    reports: dict = {}
    procs: dict = {}
    sel = selectors.DefaultSelector()
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONDONTWRITEBYTECODE": "1"}

    def start(queue):
        if not queue:
            return
        stderr = tempfile.TemporaryFile()  # read back only to explain a worker that died
        p = subprocess.Popen([sys.executable, "-c", WORKER, json.dumps(queue), str(base)],
                             stdout=subprocess.PIPE, stderr=stderr, env=env)
        procs[p] = {"queue": list(queue), "current": None, "deadline": time.monotonic() + 120, "buffer": b"",
                    "stderr": stderr}
        sel.register(p.stdout, selectors.EVENT_READ, p)

    def stop(p):
        sel.unregister(p.stdout)
        p.kill()
        p.wait()
        del procs[p]

    try:
        for queue in queues:
            start(queue)
        while procs:
            for sk, _ in sel.select(timeout=0.5):
                p = sk.data
                info = procs[p]
                chunk = os.read(p.stdout.fileno(), 1 << 20)
                if not chunk:  # the worker exited
                    rc = p.wait()
                    sel.unregister(p.stdout)
                    del procs[p]
                    if info["current"] is not None:  # it died on this item (segfault, killed for memory)
                        reports[info["current"]["key"]] = {"key": info["current"]["key"], "died": rc}
                        start(info["queue"][1:])
                    elif info["queue"]:
                        info["stderr"].seek(0)
                        tail = info["stderr"].read()[-3000:].decode(errors="replace")
                        raise RuntimeError(f"a security worker exited with status {rc} before its items:\n{tail}")
                    continue
                info["buffer"] += chunk
                *lines, info["buffer"] = info["buffer"].split(b"\n")
                for line in lines:
                    msg = json.loads(line)
                    if "begin" in msg:
                        info["current"] = info["queue"][0]
                        info["deadline"] = time.monotonic() + info["current"]["timeout"]
                    else:
                        reports[msg["key"]] = msg
                        info["queue"].pop(0)
                        info["current"] = None
                        info["deadline"] = time.monotonic() + 120
            for p, info in list(procs.items()):
                if time.monotonic() > info["deadline"]:
                    item = info["current"]
                    stop(p)
                    if item is None:
                        raise RuntimeError("a security worker did not start in time")
                    reports[item["key"]] = {"key": item["key"], "hung": item["timeout"]}
                    start([i for i in info["queue"][1:] if i.get("skip_if_hung") != item["key"]])
    finally:  # a failure leaves no worker behind
        for p in list(procs):
            stop(p)
    return reports


CASE = "id: {id}\ntitle: softplus of x\nkind: loss\ninputs:\n  x: 0.5\nformula: softplus(x)\n"
GENERATED = ["yaml-huge-file.yaml", "yaml-sparse-16gib-file.yaml", "yaml-symlink-to-dev-zero.yaml"]
GENERATED_HEADS = {"yaml-symlink-to-dev-zero.yaml": {
    "attack": "a case file that is a symlink to /dev/zero (endless bytes: a file read whole never ends)",
    "fields": [None], "mentions": r"larger than|too large|bytes|regular file|not a file", "line": None}}


def huge_files(folder: Path) -> list[Path]:
    """Case files too big to commit: over 1 MiB of a tiny repeated line, a 16 GiB sparse file (no disk used)
    and a symlink to /dev/zero, each refused before anything reads it whole into memory."""
    huge = folder / GENERATED[0]
    huge.write_text("# attack: a case file larger than 1 MiB (made of a tiny repeated line)\n# field: -\n"
                    "# mentions: larger than|too large|bytes\n" + CASE.format(id="yaml-huge-file")
                    + "description: |\n" + "  lol lol lol lol lol lol lol lol\n" * 40_000)
    sparse = folder / GENERATED[1]
    sparse.write_text("# attack: a 16 GiB case file (sparse: NUL bytes after the case) read whole into memory\n"
                      "# field: -\n# mentions: larger than|too large|bytes\n"
                      + CASE.format(id="yaml-sparse-16gib-file"))
    with open(sparse, "r+b") as f:
        f.truncate(16 << 30)
    zero = folder / GENERATED[2]
    zero.symlink_to("/dev/zero")
    return [huge, sparse, zero]


@pytest.fixture(scope="module")
def audit(tmp_path_factory):
    """Every hostile file through validate then run (and the control and batch items), audited."""
    base = tmp_path_factory.mktemp("security-cwd")
    generated = tmp_path_factory.mktemp("security-generated")
    files = [*HOSTILE, *huge_files(generated)]
    good = generated / "good.yaml"
    good.write_text(GOOD)
    markup = generated / "markup.yaml"
    markup.write_text(GOOD.replace("id: good-exp", "id: markup-title")
                      .replace("title: exp(z) at z = 3", f"title: '{MARKUP}'"))
    items = []
    for path in files:
        items.append({"key": f"validate {path.name}", "argv": ["validate", str(path)], "timeout": VALIDATE_S,
                      "stage_of": None if path.name in GENERATED else str(path)})
    runs = [{"key": f"run {path.name}", "argv": ["run", str(path), "--json"], "timeout": RUN_S,
             "skip_if_hung": f"validate {path.name}"} for path in files]
    for item in items + runs:  # reading a generated giant whole must fail fast, not take the machine's memory
        if item["key"].split(" ", 1)[1] in GENERATED:
            item["spare_gib"] = 1
    batch = [str(good), *(str(SECURITY / f"{name}.yaml") for name in BATCH)]
    extra = [{"key": "control", "argv": ["<control>"], "timeout": 60},
             {"key": "batch validate", "argv": ["validate", *batch], "timeout": 120},
             {"key": "batch run", "argv": ["run", *batch, "--json", "--framework", "jax"], "timeout": 180},
             {"key": "pair run", "argv": ["run", str(SECURITY / f"{PAIR}.yaml"), str(good), "--json"],
              "timeout": 180},
             {"key": "markup run", "argv": ["run", str(markup)], "timeout": 180}]
    # Every worker validates before it runs anything (validate must import no framework), and does what `run`
    # does for any file (imports oracle.runner, hence JAX) before its first audited run.
    for item in runs + extra:
        item["warm"] = True
    start = time.perf_counter()
    reports = run_items([items[k::WORKERS] + runs[k::WORKERS] + extra[k::WORKERS] for k in range(WORKERS)], base)
    reports["seconds"] = time.perf_counter() - start
    reports["files"] = {p.name: p for p in files}
    return reports


# Free text (a title) that is rich console markup: printed as written, never interpreted (a stray closing tag
# would crash the table output, and with it every later case of the run; a link tag would forge a hyperlink).
MARKUP = "[/bold] exp(z) [link=file:///etc/passwd]click[/link] [red]z = 3"

PAIR = "impl-torch-save"
# Representative hostile files (one per kind of attack) that must not stop a good case in the same run.
BATCH = ["yaml-python-object-apply", "yaml-billion-laughs", "yaml-deep-nesting", "py-dunder-import",
         "impl-torch-save", "impl-torch-functional-pivot-os-system", "alloc-generator-fill",
         "alloc-generator-zero-size-huge-dim", "alloc-impl-torch-ones", "meta-id-path-traversal"]


def side_effects(report: dict) -> list[str]:
    """What an audited command did that a refusal must not do."""
    problems = list(report.get("events", []))
    if report.get("left_in_cwd"):
        problems.append(f"files left in the working directory: {report['left_in_cwd']}")
    return problems


def test_the_audit_hook_sees_each_kind_of_side_effect(audit):
    report = audit["control"]
    events = "\n".join(report["events"])
    assert "open " in events and "written.txt" in events, events
    assert "os.remove" in events, events
    assert "subprocess.Popen" in events or "os.posix_spawn" in events or "os.fork" in events, events
    assert "exec of code from <string>" in events, events
    assert "os.putenv" in events, events
    assert "open '/etc/passwd'" in events, events
    assert "socket.__new__" in events, events
    assert "wave" in report["imports"], report["imports"]


def test_there_are_enough_hostile_files_and_each_says_what_it_tries():
    assert len(HOSTILE) >= 45
    kinds = {p.name.split("-")[0] for p in HOSTILE}
    assert kinds >= {"impl", "py", "alloc", "yaml"}
    ids = set()
    for path in HOSTILE:
        head = expectations(path)
        assert head["attack"] and head["mentions"] and head["fields"], path.name
        re.compile(head["mentions"])
        text = path.read_bytes().decode("utf-8", "replace")
        m = re.search(r"^id: (.*)$", text, re.MULTILINE)
        assert m, f"{path.name}: a hostile file looks like a complete case (id, title, kind, inputs, ...)"
        for key in ("title:", "kind:", "inputs:"):
            assert re.search(rf"^{key}", text, re.MULTILINE), f"{path.name} lacks {key}"
        assert re.search(r"^(formula|reference|<<):", text, re.MULTILINE) or "formula:" in text, path.name
        ids.add(m[1])
    assert len(ids) == len(HOSTILE), "hostile files have distinct ids"


def expected_line(path: Path, field: str) -> int | None:
    """The line YAML records for `field` (a dotted path whose keys may themselves contain dots)."""
    if not path.is_file() or path.stat().st_size > yamlio.MAX_BYTES:
        return None
    data = yamlio.load(path.read_text(encoding="utf-8"))
    rest, line = field, None
    while rest and data is not None:
        lines = getattr(data, "lines", None)
        if isinstance(data, dict):
            key = max((k for k in data if rest == k or rest.startswith(k + ".")), key=len, default=None)
            if key is None:
                break
            line, data, rest = (lines or {}).get(key, line), data[key], rest[len(key) + 1:]
        elif isinstance(data, list):
            head, _, rest = rest.partition(".")
            if not head.isdigit() or int(head) >= len(data):
                break
            line, data = lines[int(head)] if lines else line, data[int(head)]
        else:
            break
    return line


def check_refusal(audit, name: str, head: dict) -> list[str]:
    """Every way the refusal of one file can be wrong, as sentences (empty: it is right)."""
    path = audit["files"][name]
    problems = []
    validate, run = audit.get(f"validate {name}"), audit.get(f"run {name}")
    for command, report in (("validate", validate), ("run", run)):
        if report is None:
            problems.append(f"{command}: not run")
        elif "hung" in report:
            problems.append(f"{command}: still running after {report['hung']} s (killed): a denial of service")
        elif "died" in report:
            problems.append(f"{command}: the Python process died (exit status {report['died']})")
        elif report["crash"]:
            problems.append(f"{command}: crashed instead of refusing (exit {report['exit_code']}):\n"
                            f"{textwrap.indent(report['crash'][-1500:], '    ')}")
        elif report["exit_code"] != 2:
            problems.append(f"{command}: ACCEPTED (exit {report['exit_code']}); output:\n"
                            f"{textwrap.indent((report['stdout'] + report['stderr'])[-1500:], '    ')}")
        if report and "events" in report:
            accepted = report["exit_code"] != 2
            effects = side_effects(report)
            if effects:
                problems.append(f"{command}: side effects{' (while running what it accepted)' if accepted else ''}: "
                                f"{effects}")
            frameworks = {m.split('.')[0] for m in report["imports"] + report["new_modules"]} & set(FRAMEWORKS)
            if report.get("stage") == "shapes":  # oracle checks shapes by tracing with JAX (abstractly)
                frameworks -= {"jax", "jaxlib"}
            if frameworks and not accepted:
                problems.append(f"{command}: imported {sorted(frameworks)} for a refused case")
            output = report["stdout"] + report["stderr"]
            if "Traceback" in output or "\x1b" in output:
                problems.append(f"{command}: output has a traceback or a terminal escape: {output[-800:]!r}")
    if problems:
        return problems
    # validate: exactly one `invalid:` line naming file, line and field; every other line a continuation
    lines = validate["stderr"].splitlines()
    invalid = [row for row in lines if row.startswith("invalid: ")]
    if len(invalid) != 1 or any(not (row.startswith("invalid: ") or row[:1].isspace()) for row in lines):
        problems.append(f"validate: expected one 'invalid: ...' message, got stderr {validate['stderr']!r}")
    if validate["stdout"].strip():
        problems.append(f"validate: printed {validate['stdout']!r} on stdout for a refused file")
    # run --json: the same refusal, structured
    try:
        doc = json.loads(run["stdout"])
        (entry,) = doc["invalid"]
        assert doc["cases"] == []
    except Exception as e:  # noqa: BLE001
        return problems + [f"run --json: expected one invalid entry and no case ({e!r}): {run['stdout'][-800:]!r}"]
    if entry["file"] != str(path):
        problems.append(f"the message names file {entry['file']!r}, not {str(path)!r}")
    if entry["field"] not in head["fields"] and not any(f and entry["field"] and entry["field"].startswith(f + ".")
                                                        for f in head["fields"]):
        problems.append(f"the refusal names field {entry['field']!r}, expected {head['fields']} (the attack's field: "
                        f"a refusal for another reason does not show the attack is refused)")
    line = head["line"]
    if line is None and entry["field"]:
        try:
            line = expected_line(path, entry["field"])
        except (yamlio.YamlError, RecursionError, OSError, UnicodeDecodeError):
            line = None
    if line is not None and entry["line"] != line:
        problems.append(f"the refusal names line {entry['line']}, expected {line}")
    message = entry["message"]
    if not CLEAR.search(message):
        problems.append(f"the message gives no clear reason: {message!r}")
    if not re.search(head["mentions"], message):
        problems.append(f"the message does not name the offending thing (/{head['mentions']}/): {message!r}")
    where = f"{path}:{entry['line']}" if entry["line"] else str(path)
    prefix = f"invalid: {where}: {entry['field']}: " if entry["field"] else f"invalid: {where}: "
    if invalid and entry["field"] and not entry["field"].isprintable():  # shown escaped: one line, no escapes
        prefix = f"invalid: {where}: "
    if invalid and not invalid[0].startswith(prefix):
        problems.append(f"validate's message {invalid[0]!r} does not start with {prefix!r}")
    return problems


@pytest.mark.parametrize("name", [p.name for p in HOSTILE] + GENERATED)
def test_hostile_case_is_refused_clearly_without_side_effects(audit, name):
    head = expectations(audit["files"][name])
    problems = check_refusal(audit, name, head)
    assert not problems, f"{name} ({head['attack']}):\n" + "\n".join(f"  - {p}" for p in problems)


def test_one_hostile_file_does_not_stop_the_good_case_beside_it(audit):
    report = audit["pair run"]
    assert "hung" not in report and "died" not in report and not report["crash"], report
    assert report["exit_code"] == 2, report["stderr"]
    assert not side_effects(report), side_effects(report)
    doc = json.loads(report["stdout"])
    assert [c["id"] for c in doc["cases"]] == ["good-exp"]
    assert [Path(e["file"]).stem for e in doc["invalid"]] == [PAIR]
    assert doc["invalid"][0]["field"] == "impl.torch"


def test_hostile_files_in_a_batch_do_not_stop_the_good_case(audit):
    validate, run = audit["batch validate"], audit["batch run"]
    for command, report in (("validate", validate), ("run", run)):
        assert "hung" not in report and "died" not in report, f"{command}: {report}"
        assert not report["crash"], f"{command} crashed, so no case of the batch ran:\n{report['crash'][-700:]}"
        assert report["exit_code"] == 2, f"{command}: exit {report['exit_code']}"
        assert not side_effects(report), f"{command}: {side_effects(report)}"
        frameworks = {m.split(".")[0] for m in report["imports"]} & set(FRAMEWORKS)
        assert frameworks <= {"jax", "jaxlib"}, f"{command} imported {frameworks} (the good case asks for jax only)"
    assert re.search(r"^ok: .*good\.yaml \(good-exp\)$", validate["stdout"], re.MULTILINE), validate["stdout"]
    assert len([r for r in validate["stderr"].splitlines() if r.startswith("invalid: ")]) == len(BATCH)
    doc = json.loads(run["stdout"])
    assert [c["id"] for c in doc["cases"]] == ["good-exp"]
    assert {r["framework"] for r in doc["cases"][0]["results"]} == {"jax"}
    assert all(r["verdict"] == "ok" for r in doc["cases"][0]["results"]), doc["cases"][0]["results"]
    assert sorted(Path(e["file"]).stem for e in doc["invalid"]) == sorted(BATCH)


def test_refusals_are_fast(audit):
    """A file refused while loading is refused at once: no framework, no tracing (a refusal by the shape check
    pays for importing JAX once). 5 s leaves room for a loaded machine; a refusal takes milliseconds."""
    slow = {k: round(r["seconds"], 2) for k, r in audit.items()
            if k.startswith("validate ") and r.get("exit_code") == 2 and r.get("stage") == "load" and r["seconds"] > 5}
    assert not slow, f"validate took more than 5 s on {slow}"


def test_free_text_is_printed_as_written_never_as_markup(audit):
    report = audit["markup run"]
    assert "hung" not in report and "died" not in report, report
    assert not report["crash"], f"a title crashed the table output:\n{report['crash'][-700:]}"
    assert report["exit_code"] == 0, report["stdout"] + report["stderr"]
    assert not side_effects(report), side_effects(report)
    assert MARKUP in report["stdout"], report["stdout"]
