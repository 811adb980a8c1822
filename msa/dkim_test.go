package msa_test

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/posthorn/posthorn/dkim"
	"github.com/posthorn/posthorn/harness"
	"github.com/posthorn/posthorn/internal/storetest"
)

// verifyScript checks every DKIM-Signature of a message with python3-dkim
// (dkimpy), an implementation independent of go-msgauth, with a dnsfunc
// that answers from a JSON map of TXT records.
const verifyScript = `
import dkim, json, sys
msg = open(sys.argv[1], 'rb').read()
recs = json.load(open(sys.argv[2]))
def dnsfunc(name, timeout=5):
    name = name.decode() if isinstance(name, bytes) else name
    return recs.get(name.rstrip('.').lower(), '').encode()
d = dkim.DKIM(msg)
n = msg.count(b'DKIM-Signature:')
results = [d.verify(idx=i, dnsfunc=dnsfunc) for i in range(n)]
print(n, results)
sys.exit(0 if n > 0 and all(results) else 1)
`

// python3WithDKIM finds a python3 that can import dkim (Debian's
// python3-dkim lives under /usr/bin/python3).
func python3WithDKIM(t *testing.T) string {
	for _, p := range []string{"/usr/bin/python3", "python3"} {
		if path, err := exec.LookPath(p); err == nil {
			if exec.Command(path, "-c", "import dkim, nacl").Run() == nil {
				return path
			}
		}
	}
	t.Skip("python3-dkim is not installed (apt-get install python3-dkim)")
	return ""
}

func TestDKIMVerifiesWithDkimpy(t *testing.T) {
	py := python3WithDKIM(t)
	env := harness.Start(t, harness.Options{})
	keys, err := dkim.Ensure(env.Server.Store, harness.Domain)
	if err != nil {
		t.Fatal(err)
	}
	recs := map[string]string{}
	for _, k := range keys {
		name, value, err := dkim.DNSRecord(k)
		if err != nil {
			t.Fatal(err)
		}
		recs[strings.ToLower(name)] = value
	}
	c, err := dial(t, env, harness.User, harness.Password)
	if err != nil {
		t.Fatal(err)
	}
	msgs := []string{
		"From: Alice <" + harness.User + ">\r\nTo: <" + harness.User + ">\r\nSubject: signed  and\r\n folded\r\n" +
			"MIME-Version: 1.0\r\nContent-Type: text/plain\r\n\r\nBody line with trailing spaces   \r\n\r\n\r\n",
		// No empty line after the header, as devices and scripts send:
		// the server puts it in, and signs the message with it.
		"From: <" + harness.User + ">\r\nSubject: from a scanner\r\nScan attached, no blank line before this.\r\n",
	}
	dir := t.TempDir()
	msgFile, recFile := filepath.Join(dir, "msg.eml"), filepath.Join(dir, "dns.json")
	j, _ := json.Marshal(recs)
	if err := os.WriteFile(recFile, j, 0o600); err != nil {
		t.Fatal(err)
	}
	var got [][]byte
	for i, msg := range msgs {
		if err := send(c, harness.User, []string{harness.User}, msg); err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		got = storetest.Bodies(t, env.Server.Store, harness.User, "INBOX")
		if len(got) != i+1 {
			t.Fatalf("%d messages", len(got))
		}
		if err := os.WriteFile(msgFile, got[i], 0o600); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(py, "-c", verifyScript, msgFile, recFile).CombinedOutput()
		if err != nil {
			t.Fatalf("message %d: dkimpy does not verify: %v\n%s", i, err, out)
		}
		if !strings.HasPrefix(string(out), "2 [True, True]") {
			t.Fatalf("message %d: dkimpy: %s, want two good signatures", i, out)
		}
	}
	if !strings.Contains(string(got[1]), "Subject: from a scanner\r\n\r\nScan attached") {
		t.Errorf("no empty line put in after the header:\n%s", got[1])
	}
	// A changed body must fail, or the check above proves nothing.
	bad := strings.Replace(string(got[0]), "Body line", "Body lime", 1)
	os.WriteFile(msgFile, []byte(bad), 0o600)
	if err := exec.Command(py, "-c", verifyScript, msgFile, recFile).Run(); err == nil {
		t.Fatal("dkimpy verified a modified message")
	}
}

func TestSwaksAuthPlainAndLogin(t *testing.T) {
	swaks, err := exec.LookPath("swaks")
	if err != nil {
		t.Skip("swaks is not installed (apt-get install swaks)")
	}
	env := harness.Start(t, harness.Options{})
	for i, mech := range []string{"PLAIN", "LOGIN"} {
		out, err := exec.Command(swaks, "--server", env.Addr("submission"), "--tls",
			"--auth", mech, "--auth-user", harness.User, "--auth-password", harness.Password,
			"--from", harness.User, "--to", harness.User,
			"--header", "Subject: swaks "+mech, "--body", "hello from swaks").CombinedOutput()
		if err != nil {
			t.Fatalf("swaks AUTH %s: %v\n%s", mech, err, out)
		}
		msgs := storetest.Bodies(t, env.Server.Store, harness.User, "INBOX")
		if len(msgs) != i+1 || !strings.Contains(string(msgs[i]), "Subject: swaks "+mech) {
			t.Fatalf("after swaks AUTH %s: %d messages", mech, len(msgs))
		}
	}
	out, _ := exec.Command(swaks, "--server", env.Addr("submission"), "--tls",
		"--auth", "LOGIN", "--auth-user", harness.User, "--auth-password", "wrong",
		"--from", harness.User, "--to", harness.User).CombinedOutput()
	if !strings.Contains(string(out), "535 5.7.8") {
		t.Fatalf("swaks with a wrong password:\n%s", out)
	}
}
