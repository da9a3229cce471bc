"""The examples run as documented and show what they claim to."""

from __future__ import annotations

import base64
import hashlib
import hmac
import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from asgi_helpers import logged_reasons
from hmacguard import HMACAuth, HMACKey
from hmacguard.webhooks import StandardWebhooksAuth
from local_server import free_port
from redis_server import RedisServer
from uvicorn_server import UvicornServer

ROOT = Path(__file__).resolve().parent.parent
ROW = re.compile(
    r"^(?P<case>\S.*?)\s+"
    r"(?:(?P<accepted>accepted)\s+key=|REJECTED\s+(?P<status>\d{3}) (?P<reason>[a-z_]+): )"
)


def test_sign_and_verify_example_shows_every_outcome() -> None:
    """examples/sign_and_verify.py accepts the signed request and prints each rejection reason."""
    result = subprocess.run(  # noqa: S603  (our own interpreter, fixed arguments)
        [sys.executable, str(ROOT / "examples" / "sign_and_verify.py")],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        timeout=60,
    )
    assert result.stderr == ""
    rows = [m for m in map(ROW.match, result.stdout.splitlines()) if m]
    assert rows, result.stdout
    accepted = [row["case"] for row in rows if row["accepted"]]
    assert accepted == ["the request as signed"]
    assert rows[0]["accepted"]
    outcomes = {(row["reason"], row["status"]) for row in rows if not row["accepted"]}
    assert {
        ("digest_mismatch", "401"),
        ("invalid_signature", "401"),
        ("expired", "401"),
        ("missing_signature", "401"),
    } <= outcomes
    for name in ("Content-Digest", "Signature-Input", "Signature"):
        assert re.search(rf"^  {name}: \S", result.stdout, re.MULTILINE), name


# -- the server examples, under real uvicorn -------------------------------------------------
#
# Each server example runs as its README comment says: uvicorn imports it by name from
# examples/ (--app-dir examples), configured only by environment variables; the client
# examples run as subprocesses pointed at it. Every variable an example reads is passed
# explicitly (empty = unset), so the developer's own shell cannot change what is tested.

EXAMPLES = ROOT / "examples"
EXAMPLE_VARIABLES = (
    "HMACGUARD_URL",
    "HMACGUARD_KEY_ID",
    "HMACGUARD_SECRET",
    "HMACGUARD_NEXT_KEY_ID",
    "HMACGUARD_NEXT_SECRET",
    "HMACGUARD_KEY_ID_2",
    "HMACGUARD_SECRET_2",
    "HMACGUARD_REDIS_URL",
    "STANDARD_WEBHOOK_SECRET",
    "STRIPE_WEBHOOK_SECRET",
    "GITHUB_WEBHOOK_SECRET",
    "SLACK_SIGNING_SECRET",
    "WEBHOOK_URL",
    "PORT",
)
# One line per call printed by examples/client.py: "[phase] METHOD path -> status body".
CALL = re.compile(
    r"^\[(?P<phase>[^\]]+)\] (?P<method>[A-Z]+) (?P<path>\S+) -> (?P<status>\d{3}) (?P<body>.*)$"
)
SECRET = base64.b64encode(b"example-secret-one-32-bytes-long").decode()
NEXT_SECRET = base64.b64encode(b"example-secret-two-32-bytes-long").decode()
OTHER_SECRET = base64.b64encode(b"a-secret-no-example-server-knows").decode()
WEBHOOK_SECRETS = {
    "STANDARD_WEBHOOK_SECRET": "whsec_"
    + base64.b64encode(b"standard-webhooks-32-byte-secret").decode(),
    "STRIPE_WEBHOOK_SECRET": "whsec_example_stripe_endpoint_secret",
    "GITHUB_WEBHOOK_SECRET": "example github webhook secret",
    "SLACK_SIGNING_SECRET": "8f742231b10e8888abcd99yyyzzz85a5",
}


