#!/usr/bin/env python3
"""FlyMQ wire-protocol conformance suite (WIRE.md, protocol version 1).

Runs an independent Python client (wire_client.py, written from WIRE.md only)
against a running broker:

    python3 tests/conformance/test_wire.py --host 127.0.0.1 --port 9092
    python3 tests/conformance/test_wire.py --offline      # codec checks only

The last line printed is exactly `N passed, N failed`; the exit status is
non-zero when anything failed. Section numbers in the test docstrings and
failure messages refer to /work/shared/protocol/WIRE.md.
"""

import argparse
import gzip
import itertools
import os
import socket
import struct
import sys
import time
import unittest

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import wire_client as wc  # noqa: E402
from wire_client import (  # noqa: E402
    NotLeaderError,
    ProtocolError,
    ServerError,
    WireClient,
    Writer,
    encode_frame,
    fnv1a_32,
)

HOST = "127.0.0.1"
PORT = 9092
_counter = itertools.count()


def unique(prefix):
    return "%s-%d-%d-%d" % (prefix, os.getpid(), int(time.time() * 1000), next(_counter))


def _fake_server_frames(data):
    """A socket whose peer has already written `data` and closed."""
    a, b = socket.socketpair()
    b.sendall(data)
    b.close()
    a.settimeout(2)
    return a


# ===========================================================================
# Offline: the client's codec against the worked examples of §2, §5 and §8.1
# ===========================================================================


class OfflineCodec(unittest.TestCase):
    """Encoders/decoders checked against WIRE.md's worked bytes (no broker needed)."""

    def test_worked_example_produce_request_bytes(self):
        """§2 worked example: PRODUCE "hi" to "t1", no key, auto partition."""
        payload = Writer().str16("t1").bytes32(b"").bytes32(b"hi").i32(-1).build()
        frame = encode_frame(wc.PRODUCE, payload)
        expected = bytes.fromhex("af010101 00000012 00027431 00000000 000000026869 ffffffff".replace(" ", ""))
        self.assertEqual(frame, expected)

    def test_worked_example_produce_response_decodes(self):
        """§2 worked example response: partition 0, offset 7, ts 1700000000000, key_size -1, value_size 2."""
        raw = bytes.fromhex(
            "af01010100000020" "00027431" "00000000" "0000000000000007" "0000018bcfe56800" "ffffffff" "00000002"
        )
        frame = wc.read_frame(_fake_server_frames(raw))
        self.assertEqual(frame.opcode, wc.PRODUCE)
        md, r = wc.decode_record_metadata(frame.payload)
        r.end()
        self.assertEqual(md, wc.RecordMetadata("t1", 0, 7, 1700000000000, -1, 2))

    def test_worked_example_error_frame(self):
        """§2/§5.1 worked example: ERROR "topic not found: t9"."""
        text = b"topic not found: t9"
        raw = bytes.fromhex("af01ff0100000019" "00000001" "0013") + text
        self.assertEqual(raw[:8], encode_frame(wc.ERROR, raw[8:])[:8])
        frame = wc.read_frame(_fake_server_frames(raw))
        err = wc.error_from_payload(frame.payload)
        self.assertIsInstance(err, ServerError)
        self.assertNotIsInstance(err, NotLeaderError)
        self.assertEqual(err.message, "topic not found: t9")
        self.assertEqual(err.code, 1)

    def test_error_payload_rules(self):
        """§5.1/§5.2: <6 bytes = plain text; >=6 = i32+str16, overrun falls back to bytes after 6."""
        self.assertEqual(wc.decode_error_text(b"EOF"), (None, "EOF"))
        # Go form A (raw text) loses its first 6 bytes in pyflymq, as §5.2 says.
        self.assertEqual(wc.decode_error_text(b"topic not found")[1], "not found")
        self.assertEqual(wc.decode_error_text(b"unauthorized")[1], "orized")
        ok = Writer().i32(1).str16("boom").build()
        self.assertEqual(wc.decode_error_text(ok), (1, "boom"))

    def test_not_leader_detection(self):
        """§5.3/§5.4: `not leader` anywhere (case-insensitive) -> NotLeaderError; leader id after `current leader is`."""
        p = Writer().i32(1).str16("not leader: leader_addr=10.0.0.7:9092 current leader is node-2").build()
        err = wc.error_from_payload(p)
        self.assertIsInstance(err, NotLeaderError)
        self.assertEqual(err.leader_id, "node-2")
        err = wc.error_from_payload(Writer().i32(1).str16("Not Leader: no leader elected").build())
        self.assertIsInstance(err, NotLeaderError)
        self.assertIsNone(err.leader_id)
        err = wc.error_from_payload(Writer().i32(1).str16("not partition leader: partition=1").build())
        self.assertNotIsInstance(err, NotLeaderError)

    def test_rejects_unknown_response_opcode(self):
        """§2/§4: a response opcode pyflymq does not know (0x0A, 0x0B, 0x90, 0x73) is a ValueError."""
        for code in (0x0A, 0x0B, 0x0C, 0x73, 0x90):
            with self.assertRaises(ValueError, msg="opcode 0x%02x" % code):
                wc.read_frame(_fake_server_frames(bytes([0xAF, 1, code, 1, 0, 0, 0, 0])))
        for code in (0x01, 0x53, 0x66, 0x71, 0xA1, 0xFF):
            wc.read_frame(_fake_server_frames(bytes([0xAF, 1, code, 1, 0, 0, 0, 0])))

    def test_rejects_oversized_and_bad_headers(self):
        """§2: length > 32 MiB rejected; bad magic -> ValueError; version != 1 -> InvalidVersionError."""
        big = struct.pack(">BBBBI", 0xAF, 1, 1, 1, wc.MAX_PAYLOAD + 1)
        with self.assertRaises(wc.MessageTooLargeError):
            wc.read_frame(_fake_server_frames(big))
        with self.assertRaises(ValueError):
            wc.read_frame(_fake_server_frames(bytes([0xAE, 1, 1, 1, 0, 0, 0, 0])))
        with self.assertRaises(wc.InvalidVersionError):
            wc.read_frame(_fake_server_frames(bytes([0xAF, 2, 1, 1, 0, 0, 0, 0])))
        with self.assertRaises(wc.ConnectionClosedError):
            wc.read_frame(_fake_server_frames(bytes([0xAF, 1, 1, 1, 0, 0, 0, 4, 0])))

    def test_request_encodings(self):
        """§9.1 str8 mode, §9.4 u64 only for `offset`, §8.6 filter always present."""
        self.assertEqual(
            Writer().str16("t").str16("g").i32(0).str8("latest").build(),
            b"\x00\x01t\x00\x01g\x00\x00\x00\x00\x06latest",
        )
        self.assertEqual(WireClient.reset_offset_payload("t", "g", 0, "earliest"), b"\x00\x01t\x00\x01g\x00\x00\x00\x00\x08earliest")
        self.assertEqual(WireClient.reset_offset_payload("t", "g", 0, "offset", 5)[-8:], struct.pack(">Q", 5))
        self.assertEqual(
            WireClient.fetch_payload("t", 0, 0, 5),
            b"\x00\x01t" + struct.pack(">iQi", 0, 0, 5) + b"\x00\x00",
        )

    def test_gzip_request_flags(self):
        """§2: gzip sets compression code 0x02 -> flags 0x03, payload is a gzip stream."""
        frame = encode_frame(wc.LIST_TOPICS, b"abc", gzip_payload=True)
        self.assertEqual(frame[3], 0x03)
        self.assertEqual(gzip.decompress(frame[8:]), b"abc")
        self.assertEqual(struct.unpack(">I", frame[4:8])[0], len(frame) - 8)

    def test_fnv1a_reference_vectors(self):
        """§8.1: FNV-1a-32 as Go's hash/fnv New32a."""
        self.assertEqual(fnv1a_32(b""), 0x811C9DC5)
        self.assertEqual(fnv1a_32(b"a"), 0xE40C292C)
        self.assertEqual(fnv1a_32(b"foobar"), 0xBF9CF968)

    def test_writer_refuses_overlong_strings(self):
        """§3: never truncate a string longer than its prefix allows."""
        with self.assertRaises(ValueError):
            Writer().str8("x" * 256)
        with self.assertRaises(ValueError):
            Writer().str16("x" * 65536)


