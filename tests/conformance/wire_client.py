"""An independent FlyMQ wire-protocol client, written from WIRE.md alone.

This module deliberately shares nothing with the Rust codec in `proto/`: it is a
second reading of /work/shared/protocol/WIRE.md (protocol version 1), so that a
misreading of the spec on either side shows up as a conformance failure.

It behaves on the wire like pyflymq, the Python SDK the spec is written for:

* one request at a time per connection, strict request -> response (WIRE.md §1);
* frames: magic 0xAF, version 1, flags 0x01 on requests, u32 big-endian length,
  payload at most 32 MiB (§2); the response header is checked magic -> version
  -> length, and a response opcode pyflymq's enum does not know is rejected with
  a plain ValueError (§2, §4);
* error frames (opcode 0xFF) decoded exactly as pyflymq does: payloads of 6 or
  more bytes are `i32 code, u16 len, text` with a fallback to "everything after
  byte 6" when the length overruns; shorter payloads are plain text; a message
  containing `not leader` (case-insensitive) becomes NotLeaderError (§5.1, §5.3);
* FETCH always carries the filter field, SUBSCRIBE/RESET_OFFSET modes are str8,
  RESET_OFFSET carries the u64 only for mode `offset` (§8.6, §9.1, §9.4);
* AUTH expects response opcode 0x71 with str8 role names (§6.2); WHOAMI uses the
  pyflymq layout (§6.3).

Unlike pyflymq, responses are decoded strictly by default: a response whose
opcode is not the one the spec prescribes, or whose payload is shorter or longer
than the layout, raises ProtocolError. pyflymq tolerates some of this; a
conformance check should not.

Standard library only (socket, struct, gzip).
"""

import gzip
import socket
import struct
from collections import namedtuple

# ---------------------------------------------------------------------------
# §2 framing constants
# ---------------------------------------------------------------------------

MAGIC = 0xAF
VERSION = 0x01
HEADER_SIZE = 8
MAX_PAYLOAD = 33554432  # 32 MiB
FLAG_BINARY = 0x01
COMPRESSION_MASK = 0x0E
COMPRESSION_GZIP = 0x02
_HEADER = struct.Struct(">BBBBI")

# ---------------------------------------------------------------------------
# §4 opcodes (the ones this client sends, plus response-only codes)
# ---------------------------------------------------------------------------

PRODUCE = 0x01
CONSUME = 0x02
CREATE_TOPIC = 0x03
METADATA = 0x04
SUBSCRIBE = 0x05
COMMIT = 0x06
FETCH = 0x07
LIST_TOPICS = 0x08
DELETE_TOPIC = 0x09
REGISTER_SCHEMA = 0x10
GET_SCHEMA = 0x11
LIST_SCHEMAS = 0x12
VALIDATE_SCHEMA = 0x13
PRODUCE_WITH_SCHEMA = 0x14
DELETE_SCHEMA = 0x15
FETCH_DLQ = 0x20
PURGE_DLQ = 0x22
BEGIN_TX = 0x40
COMMIT_TX = 0x41
ABORT_TX = 0x42
PRODUCE_TX = 0x43
CLUSTER_JOIN = 0x50
CLUSTER_LEAVE = 0x51
CLUSTER_METADATA = 0x53
GET_OFFSET = 0x60
RESET_OFFSET = 0x61
LIST_GROUPS = 0x62
DESCRIBE_GROUP = 0x63
GET_LAG = 0x64
DELETE_GROUP = 0x65
AUTH = 0x70
AUTH_RESPONSE = 0x71
WHOAMI = 0x72
ERROR = 0xFF


def _codes(*ranges):
    out = set()
    for r in ranges:
        if isinstance(r, tuple):
            out.update(range(r[0], r[1] + 1))
        else:
            out.add(r)
    return frozenset(out)


