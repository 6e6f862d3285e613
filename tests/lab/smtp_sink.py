"""An SMTP server on this machine that keeps every message it accepts: where the lab's Alertmanager sends e-mail.

Standard library only. It speaks what Alertmanager's Go client needs and nothing more: the 220 greeting, EHLO
(advertising neither STARTTLS nor AUTH, so the role's alertmanager_smtp_require_tls must be false), HELO, MAIL
FROM, RCPT TO, DATA (dot-unstuffed), RSET, NOOP and QUIT; anything else is answered 502. Lines, messages and
recipients are bounded, and an idle connection is dropped.

    with SmtpSink(gateway) as sink:            # port 0: any free port, then sink.port
        ...                                    # smarthost "<gateway>:<sink.port>"
        found = sink.wait_for(lambda messages: [m for m in messages if "NodeDown" in m.subject], timeout=120)
"""

from __future__ import annotations

import re
import socket
import socketserver
import threading
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser

# RFC 5321 allows 1000 bytes a line; generated mail may carry longer unfolded header lines (a long Subject).
MAX_LINE_BYTES = 8192
MAX_MESSAGE_BYTES = 10 * 1024 * 1024
MAX_RECIPIENTS = 100
IDLE_TIMEOUT_SECONDS = 60
MAIL_FROM = re.compile(r"^FROM:\s*<([^<>]*)>\s*(.*)$", re.IGNORECASE)
RCPT_TO = re.compile(r"^TO:\s*<([^<>]+)>\s*(.*)$", re.IGNORECASE)
SIZE_PARAMETER = re.compile(r"(?:^|\s)SIZE=(\d+)(?:\s|$)", re.IGNORECASE)
END_OF_DATA = (b".\r\n", b".\n")


@dataclass(frozen=True)
class ReceivedMessage:
    """One accepted message: the envelope as the client gave it, and the message parsed (policy.default)."""

    mail_from: str
    rcpt_to: tuple[str, ...]
    message: EmailMessage

    @property
    def subject(self) -> str:
        return str(self.message.get("Subject", ""))

    def body(self) -> str:
        """The text of the plain part, or of the HTML part when there is no plain one (Alertmanager sends HTML)."""
        part = self.message.get_body(preferencelist=("plain", "html"))
        return "" if part is None else part.get_content()


class SmtpSink:
    """The server in a background thread while the ``with`` block runs; ``messages`` in the order accepted."""

    def __init__(self, host: str, port: int = 0, *, max_message_bytes: int = MAX_MESSAGE_BYTES,
                 hostname: str = "lab-smtp-sink"):
        self.host = host
        self.hostname = hostname
        self.max_message_bytes = max_message_bytes
        self._messages: list[ReceivedMessage] = []
        self._arrived = threading.Condition()
        self._server = _Server((host, port), self)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="smtp-sink", daemon=True)

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def messages(self) -> list[ReceivedMessage]:
        with self._arrived:
            return list(self._messages)

    def wait_for(self, predicate, timeout: float):
        """``predicate(messages)``'s value once it is truthy (checked at every arrival), or False after timeout."""
        with self._arrived:
            result = self._arrived.wait_for(lambda: predicate(list(self._messages)), timeout)
        return result or False

    def deliver(self, received: ReceivedMessage) -> None:
        with self._arrived:
            self._messages.append(received)
            self._arrived.notify_all()

    def start(self) -> SmtpSink:
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread.is_alive():
            self._server.shutdown()
            self._thread.join(timeout=5)
        self._server.server_close()

    def __enter__(self) -> SmtpSink:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address, sink: SmtpSink):
        self.address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.sink = sink
        super().__init__(address, _SmtpSession)


class _ConnectionOver(Exception):
    """The client went away, was too slow, or sent a line too long: the session ends."""


