"""Opens N IMAP connections that log in, select INBOX and IDLE, then waits
until stdin closes. Used by BenchmarkIdleMemory so that client memory is
not in the server's process.

usage: idle_clients.py HOST PORT plain|tls N USER PASSWORD
"""
import socket
import ssl
import sys

host, port, mode, n, user, password = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), sys.argv[5], sys.argv[6]
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE


def expect(f, prefix):
    while True:
        line = f.readline()
        if not line:
            raise SystemExit("connection closed")
        if line.startswith(prefix):
            return line


conns = []
for i in range(n):
    s = socket.create_connection((host, port))
    if mode == "tls":
        s = ctx.wrap_socket(s)
    f = s.makefile("rb", buffering=0)
    expect(f, b"* OK")
    s.sendall(b'a LOGIN "%s" "%s"\r\n' % (user.encode(), password.encode()))
    expect(f, b"a ")
    s.sendall(b"b SELECT INBOX\r\n")
    expect(f, b"b ")
    s.sendall(b"c IDLE\r\n")
    expect(f, b"+")
    conns.append((s, f))
print("ready", flush=True)
sys.stdin.read()
for s, f in conns:
    s.sendall(b"DONE\r\n")
    s.close()