# ===========================================================================
# Online: against a running broker
# ===========================================================================


class BrokerCase(unittest.TestCase):
    """A connected client plus topics that are deleted afterwards."""

    def setUp(self):
        self.client = WireClient(HOST, PORT)
        self._topics = []
        self._extra = []

    def tearDown(self):
        for c in self._extra:
            c.close()
        try:
            cleaner = WireClient(HOST, PORT)
            for t in self._topics:
                try:
                    cleaner.delete_topic(t)
                except Exception:
                    pass
            cleaner.close()
        except OSError:
            pass
        self.client.close()

    def new_client(self):
        c = WireClient(HOST, PORT)
        self._extra.append(c)
        return c

    def topic(self, partitions=1, create=True):
        """A fresh topic name (test-topic-<ms>-style, as the pyflymq fixtures)."""
        name = unique("test-topic")
        self._topics.append(name)
        if create:
            self.assertTrue(self.client.create_topic(name, partitions), "§8.3: CREATE_TOPIC answers u8 1")
        return name

    def produce_n(self, topic, n, prefix="m"):
        return [self.client.produce(topic, ("%s-%d" % (prefix, i)).encode()) for i in range(n)]

    def produce_pipelined(self, topic, values, batch=200):
        """Many PRODUCEs sent back-to-back (answered in order, §1); returns the offsets."""
        offsets = []
        for i in range(0, len(values), batch):
            chunk = values[i : i + batch]
            self.client.send_raw(
                b"".join(encode_frame(wc.PRODUCE, Writer().str16(topic).bytes32(b"").bytes32(v).i32(-1).build()) for v in chunk)
            )
            for _ in chunk:
                f = self.client.read_response()
                self.assertEqual(f.opcode, wc.PRODUCE, wc.decode_error_text(f.payload)[1] if f.opcode == wc.ERROR else "")
                offsets.append(wc.decode_record_metadata(f.payload)[0].offset)
        return offsets

    def assert_error(self, fn, *args, prefix=None, contains=None, **kwargs):
        """Calls fn expecting an error frame in the §5.1 form; checks its text.

        `prefix` is a §5.4 Go wording: the message must start with it and not
        continue with a name character (extra detail after it is allowed)."""
        with self.assertRaises(ServerError) as cm:
            fn(*args, **kwargs)
        err = cm.exception
        self.assert_error_payload_form(err.raw)
        if prefix is not None:
            ok = err.message.startswith(prefix) and (
                len(err.message) == len(prefix) or not (err.message[len(prefix)].isalnum() or err.message[len(prefix)] in "_-.")
            )
            self.assertTrue(ok, "error text %r should start with %r (WIRE.md §5.4)" % (err.message, prefix))
        if contains is not None:
            self.assertIn(contains, err.message)
        # §5.1: the connection stays open after an error frame.
        self.assertIsInstance(self.client.list_topics(), list)
        return err.message

    def assert_error_payload_form(self, payload):
        """§5.1: i32 code 1, then str16 message that fills the payload exactly."""
        self.assertGreaterEqual(len(payload), 6, "§5.1 error payload must be i32 + str16, got %r" % payload)
        code, n = struct.unpack(">iH", payload[:6])
        self.assertEqual(code, 1, "§5.1 error code must be 1")
        self.assertEqual(6 + n, len(payload), "§5.1 str16 length must match the payload (%r)" % payload)


class Topics(BrokerCase):
    def test_connect_and_list_topics(self):
        """§14 connect/close: TCP accept; LIST_TOPICS returns a list."""
        self.assertIsInstance(self.client.list_topics(), list)

    def test_create_appears_delete_disappears(self):
        """§14 / §8.3 / §8.4: created topic appears in LIST_TOPICS; after DELETE_TOPIC it is absent."""
        t = self.topic()
        self.assertIn(t, self.client.list_topics())
        self.assertTrue(self.client.delete_topic(t))
        self.assertNotIn(t, self.client.list_topics())

    def test_create_existing_topic_succeeds(self):
        """§8.3: creating an existing topic answers success."""
        t = self.topic(2)
        self.assertTrue(self.client.create_topic(t, 2))

    def test_delete_missing_topic_succeeds(self):
        """§8.4: deleting a missing topic succeeds."""
        self.assertTrue(self.client.delete_topic(unique("never-created")))

    def test_list_topics_sorted(self):
        """§8.5: names sorted ascending by bytes."""
        base = unique("sort")
        for suffix in ("b", "a", "C"):
            self._topics.append(base + suffix)
            self.client.create_topic(base + suffix, 1)
        names = self.client.list_topics()
        self.assertEqual(names, sorted(names, key=lambda s: s.encode()))
        self.assertTrue(all(not n.startswith("__") for n in names), "§8.5: no `__` names")

    def test_zero_partitions_means_one(self):
        """§8.3: partitions == 0 -> 1."""
        t = self.topic(0)
        md = self.client.get_cluster_metadata(t)
        self.assertEqual([p.partition for p in md.topics[0].partitions], [0])

    def test_delete_removes_data(self):
        """§8.4: DELETE_TOPIC removes all data: a topic re-created under the name starts empty."""
        t = self.topic()
        self.produce_n(t, 3)
        self.client.delete_topic(t)
        self.client.create_topic(t, 1)
        self.assertEqual(self.client.fetch(t, 0, 0, 10), wc.FetchResult([], 0))
        self.assertEqual(self.client.produce(t, b"again").offset, 0)

    def test_list_topics_ignores_payload(self):
        """§8.5: LIST_TOPICS request is empty; any payload is ignored."""
        r = wc.Reader(self.client.request(wc.LIST_TOPICS, b"\x00\x03abc junk"))
        topics = [r.str16() for _ in range(r.u32())]
        r.end()
        self.assertIsInstance(topics, list)

    def test_negative_partitions_error_frame(self):
        """§8.3: negative partition count MUST be an error frame."""
        t = unique("neg")
        self._topics.append(t)
        self.assert_error(self.client.create_topic, t, -3)