class _SmtpSession(socketserver.StreamRequestHandler):
    timeout = IDLE_TIMEOUT_SECONDS  # applied to the socket by StreamRequestHandler

    def setup(self) -> None:
        super().setup()
        self.sink: SmtpSink = self.server.sink
        self.greeted = False
        self.closing = False
        self.reset_transaction()

    def reset_transaction(self) -> None:
        self.mail_from: str | None = None
        self.rcpt_to: list[str] = []

    def handle(self) -> None:
        try:
            self.reply("220 %s ESMTP lab sink ready" % self.sink.hostname)
            while not self.closing:
                verb, _space, argument = self.read_line().decode("utf-8", "replace").rstrip("\r\n").partition(" ")
                self.reply(self.answer(verb.upper(), argument.strip()))
        except (_ConnectionOver, OSError):
            pass

    def read_line(self) -> bytes:
        line = self.rfile.readline(MAX_LINE_BYTES + 1)
        if not line:
            raise _ConnectionOver
        if len(line) > MAX_LINE_BYTES:
            self.reply("500 5.5.2 line longer than %d bytes" % MAX_LINE_BYTES)
            raise _ConnectionOver
        return line

    def reply(self, text: str) -> None:
        self.wfile.write(text.encode() + b"\r\n")
        self.wfile.flush()

    def answer(self, verb: str, argument: str) -> str:
        command = {"EHLO": self.ehlo, "HELO": self.helo, "MAIL": self.mail, "RCPT": self.rcpt, "DATA": self.data,
                   "RSET": self.rset, "NOOP": self.noop, "QUIT": self.quit}.get(verb)
        if command is None:
            return "500 5.5.2 empty command" if not verb else "502 5.5.1 %s not implemented" % verb[:20]
        return command(argument)

    def ehlo(self, argument: str) -> str:
        if not argument:
            return "501 5.5.4 EHLO needs a domain"
        self.greeted = True
        self.reset_transaction()
        greeting = (self.sink.hostname, argument[:100], self.sink.max_message_bytes)
        return "250-%s greets %s\r\n250-SIZE %d\r\n250 8BITMIME" % greeting

    def helo(self, argument: str) -> str:
        if not argument:
            return "501 5.5.4 HELO needs a domain"
        self.greeted = True
        self.reset_transaction()
        return "250 %s" % self.sink.hostname

    def mail(self, argument: str) -> str:
        if not self.greeted:
            return "503 5.5.1 EHLO or HELO first"
        if self.mail_from is not None:
            return "503 5.5.1 a transaction is already open (RSET first)"
        match = MAIL_FROM.match(argument)
        if match is None:
            return "501 5.5.4 syntax: MAIL FROM:<address>"
        size = SIZE_PARAMETER.search(match.group(2))
        if size is not None and int(size.group(1)) > self.sink.max_message_bytes:
            return "552 5.3.4 message larger than %d bytes" % self.sink.max_message_bytes
        self.mail_from = match.group(1)
        return "250 2.1.0 sender ok"

    def rcpt(self, argument: str) -> str:
        if self.mail_from is None:
            return "503 5.5.1 MAIL first"
        match = RCPT_TO.match(argument)
        if match is None:
            return "501 5.5.4 syntax: RCPT TO:<address>"
        if len(self.rcpt_to) >= MAX_RECIPIENTS:
            return "452 4.5.3 more than %d recipients" % MAX_RECIPIENTS
        self.rcpt_to.append(match.group(1))
        return "250 2.1.5 recipient ok"

    def data(self, _argument: str) -> str:
        if not self.rcpt_to:
            return "503 5.5.1 RCPT first"
        self.reply("354 end data with <CR><LF>.<CR><LF>")
        content = self.read_message()
        if content is None:
            self.reset_transaction()
            return "552 5.3.4 message larger than %d bytes" % self.sink.max_message_bytes
        message = BytesParser(policy=policy.default).parsebytes(content)
        # Delivered before the 250: a client that has its answer finds the message in sink.messages.
        self.sink.deliver(ReceivedMessage(self.mail_from, tuple(self.rcpt_to), message))
        self.reset_transaction()
        return "250 2.0.0 accepted"

    def read_message(self) -> bytes | None:
        """The message up to the lone dot, dot-unstuffed, its CRLF line ends made LF (as a mailbox keeps it);
        None when it is larger than allowed (read to the end all the same)."""
        lines, size = [], 0
        while (line := self.read_line()) not in END_OF_DATA:
            size += len(line)
            if size <= self.sink.max_message_bytes:
                lines.append(line[1:] if line.startswith(b".") else line)
        lines = [line[:-2] + b"\n" if line.endswith(b"\r\n") else line for line in lines]
        return b"".join(lines) if size <= self.sink.max_message_bytes else None

    def rset(self, _argument: str) -> str:
        self.reset_transaction()
        return "250 2.0.0 reset"

    def noop(self, _argument: str) -> str:
        return "250 2.0.0 ok"

    def quit(self, _argument: str) -> str:
        self.closing = True
        return "221 2.0.0 bye"