def example_env(**values: str) -> dict[str, str]:
    """Every variable an example reads, empty unless given here."""
    return {name: values.get(name, "") for name in EXAMPLE_VARIABLES}


def run_example(script: str, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    """Run examples/<script> with this interpreter and the given variables."""
    return subprocess.run(  # noqa: S603  (our own interpreter, our own example)
        [sys.executable, str(EXAMPLES / script), *args],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, **env},
        timeout=60,
        check=False,
    )


def calls(stdout: str) -> list[re.Match[str]]:
    """The call lines client.py printed."""
    return [m for m in map(CALL.match, stdout.splitlines()) if m]


@pytest.fixture(scope="module")
def internal_api() -> Iterator[UvicornServer]:
    """examples/internal_api.py with the current key and a next key (a rotation in progress)."""
    env = example_env(
        HMACGUARD_SECRET=SECRET,
        HMACGUARD_NEXT_KEY_ID="client-1-v2",
        HMACGUARD_NEXT_SECRET=NEXT_SECRET,
    )
    with UvicornServer("internal_api:app", app_dir=EXAMPLES, env=env) as server:
        yield server
        server.assert_no_server_errors()


def client_env(server: UvicornServer, **values: str) -> dict[str, str]:
    return example_env(HMACGUARD_URL=server.url, HMACGUARD_SECRET=SECRET, **values)


def test_internal_api_client_example_every_call_succeeds_sync_async_and_rotated(
    internal_api: UvicornServer,
) -> None:
    """client.py's sync, async and rotated-key calls all get 200, each answered for its own key."""
    env = client_env(
        internal_api, HMACGUARD_NEXT_KEY_ID="client-1-v2", HMACGUARD_NEXT_SECRET=NEXT_SECRET
    )
    result = run_example("client.py", env)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = calls(result.stdout)
    assert [line["phase"] for line in lines] == (
        ["sync client-1"] * 4 + ["async client-1"] * 3 + ["rotated client-1-v2"] * 4
    )
    assert {line["status"] for line in lines} == {"200"}
    assert {line["method"] for line in lines} == {"GET", "POST", "DELETE"}
    for line in lines:
        body = json.loads(line["body"])
        key_id = line["phase"].split()[1]
        # The server saw the key the client signed with: whoami, created_by, deleted_by.
        reported = body.get("key_id") or body.get("created_by") or body.get("deleted_by")
        if line["path"] != "/v1/items?limit=10":
            assert reported == key_id, line.string
    assert "rotating: client-1 -> client-1-v2" in result.stdout


def test_internal_api_refuses_unsigned_and_unknown_keys_but_serves_health(
    internal_api: UvicornServer,
) -> None:
    """Unsigned or wrongly keyed calls get 401 with the exact reason; exempt /health gets 200."""
    url = internal_api.url
    unsigned = httpx.get(f"{url}/v1/items")
    assert (unsigned.status_code, unsigned.json()["reason"]) == (401, "missing_signature")
    unsigned_delete = httpx.delete(f"{url}/v1/items/abc")
    assert (unsigned_delete.status_code, unsigned_delete.json()["reason"]) == (
        401,
        "missing_signature",
    )
    forged = httpx.get(f"{url}/v1/whoami", auth=HMACAuth("client-1", OTHER_SECRET))
    assert (forged.status_code, forged.json()["reason"]) == (401, "invalid_signature")
    health = httpx.get(f"{url}/health")
    assert (health.status_code, health.json()) == (200, {"status": "ok"})


def test_threat_R1_internal_api_replay_refused(internal_api: UvicornServer) -> None:
    """client.py --replay sends one signed request three times: 200, then two 401s (replayed)."""
    since = internal_api.log_size()
    result = run_example("client.py", client_env(internal_api), "--replay", "3")
    assert result.returncode == 0, result.stdout + result.stderr
    lines = calls(result.stdout)
    assert [line["status"] for line in lines] == ["200", "401", "401"]
    # Told like a bad MAC (THREATS K2); the server's log names the replay.
    reasons = [json.loads(line["body"]).get("reason") for line in lines[1:]]
    assert reasons == ["invalid_signature"] * 2
    assert logged_reasons(internal_api.log()[since:]) == ["replayed"] * 2
    assert result.stdout.rstrip().endswith("replays refused: yes")