class ProduceConsume(BrokerCase):
    def test_record_metadata(self):
        """§8.1: RecordMetadata echoes topic, partition, offset, timestamp (ms), key_size -1, value_size."""
        t = self.topic()
        before = int(time.time() * 1000)
        md = self.client.produce(t, b"hi")
        after = int(time.time() * 1000)
        self.assertEqual(md.topic, t)
        self.assertEqual(md.partition, 0)
        self.assertEqual(md.offset, 0, "§8.1: offsets start at 0")
        self.assertEqual(md.key_size, -1, "§8.1: key_size -1 when the key is empty")
        self.assertEqual(md.value_size, 2)
        self.assertTrue(before - 5000 <= md.timestamp <= after + 5000, "§8.1 timestamp is wall-clock ms: %d" % md.timestamp)
        md = self.client.produce(t, b"value", key=b"key-1")
        self.assertEqual((md.key_size, md.value_size), (5, 5))

    def test_offsets_strictly_increase(self):
        """§14 (produce-multiple intent): offsets >= 0, strictly increasing (+1) on a 1-partition topic."""
        t = self.topic()
        offsets = [md.offset for md in self.produce_n(t, 10)]
        self.assertEqual(offsets, list(range(10)))

    def test_consume_at_returned_offset(self):
        """§14 (produce-and-consume intent) / §8.2: CONSUME at a returned offset yields the same bytes."""
        t = self.topic()
        payloads = [b"first", b"\x00\x01\xffbinary", b""]
        mds = [self.client.produce(t, p) for p in payloads]
        for md, p in zip(mds, payloads):
            msg = self.client.consume(t, md.offset, md.partition)
            self.assertEqual(msg.value, p)
            self.assertIsNone(msg.key, "§8.2: key length 0 when none")

    def test_produce_with_key(self):
        """§8.1: the record stores the key; CONSUME and FETCH return it."""
        t = self.topic()
        md = self.client.produce_with_key(t, b"user-7", b"payload")
        self.assertEqual(self.client.consume(t, md.offset).key, b"user-7")
        fetched = self.client.fetch(t, 0, md.offset, 1).messages
        self.assertEqual(fetched, [wc.FetchedMessage(md.offset, b"user-7", b"payload")])

    def test_produce_to_partition_honoured(self):
        """§8.1 / §15 row 13: an explicit partition >= 0 is honoured."""
        t = self.topic(3)
        for p in (2, 0, 1, 2):
            md = self.client.produce_to_partition(t, p, ("to-%d" % p).encode())
            self.assertEqual(md.partition, p)
        self.assertEqual(self.client.consume(t, 1, partition=2).value, b"to-2")
        self.assertEqual(self.client.consume(t, 0, partition=1).value, b"to-1")

    def test_explicit_partition_wins_over_key(self):
        """§8.1: an explicit partition >= 0 is honoured even when a key is present."""
        t = self.topic(4)
        key = b"key-3"
        target = (fnv1a_32(key) + 1) % 4
        md = self.client.produce(t, b"v", key=key, partition=target)
        self.assertEqual(md.partition, target)

    def test_produce_partition_out_of_range(self):
        """§8.1: explicit partition out of range -> error `partition <n> not found`."""
        t = self.topic(3)
        self.assert_error(self.client.produce_to_partition, t, 3, b"x", prefix="partition 3 not found")

    def test_fnv1a_key_placement(self):
        """§8.1: a non-empty key goes to FNV-1a-32(key) mod partitions."""
        t = self.topic(6)
        seen = set()
        for i in range(24):
            key = ("key-%d" % i).encode()
            md = self.client.produce(t, b"v%d" % i, key=key)
            self.assertEqual(md.partition, fnv1a_32(key) % 6, "key %r" % key)
            self.assertEqual(self.client.consume(t, md.offset, md.partition), wc.ConsumedMessage(t, md.partition, md.offset, key, b"v%d" % i))
            seen.add(md.partition)
        self.assertGreater(len(seen), 1)

    def test_round_robin_without_key(self):
        """§8.1: partition -1 without key -> per-topic round robin starting at partition 0."""
        t = self.topic(3)
        parts = [self.client.produce(t, b"rr").partition for _ in range(6)]
        self.assertEqual(parts, [0, 1, 2, 0, 1, 2])

    def test_auto_create_on_produce(self):
        """§8.1: PRODUCE to a missing topic auto-creates it (1 partition standalone) and writes."""
        t = self.topic(create=False)
        self.assertNotIn(t, self.client.list_topics())
        md = self.client.produce(t, b"auto")
        self.assertEqual((md.topic, md.partition, md.offset), (t, 0, 0))
        self.assertIn(t, self.client.list_topics())
        md = self.client.get_cluster_metadata(t)
        self.assertEqual(len(md.topics[0].partitions), 1)
        self.assertEqual(self.client.consume(t, 0).value, b"auto")

    def test_consume_errors(self):
        """§8.2 / §5.4: missing topic, partition out of range, offset not stored (`EOF`)."""
        t = self.topic()
        self.produce_n(t, 2)
        self.assert_error(self.client.consume, unique("missing"), 0, prefix="topic not found")
        self.assert_error(self.client.consume, t, 0, partition=1, prefix="partition 1 out of range")
        self.assert_error(self.client.consume, t, 0, partition=-1, prefix="partition -1 out of range")
        self.assert_error(self.client.consume, t, 2, prefix="EOF")

    def test_gzip_compressed_request(self):
        """§2: a request with flags 0x03 (gzip) is decompressed and decoded; the response is not compressed."""
        t = self.topic()
        md = self.client.produce(t, b"compressed " * 50, key=b"gz", gzip_payload=True)
        self.assertEqual((md.partition, md.offset, md.key_size, md.value_size), (0, 0, 2, 550))
        self.assertEqual(self.client.last_frame.flags & wc.COMPRESSION_MASK, 0)
        self.assertEqual(self.client.consume(t, 0).value, b"compressed " * 50)
        frame = self.client.exchange(wc.LIST_TOPICS, b"", gzip_payload=True)
        self.assertEqual(frame.opcode, wc.LIST_TOPICS)