#: Response opcodes pyflymq can parse (WIRE.md §4, last paragraph of the table).
PYFLYMQ_RESPONSE_OPCODES = _codes(
    (0x01, 0x09),
    (0x10, 0x15),
    (0x20, 0x22),
    0x30,
    0x31,
    0x35,
    (0x40, 0x43),
    (0x50, 0x53),
    (0x60, 0x66),
    (0x70, 0x72),
    0xA0,
    0xA1,
    0xFF,
)

# ---------------------------------------------------------------------------
# Exceptions (named after pyflymq's, §5.3)
# ---------------------------------------------------------------------------


class FlyMQError(Exception):
    """Base class of the errors this client raises (except ValueError ones)."""


class ServerError(FlyMQError):
    """A 0xFF error frame (any message without `not leader`)."""

    def __init__(self, message, code=None, raw=b""):
        super().__init__(message)
        self.message = message
        self.code = code
        self.raw = raw


class NotLeaderError(ServerError):
    """A 0xFF error frame whose message contains `not leader` (case-insensitive)."""

    def __init__(self, message, leader_id=None, code=None, raw=b""):
        super().__init__(message, code, raw)
        self.leader_id = leader_id


class AuthenticationError(FlyMQError):
    """AUTH answered with success 0 (§6.2)."""


class ConnectionClosedError(FlyMQError):
    """EOF while reading a response; the socket is dropped."""


class FlyMQConnectionError(FlyMQError):
    """Socket error or read timeout; the socket is dropped."""


class InvalidVersionError(FlyMQError):
    """Response header version is not 1."""


class MessageTooLargeError(FlyMQError):
    """Frame length above 32 MiB (either direction)."""


class ProtocolError(ValueError):
    """Bad magic, unknown response opcode or a payload that does not fit its
    layout. pyflymq raises a plain ValueError for the first two (§5.3)."""


# ---------------------------------------------------------------------------
# §3 primitive encodings
# ---------------------------------------------------------------------------


class Writer:
    """Big-endian payload builder. Refuses values that do not fit their prefix."""

    def __init__(self):
        self._parts = []

    def u8(self, v):
        self._parts.append(struct.pack(">B", v))
        return self

    def i32(self, v):
        self._parts.append(struct.pack(">i", v))
        return self

    def u32(self, v):
        self._parts.append(struct.pack(">I", v))
        return self

    def i64(self, v):
        self._parts.append(struct.pack(">q", v))
        return self

    def u64(self, v):
        self._parts.append(struct.pack(">Q", v))
        return self

    def str16(self, s):
        b = s.encode("utf-8") if isinstance(s, str) else bytes(s)
        if len(b) > 0xFFFF:
            raise ValueError("str16 longer than 65535 bytes")
        self._parts.append(struct.pack(">H", len(b)) + b)
        return self

    def str8(self, s):
        b = s.encode("utf-8") if isinstance(s, str) else bytes(s)
        if len(b) > 0xFF:
            raise ValueError("str8 longer than 255 bytes")
        self._parts.append(struct.pack(">B", len(b)) + b)
        return self

    def bytes32(self, b):
        b = b.encode("utf-8") if isinstance(b, str) else bytes(b or b"")
        self._parts.append(struct.pack(">I", len(b)) + b)
        return self

    def raw(self, b):
        self._parts.append(bytes(b))
        return self

    def build(self):
        return b"".join(self._parts)