HOW_TO = "export HMACGUARD_SECRET=$(hmacguard keygen)"


@pytest.mark.parametrize(
    "command",
    [
        ["examples/internal_api.py"],
        ["-m", "uvicorn", "internal_api:app", "--app-dir", "examples"],
        ["examples/fastapi_app.py"],
        ["examples/client.py"],
    ],
    ids=["internal_api", "internal_api-uvicorn", "fastapi_app", "client"],
)
def test_example_without_secret_exits_with_how_to(command: list[str]) -> None:
    """Without HMACGUARD_SECRET the example exits non-zero with one line saying how to make one."""
    result = subprocess.run(  # noqa: S603  (our own interpreter, fixed arguments)
        [sys.executable, *command],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, **example_env(PORT=str(free_port()))},
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    message = [line for line in result.stderr.splitlines() if "HMACGUARD_SECRET" in line]
    assert len(message) == 1, result.stderr
    assert message[0].startswith("HMACGUARD_SECRET is not set: ")
    assert HOW_TO in message[0]
    # The stdlib alternative it offers makes a secret the examples accept.
    code = re.search(r'python -c "([^"]+)"', message[0])
    assert code is not None, message[0]
    made = subprocess.run(  # noqa: S603  (our own interpreter, the example's own one-liner)
        [sys.executable, "-c", code[1]], capture_output=True, text=True, check=True, timeout=30
    ).stdout.strip()
    assert len(HMACKey("client-1", made).secret) == 32


# -- FastAPI --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fastapi_app() -> Iterator[UvicornServer]:
    """examples/fastapi_app.py with two clients' keys."""
    env = example_env(HMACGUARD_SECRET=SECRET, HMACGUARD_SECRET_2=NEXT_SECRET)
    with UvicornServer("fastapi_app:app", app_dir=EXAMPLES, env=env) as server:
        yield server
        server.assert_no_server_errors()


def test_fastapi_app_route_knows_which_client_called(fastapi_app: UvicornServer) -> None:
    """Each of two clients is identified by its key id, and sees only its own orders."""
    url = fastapi_app.url
    with (
        httpx.Client(base_url=url, auth=HMACAuth("client-1", SECRET)) as one,
        httpx.Client(base_url=url, auth=HMACAuth("client-2", NEXT_SECRET)) as two,
    ):
        assert one.get("/whoami").json()["client"] == "client-1"
        assert two.get("/whoami").json()["client"] == "client-2"
        placed = one.post("/orders", json={"sku": "A-1", "quantity": 2})
        assert placed.json() == {"sku": "A-1", "quantity": 2, "client": "client-1"}
        two.post("/orders", json={"sku": "B-7"}).raise_for_status()
        assert one.get("/orders").json()["orders"] == [
            {"sku": "A-1", "quantity": 2, "client": "client-1"}
        ]
        assert two.get("/orders").json()["orders"] == [
            {"sku": "B-7", "quantity": 1, "client": "client-2"}
        ]
    unsigned = httpx.get(f"{url}/whoami")
    assert (unsigned.status_code, unsigned.json()["reason"]) == (401, "missing_signature")
    assert httpx.get(f"{url}/health").json() == {"status": "ok"}


# -- webhooks -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def webhook_receiver() -> Iterator[UvicornServer]:
    """examples/webhook_receiver.py with all four providers' secrets."""
    env = example_env(**WEBHOOK_SECRETS)
    with UvicornServer("webhook_receiver:app", app_dir=EXAMPLES, env=env) as server:
        yield server
        server.assert_no_server_errors()


