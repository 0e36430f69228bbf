#!/usr/bin/env python3
"""The docs check: the commands and links of the documentation, so that it cannot rot.

Reads README.md, docs/*.md, CHANGELOG.md and infra/README.md (Python 3.11, stdlib only):

- Every fenced block whose info string is sh, bash, shell or console is a command block,
  and the line just before its fence says how it is checked: `<!-- check: KIND -->`
  (the kinds are in KINDS below; docs/testing.md explains them).
- Every command of every command block must exist: a `scripts/X` file, executable; a
  binary of the workspace (`cargo run --bin NAME -- SUB`, `revguard SUB`,
  `revguard-ops SUB`) with that subcommand and those flags, read from the built
  binary's own help (target/debug/NAME: `cargo test --workspace --all-targets`, which
  scripts/test runs, builds it); `cargo test|bench|run -p PKG --test|--bench|--example
  NAME` an existing package and target; any repository path it names (events/…,
  scripts/…).
- Blocks marked `run` are run, offline, in a scratch directory: the check starts
  target/debug/revguard serve on a free loopback port, and `revguard` (or
  `cargo run --release --bin revguard --`) runs the debug binary against it. A full-line
  comment right after a command is its expected output (`…` matches anything).
- Every relative link [text](path#anchor) resolves to a file, and its anchor to a
  heading of that file (GitHub's slugs).

Prints one line per block and a summary; exits 1 on any failure.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import tomllib
import unicodedata
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TARGET = Path(os.environ.get("CARGO_TARGET_DIR") or ROOT / "target")
if not TARGET.is_absolute():
    TARGET = ROOT / TARGET
DEBUG = TARGET / "debug"

KINDS = {
    "run": "run offline against the check's own revguard serve",
    "slow": "checked, not run: a long run (scripts/test, scripts/load, a build, a benchmark)",
    "needs-aws": "checked, not run: needs an AWS account or a deployed stack",
    "needs-stripe": "checked, not run: needs a Stripe account or API key",
    "needs-data": "checked, not run: needs state a fresh database does not have",
}
COMMAND_INFOS = {"sh", "bash", "shell", "console"}
MARKER = re.compile(r"^\s*<!--\s*check:\s*(.*?)\s*-->\s*$")
FENCE = re.compile(r"^(\s*)(`{3,}|~{3,})\s*([^`\s]*)")
HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
COMMAND_TIMEOUT_SECS = 90
# `cargo run … --bin revguard --` (any cargo flags), or a built revguard: the check's binary.
CARGO_RUN_REVGUARD = re.compile(
    r"(?:cargo\s+run(?:\s+-\S+)*\s+--bin\s+revguard(?:\s+-\S+)*\s+--(?=\s|$))"
    r"|(?:(?:\./)?target/(?:debug|release)/revguard(?=\s|$))"
)
LOCAL_SERVER = re.compile(r"(?:127\.0\.0\.1|localhost):8787")


def doc_files() -> list[Path]:
    files = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
    files += [ROOT / "CHANGELOG.md", ROOT / "infra" / "README.md"]
    return [f for f in files if f.exists()]


def rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


# ---- Markdown --------------------------------------------------------------------------


@dataclass
class Block:
    file: Path
    line: int  # the opening fence, 1-based
    info: str
    lines: list[str]
    kinds: list[str] | None  # None: no marker


@dataclass
class Doc:
    path: Path
    blocks: list[Block] = field(default_factory=list)
    anchors: set[str] = field(default_factory=set)
    prose: list[str] = field(default_factory=list)  # code blanked, for the links


def slug_base(heading: str) -> str:
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # links: their text
    text = re.sub(r"<[^>]+>", "", text)  # inline HTML
    text = text.replace("`", "").replace("*", "").lower()
    kept = []
    for ch in text:
        cat = unicodedata.category(ch)
        if ch in " -" or cat[0] in "LMN" or cat == "Pc":
            kept.append(ch)
    return "".join(kept).replace(" ", "-")


def parse(path: Path) -> Doc:
    doc = Doc(path)
    lines = path.read_text(encoding="utf-8").split("\n")
    seen: dict[str, int] = {}
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if m:
            fence, info = m.group(2), m.group(3).lower()
            body, j = [], i + 1
            while j < len(lines):
                close = FENCE.match(lines[j])
                if (
                    close
                    and close.group(2)[0] == fence[0]
                    and len(close.group(2)) >= len(fence)
                    and not lines[j].strip().strip(fence[0])
                ):
                    break
                body.append(lines[j])
                j += 1
            kinds = None
            if i > 0:
                marker = MARKER.match(lines[i - 1])
                if marker:
                    kinds = [k for k in re.split(r"[\s,]+", marker.group(1)) if k]
            doc.blocks.append(Block(path, i + 1, info, body, kinds))
            doc.prose.extend([""] * (j - i + 1))
            i = j + 1
            continue
        h = HEADING.match(lines[i])
        if h:
            base = slug_base(h.group(2))
            n = seen.get(base, 0)
            doc.anchors.add(base if n == 0 else f"{base}-{n}")
            seen[base] = n + 1
        # Inline code carries no links: blanked, columns kept.
        doc.prose.append(re.sub(r"(`+)(.+?)\1", lambda c: " " * len(c.group(0)), lines[i]))
        i += 1
    return doc


LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)", re.M)


def check_links(doc: Doc, docs: dict[Path, Doc]) -> list[str]:
    problems = []
    text = "\n".join(doc.prose)
    targets = [(m.start(), m.group(1)) for m in LINK.finditer(text)]
    targets += [(m.start(), m.group(1)) for m in REFERENCE.finditer(text)]
    for offset, target in sorted(targets):
        line = text.count("\n", 0, offset) + 1
        where = f"{rel(doc.path)}:{line}"
        if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", target) or target.startswith("//"):
            continue  # another site
        path_part, _, anchor = target.partition("#")
        dest = doc.path
        if path_part:
            dest = (doc.path.parent / urllib.parse.unquote(path_part)).resolve()
            if not dest.exists():
                problems.append(f"{where}: link to {target}: no such file {path_part}")
                continue
            try:
                dest.relative_to(ROOT)
            except ValueError:
                problems.append(f"{where}: link to {target} leaves the repository")
                continue
        if anchor:
            if dest.suffix != ".md" or dest.is_dir():
                problems.append(f"{where}: link to {target}: an anchor in a file that is not Markdown")
                continue
            if dest not in docs:
                docs[dest] = parse(dest)
            if urllib.parse.unquote(anchor).lower() not in docs[dest].anchors:
                problems.append(
                    f"{where}: link to {target}: {rel(dest)} has no heading #{anchor}"
                    f" (its anchors: {', '.join(sorted(docs[dest].anchors))})"
                )
    return problems


# ---- The workspace ---------------------------------------------------------------------


@dataclass
class Package:
    name: str
    dir: Path
    bins: set[str]
    tests: set[str]
    benches: set[str]
    examples: set[str]


def workspace() -> dict[str, Package]:
    root = tomllib.loads((ROOT / "Cargo.toml").read_text())
    dirs: list[Path] = []
    for member in root.get("workspace", {}).get("members", []):
        dirs.extend(sorted(ROOT.glob(member)))
    packages = {}
    for d in dirs:
        manifest = tomllib.loads((d / "Cargo.toml").read_text())
        name = manifest["package"]["name"]

        def targets(kind: str, folder: str) -> set[str]:
            names = {t["name"] for t in manifest.get(kind, []) if "name" in t}
            names |= {p.stem for p in (d / folder).glob("*.rs")}
            names |= {p.parent.name for p in (d / folder).glob("*/main.rs")}
            return names

        bins = {t["name"] for t in manifest.get("bin", []) if "name" in t}
        if (d / "src" / "main.rs").exists() and not any(
            t.get("path") == "src/main.rs" for t in manifest.get("bin", [])
        ):
            bins.add(name)
        bins |= {p.stem for p in (d / "src" / "bin").glob("*.rs")}
        packages[name] = Package(
            name,
            d,
            bins,
            targets("test", "tests"),
            targets("bench", "benches"),
            targets("example", "examples"),
        )
    return packages


class Help:
    """Subcommands and flags of a built binary, read from its own `help`."""

    def __init__(self) -> None:
        self.cache: dict[tuple[str, ...], tuple[list[str], set[str]] | str] = {}

    def of(self, name: str, chain: list[str]) -> tuple[list[str], set[str]] | str:
        key = (name, *chain)
        if key not in self.cache:
            binary = DEBUG / name
            if not binary.exists():
                self.cache[key] = (
                    f"target/debug/{name} is missing: build it with `cargo build --bin {name}`"
                    " (scripts/test builds it), then run the check again"
                )
            else:
                out = subprocess.run(
                    [str(binary), "help", *chain],
                    capture_output=True,
                    text=True,
                    timeout=30,
                    env=clean_env(),
                )
                if out.returncode != 0:
                    self.cache[key] = f"`{name} help {' '.join(chain)}` failed: {out.stderr.strip()}"
                else:
                    self.cache[key] = parse_help(out.stdout)
        return self.cache[key]


def parse_help(text: str) -> tuple[list[str], set[str]]:
    commands: list[str] = []
    flags: set[str] = set()
    section = None
    for line in text.splitlines():
        if re.match(r"^\S.*:$", line):
            section = line[:-1].strip().lower()
            continue
        if section == "commands":
            m = re.match(r"^\s{2}(\S+)", line)
            if m:
                commands.append(m.group(1))
        elif section == "options":
            m = re.match(r"^\s+(?:-(\w),\s+)?--([\w-]+)", line) or re.match(r"^\s+-(\w)\b", line)
            if m:
                if m.re.groups == 2:
                    if m.group(1):
                        flags.add("-" + m.group(1))
                    flags.add("--" + m.group(2))
                else:
                    flags.add("-" + m.group(1))
    return commands, flags


def clean_env() -> dict[str, str]:
    """The environment without revguard's or Stripe's settings, which would change what a
    command reads (a database, a secret, a key)."""
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("REVGUARD_", "STRIPE_")) and k != "AWS_ENDPOINT_URL"
    }


# ---- Commands --------------------------------------------------------------------------


@dataclass
class Command:
    line: int  # in the file
    text: str  # continuation lines joined, prompt and trailing comment removed
    expected: list[str]  # full-line comments right after it (console: its output)


def strip_comment(line: str) -> str:
    quote = None
    for i, ch in enumerate(line):
        if quote:
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1].isspace()):
            return line[:i].rstrip()
    return line.rstrip()


def commands_of(block: Block) -> list[Command]:
    out: list[Command] = []
    console = block.info == "console"
    i = 0
    last: Command | None = None
    while i < len(block.lines):
        raw = block.lines[i]
        number = block.line + 1 + i
        stripped = raw.strip()
        if console and not stripped.startswith("$"):
            if stripped and last:
                last.expected.append(stripped)
            i += 1
            continue
        if not stripped:
            last = None
            i += 1
            continue
        if stripped.startswith("#"):
            if last is not None:
                last.expected.append(stripped[1:].strip())
            i += 1
            continue
        text = stripped[1:].lstrip() if console else stripped
        while text.endswith("\\") and i + 1 < len(block.lines):
            i += 1
            text = text[:-1].rstrip() + " " + block.lines[i].strip()
        last = Command(number, strip_comment(text), [])
        out.append(last)
        i += 1
    return out


def split_top(text: str) -> list[str]:
    """A command line's simple commands: split on ;, &&, || and | outside quotes."""
    parts, current, quote, i = [], [], None, 0
    while i < len(text):
        ch = text[i]
        if quote:
            current.append(ch)
            if ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
            current.append(ch)
        elif text.startswith(("&&", "||"), i):
            parts.append("".join(current))
            current = []
            i += 1
        elif ch in ";|":
            parts.append("".join(current))
            current = []
        else:
            current.append(ch)
        i += 1
    parts.append("".join(current))
    return [p.strip() for p in parts if p.strip()]