class Fetch(BrokerCase):
    def test_fetch_batch_at_most_max(self):
        """§14 fetch batch: after 5 PRODUCEs, FETCH(p0, offset 0, max 5) returns at most 5."""
        t = self.topic()
        self.produce_n(t, 5)
        res = self.client.fetch(t, 0, 0, 5)
        self.assertLessEqual(len(res.messages), 5)
        self.assertEqual([m.offset for m in res.messages], [0, 1, 2, 3, 4])
        self.produce_n(t, 5, "more")
        res = self.client.fetch(t, 0, 0, 3)
        self.assertEqual(len(res.messages), 3)

    def test_next_offset_semantics(self):
        """§8.6: next_offset one past the last record read; past the end -> empty, next = requested."""
        t = self.topic()
        self.produce_n(t, 7)
        res = self.client.fetch(t, 0, 0, 3)
        self.assertEqual(([m.offset for m in res.messages], res.next_offset), ([0, 1, 2], 3))
        self.assertEqual([m.value for m in res.messages], [b"m-0", b"m-1", b"m-2"])
        res = self.client.fetch(t, 0, res.next_offset, 100)
        self.assertEqual(([m.offset for m in res.messages], res.next_offset), ([3, 4, 5, 6], 7))
        res = self.client.fetch(t, 0, 7, 10)
        self.assertEqual(res, wc.FetchResult([], 7))
        res = self.client.fetch(t, 0, 1000, 10)
        self.assertEqual(res, wc.FetchResult([], 1000), "§8.6: beyond the end -> empty, next_offset = requested")

    def test_fetch_empty_partition(self):
        """§8.6: empty partition -> count 0, next_offset = requested offset."""
        t = self.topic()
        self.assertEqual(self.client.fetch(t, 0, 0, 10), wc.FetchResult([], 0))

    def test_max_messages_default(self):
        """§8.6: max_messages <= 0 -> 10."""
        t = self.topic()
        self.produce_n(t, 12)
        self.assertEqual(len(self.client.fetch(t, 0, 0, 0).messages), 10)
        self.assertEqual(len(self.client.fetch(t, 0, 0, -1).messages), 10)

    def test_filter_field_optional(self):
        """§8.6 / §15 row 16: the filter is optional (absent = empty)."""
        t = self.topic()
        self.produce_n(t, 2)
        res = self.client.fetch(t, 0, 0, 10, with_filter=False)
        self.assertEqual(len(res.messages), 2)

    def _filter_topic(self):
        t = self.topic()
        records = [
            (b"k0", b"Hello World"),
            (b"USER-42", b"nothing"),
            (b"", b"id=42"),
            (b"", b'{"order": {"id": 7}}'),
            (b"", b'{"order": {}}'),
            (b"", b"id=x"),
        ]
        for k, v in records:
            self.client.produce(t, v, key=k)
        return t

    def test_filter_substring_case_insensitive(self):
        """§8.6: filter kept when it is a case-insensitive substring of the value or the key."""
        t = self._filter_topic()
        res = self.client.fetch(t, 0, 0, 10, filter="hello")
        self.assertEqual([m.offset for m in res.messages], [0])
        self.assertEqual(res.next_offset, 6, "§8.6: next_offset one past the last record scanned (matching or not)")
        res = self.client.fetch(t, 0, 0, 10, filter="user-42")
        self.assertEqual([m.offset for m in res.messages], [1], "key substring, case-insensitive")

    def test_filter_regex(self):
        """§8.6: the filter compiled as a regular expression matches the value or the key."""
        t = self._filter_topic()
        res = self.client.fetch(t, 0, 0, 10, filter="^id=[0-9]+$")
        self.assertEqual([m.offset for m in res.messages], [2])
        res = self.client.fetch(t, 0, 0, 10, filter="^USER-[0-9]+$")
        self.assertEqual([m.offset for m in res.messages], [1])

    def test_filter_json_path(self):
        """§8.6: `$.path` keeps JSON objects containing that dotted path."""
        t = self._filter_topic()
        res = self.client.fetch(t, 0, 0, 10, filter="$.order.id")
        self.assertEqual([m.offset for m in res.messages], [3])
        res = self.client.fetch(t, 0, 0, 10, filter="$.order")
        self.assertEqual([m.offset for m in res.messages], [3, 4])

    def test_filter_next_offset_counts_scanned(self):
        """§8.6: with a filter, next_offset = one past the last record scanned."""
        t = self._filter_topic()
        res = self.client.fetch(t, 0, 0, 1, filter="id=")
        self.assertEqual(([m.offset for m in res.messages], res.next_offset), ([2], 3))
        res = self.client.fetch(t, 0, 0, 10, filter="no-such-text-zzz")
        self.assertEqual(res, wc.FetchResult([], 6))

    def test_fetch_response_stays_within_32mib(self):
        """§8.6: the FETCH response MUST stay <= 32 MiB (pyflymq rejects larger frames); records that
        do not fit are left for the next FETCH (next_offset points at the first one left out)."""
        t = self.topic()
        big = 7 * 1024 * 1024
        for i in range(5):  # 35 MiB in total, each record below the default 8 MiB message limit
            self.client.produce(t, bytes([65 + i]) * big)
        res = self.client.fetch(t, 0, 0, 10)  # our client refuses frames > 32 MiB, like pyflymq
        self.assertLessEqual(len(self.client.last_frame.payload), wc.MAX_PAYLOAD)
        n = len(res.messages)
        self.assertGreaterEqual(n, 1)
        self.assertLess(n, 5)
        self.assertEqual([m.offset for m in res.messages], list(range(n)))
        self.assertEqual(res.next_offset, n)
        self.assertTrue(all(m.value == bytes([65 + m.offset]) * big for m in res.messages))
        rest = self.client.fetch(t, 0, res.next_offset, 10)
        self.assertEqual([m.offset for m in rest.messages], list(range(n, 5)))

    def test_filter_scan_limit(self):
        """§8.6 (Go behaviour): a FETCH stops after 1000 records scanned; next_offset = 1000 when none matched."""
        t = self.topic()
        self.produce_pipelined(t, [b"x%d" % i for i in range(1100)])
        res = self.client.fetch(t, 0, 0, 10, filter="no-such-text-zzz")
        self.assertEqual(res, wc.FetchResult([], 1000))
        res = self.client.fetch(t, 0, 1000, 10, filter="no-such-text-zzz")
        self.assertEqual(res, wc.FetchResult([], 1100))

    def test_fetch_errors(self):
        """§8.6 / §5.4: missing topic, partition >= count, negative partition -> error frames."""
        t = self.topic(2)
        missing = unique("missing")
        self.assert_error(self.client.fetch, missing, 0, 0, 10, prefix="topic not found: " + missing)
        self.assert_error(self.client.fetch, t, 2, 0, 10, prefix="partition 2 not found")
        self.assert_error(self.client.fetch, t, -1, 0, 10)


