#!/usr/bin/env python3
"""A pyflymq-style client with TLS and credentials against a secure broker.

pyflymq is not on PyPI; this stdlib client (wire_client.py, written from
WIRE.md) connects the way pyflymq does: TLS verified against a CA file, AUTH
right after connecting, then requests on that connection.

    python3 tests/conformance/test_secure.py --host 127.0.0.1 --port 9092 \\
        --ca ca.pem --server-name localhost --user app --password-file app.pw

The broker must run with TLS on the client port, auth on, default-public on
and allow-anonymous off, and `app` must be a user with the producer and
consumer roles. The last line printed is `N passed, N failed`.
"""

import argparse
import os
import socket
import ssl
import sys
import time
import unittest

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from wire_client import AuthenticationError, ServerError, WireClient  # noqa: E402

ARGS = None


def client(**overrides):
    options = dict(
        host=ARGS.host,
        port=ARGS.port,
        tls_ca_file=ARGS.ca,
        tls_server_name=ARGS.server_name,
    )
    options.update(overrides)
    return WireClient(**options)


class SecureBroker(unittest.TestCase):
    def test_tls_auth_produce_consume_whoami(self):
        with client() as c:
            result = c.authenticate(ARGS.user, ARGS.password)
            self.assertEqual(result.username, ARGS.user)
            topic = "secure-%d-%d" % (os.getpid(), int(time.time() * 1000))
            meta = c.produce(topic, b"over tls")
            self.assertEqual(c.consume(topic, meta.offset).value, b"over tls")
            me = c.whoami()
            self.assertTrue(me.authenticated)
            self.assertEqual(me.username, ARGS.user)
            self.assertIn("write", me.permissions)

    def test_wrong_password_is_an_authentication_error(self):
        with client() as c:
            with self.assertRaises(AuthenticationError) as raised:
                c.authenticate(ARGS.user, ARGS.password + "-wrong")
            self.assertEqual(str(raised.exception), "invalid username or password")

    def test_without_auth_requests_need_a_user(self):
        with client() as c:
            with self.assertRaises(ServerError) as raised:
                c.produce("anonymous-topic", b"x")
            self.assertIn("authentication required", str(raised.exception))

    def test_a_plaintext_client_gets_no_service(self):
        with client(tls_ca_file=None) as c:
            with self.assertRaises(Exception):
                c.list_topics()

    def test_an_untrusted_server_is_refused(self):
        # Verifying against the system roots (not the broker's CA) fails.
        sock = socket.create_connection((ARGS.host, ARGS.port), timeout=10)
        context = ssl.create_default_context()
        with self.assertRaises(ssl.SSLError):
            context.wrap_socket(sock, server_hostname=ARGS.server_name)
        sock.close()


def main():
    global ARGS
    parser = argparse.ArgumentParser()
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--ca", required=True)
    parser.add_argument("--server-name", default="localhost")
    parser.add_argument("--user", required=True)
    parser.add_argument("--password-file", required=True)
    ARGS = parser.parse_args()
    with open(ARGS.password_file) as f:
        ARGS.password = f.read().strip()
    result = unittest.TextTestRunner(verbosity=2, stream=sys.stdout).run(
        unittest.defaultTestLoader.loadTestsFromTestCase(SecureBroker)
    )
    failed = len(result.failures) + len(result.errors)
    print("%d passed, %d failed" % (result.testsRun - failed, failed))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