FUNCTION = re.compile(r"^([A-Za-z_][\w-]*)\s*\(\)\s*\{\s*(.*?)\s*;?\s*\}$")
ENV_ASSIGNMENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*=")
REPO_PATH = re.compile(r"^(?:\./)?((?:scripts|events|infra|functions|docs)/[^\s]*)$")
PLACEHOLDER = re.compile(r"[<>…*$]|\.\.\.")
VALUE_FLAGS = {
    "-p", "--package", "--bin", "--test", "--bench", "--example", "--features", "-F",
    "--target", "-j", "--jobs", "--manifest-path", "--profile", "--target-dir", "--color",
    "--message-format", "--data-file",
}


class Checker:
    def __init__(self) -> None:
        self.packages = workspace()
        self.bins = {b: p for p in self.packages.values() for b in p.bins}
        self.help = Help()

    def tokens(self, simple: str) -> list[str] | str:
        try:
            tokens = shlex.split(simple)
        except ValueError as e:
            return f"cannot read `{simple}`: {e}"
        kept, skip = [], False
        for t in tokens:
            if skip:
                skip = False
            elif t in (">", ">>", "<", "2>", "2>>", "&>"):
                skip = True
            elif not re.match(r"^\d?>&\d$", t):
                kept.append(t)
        while kept and ENV_ASSIGNMENT.match(kept[0]):
            kept.pop(0)
        return kept

    def check_command(self, text: str) -> list[str]:
        m = FUNCTION.match(text)
        if m:  # e.g. revguard() { cargo run --release -q --bin revguard -- "$@"; }
            return self.check_command(m.group(2))
        problems: list[str] = []
        for simple in split_top(text):
            tokens = self.tokens(simple)
            if isinstance(tokens, str):
                problems.append(tokens)
                continue
            problems += self.check_tokens(tokens)
        return problems

    def check_tokens(self, tokens: list[str]) -> list[str]:
        if not tokens:
            return []
        problems = []
        for t in tokens:
            m = REPO_PATH.match(t.strip("[](),'\""))
            if m and not PLACEHOLDER.search(m.group(1)):
                if not (ROOT / m.group(1)).exists():
                    problems.append(f"{m.group(1)} does not exist")
        cmd = tokens[0].removeprefix("./")
        name = cmd.rsplit("/", 1)[-1]
        if cmd.startswith("scripts/"):
            path = ROOT / cmd
            if path.exists() and not os.access(path, os.X_OK):
                problems.append(f"{cmd} is not executable (chmod +x {cmd})")
            if cmd == "scripts/test":  # its arguments are cargo test's
                problems += self.check_cargo(["test", *tokens[1:]])
        elif cmd == "cargo":
            problems += self.check_cargo(tokens[1:])
        elif name in self.bins and (cmd == name or cmd.startswith("target/")):
            problems += self.check_cli(name, tokens[1:])
        return problems

    def check_cargo(self, args: list[str]) -> list[str]:
        if not args:
            return []
        sub, rest = args[0], args[1:]
        if sub == "lambda":
            return self.check_cargo_lambda(rest)
        if sub not in ("run", "build", "test", "bench", "check", "clippy", "doc"):
            return []
        opts: dict[str, list[str]] = {}
        trailing: list[str] = []
        i = 0
        while i < len(rest):
            a = rest[i]
            if a == "--":
                trailing = rest[i + 1 :]
                break
            if "=" in a and a.split("=", 1)[0] in VALUE_FLAGS:
                key, value = a.split("=", 1)
                opts.setdefault(key, []).append(value)
            elif a in VALUE_FLAGS and i + 1 < len(rest):
                opts.setdefault(a, []).append(rest[i + 1])
                i += 1
            i += 1
        problems = []
        pkgs = []
        for p in opts.get("-p", []) + opts.get("--package", []):
            if p not in self.packages:
                problems.append(f"no package {p} in the workspace (it has: {', '.join(sorted(self.packages))})")
            else:
                pkgs.append(self.packages[p])
        scope = pkgs or list(self.packages.values())
        for flag, attr, folder in (
            ("--bin", "bins", "src/main.rs or [[bin]]"),
            ("--test", "tests", "tests/NAME.rs"),
            ("--bench", "benches", "benches/NAME.rs"),
            ("--example", "examples", "examples/NAME.rs"),
        ):
            for target in opts.get(flag, []):
                if not any(target in getattr(p, attr) for p in scope):
                    where = " or ".join(p.name for p in pkgs) if pkgs else "any package"
                    problems.append(f"{flag} {target}: not in {where} ({folder})")
        if sub == "run" and not problems:
            bins = opts.get("--bin", [])
            if not bins and not opts.get("--example") and len(scope) == 1 and len(scope[0].bins) == 1:
                bins = sorted(scope[0].bins)
            if bins:
                problems += self.check_cli(bins[0], trailing)
        return problems

    def check_cargo_lambda(self, args: list[str]) -> list[str]:
        problems = []
        if not args:
            return problems
        names = [args[i + 1] for i, a in enumerate(args[:-1]) if a == "--bin"]
        if args[0] == "invoke":
            positional = [a for i, a in enumerate(args[1:], 1) if not a.startswith("-") and args[i - 1] not in VALUE_FLAGS]
            names += positional[:1]
        for n in names:
            if n not in self.bins:
                problems.append(f"cargo lambda: no binary {n} in the workspace")
        return problems

    def check_cli(self, name: str, args: list[str]) -> list[str]:
        if args and args[0] in ('"$@"', "$@", "$*"):
            return []
        chain: list[str] = []
        help_ = self.help.of(name, chain)
        if isinstance(help_, str):
            return [help_]
        i = 0
        while help_[0] and i < len(args) and not args[i].startswith("-"):
            sub = args[i]
            if sub not in help_[0]:
                shown = " ".join([name, *chain])
                return [f"`{shown} {sub}`: no such subcommand (`{shown}` has: {', '.join(help_[0])})"]
            chain.append(sub)
            i += 1
            if sub == "help":
                return []
            help_ = self.help.of(name, chain)
            if isinstance(help_, str):
                return [help_]
        if help_[0] and not any(a in ("-h", "--help", "-V", "--version") for a in args[i:]):
            shown = " ".join([name, *chain])
            return [f"`{shown}` needs a subcommand ({', '.join(help_[0])})"]
        problems = []
        for a in args[i:]:
            if a == "--":
                break
            flag = a.strip("[]").split("=", 1)[0]
            if re.match(r"^--[a-z0-9][\w-]*$", flag) or re.match(r"^-[A-Za-z]$", flag):
                if flag not in help_[1] and flag not in ("--help", "-h"):
                    shown = " ".join([name, *chain])
                    problems.append(f"`{shown}` has no option {flag} (`{name} help {' '.join(chain)}`)")
        return problems


