"""A small IMAP4rev1 server on loopback, enough for imaplib: CAPABILITY, LOGIN, SELECT, (UID) SEARCH,
(UID) FETCH BODY[]/BODY.PEEK[]/RFC822, (UID) STORE ±FLAGS, NOOP, LOGOUT. One mailbox, in memory."""

import re
import socketserver
import threading
from dataclasses import dataclass, field

TOKEN = re.compile(r'"((?:[^"\\]|\\.)*)"|(\S+)')


@dataclass
class Stored:
    uid: int
    raw: bytes
    flags: set = field(default_factory=set)


class ImapServer:
    def __init__(self, user="bounces", password="pass word", mailbox="INBOX"):
        self.user, self.password, self.mailbox = user, password, mailbox
        self.messages = []
        self.commands = []  # every command line received, for the test to look at
        self.lock = threading.Lock()
        self._server = None

    def add(self, raw, flags=()):
        with self.lock:
            stored = Stored(uid=len(self.messages) + 1, raw=raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n"),
                            flags=set(flags))
            self.messages.append(stored)
            return stored

    @property
    def port(self):
        return self._server.server_address[1]

    def url(self, scheme="imap"):
        from urllib.parse import quote

        return f"{scheme}://{quote(self.user)}:{quote(self.password)}@127.0.0.1:{self.port}/{self.mailbox}"

    def start(self):
        owner = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self):
                Session(owner, self.rfile, self.wfile).run()

        socketserver.ThreadingTCPServer.allow_reuse_address = True
        self._server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self):
        self._server.shutdown()
        self._server.server_close()


class Session:
    def __init__(self, server, rfile, wfile):
        self.server, self.rfile, self.wfile = server, rfile, wfile
        self.authenticated = self.selected = False

    def send(self, data):
        self.wfile.write(data if isinstance(data, bytes) else data.encode() + b"\r\n")

    def run(self):
        self.send("* OK [CAPABILITY IMAP4rev1] test IMAP server ready")
        while True:
            line = self.rfile.readline(65536)
            if not line:
                return
            text = line.decode("utf-8", "replace").rstrip("\r\n")
            with self.server.lock:
                self.server.commands.append(text)
            tag, _, rest = text.partition(" ")
            command, _, arguments = rest.partition(" ")
            command = command.upper()
            uid = False
            if command == "UID":
                uid = True
                command, _, arguments = arguments.partition(" ")
                command = command.upper()
            try:
                if getattr(self, f"do_{command.lower()}", None) is None:
                    self.send(f"{tag} BAD unknown command")
                elif command not in ("CAPABILITY", "LOGIN", "LOGOUT", "NOOP") and not self.authenticated:
                    self.send(f"{tag} NO log in first")
                elif command in ("SEARCH", "FETCH", "STORE") and not self.selected:
                    self.send(f"{tag} BAD select a mailbox first")
                elif getattr(self, f"do_{command.lower()}")(tag, arguments, uid) == "bye":
                    return
            except (IndexError, ValueError):
                self.send(f"{tag} BAD cannot read the arguments")

    def do_capability(self, tag, arguments, uid):
        self.send("* CAPABILITY IMAP4rev1")
        self.send(f"{tag} OK CAPABILITY completed")

    def do_noop(self, tag, arguments, uid):
        self.send(f"{tag} OK NOOP completed")

    def do_logout(self, tag, arguments, uid):
        self.send("* BYE logging out")
        self.send(f"{tag} OK LOGOUT completed")
        return "bye"

    def do_login(self, tag, arguments, uid):
        values = [
            m.group(1).replace('\\"', '"').replace("\\\\", "\\") if m.group(1) is not None else m.group(2)
            for m in TOKEN.finditer(arguments)
        ]
        user, password = (values + ["", ""])[:2]
        if (user, password) != (self.server.user, self.server.password):
            self.send(f"{tag} NO [AUTHENTICATIONFAILED] wrong user or password")
            return
        self.authenticated = True
        self.send(f"{tag} OK LOGIN completed")

    def do_select(self, tag, arguments, uid):
        name = arguments.strip().strip('"')
        if name.upper() != self.server.mailbox.upper():
            self.send(f"{tag} NO no such mailbox")
            return
        self.selected = True
        with self.server.lock:
            count = len(self.server.messages)
        self.send(f"* {count} EXISTS")
        self.send("* 0 RECENT")
        self.send("* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)")
        self.send("* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft \\*)] flags")
        self.send("* OK [UIDVALIDITY 1] UIDs valid")
        self.send(f"{tag} OK [READ-WRITE] SELECT completed")

    def _numbered(self):
        with self.server.lock:
            return list(enumerate(self.server.messages, start=1))

    def _pick(self, spec, uid):
        wanted = set()
        for piece in spec.split(","):
            low, _, high = piece.partition(":")
            high = high or low
            top = max((m.uid if uid else n) for n, m in self._numbered()) if self._numbered() else 0
            low = top if low == "*" else int(low)
            high = top if high == "*" else int(high)
            wanted.update(range(min(low, high), max(low, high) + 1))
        return [(n, m) for n, m in self._numbered() if (m.uid if uid else n) in wanted]

    def do_search(self, tag, arguments, uid):
        criteria = arguments.upper().split()
        found = []
        for number, message in self._numbered():
            if "UNSEEN" in criteria and "\\Seen" in message.flags:
                continue
            if "SEEN" in criteria and "UNSEEN" not in criteria and "\\Seen" not in message.flags:
                continue
            found.append(str(message.uid if uid else number))
        self.send("* SEARCH" + "".join(f" {item}" for item in found))
        self.send(f"{tag} OK SEARCH completed")

    def do_fetch(self, tag, arguments, uid):
        spec, _, items = arguments.partition(" ")
        items = items.upper()
        for number, message in self._pick(spec, uid):
            parts = [f"UID {message.uid}"]
            if "FLAGS" in items and "BODY" not in items and "RFC822" not in items:
                parts.append(f"FLAGS ({' '.join(sorted(message.flags))})")
                self.send(f"* {number} FETCH ({' '.join(parts)})")
                continue
            name = "RFC822" if "RFC822" in items and "BODY" not in items else "BODY[]"
            if "PEEK" not in items:
                message.flags.add("\\Seen")
            self.send(f"* {number} FETCH ({' '.join(parts)} {name} {{{len(message.raw)}}}".encode() + b"\r\n"
                      + message.raw + b")\r\n")
        self.send(f"{tag} OK FETCH completed")

    def do_store(self, tag, arguments, uid):
        spec, _, rest = arguments.partition(" ")
        how, _, flags = rest.partition(" ")
        names = set(flags.strip().strip("()").split())
        for number, message in self._pick(spec, uid):
            with self.server.lock:
                if how.upper().startswith("+FLAGS"):
                    message.flags |= names
                elif how.upper().startswith("-FLAGS"):
                    message.flags -= names
                else:
                    message.flags = set(names)
            if ".SILENT" not in how.upper():
                self.send(f"* {number} FETCH (UID {message.uid} FLAGS ({' '.join(sorted(message.flags))}))")
        self.send(f"{tag} OK STORE completed")
