"""The built-in RESP2 client (``hmacguard._resp``) that RedisNonceStore uses for a URL.

The parser is tested on byte streams alone: every split point of a stream of
replies, nested arrays, nulls, error replies, and garbage it must refuse. The
client is tested against a real redis-server (``tests/redis_server.py``):
pipelining (many commands, one write, replies matched in order), AUTH with a
password and with an ACL user, SELECT, a Unix socket, TLS, and failure: a
server killed mid-pipeline, a paused server, a refused or silent connection, a
server that sends garbage. Each failure closes the connection, fails every
pending command with ConnectionError, and the next command reconnects.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import socket
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from hmacguard import NonceStoreUnavailable, RedisNonceStore
from hmacguard._resp import (
    MAX_BULK,
    MAX_DEPTH,
    MAX_LINE,
    RespClient,
    RespError,
    RespParser,
    RespProtocolError,
    _Connection,
    encode_command,
)
from local_server import HOST, free_port
from redis_server import RedisServer, require_redis_server
from stopwatch import Stopwatch

TIMEOUT = 0.25  # the store's default
SLACK = 0.15  # scheduling slack on a busy 2-core machine
ANSWER_TIMEOUT = 5.0  # for tests about answers, not timing
PASSWORD = "s3cr3t-Pa55word"


# -- the parser ------------------------------------------------------------------------------

# A stream of replies of every kind, and what the parser makes of it.
STREAM = (
    b"+OK\r\n"
    b"$-1\r\n"
    b":42\r\n"
    b":-7\r\n"
    b"$5\r\nhello\r\n"
    b"$0\r\n\r\n"
    b"$4\r\na\r\nb\r\n"  # CRLF inside a bulk string is data
    b"*-1\r\n"
    b"*0\r\n"
    b"*3\r\n*2\r\n:1\r\n$1\r\na\r\n$-1\r\n-ERR inside\r\n"
    b"-OOM command not allowed when used memory > 'maxmemory'.\r\n"
    b"+PONG\r\n"
)
EXPECTED = [
    b"OK",
    None,
    42,
    -7,
    b"hello",
    b"",
    b"a\r\nb",
    None,
    [],
    [[1, b"a"], None, ("RespError", "ERR inside")],
    ("RespError", "OOM command not allowed when used memory > 'maxmemory'."),
    b"PONG",
]


def plain(reply: Any) -> Any:
    """``reply`` with each RespError as ("RespError", message), so replies compare with ==."""
    if isinstance(reply, RespError):
        return ("RespError", reply.args[0])
    if isinstance(reply, list):
        return [plain(item) for item in reply]
    return reply


def test_parser_reads_every_kind_of_reply() -> None:
    """One chunk of 12 replies of every type gives the 12 replies, in order."""
    assert plain(RespParser().feed(STREAM)) == EXPECTED


def test_parser_at_every_split_point() -> None:
    """Split in two at any byte, the stream gives the same replies, none early, none twice."""
    for cut in range(len(STREAM) + 1):
        parser = RespParser()
        first = parser.feed(STREAM[:cut])
        second = parser.feed(STREAM[cut:])
        assert plain(first + second) == EXPECTED, cut
        assert len(first) <= len(EXPECTED)


def test_parser_one_byte_at_a_time() -> None:
    """Fed one byte per chunk, the stream still gives exactly the same replies."""
    parser = RespParser()
    replies = []
    for i in range(len(STREAM)):
        replies += parser.feed(STREAM[i : i + 1])
    assert plain(replies) == EXPECTED


def test_parser_holds_back_an_incomplete_reply() -> None:
    """A reply is returned only once its last byte arrives (here: a nested array)."""
    parser = RespParser()
    assert parser.feed(b"*2\r\n*1\r\n:1\r\n$3\r\nab") == []
    assert parser.feed(b"c\r") == []
    assert parser.feed(b"\n+OK\r\n") == [[[1], b"abc"], b"OK"]


def test_parser_nested_arrays_to_the_depth_limit() -> None:
    """Arrays nested MAX_DEPTH deep parse; one level more is refused as garbage."""
    deep = b"*1\r\n" * MAX_DEPTH + b":1\r\n"
    expected: Any = 1
    for _ in range(MAX_DEPTH):
        expected = [expected]
    assert RespParser().feed(deep) == [expected]
    with pytest.raises(RespProtocolError, match="nested"):
        RespParser().feed(b"*1\r\n" + deep)


def test_error_reply_is_a_resp_error_with_its_code() -> None:
    """An error reply becomes a RespError (returned, not raised) whose code is its first word."""
    [error, other] = RespParser().feed(b"-NOPERM this user has no permissions\r\n-\r\n")
    assert isinstance(error, RespError)
    assert error.code == "NOPERM"
    assert isinstance(other, RespError)
    assert other.code == ""


@pytest.mark.parametrize(
    "garbage",
    [
        b"?what\r\n",  # unknown type
        b":12a\r\n",
        b":+5\r\n",  # int() would take these three
        b": 5\r\n",
        b":5_0\r\n",
        b"$-2\r\n",
        b"*-2\r\n",
        b"$3\r\nabcd\r\n",  # bulk string longer than announced
        b"$%d\r\n" % (MAX_BULK + 1),
        b"+" + b"x" * (MAX_LINE + 1),  # a line that never ends
        b"+" + b"x" * (MAX_LINE + 1) + b"\r\n",
    ],
)
def test_parser_refuses_garbage(garbage: bytes) -> None:
    """Bytes that are not RESP2 (or past the client's limits) raise RespProtocolError."""
    with pytest.raises(RespProtocolError):
        RespParser().feed(garbage)


def test_encode_command() -> None:
    """A command is an array of bulk strings: bytes as is, str as UTF-8, int in decimal."""
    assert encode_command(b"SET", "ké", 10) == b"*3\r\n$3\r\nSET\r\n$3\r\nk\xc3\xa9\r\n$2\r\n10\r\n"
    with pytest.raises(TypeError, match="bool"):
        encode_command(b"X", True)


# -- against redis-server -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    """One redis-server for the tests that leave it as it is."""
    require_redis_server()
    with RedisServer() as server:
        yield server


@pytest.fixture
def own_redis() -> Iterator[RedisServer]:
    """A redis-server for one test, which may stop or reconfigure it."""
    require_redis_server()
    with RedisServer() as server:
        yield server


@pytest.fixture
async def clients() -> AsyncIterator[Any]:
    """A factory of RespClients in the test's event loop, closed afterwards."""
    made: list[RespClient] = []

    def make(**options: Any) -> RespClient:
        options.setdefault("host", HOST)
        options.setdefault("timeout", ANSWER_TIMEOUT)
        client = RespClient(**options)
        made.append(client)
        return client

    yield make
    for client in made:
        await client.aclose()


@pytest.fixture
def count_writes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The number of commands in each write any connection makes, in order."""
    writes: list[int] = []
    send = _Connection.send

    def counting(self: _Connection, data: bytes, futures: list[Any]) -> None:
        writes.append(len(futures))
        send(self, data, futures)

    monkeypatch.setattr(_Connection, "send", counting)
    return writes


def key() -> str:
    """A key no other test uses."""
    return f"test:{uuid.uuid4().hex}"


@pytest.mark.redis
async def test_pipelined_sets_go_out_in_one_write(
    redis_server: RedisServer, clients: Any, count_writes: list[int]
) -> None:
    """200 SETs made in one turn of the loop are one write, answered in order, each atomic."""
    client = clients(port=redis_server.port)
    assert await client.command("PING") == b"PONG"  # connected
    count_writes.clear()
    names = [key() for _ in range(100)]
    futures = [client.set_nx_px(name, 60_000) for name in names * 2]
    replies = await asyncio.gather(*futures)
    assert replies == [b"OK"] * 100 + [None] * 100
    assert count_writes == [200]


@pytest.mark.redis
async def test_replies_go_to_their_own_commands(redis_server: RedisServer, clients: Any) -> None:
    """Interleaved ECHO and SET commands, pipelined, each get their own reply back."""
    client = clients(port=redis_server.port)
    name = key()
    futures = []
    for i in range(50):
        futures.append(client.command("ECHO", f"echo-{i}"))
        futures.append(client.set_nx_px(name, 60_000))
    replies = await asyncio.gather(*futures)
    assert replies[0::2] == [f"echo-{i}".encode() for i in range(50)]
    assert replies[1::2] == [b"OK"] + [None] * 49


@pytest.mark.redis
async def test_error_reply_fails_its_command_only(redis_server: RedisServer, clients: Any) -> None:
    """An error reply raises RespError for its command; the others and the connection are fine."""
    client = clients(port=redis_server.port)
    before = client.command("CLIENT", "ID")
    bad = client.command("NOSUCHCOMMAND")
    after = client.command("CLIENT", "ID")
    results = await asyncio.gather(before, bad, after, return_exceptions=True)
    assert isinstance(results[1], RespError)
    assert results[1].code == "ERR"
    assert results[0] == results[2]  # the same connection throughout
    assert isinstance(results[0], int)


@pytest.mark.redis
async def test_command_cancelled_before_the_write_is_never_sent(
    redis_server: RedisServer, clients: Any
) -> None:
    """A command whose caller gave up in the same turn is dropped: Redis never runs it."""
    client = clients(port=redis_server.port)
    await client.command("PING")
    dropped, kept = key(), key()
    client.set_nx_px(dropped, 60_000).cancel()
    assert await client.set_nx_px(kept, 60_000) == b"OK"
    with redis_server.client() as check:
        assert check.exists(kept) == 1
        assert check.exists(dropped) == 0


@pytest.mark.redis
async def test_auth_with_a_password(own_redis: RedisServer, clients: Any) -> None:
    """requirepass: AUTH password on connecting; without it, NOAUTH; a wrong one, no connection."""
    with own_redis.client() as admin:
        admin.config_set("requirepass", PASSWORD)
    right = clients(port=own_redis.port, password=PASSWORD)
    assert await right.set_nx_px(key(), 60_000) == b"OK"
    missing = clients(port=own_redis.port)
    with pytest.raises(RespError) as refused:
        await missing.set_nx_px(key(), 60_000)
    assert refused.value.code == "NOAUTH"
    wrong = clients(port=own_redis.port, password="not-" + PASSWORD)
    with pytest.raises(ConnectionError) as failed:
        await wrong.set_nx_px(key(), 60_000)
    assert isinstance(failed.value.__cause__, RespError)
    assert failed.value.__cause__.code == "WRONGPASS"
    for text in (str(failed.value), repr(failed.value), str(failed.value.__cause__), repr(right)):
        assert PASSWORD not in text


@pytest.mark.redis
async def test_auth_as_an_acl_user(own_redis: RedisServer, clients: Any) -> None:
    """AUTH user password logs in as that ACL user (ACL WHOAMI says so)."""
    with own_redis.client() as admin:
        admin.acl_setuser(
            "app", enabled=True, passwords=[f"+{PASSWORD}"], keys=["*"], commands=["+@all"]
        )
    client = clients(port=own_redis.port, username="app", password=PASSWORD)
    assert await client.command("ACL", "WHOAMI") == b"app"
    assert await client.set_nx_px(key(), 60_000) == b"OK"


@pytest.mark.redis
async def test_select_db(redis_server: RedisServer, clients: Any) -> None:
    """db=3 selects database 3 on connecting: the key is there, not in database 0."""
    client = clients(port=redis_server.port, db=3)
    name = key()
    assert await client.set_nx_px(name, 60_000) == b"OK"
    assert b" db=3 " in await client.command("CLIENT", "INFO")
    with redis_server.client() as check:
        assert check.exists(name) == 0
        check.select(3)
        assert check.exists(name) == 1


@pytest.mark.redis
async def test_unix_socket(clients: Any) -> None:
    """path= connects over a Unix socket instead of TCP."""
    require_redis_server()
    with tempfile.TemporaryDirectory(prefix="hg-") as directory:
        path = str(Path(directory) / "redis.sock")
        with RedisServer(options=["--unixsocket", path, "--unixsocketperm", "700"]):
            client = clients(path=path)
            assert await client.set_nx_px(key(), 60_000) == b"OK"
            info = await client.command("CLIENT", "INFO")
            assert b"laddr=" + path.encode() in info


@pytest.mark.redis
async def test_server_killed_mid_pipeline_fails_every_pending_command_then_reconnects(
    own_redis: RedisServer, clients: Any
) -> None:
    """Redis stopped with 50 commands in flight: all fail fast (ConnectionError); back, it works."""
    client = clients(port=own_redis.port, timeout=ANSWER_TIMEOUT)
    await client.command("PING")
    with own_redis.client() as admin:
        admin.execute_command("CLIENT", "PAUSE", "10000", "WRITE")  # the SETs stay unanswered
    futures = [client.set_nx_px(key(), 60_000) for _ in range(50)]
    await asyncio.sleep(0.05)  # written, waiting
    started = time.monotonic()
    own_redis.stop()
    results = await asyncio.gather(*futures, return_exceptions=True)
    assert time.monotonic() - started < 1.0  # far inside the 5 s timeout
    assert all(type(result) is ConnectionError for result in results), results
    own_redis.start()
    assert await client.set_nx_px(key(), 60_000) == b"OK"


@pytest.mark.redis
async def test_paused_server_times_out_closes_and_fails_every_pending_command(
    own_redis: RedisServer, clients: Any
) -> None:
    """CLIENT PAUSE: past the timeout the connection closes, all pending fail, none runs later."""
    client = clients(port=own_redis.port, timeout=TIMEOUT)
    first_id = await client.command("CLIENT", "ID")
    names = [key() for _ in range(10)]
    with own_redis.client() as admin:
        admin.execute_command("CLIENT", "PAUSE", "2000", "WRITE")
        with Stopwatch() as watch:
            results = await asyncio.gather(
                *[client.set_nx_px(name, 60_000) for name in names], return_exceptions=True
            )
        admin.execute_command("CLIENT", "UNPAUSE")
        assert watch.elapsed >= TIMEOUT * 0.9
        assert watch.running < TIMEOUT + SLACK
        assert all(type(result) is ConnectionError for result in results), results
        assert all(isinstance(result.__cause__, TimeoutError) for result in results)
        # A new connection, and the old one's SETs were never run.
        assert await client.command("CLIENT", "ID") != first_id
        assert admin.exists(*names) == 0
    assert await client.set_nx_px(names[0], 60_000) == b"OK"


@pytest.mark.redis
async def test_a_blocked_event_loop_is_not_a_redis_timeout(
    redis_server: RedisServer, clients: Any
) -> None:
    """A command still unwritten when other code blocks the loop past its deadline is
    written afterwards with its whole timeout, and answered: the stall was not Redis's."""
    client = clients(port=redis_server.port, timeout=TIMEOUT)
    first_id = await client.command("CLIENT", "ID")  # connected; its timer still set
    held = client.command("ECHO", "held back")
    time.sleep(2 * TIMEOUT)  # blocking code on the loop: nothing is written meanwhile
    late = client.command("ECHO", "after the stall")
    assert await asyncio.gather(held, late) == [b"held back", b"after the stall"]
    assert await client.command("CLIENT", "ID") == first_id  # the same connection


@pytest.mark.redis
async def test_a_blocked_event_loop_before_the_first_connection_is_not_a_redis_timeout(
    redis_server: RedisServer, clients: Any
) -> None:
    """The same before any connection is open (start-up, or after a failure): the
    connection is opened after the stall, within the timeout, and the command answered."""
    client = clients(port=redis_server.port, timeout=TIMEOUT)
    held = client.command("ECHO", "held back")
    time.sleep(2 * TIMEOUT)
    assert await held == b"held back"


@pytest.mark.redis
async def test_a_command_held_back_by_the_loop_is_still_bounded_once_written(
    own_redis: RedisServer, clients: Any
) -> None:
    """Its timeout starts again when it is written, not never: a paused server still fails it."""
    client = clients(port=own_redis.port, timeout=TIMEOUT)
    await client.command("PING")
    with own_redis.client() as admin:
        admin.execute_command("CLIENT", "PAUSE", "3000", "WRITE")
        name = key()
        held = client.set_nx_px(name, 60_000)
        time.sleep(2 * TIMEOUT)
        with Stopwatch() as watch, pytest.raises(ConnectionError) as caught:
            await held
        admin.execute_command("CLIENT", "UNPAUSE")
        assert isinstance(caught.value.__cause__, TimeoutError)
        assert watch.elapsed >= TIMEOUT * 0.9
        assert watch.running < TIMEOUT + SLACK
        assert admin.exists(name) == 0


@pytest.mark.redis
async def test_connection_refused_fails_fast_then_connects_when_the_server_is_there(
    own_redis: RedisServer, clients: Any
) -> None:
    """Nothing listening: ConnectionError (refused) at once; listening again: the next works."""
    own_redis.stop()
    client = clients(port=own_redis.port, timeout=ANSWER_TIMEOUT)
    started = time.monotonic()
    with pytest.raises(ConnectionError) as caught:
        await client.set_nx_px(key(), 60_000)
    assert time.monotonic() - started < 1.0
    assert isinstance(caught.value.__cause__, ConnectionRefusedError)
    own_redis.start()
    assert await client.set_nx_px(key(), 60_000) == b"OK"


async def test_silent_server_connect_and_handshake_bounded_by_the_timeout(clients: Any) -> None:
    """A server that accepts and never answers AUTH: ConnectionError within the timeout."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        sock.listen(8)
        client = clients(port=sock.getsockname()[1], password=PASSWORD, timeout=0.1)
        with Stopwatch() as watch, pytest.raises(ConnectionError) as caught:
            await client.set_nx_px(key(), 60_000)
    assert watch.elapsed >= 0.09
    assert watch.running < 0.1 + SLACK
    assert isinstance(caught.value.__cause__, TimeoutError)


class FakeRedis:
    """A TCP server that answers each chunk it reads with ``reply``, counting connections."""

    def __init__(self, reply: bytes) -> None:
        self.reply = reply
        self.connections = 0
        self.server: asyncio.Server | None = None

    async def __aenter__(self) -> FakeRedis:
        self.server = await asyncio.start_server(self._serve, HOST, 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()

    @property
    def port(self) -> int:
        """The port it listens on."""
        assert self.server is not None
        port: int = self.server.sockets[0].getsockname()[1]
        return port

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            while await reader.read(65536):
                writer.write(self.reply)
        finally:
            writer.close()


async def test_garbage_from_the_server_fails_pending_and_reconnects(clients: Any) -> None:
    """A reply that is not RESP2: pending commands fail (ConnectionError), the next reconnects."""
    async with FakeRedis(b"?garbage\r\n") as server:
        client = clients(port=server.port)
        results = await asyncio.gather(
            client.set_nx_px("a", 1000), client.set_nx_px("b", 1000), return_exceptions=True
        )
        assert [type(result) for result in results] == [ConnectionError, ConnectionError]
        assert all(isinstance(result.__cause__, RespProtocolError) for result in results)
        with pytest.raises(ConnectionError):
            await client.set_nx_px("c", 1000)
        assert server.connections == 2


async def test_reply_nobody_asked_for_closes_the_connection(clients: Any) -> None:
    """Two replies to one command: the first is its answer, the second drops the connection."""
    async with FakeRedis(b"+OK\r\n+OK\r\n") as server:
        client = clients(port=server.port)
        assert await client.set_nx_px("a", 1000) == b"OK"
        assert await client.set_nx_px("b", 1000) == b"OK"
        assert server.connections == 2  # the second command needed a new connection


@pytest.mark.redis
async def test_aclose_waits_for_commands_in_flight_then_closes(
    redis_server: RedisServer, clients: Any
) -> None:
    """aclose() lets 50 pending commands get their replies, then closes the connection."""
    client = clients(port=redis_server.port)
    futures = [client.set_nx_px(key(), 60_000) for _ in range(50)]
    await client.aclose()
    assert [future.result() for future in futures] == [b"OK"] * 50
    with pytest.raises(ConnectionError, match="closed"):
        await client.set_nx_px(key(), 60_000)


# -- TLS, through the store's URL --------------------------------------------------------------


@pytest.fixture(scope="module")
def tls_files() -> Iterator[Path]:
    """A directory with a self-signed certificate for 127.0.0.1 (cert.pem) and its key."""
    x509 = pytest.importorskip("cryptography.x509")
    from cryptography.hazmat.primitives import hashes, serialization  # noqa: PLC0415
    from cryptography.hazmat.primitives.asymmetric import ec  # noqa: PLC0415

    private = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "hmacguard test")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(HOST))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(private, hashes.SHA256())
    )
    with tempfile.TemporaryDirectory(prefix="hg-tls-") as directory:
        folder = Path(directory)
        (folder / "cert.pem").write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
        (folder / "key.pem").write_bytes(
            private.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        yield folder


@pytest.mark.redis
async def test_rediss_url_verifies_the_certificate(tls_files: Path) -> None:
    """rediss:// verifies: with ssl_ca_certs it works, an unknown CA is refused, none skips it."""
    require_redis_server()
    tls_port = free_port()
    options = [
        *("--tls-port", str(tls_port)),
        *("--tls-cert-file", str(tls_files / "cert.pem")),
        *("--tls-key-file", str(tls_files / "key.pem")),
        *("--tls-ca-cert-file", str(tls_files / "cert.pem")),
        *("--tls-auth-clients", "no"),
    ]
    with RedisServer(options=options):
        base = f"rediss://{HOST}:{tls_port}/0"
        verified = RedisNonceStore(
            f"{base}?ssl_ca_certs={tls_files / 'cert.pem'}", timeout=ANSWER_TIMEOUT
        )
        unverified = RedisNonceStore(f"{base}?ssl_cert_reqs=none", timeout=ANSWER_TIMEOUT)
        untrusted = RedisNonceStore(base, timeout=ANSWER_TIMEOUT)
        try:
            assert await verified.add("tls-a", 60) is True
            assert await verified.add("tls-a", 60) is False
            assert await unverified.add("tls-b", 60) is True
            with pytest.raises(NonceStoreUnavailable) as caught:
                await untrusted.add("tls-c", 60)
            assert "SSLCertVerificationError" in caught.value.detail
        finally:
            for store in (verified, unverified, untrusted):
                await store.aclose()


@pytest.mark.parametrize(
    ("url", "match"),
    [
        (f"redis://{HOST}:1/0?socket_keepalive=true", "socket_keepalive"),
        (f"redis://{HOST}:1/0?protocol=3", "RESP2"),
        (f"rediss://{HOST}:1/0?ssl_cert_reqs=maybe", "ssl_cert_reqs"),
        (f"rediss://{HOST}:1/0?ssl_ca_certs=/nonexistent/ca.pem", "TLS files"),
        ("unix://", "path"),
    ],
)
def test_url_options_the_client_cannot_honour_are_refused(url: str, match: str) -> None:
    """A URL option the built-in client would ignore is a ValueError at construction, named."""
    with pytest.raises(ValueError, match=match):
        RedisNonceStore(url)