# ---- Running ---------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Scratch:
    """A scratch directory with events/ linked in and the check's own `revguard serve`."""

    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="check-docs-"))
        (self.dir / "events").symlink_to(ROOT / "events", target_is_directory=True)
        self.secret = "whsec_check_docs_" + os.urandom(12).hex()
        self.server: subprocess.Popen | None = None
        self.port = 0
        self.log = self.dir / "check-docs-serve.log"

    def env(self) -> dict[str, str]:
        env = clean_env()
        env.update(
            STRIPE_WEBHOOK_SECRET=self.secret,
            RUST_LOG="warn",
            CHECK_DOCS_BIN=str(DEBUG / "revguard"),
            CHECK_DOCS_URL=f"http://127.0.0.1:{self.port}/webhook",
        )
        return env

    def serve(self, args: list[str]) -> str | None:
        """(Re)starts the server with a `revguard serve`'s arguments, on a port of its own."""
        self.stop()
        args = list(args)
        if "--addr" in args:
            i = args.index("--addr")
            del args[i : i + 2]
        args = [a for a in args if not a.startswith("--addr=")]
        self.port = free_port()
        env = self.env()
        env["REVGUARD_DETECT_INTERVAL_SECS"] = "0"
        with open(self.log, "ab") as log:
            self.server = subprocess.Popen(
                [str(DEBUG / "revguard"), "serve", "--addr", f"127.0.0.1:{self.port}", *args],
                cwd=self.dir,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.server.poll() is not None:
                return f"revguard serve {' '.join(args)} exited: {self.log.read_text()[-2000:]}"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/healthz", timeout=1):
                    return None
            except (urllib.error.URLError, OSError):
                time.sleep(0.1)
        return "revguard serve did not answer /healthz within 30 s"

    def stop(self) -> None:
        if self.server and self.server.poll() is None:
            self.server.terminate()
            try:
                self.server.wait(10)
            except subprocess.TimeoutExpired:
                self.server.kill()
                self.server.wait()
        self.server = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


PRELUDE = """set -o pipefail
revguard() {
    if [ "${1:-}" = send ] && [[ " $* " != *" --url "* ]]; then
        shift; "$CHECK_DOCS_BIN" send --url "$CHECK_DOCS_URL" "$@"
    else
        "$CHECK_DOCS_BIN" "$@"
    fi
}
"""


def matches(expected: str, output: list[str], start: int) -> int | None:
    pattern = ".*".join(re.escape(p.strip()) for p in re.split(r"…|\.\.\.", expected))
    for n in range(start, len(output)):
        if re.fullmatch(pattern, output[n].strip()):
            return n + 1
    return None


def run_block(block: Block, scratch: Scratch) -> tuple[list[str], int]:
    problems, ran = [], 0
    for cmd in commands_of(block):
        where = f"{rel(block.file)}:{cmd.line}"
        if FUNCTION.match(cmd.text):
            continue  # the check's own revguard() stands in for it
        text = CARGO_RUN_REVGUARD.sub("revguard", cmd.text)
        text = LOCAL_SERVER.sub(f"127.0.0.1:{scratch.port}", text)
        try:
            words = shlex.split(text)
        except ValueError:
            words = []
        if words[:2] == ["revguard", "serve"]:
            failed = scratch.serve(words[2:])
            if failed:
                problems.append(f"{where}: {failed}")
                return problems, ran
            continue
        started = time.monotonic()
        try:
            out = subprocess.run(
                ["bash", "-c", PRELUDE + text],
                cwd=scratch.dir,
                env=scratch.env(),
                capture_output=True,
                text=True,
                timeout=COMMAND_TIMEOUT_SECS,
            )
        except subprocess.TimeoutExpired:
            problems.append(f"{where}: `{cmd.text}` ran over {COMMAND_TIMEOUT_SECS} s")
            continue
        ran += 1
        lines = out.stdout.splitlines()
        tail = "\n".join(f"    | {l}" for l in (out.stdout + out.stderr).splitlines()[-15:])
        if out.returncode != 0:
            problems.append(f"{where}: `{cmd.text}` exited {out.returncode}:\n{tail}")
            continue
        at = 0
        for expected in cmd.expected:
            if not expected.strip("….").strip():
                continue
            found = matches(expected, lines, at)
            if found is None:
                problems.append(
                    f"{where}: `{cmd.text}` did not print `{expected}` (a full-line comment right"
                    f" after a command in a run block is its expected output):\n{tail}"
                )
                break
            at = found
        if os.environ.get("CHECK_DOCS_VERBOSE"):
            print(f"    {time.monotonic() - started:5.1f} s  {cmd.text}")
    return problems, ran


# ---- Main ------------------------------------------------------------------------------


def main() -> int:
    started = time.monotonic()
    checker = Checker()
    docs = {p.resolve(): parse(p) for p in doc_files()}
    failures: list[str] = []
    counts: dict[str, int] = {}
    blocks = 0
    for doc in list(docs.values()):
        for block in doc.blocks:
            if block.info not in COMMAND_INFOS:
                continue
            blocks += 1
            where = f"{rel(block.file)}:{block.line}"
            if block.kinds is None:
                failures.append(
                    f"{where}: a ```{block.info} block without a marker: put"
                    " `<!-- check: KIND -->` on the line just before its fence, KIND one of "
                    f"{', '.join(KINDS)} (docs/testing.md); an output sample takes ``` or ```text"
                )
                print(f"FAIL  {where}  (no marker)")
                continue
            unknown = [k for k in block.kinds if k not in KINDS]
            if unknown:
                failures.append(f"{where}: unknown check kind {', '.join(unknown)} (known: {', '.join(KINDS)})")
                print(f"FAIL  {where}  (unknown kind)")
                continue
            problems = []
            commands = commands_of(block)
            for cmd in commands:
                problems += [f"{rel(block.file)}:{cmd.line}: {p}" for p in checker.check_command(cmd.text)]
            label = " ".join(block.kinds)
            ran = 0
            if "run" in block.kinds and not problems:
                scratch = Scratch()
                try:
                    failed = scratch.serve([])
                    if failed:
                        problems.append(f"{where}: {failed}")
                    else:
                        more, ran = run_block(block, scratch)
                        problems += more
                finally:
                    scratch.close()
            for k in block.kinds:
                counts[k] = counts.get(k, 0) + 1
            state = "FAIL" if problems else "ok  "
            done = f"{len(commands)} command(s) checked" + (f", {ran} run" if "run" in block.kinds else "")
            print(f"{state}  {where}  [{label}]  {done}")
            failures += problems
    for doc in docs.values():
        problems = check_links(doc, docs)
        links = "links" if not problems else f"{len(problems)} broken link(s)"
        print(f"{'FAIL' if problems else 'ok  '}  {rel(doc.path)}  {links}")
        failures += problems
    kinds = ", ".join(f"{counts[k]} {k}" for k in KINDS if k in counts)
    print(
        f"\ncheck_docs: {len(docs)} files, {blocks} command blocks ({kinds or 'none'}),"
        f" {time.monotonic() - started:.1f} s"
    )
    if failures:
        print(f"\n{len(failures)} problem(s):", file=sys.stderr)
        for f in failures:
            print(f"  {f}", file=sys.stderr)
        return 1
    print("check_docs: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
