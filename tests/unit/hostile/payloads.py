"""The hostile values an option may get, whatever its type."""

from __future__ import annotations

import uuid

TAG = "hostile-%s" % uuid.uuid4().hex[:12]
MARKER = "/tmp/%s-pwned" % TAG  # what every shell payload tries to create
DEEP_TRAVERSAL = "../" * 24 + "tmp/%s-escaped" % TAG  # from anywhere, up to / and into /tmp
DIGEST = "a1" * 32
OTHER_DIGEST = "b2" * 32

SHELL_PAYLOADS = (
    "; touch %s" % MARKER,
    "$(touch %s)" % MARKER,
    "`touch %s`" % MARKER,
    "| touch %s" % MARKER,
    "&& touch %s #" % MARKER,
    "\ntouch %s\n" % MARKER,
    "x'; touch %s; echo '" % MARKER,
    'x"; touch %s; echo "' % MARKER,
    "${IFS}touch${IFS}%s" % MARKER,
    "{{ lookup('pipe', 'touch %s') }}" % MARKER,
    "a\r\nX-Injected: %s" % TAG,
    "show stat\nset server ai_ollama/n1 state maint",
)
# A value that a program would take as one of its options if it were put on a command line unguarded.
OPTION_PAYLOADS = ("--help", "-o%s" % MARKER, "--file=%s" % MARKER)
NUL_STRINGS = ("a\x00b", "\x00")  # no file system or C library call takes them
ODD_STRINGS = (
    "", " ", "\t\n", "%s%d%(name)s{0}{}", "模型:最新", "\u202eevil", "\ufeffbom", "🦙",
    "null", "None", "true", "0", "-1", "1e999", "nan", "*", "**/*", "[", "..", ".", "a:b:c", "sha256:" + DIGEST,
    "lab-chat:v1", "x" * 300,
)
HUGE_STRINGS = ("A" * 100_000, "é" * 50_000, "../" * 33_000)
# Non-UTF-8 bytes as Python carries them in a str (surrogateescape).
SURROGATES = ("\udcff", "caf\udce9", "\udcc3\udca9/\udcff")
WRONG_TYPES = (None, 0, -1, 1.5, True, False, [], ["a"], {}, {"a": "b"}, [[1]], [{"x": None}])
SPECIAL_INTS = (0, -1, 1, 2**31, 2**63, -(2**63), 10**30)
SPECIAL_FLOATS = (0.0, -0.0, -1.0, 1e-300, 1e308, float("inf"), float("-inf"), float("nan"))
BAD_URLS = ("http://[::1", "http://", "http://127.0.0.1:99999", "http://user:pa ss@127.0.0.1:1/", "file:///etc/passwd",
            "http://example.invalid:11434", "http://10.255.255.1:11434", "http://%s.example" % ("a" * 64),
            "http://127.0.0.1:1/\x00")