class ConsumerGroups(BrokerCase):
    def test_subscribe_latest_then_fetch(self):
        """§14 consumer basic: SUBSCRIBE (test-group, latest) then FETCH(max 3) succeed."""
        t = self.topic()
        start = self.client.subscribe(t, "test-group", 0, "latest")
        res = self.client.fetch(t, 0, start, 3)
        self.assertLessEqual(len(res.messages), 3)

    def test_subscribe_latest_empty_partition_is_zero(self):
        """§9.1 / §15 row 20: `latest` on an empty partition is 0 (true log end).
        Documented FlyMQ deviation from the Go server, which answers 1."""
        t = self.topic()
        self.assertEqual(self.client.subscribe(t, unique("g"), 0, "latest"), 0)

    def test_subscribe_modes(self):
        """§9.1: earliest = first retained, latest = next to write, commit = committed else earliest, "" = latest."""
        t = self.topic()
        g = unique("g")
        self.produce_n(t, 3)
        self.assertEqual(self.client.subscribe(t, g, 0, "latest"), 3)
        self.assertEqual(self.client.subscribe(t, g, 0, "earliest"), 0)
        self.assertEqual(self.client.subscribe(t, g, 0, "commit"), 0, "no commit -> as earliest")
        self.assertEqual(self.client.subscribe(t, g, 0, ""), 3, "empty mode -> latest")
        self.assertTrue(self.client.commit_offset(t, g, 0, 2))
        self.assertEqual(self.client.subscribe(t, g, 0, "commit"), 2)
        self.assertEqual(self.client.subscribe(t, "", 0, "earliest"), 0, "group id may be empty")
        self.assertEqual(self.client.subscribe(t, "", 0, "commit"), 0, "no group -> commit = earliest")

    def test_subscribe_errors(self):
        """§9.1 / §5.4: unknown mode, missing topic, partition out of range (also negative)."""
        t = self.topic(2)
        g = unique("g")
        self.assert_error(self.client.subscribe, t, g, 0, "bogus", prefix="unknown subscribe mode: bogus")
        missing = unique("missing")
        self.assert_error(self.client.subscribe, missing, g, 0, "latest", prefix="topic not found: " + missing)
        self.assert_error(self.client.subscribe, t, g, 2, "latest", prefix="partition 2 not found")
        self.assert_error(self.client.subscribe, t, g, -1, "latest")

    def test_subscribe_creates_group(self):
        """§9.1 side effects: SUBSCRIBE with a group creates it; GET_OFFSET then answers 0 (no commit)."""
        t = self.topic()
        g = unique("g")
        self.client.subscribe(t, g, 0, "earliest")
        self.assertEqual(self.client.get_committed_offset(t, g, 0), 0)

    def test_commit_and_get_offset(self):
        """§9.2 / §9.3: COMMIT answers u8 1 and creates the group; GET_OFFSET returns it; no commit for a partition -> 0."""
        t = self.topic(2)
        g = unique("g")
        self.produce_n(t, 4)
        self.assertTrue(self.client.commit_offset(t, g, 0, 3))
        self.assertEqual(self.client.get_committed_offset(t, g, 0), 3)
        self.assertEqual(self.client.get_committed_offset(t, g, 1), 0)
        self.assertTrue(self.client.commit_offset(t, g, 0, 1))
        self.assertEqual(self.client.get_committed_offset(t, g, 0), 1, "a later commit overwrites")

    def test_get_offset_unknown_group(self):
        """§9.3 / §5.4: unknown group -> `consumer group not found: <topic>:<group>`."""
        t = self.topic()
        g = unique("nog")
        self.assert_error(self.client.get_committed_offset, t, g, 0, prefix="consumer group not found: %s:%s" % (t, g))

    def test_reset_offset_modes(self):
        """§9.4: earliest, latest (log end), offset (u64 only for this mode)."""
        t = self.topic()
        g = unique("g")
        self.produce_n(t, 5)
        self.client.commit_offset(t, g, 0, 2)
        self.assertTrue(self.client.reset_offset_to_latest(t, g, 0))
        self.assertEqual(self.client.get_committed_offset(t, g, 0), 5)
        self.assertTrue(self.client.reset_offset_to_earliest(t, g, 0))
        self.assertEqual(self.client.get_committed_offset(t, g, 0), 0)
        self.assertTrue(self.client.reset_offset(t, g, 0, "offset", 4))
        self.assertEqual(self.client.get_committed_offset(t, g, 0), 4)

    def test_reset_offset_ignores_trailing_offset(self):
        """§3 / §9.4: trailing bytes are ignored (Java appends an unused u64 to every RESET_OFFSET)."""
        t = self.topic()
        g = unique("g")
        self.produce_n(t, 3)
        self.client.commit_offset(t, g, 0, 1)
        payload = WireClient.reset_offset_payload(t, g, 0, "latest") + struct.pack(">Q", 99)
        r = wc.Reader(self.client.request(wc.RESET_OFFSET, payload))
        self.assertTrue(r.bool())
        r.end()
        self.assertEqual(self.client.get_committed_offset(t, g, 0), 3)

    def test_reset_offset_errors(self):
        """§9.4 / §5.4: unknown mode, missing topic / partition for earliest/latest."""
        t = self.topic()
        g = unique("g")
        self.assert_error(self.client.reset_offset, t, g, 0, "bogus", prefix="unknown reset mode: bogus")
        self.assert_error(self.client.reset_offset, t, g, 5, "earliest", prefix="partition 5 not found")
        missing = unique("missing")
        self.assert_error(self.client.reset_offset, missing, g, 0, "latest", prefix="topic not found: " + missing)

    def test_get_lag(self):
        """§9.7: current = committed, latest = log end, lag = latest - committed floored at 0."""
        t = self.topic()
        g = unique("g")
        self.produce_n(t, 5)
        self.client.commit_offset(t, g, 0, 2)
        self.assertEqual(self.client.get_lag(t, g, 0), wc.LagInfo(2, 2, 5, 3))
        self.client.commit_offset(t, g, 0, 9)
        self.assertEqual(self.client.get_lag(t, g, 0), wc.LagInfo(9, 9, 5, 0))

    def test_get_lag_without_commit(self):
        """§9.7: no commit for the partition -> current = committed = 0, lag = latest."""
        t = self.topic()
        g = unique("g")
        self.produce_n(t, 4)
        self.client.subscribe(t, g, 0, "latest")
        self.assertEqual(self.client.get_lag(t, g, 0), wc.LagInfo(0, 0, 4, 4))

    def test_get_lag_errors(self):
        """§9.7: unknown group, partition out of range."""
        t = self.topic()
        g = unique("g")
        self.assert_error(self.client.get_lag, t, g, 0, prefix="consumer group not found: %s:%s" % (t, g))
        self.client.commit_offset(t, g, 0, 0)
        self.assert_error(self.client.get_lag, t, g, 4, prefix="partition 4 not found")

    def test_describe_and_list_groups(self):
        """§9.5: group record (topic, group, live members, offsets by partition); LIST_GROUPS contains it."""
        t = self.topic(2)
        g = unique("g")
        member = self.new_client()
        member.subscribe(t, g, 0, "earliest")
        self.client.commit_offset(t, g, 1, 7)
        self.client.commit_offset(t, g, 0, 4)
        rec = self.client.describe_consumer_group(t, g)
        self.assertEqual(rec, wc.GroupRecord(t, g, 1, [(0, 4), (1, 7)]))
        groups = self.client.list_consumer_groups()
        mine = [x for x in groups if (x.topic, x.group_id) == (t, g)]
        self.assertEqual(mine, [rec])
        keys = [(x.topic.encode(), x.group_id.encode()) for x in groups]
        self.assertEqual(keys, sorted(keys), "§9.5 SHOULD sort by topic, group")
        for x in groups:
            self.assertEqual([p for p, _ in x.offsets], sorted(p for p, _ in x.offsets), "§9.5 SHOULD sort by partition")

    def test_membership_ends_on_disconnect(self):
        """§9.1 / §9.6: the subscribing connection is a member until it disconnects."""
        t = self.topic()
        g = unique("g")
        member = self.new_client()
        member.subscribe(t, g, 0, "latest")
        self.assertEqual(self.client.describe_consumer_group(t, g).members, 1)
        member.close()
        deadline = time.time() + 5
        while time.time() < deadline and self.client.describe_consumer_group(t, g).members != 0:
            time.sleep(0.05)
        self.assertEqual(self.client.describe_consumer_group(t, g).members, 0)

    def test_describe_unknown_group(self):
        """§9.5 / §5.4: unknown group -> `consumer group not found: <t>:<g>`."""
        t = self.topic()
        g = unique("nog")
        self.assert_error(self.client.describe_consumer_group, t, g, prefix="consumer group not found: %s:%s" % (t, g))

    def test_delete_group(self):
        """§9.8: DELETE_GROUP answers u8 1; afterwards the group is unknown; unknown -> error."""
        t = self.topic()
        g = unique("g")
        self.client.commit_offset(t, g, 0, 1)
        self.assertTrue(self.client.delete_consumer_group(t, g))
        self.assert_error(self.client.describe_consumer_group, t, g, prefix="consumer group not found: %s:%s" % (t, g))
        self.assert_error(self.client.delete_consumer_group, t, g, prefix="consumer group not found: %s:%s" % (t, g))
        self.assertNotIn((t, g), [(x.topic, x.group_id) for x in self.client.list_consumer_groups()])