class Reader:
    """Big-endian payload reader; running past the end raises ProtocolError."""

    def __init__(self, data, what="payload"):
        self.data = bytes(data)
        self.pos = 0
        self.what = what

    def _take(self, n):
        if self.pos + n > len(self.data):
            raise ProtocolError(
                "%s too short: need %d bytes at offset %d, have %d" % (self.what, n, self.pos, len(self.data))
            )
        b = self.data[self.pos : self.pos + n]
        self.pos += n
        return b

    def u8(self):
        return self._take(1)[0]

    def bool(self):
        v = self.u8()
        if v not in (0, 1):
            # §3: always emit exactly 0 or 1.
            raise ProtocolError("%s: boolean byte is 0x%02x, not 0 or 1" % (self.what, v))
        return v == 1

    def u16(self):
        return struct.unpack(">H", self._take(2))[0]

    def i32(self):
        return struct.unpack(">i", self._take(4))[0]

    def u32(self):
        return struct.unpack(">I", self._take(4))[0]

    def i64(self):
        return struct.unpack(">q", self._take(8))[0]

    def u64(self):
        return struct.unpack(">Q", self._take(8))[0]

    def str16(self):
        return self._take(self.u16()).decode("utf-8")

    def str8(self):
        return self._take(self.u8()).decode("utf-8")

    def bytes32(self):
        return self._take(self.u32())

    def remaining(self):
        return len(self.data) - self.pos

    def end(self):
        """Strict mode: the layout must consume the whole payload."""
        if self.pos != len(self.data):
            raise ProtocolError(
                "%s has %d trailing bytes after the layout (%r)"
                % (self.what, len(self.data) - self.pos, self.data[self.pos : self.pos + 32])
            )


# ---------------------------------------------------------------------------
# Frames
# ---------------------------------------------------------------------------


def encode_frame(opcode, payload=b"", flags=FLAG_BINARY, gzip_payload=False):
    """One request frame. With gzip_payload the payload is gzip-compressed and
    the compression code 0x02 is set in the flags (flags 0x01 -> 0x03)."""
    payload = bytes(payload)
    if gzip_payload:
        payload = gzip.compress(payload)
        flags = (flags & ~COMPRESSION_MASK) | COMPRESSION_GZIP
    if len(payload) > MAX_PAYLOAD:
        raise MessageTooLargeError("payload of %d bytes exceeds 32 MiB" % len(payload))
    return _HEADER.pack(MAGIC, VERSION, opcode, flags, len(payload)) + payload


Frame = namedtuple("Frame", "opcode flags payload")


def _recv_exact(sock, n):
    chunks = []
    got = 0
    while got < n:
        chunk = sock.recv(n - got)
        if not chunk:
            raise ConnectionClosedError("connection closed by the server (EOF after %d of %d bytes)" % (got, n))
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def read_frame(sock, check_opcode=True):
    """Reads one response frame with pyflymq's header checks (§2):
    magic -> version -> length, then the opcode must be one pyflymq knows
    (the payload of an unknown opcode is left unread, as pyflymq does)."""
    header = _recv_exact(sock, HEADER_SIZE)
    magic, version, opcode, flags, length = _HEADER.unpack(header)
    if magic != MAGIC:
        raise ProtocolError("invalid magic byte 0x%02x" % magic)
    if version != VERSION:
        raise InvalidVersionError("unsupported protocol version %d" % version)
    if length > MAX_PAYLOAD:
        raise MessageTooLargeError("response frame of %d bytes exceeds 32 MiB" % length)
    if check_opcode and opcode not in PYFLYMQ_RESPONSE_OPCODES:
        raise ProtocolError("%d is not a valid OpCode (0x%02x)" % (opcode, opcode))
    payload = _recv_exact(sock, length) if length else b""
    return Frame(opcode, flags, payload)


def decode_error_text(payload):
    """The error message of a 0xFF payload, decoded as pyflymq does (§5.1, §5.3)."""
    payload = bytes(payload)
    if len(payload) < 6:
        return None, payload.decode("utf-8", errors="replace")
    code = struct.unpack(">i", payload[:4])[0]
    n = struct.unpack(">H", payload[4:6])[0]
    if 6 + n <= len(payload):
        text = payload[6 : 6 + n]
    else:
        text = payload[6:]
    return code, text.decode("utf-8", errors="replace")


def error_from_payload(payload):
    """ServerError or NotLeaderError for a 0xFF payload."""
    code, text = decode_error_text(payload)
    if "not leader" in text.lower():
        leader_id = None
        marker = "current leader is"
        idx = text.find(marker)
        if idx >= 0:
            leader_id = text[idx + len(marker) :].strip()
        return NotLeaderError(text, leader_id=leader_id, code=code, raw=payload)
    return ServerError(text, code=code, raw=payload)