def test_webhook_sender_delivery_accepted_then_deduplicated(
    webhook_receiver: UvicornServer,
) -> None:
    """webhook_sender.py's delivery is accepted, and its redelivery answered as a duplicate."""
    env = example_env(
        STANDARD_WEBHOOK_SECRET=WEBHOOK_SECRETS["STANDARD_WEBHOOK_SECRET"],
        WEBHOOK_URL=f"{webhook_receiver.url}/webhooks/events",
    )
    result = run_example("webhook_sender.py", env)
    assert result.returncode == 0, result.stdout + result.stderr
    sent = re.findall(r"^(delivery|redelivery) (msg_\w+) .* -> (\d{3}) (.*)$", result.stdout, re.M)
    assert [(kind, status) for kind, _, status, _ in sent] == [
        ("delivery", "200"),
        ("redelivery", "200"),
    ]
    assert sent[0][1] == sent[1][1]  # the same webhook-id
    first, again = json.loads(sent[0][3]), json.loads(sent[1][3])
    assert first == {"received": "standard-webhooks", "id": sent[0][1], "type": "invoice.paid"}
    assert again == {"status": "duplicate"}


def _stripe(body: bytes) -> dict[str, str]:
    stamp = int(time.time())
    secret = WEBHOOK_SECRETS["STRIPE_WEBHOOK_SECRET"].encode()
    mac = hmac.new(secret, f"{stamp}.".encode() + body, hashlib.sha256).hexdigest()
    return {"stripe-signature": f"t={stamp},v1={mac}"}


def _github(body: bytes) -> dict[str, str]:
    secret = WEBHOOK_SECRETS["GITHUB_WEBHOOK_SECRET"].encode()
    mac = hmac.new(secret, body, hashlib.sha256).hexdigest()
    return {
        "x-hub-signature-256": f"sha256={mac}",
        "x-github-delivery": str(uuid.uuid4()),
        "x-github-event": "push",
    }


def _slack(body: bytes) -> dict[str, str]:
    stamp = str(int(time.time()))
    secret = WEBHOOK_SECRETS["SLACK_SIGNING_SECRET"].encode()
    mac = hmac.new(secret, f"v0:{stamp}:".encode() + body, hashlib.sha256).hexdigest()
    return {"x-slack-request-timestamp": stamp, "x-slack-signature": f"v0={mac}"}


PROVIDER_DELIVERIES = {
    "stripe": (
        "/webhooks/stripe",
        _stripe,
        {"id": "evt_1", "type": "invoice.paid"},
        {"received": "stripe", "id": "evt_1", "type": "invoice.paid"},
    ),
    "github": (
        "/webhooks/github",
        _github,
        {"ref": "refs/heads/main"},
        {"received": "github", "event": "push"},
    ),
    "slack": (
        "/webhooks/slack",
        _slack,
        {"type": "event_callback", "event_id": "Ev1"},
        {"received": "slack", "event_id": "Ev1", "type": "event_callback"},
    ),
}


@pytest.mark.parametrize("provider", sorted(PROVIDER_DELIVERIES))
def test_webhook_receiver_accepts_signed_and_refuses_tampered(
    webhook_receiver: UvicornServer, provider: str
) -> None:
    """A delivery signed the provider's way gets 200; the same headers on a changed body, 401."""
    path, sign, event, expected = PROVIDER_DELIVERIES[provider]
    body = json.dumps(event).encode()
    headers = {"content-type": "application/json", **sign(body)}
    url = webhook_receiver.url + path
    accepted = httpx.post(url, content=body, headers=headers)
    assert accepted.status_code == 200, accepted.text
    assert expected.items() <= accepted.json().items()
    tampered = httpx.post(url, content=body + b" ", headers=headers)  # one byte more
    assert (tampered.status_code, tampered.json()["reason"]) == (401, "invalid_signature")