class Cluster(BrokerCase):
    def test_cluster_metadata_layout(self):
        """§11.5: partitions ascending, leader_addr a connectable host:port, state from the list."""
        t = self.topic(3)
        md = self.client.get_cluster_metadata(t)
        self.assertTrue(md.cluster_id, "cluster_id non-empty")
        self.assertEqual([x.topic for x in md.topics], [t])
        parts = md.topics[0].partitions
        self.assertEqual([p.partition for p in parts], [0, 1, 2])
        for p in parts:
            self.assertIn(p.state, ("online", "offline", "reassigning", "syncing"))
            self.assertTrue(p.leader_id)
            self.assertIn(p.leader_id, p.replicas)
            self.assertIn(p.leader_id, p.isr)
            self.assertGreaterEqual(p.epoch, 1)
        addr = parts[0].leader_addr
        host, sep, port = addr.rpartition(":")
        self.assertTrue(sep and host and port.isdigit(), "§11.5 leader_addr %r is not host:port" % addr)
        self.assertNotIn(host, ("", "0.0.0.0", "::", "[::]"), "§11.5 leader_addr %r is not connectable" % addr)
        with WireClient(host.strip("[]"), int(port)) as leader:
            self.assertIn(t, leader.list_topics())

    def test_cluster_metadata_all_topics(self):
        """§11.5: empty topic = all topics; a zero-length payload also means all."""
        t1 = self.topic(1)
        t2 = self.topic(2)
        md = self.client.get_cluster_metadata("")
        by_name = {x.topic: x for x in md.topics}
        self.assertEqual(len(by_name[t1].partitions), 1)
        self.assertEqual(len(by_name[t2].partitions), 2)
        r = wc.Reader(self.client.request(wc.CLUSTER_METADATA, b""))
        md2 = WireClient.decode_cluster_metadata(r)
        r.end()
        self.assertIn(t2, [x.topic for x in md2.topics])

    def test_cluster_metadata_unknown_topic(self):
        """§11.5: unknown topic -> error frame `topic not found: <t>`."""
        missing = unique("missing")
        self.assert_error(self.client.get_cluster_metadata, missing, prefix="topic not found: " + missing)

    def test_cluster_join_leave(self):
        """§11.4: JOIN/LEAVE -> error frame, or the same opcode with an empty body or u8 1."""
        for opcode, payload in ((wc.CLUSTER_JOIN, Writer().str16("10.0.0.9:9093").build()), (wc.CLUSTER_LEAVE, b"")):
            frame = self.client.exchange(opcode, payload)
            if frame.opcode == wc.ERROR:
                self.assert_error_payload_form(frame.payload)
            else:
                self.assertEqual(frame.opcode, opcode)
                self.assertIn(frame.payload, (b"", b"\x01"))


class Auth(BrokerCase):
    def test_auth_succeeds_when_auth_disabled(self):
        """§6.2 / §15 row 19: auth disabled -> 0x71, success 1, username echoed, no roles, empty error."""
        res = self.client.authenticate("alice", "secret")
        self.assertEqual(self.client.last_frame.opcode, wc.AUTH_RESPONSE)
        self.assertEqual(res, wc.AuthResult(True, "alice", [], ""))

    def test_malformed_auth_is_error_frame(self):
        """§6.2: a malformed AUTH request -> error frame (not an in-band 0x71)."""
        frame = self.client.exchange(wc.AUTH, b"\x00\x05ab")
        self.assertEqual(frame.opcode, wc.ERROR)
        self.assert_error_payload_form(frame.payload)
        self.assertIsInstance(self.client.list_topics(), list)

    def test_whoami_unauthenticated(self):
        """§6.3: WHOAMI answers the pyflymq layout (u8, str16, u32+str16 roles, u32+str16 perms)."""
        who = self.client.whoami()
        self.assertFalse(who.authenticated)
        self.assertEqual(who.username, "")

    def test_whoami_after_auth(self):
        """§6.1 / §6.2: a successful AUTH binds the username to the connection."""
        self.client.authenticate("bob", "pw")
        who = self.client.whoami()
        self.assertTrue(who.authenticated)
        self.assertEqual(who.username, "bob")
        other = self.new_client()
        self.assertEqual(other.whoami().username, "", "§1: the binding is per connection")
        self.client.authenticate("carol", "pw")
        self.assertEqual(self.client.whoami().username, "carol", "§6.1: a later successful AUTH rebinds")


class Dlq(BrokerCase):
    def test_fetch_dlq_without_dlq_is_empty(self):
        """§14 / §11.1: FETCH_DLQ on a topic without DLQ returns an empty list (not an error)."""
        t = self.topic()
        self.assertEqual(self.client.fetch_dlq(t, 10), [])
        # pyflymq encodes max_messages as u32, Go reads i32 (§3, §11.1): a huge value must not break it.
        self.assertEqual(self.client.fetch_dlq(t, 0xFFFFFFFF), [])

    def test_purge_dlq_no_error_frame(self):
        """§14 / §11.3: PURGE_DLQ on a valid topic does not produce an error frame."""
        t = self.topic()
        res = self.client.purge_dlq(t)
        self.assertIsInstance(res, wc.OkMessage)


class Schemas(BrokerCase):
    PERSON = b'{"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}}, "required": ["name"]}'

    def test_register_and_list_schemas(self):
        """§14 register and list schemas: REGISTER_SCHEMA of a JSON object schema succeeds; LIST_SCHEMAS
        returns a list with the plain name (§10.3, §15 #23)."""
        name = unique("schema")
        entry = self.client.register_schema(name, "json", self.PERSON)
        self.assertEqual(entry, wc.SchemaEntry(name, "json", 1))
        self.assertIn(wc.SchemaEntry(name, "json", 1), self.client.list_schemas())
        self.assertEqual(self.client.list_schemas(name), [wc.SchemaEntry(name, "json", 1)])
        self.client.delete_schema(name, 0)

    def test_get_schema_list_layout_and_errors(self):
        """§10.2: GET_SCHEMA answers the LIST_SCHEMAS layout with one entry, 0 = latest; missing -> error frame."""
        name = unique("schema")
        self.client.register_schema(name, "json", self.PERSON)
        newer = b'{"type": "object", "properties": {"name": {"type": "string"}, "city": {"type": "string"}}}'
        self.assertEqual(self.client.register_schema(name, "json", newer).version, 2)
        self.assertEqual(self.client.get_schema(name, 0), [wc.SchemaEntry(name, "json", 2)])
        self.assertEqual(self.client.get_schema(name, 1), [wc.SchemaEntry(name, "json", 1)])
        self.assert_error(lambda: self.client.get_schema(name, 9), contains="schema not found: %s v9" % name)
        self.assert_error(lambda: self.client.get_schema(unique("none"), 0), prefix="no schema found for topic")
        self.client.delete_schema(name, 0)

    def test_validate_and_produce_with_schema(self):
        """§10.4 / §10.5: VALIDATE_SCHEMA answers u8 valid, u32 count, errors; PRODUCE_WITH_SCHEMA (pyflymq
        layout) writes a valid record and answers an error frame for an invalid one, writing nothing."""
        name, t = unique("schema"), self.topic()
        self.client.register_schema(name, "json", self.PERSON)
        self.assertEqual(self.client.validate_schema(name, b'{"name": "ada"}'), wc.Validation(True, []))
        bad = self.client.validate_schema(name, b'{"name": 5}')
        self.assertFalse(bad.valid)
        self.assertTrue(bad.errors and bad.errors[0].startswith("/name:"), bad.errors)
        self.assertTrue(self.client.validate_schema(unique("none"), b"x").valid, "§10.4: no schema -> valid")
        md = self.client.produce_with_schema(t, b'{"name": "ada", "age": 36}', name)
        self.assertEqual((md.offset, md.key_size), (0, -1))
        self.assert_error(lambda: self.client.produce_with_schema(t, b'{"age": 1}', name), prefix="schema validation failed")
        self.assertEqual([m.value for m in self.client.fetch(t, 0, 0, 10).messages], [b'{"name": "ada", "age": 36}'])
        self.client.delete_schema(name, 0)

    def test_bad_schemas_are_error_frames(self):
        """§10.1: unknown type and unparsable definitions are error frames; the connection stays usable."""
        name = unique("schema")
        self.assert_error(lambda: self.client.register_schema(name, "xml", b"<a/>"), contains="unknown schema type")
        self.assert_error(lambda: self.client.register_schema(name, "json", b"{oops"), contains="invalid json schema")
        self.assert_error(lambda: self.client.register_schema(name, "avro", b""), contains="invalid avro schema")
        self.assertEqual(self.client.list_schemas(name), [])

    def test_delete_schema_version_zero_means_all(self):
        """§10.6 / §15 #18: version 0 deletes every version; u8 success, str16 message."""
        name = unique("schema")
        self.client.register_schema(name, "avro", b'{"type": "string"}')
        res = self.client.delete_schema(name, 0)
        self.assertTrue(res.success)
        self.assertEqual(self.client.list_schemas(name), [])
        self.assert_error(lambda: self.client.delete_schema(name, 1), contains="no schema found")