# ---------------------------------------------------------------------------
# Response records
# ---------------------------------------------------------------------------

RecordMetadata = namedtuple("RecordMetadata", "topic partition offset timestamp key_size value_size")
ConsumedMessage = namedtuple("ConsumedMessage", "topic partition offset key value")
FetchedMessage = namedtuple("FetchedMessage", "offset key value")
FetchResult = namedtuple("FetchResult", "messages next_offset")
GroupRecord = namedtuple("GroupRecord", "topic group_id members offsets")  # offsets: [(partition, offset)]
LagInfo = namedtuple("LagInfo", "current committed latest lag")
AuthResult = namedtuple("AuthResult", "success username roles error")
WhoAmI = namedtuple("WhoAmI", "authenticated username roles permissions")
DlqEntry = namedtuple("DlqEntry", "id data error retries")
PartitionMetadata = namedtuple("PartitionMetadata", "partition leader_id leader_addr epoch state replicas isr")
TopicMetadata = namedtuple("TopicMetadata", "topic partitions")
ClusterMetadata = namedtuple("ClusterMetadata", "cluster_id topics")
OkMessage = namedtuple("OkMessage", "success message")
TxResult = namedtuple("TxResult", "txn_id success")
SchemaEntry = namedtuple("SchemaEntry", "name type version")
Validation = namedtuple("Validation", "valid errors")


def decode_record_metadata(payload, what="PRODUCE response"):
    r = Reader(payload, what)
    md = RecordMetadata(r.str16(), r.i32(), r.u64(), r.i64(), r.i32(), r.i32())
    return md, r


def _group_record(r):
    topic = r.str16()
    group = r.str16()
    members = r.u32()
    offsets = [(r.u32(), r.u64()) for _ in range(r.u32())]  # pyflymq: partition ids unsigned (§3)
    return GroupRecord(topic, group, members, offsets)


# ---------------------------------------------------------------------------
# Client
# ---------------------------------------------------------------------------