def test_webhook_receiver_other_paths_need_rfc9421(webhook_receiver: UvicornServer) -> None:
    """Outside the webhook paths (and exempt /health) every request is refused."""
    response = httpx.post(f"{webhook_receiver.url}/webhooks/other", content=b"{}")
    assert (response.status_code, response.json()["reason"]) == (401, "missing_signature")
    assert httpx.get(f"{webhook_receiver.url}/health").json() == {"status": "ok"}


async def test_webhook_receiver_configures_only_paths_with_a_secret(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With only GITHUB_WEBHOOK_SECRET set, GitHub deliveries pass; /webhooks/events is not one."""
    for name, value in example_env(GITHUB_WEBHOOK_SECRET="only github").items():
        monkeypatch.setenv(name, value)
    spec = importlib.util.spec_from_file_location(
        "webhook_receiver_github_only", EXAMPLES / "webhook_receiver.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    body = b'{"zen": "Keep it simple."}'
    mac = hmac.new(b"only github", body, hashlib.sha256).hexdigest()
    github = {"x-hub-signature-256": f"sha256={mac}", "x-github-delivery": "d-1"}
    standard = StandardWebhooksAuth(WEBHOOK_SECRETS["STANDARD_WEBHOOK_SECRET"])
    transport = httpx.ASGITransport(app=module.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://hooks.example") as client:
        accepted = await client.post("/webhooks/github", content=body, headers=github)
        assert accepted.json() == {"received": "github", "event": "", "delivery": "d-1"}
        # A valid Standard Webhooks delivery: its path is not configured, so RFC 9421 applies.
        refused = await client.post("/webhooks/events", content=body, auth=standard)
        assert (refused.status_code, refused.json()["reason"]) == (401, "missing_signature")


def test_webhook_receiver_without_any_secret_exits_with_message() -> None:
    """Without any provider secret the receiver exits non-zero naming the four variables."""
    result = run_example("webhook_receiver.py", example_env())
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("no webhook secret is set")
    for name in WEBHOOK_SECRETS:
        assert name in last


# -- several workers and Redis: examples/multi_worker.md ----------------------------------------

MULTI_WORKER = EXAMPLES / "multi_worker.md"
SH_BLOCK = re.compile(r"^```sh\n(?P<code>.*?)^```$", re.MULTILINE | re.DOTALL)


def md_commands() -> list[list[str]]:
    """The commands of multi_worker.md's ```sh blocks, split as the shell would."""
    text = MULTI_WORKER.read_text(encoding="utf-8")
    commands = []
    for block in SH_BLOCK.finditer(text):
        for line in block["code"].replace("\\\n", " ").splitlines():
            assignment = re.match(r"^export (\w+)=\$\((.*)\)$", line.strip())
            if assignment:  # export NAME=$(command): check the name and the command
                commands += [["export", f"{assignment[1]}=..."], shlex.split(assignment[2])]
            elif line.strip():
                commands.append(shlex.split(line, comments=True))
    return [command for command in commands if command]


def md_uvicorn_command() -> list[str]:
    """The first uvicorn command of multi_worker.md (the one with Redis)."""
    return next(command for command in md_commands() if command[0] == "uvicorn")


def _option_value(command: list[str], option: str) -> str:
    return command[command.index(option) + 1]


def _help(argv: list[str]) -> str:
    """What ``argv`` (a --help command) prints, on either stream."""
    result = subprocess.run(  # noqa: S603  (fixed programs, --help only)
        argv, capture_output=True, text=True, timeout=30, check=False, cwd=ROOT
    )
    return result.stdout + result.stderr


def test_multi_worker_md_commands_name_files_and_options_that_exist() -> None:
    """Every command multi_worker.md shows names a file, option or variable that exists."""
    commands = md_commands()
    assert {command[0] for command in commands} <= {
        "pip",
        "redis-server",
        "export",
        "unset",
        "uvicorn",
        "python",
        "redis-cli",
    }, commands
    sources = "\n".join(path.read_text() for path in EXAMPLES.glob("*.py"))
    pyproject = (ROOT / "pyproject.toml").read_text()
    uvicorn_help = _help([sys.executable, "-m", "uvicorn", "--help"])
    seen = set()
    for command in commands:
        program, args = command[0], command[1:]
        seen.add(program)
        options = [arg for arg in args if arg.startswith("-") and arg != "-c"]
        if program == "pip":
            assert args[0] == "install"
            for requirement in args[1:]:
                name, _, extras = requirement.partition("[")
                for extra in filter(None, extras.rstrip("]").split(",")):
                    assert re.search(rf"^{extra} = \[", pyproject, re.M), extra
                assert name == "hmacguard" or f'"{name}>=' in pyproject, name
        elif program in ("export", "unset"):
            name = args[0].split("=")[0]
            assert f'"{name}"' in sources, f"no example reads {name}"
        elif program == "uvicorn":
            module, _, attribute = args[0].partition(":")
            app_dir = ROOT / _option_value(command, "--app-dir")
            assert re.search(rf"^{attribute} = ", (app_dir / f"{module}.py").read_text(), re.M)
            for option in options:
                assert re.search(rf"\s{option}\b", uvicorn_help), option
        elif program == "python":
            if args[0] == "-c":  # the secret one-liner: it must make a usable secret
                made = subprocess.run(  # noqa: S603  (our own interpreter, the page's code)
                    [sys.executable, *args], capture_output=True, text=True, check=True
                ).stdout.strip()
                assert len(HMACKey("k", made).secret) == 32
                continue
            script = ROOT / args[0]
            assert script.is_file(), args[0]
            script_help = _help([sys.executable, str(script), "--help"])
            for option in options:
                assert option in script_help, option
        elif program == "redis-cli":
            binary = shutil.which("redis-cli")
            if binary is not None:
                cli_help = _help([binary, "--help"])
                for option in options:
                    assert option in cli_help, option
        # redis-server's options are checked by starting it with them (the Redis tests).
    assert {"pip", "redis-server", "export", "uvicorn", "python"} <= seen
    uvicorn = md_uvicorn_command()
    assert _option_value(uvicorn, "--workers") == "4"
    assert _option_value(uvicorn, "--app-dir") == "examples"
    for link in re.findall(r"\]\(([^)#]+)\)", MULTI_WORKER.read_text()):
        assert (EXAMPLES / link).exists(), link


def md_redis_options() -> list[str]:
    """multi_worker.md's redis-server options, without the port (the test picks a free one)."""
    command = next(command for command in md_commands() if command[0] == "redis-server")
    options = command[1:]
    at = options.index("--port")
    return options[:at] + options[at + 2 :]


@pytest.fixture(scope="module")
def redis_workers() -> Iterator[tuple[RedisServer, UvicornServer]]:
    """Redis started with multi_worker.md's options, and its uvicorn command with 2 workers."""
    uvicorn = md_uvicorn_command()
    with RedisServer(options=md_redis_options()) as redis_server:
        env = example_env(HMACGUARD_SECRET=SECRET, HMACGUARD_REDIS_URL=redis_server.url)
        server = UvicornServer(
            uvicorn[1],
            app_dir=ROOT / _option_value(uvicorn, "--app-dir"),
            env=env,
            workers=2,
        )
        with server:
            yield redis_server, server
            server.assert_no_server_errors()


@pytest.mark.redis
def test_multi_worker_redis_client_calls_succeed_and_use_redis(
    redis_workers: tuple[RedisServer, UvicornServer],
) -> None:
    """With HMACGUARD_REDIS_URL, client.py's calls all pass and each nonce lands in Redis."""
    redis_server, server = redis_workers
    with redis_server.client() as redis_client:
        before = redis_client.dbsize()
        result = run_example("client.py", client_env(server))
        after = redis_client.dbsize()
    assert result.returncode == 0, result.stdout + result.stderr
    lines = calls(result.stdout)
    assert len(lines) == 7
    assert {line["status"] for line in lines} == {"200"}
    assert after - before == len(lines)  # one nonce per signed call, in the shared store


@pytest.mark.redis
def test_threat_R4_multi_worker_replay_refused_by_every_worker(
    redis_workers: tuple[RedisServer, UvicornServer],
) -> None:
    """A request accepted by one worker is refused as replayed by the other worker too."""
    _, server = redis_workers
    pids: set[str] = set()
    for _ in range(3):  # the kernel picks the worker; three runs of 12 copies reach both
        since = server.log_size()
        result = run_example("client.py", client_env(server), "--replay", "12")
        assert result.returncode == 0, result.stdout + result.stderr
        lines = calls(result.stdout)
        assert [line["status"] for line in lines] == ["200"] + ["401"] * 11
        # Told like a bad MAC (THREATS K2); both workers log to the server's log: replayed.
        assert {json.loads(line["body"])["reason"] for line in lines[1:]} == {"invalid_signature"}
        assert logged_reasons(server.log()[since:]) == ["replayed"] * 11
        workers = [re.search(r"worker (\d+)", line["phase"]) for line in lines]
        accepted_by = workers[0][1] if workers[0] else None
        refused_by = {match[1] for match in workers[1:] if match}
        pids |= refused_by
        if refused_by - {accepted_by}:
            break
    assert len(pids) == 2, f"every copy reached the same worker: {pids}"


@pytest.fixture(scope="module")
def memory_workers() -> Iterator[UvicornServer]:
    """multi_worker.md's section 6: the same two workers without HMACGUARD_REDIS_URL."""
    uvicorn = md_uvicorn_command()
    env = example_env(HMACGUARD_SECRET=SECRET)
    app_dir = ROOT / _option_value(uvicorn, "--app-dir")
    with UvicornServer(uvicorn[1], app_dir=app_dir, env=env, workers=2) as server:
        yield server
        server.assert_no_server_errors()


def test_threat_R4_multi_worker_memory_store_lets_a_copy_through(
    memory_workers: UvicornServer,
) -> None:
    """Without Redis a copy that reaches the other worker is accepted (multi_worker.md, step 6)."""
    for _ in range(3):  # the kernel picks the worker; three runs of 12 copies reach both
        result = run_example("client.py", client_env(memory_workers), "--replay", "12")
        lines = calls(result.stdout)
        accepted = [line for line in lines if line["status"] == "200"]
        if len(accepted) > 1:
            break
    # Each worker accepts the request once: two workers, two acceptances, from two pids.
    assert len(accepted) == 2, result.stdout
    assert len({line["phase"].rsplit(" ", 1)[1] for line in accepted}) == 2  # two worker pids
    assert result.returncode == 1
    assert result.stdout.rstrip().endswith("replays refused: NO")


@pytest.mark.parametrize(
    ("script", "env"),
    [
        ("internal_api.py", example_env(HMACGUARD_SECRET=SECRET)),
        ("fastapi_app.py", example_env(HMACGUARD_SECRET=SECRET)),
        ("webhook_receiver.py", example_env(GITHUB_WEBHOOK_SECRET="github secret")),
    ],
)
def test_server_example_runs_as_a_script_on_port(script: str, env: dict[str, str]) -> None:
    """`python examples/<server>.py` serves on 127.0.0.1 at PORT: /health answers 200 unsigned."""
    port = free_port()
    process = subprocess.Popen(  # noqa: S603  (our own interpreter, our own example)
        [sys.executable, str(EXAMPLES / script)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        cwd=ROOT,
        env={**os.environ, **env, "PORT": str(port)},
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            assert process.poll() is None, process.communicate()[1]
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=1)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, f"{script} did not serve on port {port}"
                time.sleep(0.05)
        assert (health.status_code, health.json()) == (200, {"status": "ok"})
        signed_only = httpx.get(f"http://127.0.0.1:{port}/v1/items", timeout=5)
        assert signed_only.json()["reason"] == "missing_signature"
    finally:
        process.terminate()
        process.communicate(timeout=10)