class Transactions(BrokerCase):
    def test_rollback(self):
        """§14 transaction rollback: BEGIN, PRODUCE_TX, ABORT all succeed; §9.11 SHOULD: the
        records are never visible."""
        t = self.topic()
        txn = self.client.begin_transaction()
        self.assertTrue(txn.txn_id, "§9.11: BEGIN_TX answers a non-empty id")
        md = self.client.produce_in_transaction(txn.txn_id, t, b"never")
        self.assertEqual((md.partition, md.offset, md.key_size), (0, 0, -1), "§9.11: offset 0, partition 0")
        self.assertEqual(self.client.abort_transaction(txn.txn_id), wc.TxResult(txn.txn_id, True))
        self.assertEqual(self.client.fetch(t, 0, 0, 10).messages, [])

    def test_commit_makes_records_visible_in_order(self):
        """§9.11 SHOULD: buffered until COMMIT, then visible in produce order; COMMIT answers id, 1."""
        t = self.topic()
        txn = self.client.begin_transaction()
        for i in range(3):
            self.client.produce_in_transaction(txn.txn_id, t, b"tx-%d" % i)
        self.assertEqual(self.client.fetch(t, 0, 0, 10).messages, [], "invisible before COMMIT")
        self.assertEqual(self.client.commit_transaction(txn.txn_id), wc.TxResult(txn.txn_id, True))
        values = [m.value for m in self.client.fetch(t, 0, 0, 10).messages]
        self.assertEqual(values, [b"tx-0", b"tx-1", b"tx-2"])

    def test_unknown_and_finished_ids_are_error_frames(self):
        """§9.11 SHOULD: error frames (not success 0) for unknown and finished ids."""
        self.assert_error(lambda: self.client.commit_transaction("txn-unknown"), contains="not found")
        self.assert_error(lambda: self.client.produce_in_transaction("txn-unknown", self.topic(), b"x"), contains="not found")
        txn = self.client.begin_transaction()
        self.client.commit_transaction(txn.txn_id)
        self.assert_error(lambda: self.client.abort_transaction(txn.txn_id), contains="already committed")