class WireClient:
    """One TCP connection, one request at a time (like pyflymq)."""

    def __init__(self, host="127.0.0.1", port=9092, timeout=10.0, strict=True, tls_ca_file=None, tls_server_name=None):
        self.host = host
        self.port = port
        self.timeout = timeout
        self.strict = strict
        # TLS as pyflymq does it (§7): verify the server against a CA file.
        self.tls_ca_file = tls_ca_file
        self.tls_server_name = tls_server_name or host
        self.sock = None
        self.last_frame = None
        self.connect()

    # -- connection ---------------------------------------------------------

    def connect(self):
        self.close()
        sock = socket.create_connection((self.host, self.port), timeout=self.timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.tls_ca_file:
            import ssl

            context = ssl.create_default_context(cafile=self.tls_ca_file)
            sock = context.wrap_socket(sock, server_hostname=self.tls_server_name)
        sock.settimeout(self.timeout)
        self.sock = sock

    def close(self):
        if self.sock is not None:
            try:
                self.sock.close()
            finally:
                self.sock = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- raw exchange -------------------------------------------------------

    def send_raw(self, data):
        if self.sock is None:
            self.connect()
        try:
            self.sock.sendall(data)
        except OSError as e:
            self.close()
            raise FlyMQConnectionError(str(e))

    def read_response(self, check_opcode=True):
        try:
            return read_frame(self.sock, check_opcode=check_opcode)
        except ConnectionClosedError:
            self.close()
            raise
        except OSError as e:  # includes socket.timeout
            self.close()
            raise FlyMQConnectionError(str(e))

    def exchange(self, opcode, payload=b"", flags=FLAG_BINARY, gzip_payload=False):
        """Sends one request frame and returns the response Frame (no error mapping)."""
        self.send_raw(encode_frame(opcode, payload, flags=flags, gzip_payload=gzip_payload))
        return self.read_response()

    def request(self, opcode, payload=b"", expect=None, gzip_payload=False):
        """Sends a request; raises the pyflymq exception for an error frame;
        returns the success payload. `expect` is the response opcode the spec
        prescribes (default: the request opcode)."""
        frame = self.exchange(opcode, payload, gzip_payload=gzip_payload)
        if frame.opcode == ERROR:
            raise error_from_payload(frame.payload)
        want = opcode if expect is None else expect
        if self.strict and frame.opcode != want:
            raise ProtocolError("response opcode 0x%02x to request 0x%02x, expected 0x%02x" % (frame.opcode, opcode, want))
        if self.strict and frame.flags & COMPRESSION_MASK:
            raise ProtocolError("response flags 0x%02x carry a compression code (§2: responses MUST NOT be compressed)" % frame.flags)
        self.last_frame = frame
        return frame.payload

    def _done(self, reader):
        if self.strict:
            reader.end()

    # -- §8 core operations -------------------------------------------------

    def produce(self, topic, data, key=None, partition=-1, gzip_payload=False):
        payload = Writer().str16(topic).bytes32(key or b"").bytes32(data).i32(partition).build()
        md, r = decode_record_metadata(self.request(PRODUCE, payload, gzip_payload=gzip_payload))
        self._done(r)
        return md

    def produce_with_key(self, topic, key, data):
        return self.produce(topic, data, key=key)

    def produce_to_partition(self, topic, partition, data):
        return self.produce(topic, data, partition=partition)

    def consume(self, topic, offset, partition=0):
        payload = Writer().str16(topic).i32(partition).u64(offset).build()
        r = Reader(self.request(CONSUME, payload), "CONSUME response")
        key = r.bytes32()
        value = r.bytes32()
        self._done(r)
        return ConsumedMessage(topic, partition, offset, key if key else None, value)

    def create_topic(self, topic, partitions=1):
        r = Reader(self.request(CREATE_TOPIC, Writer().str16(topic).i32(partitions).build()), "CREATE_TOPIC response")
        ok = r.bool()
        self._done(r)
        return ok

    def delete_topic(self, topic):
        r = Reader(self.request(DELETE_TOPIC, Writer().str16(topic).build()), "DELETE_TOPIC response")
        ok = r.bool()
        self._done(r)
        return ok

    def list_topics(self):
        r = Reader(self.request(LIST_TOPICS), "LIST_TOPICS response")
        topics = [r.str16() for _ in range(r.u32())]
        self._done(r)
        return topics

    @staticmethod
    def fetch_payload(topic, partition=0, offset=0, max_messages=10, filter="", with_filter=True):
        w = Writer().str16(topic).i32(partition).u64(offset).i32(max_messages)
        if with_filter:  # pyflymq always sends it (§8.6, §15 row 16)
            w.str16(filter)
        return w.build()

    def fetch(self, topic, partition=0, offset=0, max_messages=10, filter="", with_filter=True):
        payload = self.fetch_payload(topic, partition, offset, max_messages, filter, with_filter)
        return self.decode_fetch(self.request(FETCH, payload))

    def decode_fetch(self, payload):
        r = Reader(payload, "FETCH response")
        count = r.u32()
        next_offset = r.u64()
        messages = [FetchedMessage(r.u64(), r.bytes32(), r.bytes32()) for _ in range(count)]
        self._done(r)
        return FetchResult(messages, next_offset)

    # -- §9 consumer groups -------------------------------------------------

    def subscribe(self, topic, group, partition=0, mode="latest"):
        payload = Writer().str16(topic).str16(group).i32(partition).str8(mode).build()
        r = Reader(self.request(SUBSCRIBE, payload), "SUBSCRIBE response")
        offset = r.u64()
        self._done(r)
        return offset

    def commit_offset(self, topic, group, partition, offset):
        payload = Writer().str16(topic).str16(group).i32(partition).u64(offset).build()
        r = Reader(self.request(COMMIT, payload), "COMMIT response")
        ok = r.bool()
        self._done(r)
        return ok

    def get_committed_offset(self, topic, group, partition=0):
        payload = Writer().str16(topic).str16(group).i32(partition).build()
        r = Reader(self.request(GET_OFFSET, payload), "GET_OFFSET response")
        offset = r.u64()
        self._done(r)
        return offset

    @staticmethod
    def reset_offset_payload(topic, group, partition, mode, offset=None):
        w = Writer().str16(topic).str16(group).i32(partition).str8(mode)
        if mode == "offset":  # the u64 is present only for mode `offset` (§9.4)
            w.u64(offset or 0)
        return w.build()

    def reset_offset(self, topic, group, partition, mode, offset=None):
        r = Reader(
            self.request(RESET_OFFSET, self.reset_offset_payload(topic, group, partition, mode, offset)),
            "RESET_OFFSET response",
        )
        ok = r.bool()
        self._done(r)
        return ok

    def reset_offset_to_earliest(self, topic, group, partition=0):
        return self.reset_offset(topic, group, partition, "earliest")

    def reset_offset_to_latest(self, topic, group, partition=0):
        return self.reset_offset(topic, group, partition, "latest")

    def list_consumer_groups(self, topic=""):
        # pyflymq ignores its topic argument: the request is empty (§9.5).
        r = Reader(self.request(LIST_GROUPS), "LIST_GROUPS response")
        groups = [_group_record(r) for _ in range(r.u32())]
        self._done(r)
        return groups

    def describe_consumer_group(self, topic, group):
        r = Reader(self.request(DESCRIBE_GROUP, Writer().str16(topic).str16(group).build()), "DESCRIBE_GROUP response")
        record = _group_record(r)
        self._done(r)
        return record

    def get_lag(self, topic, group, partition=0):
        payload = Writer().str16(topic).str16(group).i32(partition).build()
        r = Reader(self.request(GET_LAG, payload), "GET_LAG response")
        lag = LagInfo(r.u64(), r.u64(), r.u64(), r.u64())
        self._done(r)
        return lag

    def delete_consumer_group(self, topic, group):
        r = Reader(self.request(DELETE_GROUP, Writer().str16(topic).str16(group).build()), "DELETE_GROUP response")
        ok = r.bool()
        self._done(r)
        return ok

    # -- §11 cluster and DLQ ------------------------------------------------

    def get_cluster_metadata(self, topic=""):
        r = Reader(self.request(CLUSTER_METADATA, Writer().str16(topic).build()), "CLUSTER_METADATA response")
        md = self.decode_cluster_metadata(r)
        self._done(r)
        return md

    @staticmethod
    def decode_cluster_metadata(r):
        cluster_id = r.str16()
        topics = []
        for _ in range(r.u32()):
            name = r.str16()
            parts = []
            for _ in range(r.u32()):
                partition = r.u32()  # pyflymq decodes partition ids unsigned (§3)
                leader_id = r.str16()
                leader_addr = r.str16()
                epoch = r.u64()
                state = r.str16()
                replicas = [r.str16() for _ in range(r.u32())]
                isr = [r.str16() for _ in range(r.u32())]
                parts.append(PartitionMetadata(partition, leader_id, leader_addr, epoch, state, replicas, isr))
            topics.append(TopicMetadata(name, parts))
        return ClusterMetadata(cluster_id, topics)

    def fetch_dlq(self, topic, max_messages=10):
        # pyflymq encodes max_messages as u32 (§3, §11.1).
        r = Reader(self.request(FETCH_DLQ, Writer().str16(topic).u32(max_messages).build()), "FETCH_DLQ response")
        entries = [DlqEntry(r.str16(), r.bytes32(), r.str16(), r.u32()) for _ in range(r.u32())]
        self._done(r)
        return entries

    # -- §10 schema registry -------------------------------------------------

    def register_schema(self, name, schema_type, definition):
        payload = Writer().str16(name).str8(schema_type).bytes32(definition).build()
        r = Reader(self.request(REGISTER_SCHEMA, payload), "REGISTER_SCHEMA response")
        entry = SchemaEntry(r.str16(), r.str8(), r.u32())
        self._done(r)
        return entry

    def _schema_list(self, r):
        entries = [SchemaEntry(r.str16(), r.str8(), r.u32()) for _ in range(r.u32())]
        self._done(r)
        return entries

    def list_schemas(self, name_filter=""):
        payload = Writer().str16(name_filter).build()
        return self._schema_list(Reader(self.request(LIST_SCHEMAS, payload), "LIST_SCHEMAS response"))

    def get_schema(self, name, version=0):
        # §10.2: answered in the LIST_SCHEMAS layout (pyflymq reuses that decoder).
        payload = Writer().str16(name).u32(version).build()
        return self._schema_list(Reader(self.request(GET_SCHEMA, payload), "GET_SCHEMA response"))

    def validate_schema(self, name, message):
        payload = Writer().str16(name).bytes32(message).build()
        r = Reader(self.request(VALIDATE_SCHEMA, payload), "VALIDATE_SCHEMA response")
        valid = r.bool()
        errors = [r.str16() for _ in range(r.u32())]
        self._done(r)
        return Validation(valid, errors)

    def produce_with_schema(self, topic, data, schema_name):
        # pyflymq/Java layout (§10.5): topic, data, then schema name.
        payload = Writer().str16(topic).bytes32(data).str16(schema_name).build()
        md, r = decode_record_metadata(self.request(PRODUCE_WITH_SCHEMA, payload))
        self._done(r)
        return md

    def delete_schema(self, name, version):
        payload = Writer().str16(name).u32(version).build()
        r = Reader(self.request(DELETE_SCHEMA, payload), "DELETE_SCHEMA response")
        res = OkMessage(r.bool(), r.str16())
        self._done(r)
        return res

    def purge_dlq(self, topic):
        r = Reader(self.request(PURGE_DLQ, Writer().str16(topic).build()), "PURGE_DLQ response")
        res = OkMessage(r.bool(), r.str16())
        self._done(r)
        return res

    # -- §6 auth ------------------------------------------------------------

    def authenticate(self, username, password):
        payload = Writer().str16(username).str16(password).build()
        r = Reader(self.request(AUTH, payload, expect=AUTH_RESPONSE), "AUTH response")
        success = r.u8() != 0  # pyflymq's success decoder tests != 0 (§3)
        user = r.str16()
        roles = [r.str8() for _ in range(r.u32())]  # role names are str8 (§6.2)
        error = r.str16()
        self._done(r)
        result = AuthResult(success, user, roles, error)
        if not success:
            raise AuthenticationError(error or "Authentication failed")
        return result

    def whoami(self):
        r = Reader(self.request(WHOAMI), "WHOAMI response")
        res = WhoAmI(r.bool(), r.str16(), [r.str16() for _ in range(r.u32())], [r.str16() for _ in range(r.u32())])
        self._done(r)
        return res

    # -- §9.11 transactions -------------------------------------------------

    def begin_transaction(self):
        r = Reader(self.request(BEGIN_TX), "BEGIN_TX response")
        res = TxResult(r.str16(), r.bool())
        self._done(r)
        return res

    def produce_in_transaction(self, txn_id, topic, data):
        payload = Writer().str16(txn_id).str16(topic).bytes32(data).build()
        md, r = decode_record_metadata(self.request(PRODUCE_TX, payload))
        self._done(r)
        return md

    def _end_transaction(self, opcode, name, txn_id):
        r = Reader(self.request(opcode, Writer().str16(txn_id).build()), name + " response")
        res = TxResult(r.str16(), r.bool())
        self._done(r)
        return res

    def commit_transaction(self, txn_id):
        return self._end_transaction(COMMIT_TX, "COMMIT_TX", txn_id)

    def abort_transaction(self, txn_id):
        return self._end_transaction(ABORT_TX, "ABORT_TX", txn_id)


def fnv1a_32(data):
    """FNV-1a, 32-bit (Go's hash/fnv New32a), for key -> partition (§8.1)."""
    h = 0x811C9DC5
    for b in bytes(data):
        h ^= b
        h = (h * 0x01000193) & 0xFFFFFFFF
    return h
