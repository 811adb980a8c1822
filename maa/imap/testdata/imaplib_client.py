"""Drives Posthorn's IMAP server with Python's imaplib (stdlib only).

usage: imaplib_client.py HOST PORT starttls|ssl USER PASSWORD
Prints one JSON object with what it saw; the Go test checks it.
"""
import imaplib
import json
import ssl
import sys
import time

host, port, mode, user, password = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5]
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE

out = {}
if mode == "ssl":
    m = imaplib.IMAP4_SSL(host, port, ssl_context=ctx)
else:
    m = imaplib.IMAP4(host, port)
    out["caps_before_tls"] = sorted(m.capabilities)
    try:
        m.login(user, password)
        out["login_before_tls"] = "OK"
    except imaplib.IMAP4.error as e:
        out["login_before_tls"] = str(e)
    m.starttls(ssl_context=ctx)

typ, _ = m.login(user, password)
out["login"] = typ
out["caps"] = sorted(m.capabilities)

msg = (b"From: Py <py@example.test>\r\nTo: alice@example.test\r\n"
       b"Subject: from imaplib\r\nMessage-ID: <py@example.test>\r\n\r\nHello from Python.\r\n")
typ, data = m.append("Drafts", r"(\Draft)", imaplib.Time2Internaldate(time.time()), msg)
out["append"] = [typ, data[0].decode()]

typ, data = m.select("INBOX")
out["select"] = [typ, int(data[0])]
typ, data = m.uid("SEARCH", None, "SUBJECT", '"imaplib-probe"')
out["search"] = data[0].decode()
typ, data = m.fetch("1", "(UID RFC822.SIZE FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
out["fetch"] = [typ] + [d.decode(errors="replace") if isinstance(d, bytes) else
                        [x.decode(errors="replace") for x in d] for d in data]
typ, data = m.fetch("1", "(BODY[TEXT])")
out["text"] = data[0][1].decode(errors="replace")
typ, data = m.store("1", "+FLAGS", "($Junk)")
out["store"] = [typ, data[0].decode()]

typ, _ = m.create("Py/Folder")
out["create"] = typ
typ, _ = m.rename("Py/Folder", "Py/Renamed")
out["rename"] = typ
typ, data = m.list("\"\"", "Py/*")
out["list"] = [d.decode() for d in data]
typ, _ = m.delete("Py/Renamed")
out["delete"] = typ
typ, data = m.status("Drafts", "(MESSAGES UIDNEXT)")
out["status"] = data[0].decode()
m.close()
m.logout()
print(json.dumps(out))