class ErrorsAndFraming(BrokerCase):
    def test_unknown_opcode(self):
        """§4 / §5.4: undispatched codes -> error frame `unknown opcode: <decimal>`."""
        for code in (0x0C, 0xEE):
            frame = self.client.exchange(code, b"")
            self.assertEqual(frame.opcode, wc.ERROR)
            self.assert_error_payload_form(frame.payload)
            self.assertEqual(wc.decode_error_text(frame.payload)[1], "unknown opcode: %d" % code)

    def test_reserved_opcodes_error_frame(self):
        """§8.8: 0x04 METADATA and 0x31 CANCEL_DELAYED are not dispatched -> error frame."""
        for code in (wc.METADATA, 0x31):
            frame = self.client.exchange(code, Writer().str16("t").u64(1).build())
            self.assertEqual(frame.opcode, wc.ERROR, "opcode 0x%02x" % code)
            self.assert_error_payload_form(frame.payload)

    def test_every_pyflymq_opcode_gets_a_parseable_answer(self):
        """§4: for each of the 34 opcodes pyflymq sends, the response opcode is the request's
        (0x71 for AUTH) or 0xFF in the §5.1 form, even for an empty/short payload; the
        connection stays usable."""
        codes = [0x01, 0x02, 0x03, 0x05, 0x06, 0x07, 0x08, 0x09, 0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x20, 0x21,
                 0x22, 0x30, 0x35, 0x40, 0x41, 0x42, 0x43, 0x50, 0x51, 0x53, 0x60, 0x61, 0x62, 0x63, 0x64, 0x65,
                 0x70, 0x72]
        self.assertEqual(len(codes), 34)
        for code in codes:
            frame = self.client.exchange(code, b"")  # read_frame rejects opcodes pyflymq does not know
            want = wc.AUTH_RESPONSE if code == wc.AUTH else code
            self.assertIn(frame.opcode, (want, wc.ERROR), "request 0x%02x answered 0x%02x" % (code, frame.opcode))
            if frame.opcode == wc.ERROR:
                self.assert_error_payload_form(frame.payload)
        self.assertIsInstance(self.client.list_topics(), list)

    def test_trailing_bytes_ignored(self):
        """§3: request decoders SHOULD ignore trailing bytes after the last field."""
        t = self.topic()
        g = unique("g")
        junk = b"\xde\xad\xbe\xef\x00\x01\x02\x03"
        requests = [
            (wc.PRODUCE, Writer().str16(t).bytes32(b"").bytes32(b"v").i32(-1).build()),
            (wc.CONSUME, Writer().str16(t).i32(0).u64(0).build()),
            (wc.FETCH, WireClient.fetch_payload(t, 0, 0, 5, "")),
            (wc.SUBSCRIBE, Writer().str16(t).str16(g).i32(0).str8("earliest").build()),
            (wc.COMMIT, Writer().str16(t).str16(g).i32(0).u64(1).build()),
            (wc.GET_OFFSET, Writer().str16(t).str16(g).i32(0).build()),
            (wc.GET_LAG, Writer().str16(t).str16(g).i32(0).build()),
            (wc.DESCRIBE_GROUP, Writer().str16(t).str16(g).build()),
            (wc.CLUSTER_METADATA, Writer().str16(t).build()),
            (wc.CREATE_TOPIC, Writer().str16(t).i32(1).build()),
            (wc.WHOAMI, b""),
        ]
        for code, payload in requests:
            frame = self.client.exchange(code, payload + junk)
            self.assertEqual(
                frame.opcode, code,
                "opcode 0x%02x with trailing bytes: %s" % (code, wc.decode_error_text(frame.payload)[1] if frame.opcode == wc.ERROR else ""),
            )

    def test_gzip_decompressed_size_capped(self):
        """§2: the decompressed size SHOULD be capped at 32 MiB: a gzip bomb gets an error frame, the
        connection stays usable."""
        frame = self.client.exchange(wc.PRODUCE, b"\x00" * (40 * 1024 * 1024), gzip_payload=True)
        self.assertEqual(frame.opcode, wc.ERROR)
        self.assert_error_payload_form(frame.payload)
        self.assertIsInstance(self.client.list_topics(), list)

    def test_connection_usable_after_error_frames(self):
        """§5.1: the connection stays open after an error frame."""
        t = self.topic()
        self.client.exchange(0xEE, b"")
        with self.assertRaises(ServerError):
            self.client.consume(t, 99)
        with self.assertRaises(ServerError):
            self.client.subscribe(t, "g", 0, "bogus")
        md = self.client.produce(t, b"still-alive")
        self.assertEqual(self.client.consume(t, md.offset).value, b"still-alive")

    def test_short_request_error_frame(self):
        """§3: a request too short for its layout -> error frame, connection kept open."""
        frame = self.client.exchange(wc.PRODUCE, b"\x00")
        self.assertEqual(frame.opcode, wc.ERROR)
        self.assert_error_payload_form(frame.payload)
        frame = self.client.exchange(wc.SUBSCRIBE, Writer().str16("t").build())
        self.assertEqual(frame.opcode, wc.ERROR)
        self.assertIsInstance(self.client.list_topics(), list)

    def test_response_flags(self):
        """§2: response flags SHOULD be 0x01 (normal and error frames)."""
        t = self.topic()
        for call in (self.client.list_topics, lambda: self.client.produce(t, b"x"), lambda: self.client.fetch(t, 0, 0, 1)):
            call()
            self.assertEqual(self.client.last_frame.flags, 0x01, "response to opcode 0x%02x" % self.client.last_frame.opcode)
        frame = self.client.exchange(0xEE, b"")
        self.assertEqual(frame.flags, 0x01, "error frame flags")

    def test_unsupported_compression_code(self):
        """§2: compression codes other than 0 and 0x02 SHOULD get an error frame."""
        frame = self.client.exchange(wc.LIST_TOPICS, b"", flags=0x05)  # LZ4 code 0x04 + binary bit
        self.assertEqual(frame.opcode, wc.ERROR)
        self.assert_error_payload_form(frame.payload)
        self.assertIsInstance(self.client.list_topics(), list)

    def test_flags_bit0_ignored(self):
        """§2: the server MUST accept any flags value on requests and ignore bit 0."""
        frame = self.client.exchange(wc.LIST_TOPICS, b"", flags=0x00)
        self.assertEqual(frame.opcode, wc.LIST_TOPICS)

    def test_no_greeting(self):
        """§1: the server MUST NOT send anything before the first request."""
        s = socket.create_connection((HOST, PORT), timeout=5)
        try:
            s.settimeout(0.3)
            with self.assertRaises(socket.timeout):
                data = s.recv(1)
                self.fail("server sent %r before any request" % data)
        finally:
            s.close()

    def _expect_closed(self, data):
        s = socket.create_connection((HOST, PORT), timeout=5)
        try:
            s.sendall(data)
            try:
                got = s.recv(64)
            except ConnectionResetError:
                got = b""
            self.assertEqual(got, b"", "§2/§15 row 25: framing error -> close without an error frame, got %r" % got)
        finally:
            s.close()

    def test_framing_errors_close_connection(self):
        """§2 / §15 row 25: bad magic, bad version, length > 32 MiB -> connection closed, no error frame."""
        self._expect_closed(bytes([0xAE, 1, wc.LIST_TOPICS, 1, 0, 0, 0, 0]))
        self._expect_closed(bytes([0xAF, 2, wc.LIST_TOPICS, 1, 0, 0, 0, 0]))
        self._expect_closed(struct.pack(">BBBBI", 0xAF, 1, wc.PRODUCE, 1, wc.MAX_PAYLOAD + 1))

    def test_frame_of_exactly_32mib_is_not_a_framing_error(self):
        """§2: only length > 33 554 432 is rejected; a frame of exactly 32 MiB is read (here it is an
        oversized PRODUCE, so an error frame) and the connection stays open."""
        t = self.topic()
        head = Writer().str16(t).bytes32(b"").build()
        value_len = wc.MAX_PAYLOAD - len(head) - 4 - 4
        payload = head + struct.pack(">I", value_len) + b"\x00" * value_len + struct.pack(">i", -1)
        self.assertEqual(len(payload), wc.MAX_PAYLOAD)
        frame = self.client.exchange(wc.PRODUCE, payload)
        self.assertIn(frame.opcode, (wc.PRODUCE, wc.ERROR))
        if frame.opcode == wc.ERROR:
            self.assert_error_payload_form(frame.payload)
        self.assertIsInstance(self.client.list_topics(), list)

    def test_in_order_responses(self):
        """§1: requests sent back-to-back are answered in arrival order."""
        t = self.topic()
        frames = b"".join(
            [encode_frame(wc.PRODUCE, Writer().str16(t).bytes32(b"").bytes32(b"p%d" % i).i32(-1).build()) for i in range(3)]
            + [encode_frame(0xEE), encode_frame(wc.LIST_TOPICS)]
        )
        self.client.send_raw(frames)
        offsets = []
        for _ in range(3):
            f = self.client.read_response()
            self.assertEqual(f.opcode, wc.PRODUCE)
            md, _ = wc.decode_record_metadata(f.payload)
            offsets.append(md.offset)
        self.assertEqual(offsets, [0, 1, 2])
        self.assertEqual(self.client.read_response().opcode, wc.ERROR)
        self.assertEqual(self.client.read_response().opcode, wc.LIST_TOPICS)


# ===========================================================================
# Runner: prints `N passed, N failed` last
# ===========================================================================


class CountingResult(unittest.TextTestResult):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.passed = 0

    def addSuccess(self, test):
        super().addSuccess(test)
        self.passed += 1


def main(argv=None):
    global HOST, PORT
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default=os.environ.get("FLYMQ_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(os.environ.get("FLYMQ_PORT", "9092")))
    parser.add_argument("--offline", action="store_true", help="only the codec checks (no broker)")
    parser.add_argument("-k", dest="patterns", action="append", help="only tests whose name contains this")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    HOST, PORT = args.host, args.port

    loader = unittest.TestLoader()
    if args.patterns:
        loader.testNamePatterns = ["*%s*" % p for p in args.patterns]
    module = sys.modules[__name__]
    suite = unittest.TestSuite()
    suite.addTests(loader.loadTestsFromTestCase(OfflineCodec))
    if not args.offline:
        for case in (Topics, ProduceConsume, Fetch, ConsumerGroups, Cluster, Auth, Dlq, Transactions, ErrorsAndFraming):
            suite.addTests(loader.loadTestsFromTestCase(case))
    del module
    runner = unittest.TextTestRunner(stream=sys.stdout, verbosity=2 if args.verbose else 1, resultclass=CountingResult)
    result = runner.run(suite)
    failed = len(result.failures) + len(result.errors) + len(result.unexpectedSuccesses)
    sys.stdout.flush()
    print("%d passed, %d failed" % (result.passed, failed))
    return 0 if failed == 0 and result.passed > 0 else 1


if __name__ == "__main__":
    sys.exit(main())
