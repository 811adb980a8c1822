package zone_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/posthorn/posthorn/config"
	"github.com/posthorn/posthorn/harness"
	"github.com/posthorn/posthorn/resolver"
	"github.com/posthorn/posthorn/store"
	"github.com/posthorn/posthorn/zone"
)

func testConfig() *config.Config {
	cfg := config.Default()
	cfg.Hostname = "mail.example.test"
	cfg.Listen.POP3 = "" // one service off: published as "0 0 0 ."
	cfg.Listen.HTTP, cfg.Listen.HTTPS = ":80", ":443"
	return &cfg
}

// TestNoPolicyWithoutHTTPS: without the https listener nothing serves
// the MTA-STS policy, and without either web listener nothing serves
// autoconfig: their records would point senders and Thunderbird at
// nothing.
func TestNoPolicyWithoutHTTPS(t *testing.T) {
	has := func(cfg *config.Config, name string) bool {
		for _, r := range zone.Records(cfg, "example.test", nil) {
			if r.Name == name {
				return true
			}
		}
		return false
	}
	cfg := testConfig()
	for _, name := range []string{"_mta-sts.example.test.", "mta-sts.example.test.", "autoconfig.example.test."} {
		if !has(cfg, name) {
			t.Errorf("%s missing with http and https on", name)
		}
	}
	cfg.Listen.HTTPS = ""
	if has(cfg, "_mta-sts.example.test.") || has(cfg, "mta-sts.example.test.") {
		t.Error("MTA-STS records without the https listener")
	}
	if !has(cfg, "autoconfig.example.test.") || !has(cfg, "_smtp._tls.example.test.") {
		t.Error("autoconfig or TLS-RPT missing with http on")
	}
	cfg.Listen.HTTP = ""
	if has(cfg, "autoconfig.example.test.") {
		t.Error("autoconfig record without a web listener")
	}
	// doctor does not look for a policy that nothing serves either.
	d := publish(t, zone.Zone(zone.Records(cfg, "example.test", nil)))
	for _, c := range zone.Doctor(context.Background(), cfg, resolver.New(d.Addr), "example.test", nil,
		zone.QueueSummary{}, time.Now().Add(90*24*time.Hour)) {
		if strings.Contains(c.Name, "MTA-STS") {
			t.Errorf("doctor checks %s (%s) without the https listener", c.Name, c.Status)
		}
	}
}

func testKeys(t *testing.T) []store.DKIMKey {
	t.Helper()
	_, edPriv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	edDER, err := x509.MarshalPKCS8PrivateKey(edPriv)
	if err != nil {
		t.Fatal(err)
	}
	rsaPriv, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	rsaDER, err := x509.MarshalPKCS8PrivateKey(rsaPriv)
	if err != nil {
		t.Fatal(err)
	}
	return []store.DKIMKey{
		{Domain: "example.test", Selector: "ed1", Algorithm: "ed25519", PrivateKey: edDER, Active: true},
		{Domain: "example.test", Selector: "rsa1", Algorithm: "rsa", PrivateKey: rsaDER, Active: true},
	}
}

func TestZoneParses(t *testing.T) {
	cfg := testConfig()
	keys := testKeys(t)
	recs := zone.Records(cfg, "example.test", keys)
	z := zone.Zone(recs)
	zp := dns.NewZoneParser(strings.NewReader(z), "", "")
	var rrs []dns.RR
	for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
		rrs = append(rrs, rr)
	}
	if err := zp.Err(); err != nil {
		t.Fatalf("zone does not parse: %v\n%s", err, z)
	}
	if len(rrs) != len(recs) {
		t.Fatalf("parsed %d records, want %d", len(rrs), len(recs))
	}
	for i, line := range strings.Split(strings.TrimSpace(z), "\n") {
		if i%2 == 0 && !strings.HasPrefix(line, "; ") {
			t.Errorf("line %d is not a comment: %q", i+1, line)
		}
	}
	byName := map[string][]dns.RR{}
	for _, rr := range rrs {
		byName[rr.Header().Name] = append(byName[rr.Header().Name], rr)
	}
	mx := byName["example.test."][0].(*dns.MX)
	if mx.Mx != "mail.example.test." || mx.Preference != 10 {
		t.Errorf("MX = %v", mx)
	}
	wantTXT := map[string]string{
		"example.test.":            "v=spf1 mx -all",
		"mail.example.test.":       "v=spf1 a -all",
		"_dmarc.example.test.":     "v=DMARC1; p=quarantine; rua=mailto:postmaster@example.test",
		"_smtp._tls.example.test.": "v=TLSRPTv1; rua=mailto:postmaster@example.test",
	}
	for name, want := range wantTXT {
		var got string
		for _, rr := range byName[name] {
			if txt, ok := rr.(*dns.TXT); ok {
				got = strings.Join(txt.Txt, "")
			}
		}
		if got != want {
			t.Errorf("TXT %s = %q, want %q", name, got, want)
		}
	}
	sts := byName["_mta-sts.example.test."][0].(*dns.TXT)
	if !strings.HasPrefix(sts.Txt[0], "v=STSv1; id=") {
		t.Errorf("MTA-STS TXT = %q", sts.Txt)
	}
	for _, n := range []string{"mta-sts.example.test.", "autoconfig.example.test."} {
		if c := byName[n][0].(*dns.CNAME); c.Target != "mail.example.test." {
			t.Errorf("%s CNAME %s", n, c.Target)
		}
	}
	srv := byName["_imaps._tcp.example.test."][0].(*dns.SRV)
	if srv.Port != 993 || srv.Target != "mail.example.test." {
		t.Errorf("imaps SRV = %v", srv)
	}
	off := byName["_pop3._tcp.example.test."][0].(*dns.SRV)
	if off.Port != 0 || off.Target != "." {
		t.Errorf("disabled pop3 SRV = %v, want 0 0 0 .", off)
	}
	// Implicit TLS before STARTTLS (RFC 8314 section 5.1), IMAP before
	// POP3 (RFC 6186 section 3.4): lower numbers first.
	prio := func(service string) int {
		return int(byName["_"+service+"._tcp.example.test."][0].(*dns.SRV).Priority)
	}
	for _, p := range [][2]string{{"submissions", "submission"}, {"imaps", "imap"}, {"imap", "pop3s"}} {
		if prio(p[0]) >= prio(p[1]) {
			t.Errorf("SRV priority of %s %d, of %s %d: want %[1]s first", p[0], prio(p[0]), p[1], prio(p[1]))
		}
	}
	checkDKIM(t, byName, keys)
}

// checkDKIM checks that the DKIM records carry the keys' public halves and
// that the long RSA one is split into strings of at most 255 bytes.
func checkDKIM(t *testing.T, byName map[string][]dns.RR, keys []store.DKIMKey) {
	t.Helper()
	for _, k := range keys {
		rrs := byName[k.Selector+"._domainkey.example.test."]
		if len(rrs) != 1 {
			t.Fatalf("DKIM %s: %d records", k.Selector, len(rrs))
		}
		txt := rrs[0].(*dns.TXT)
		for _, s := range txt.Txt {
			if len(s) > 255 {
				t.Errorf("DKIM %s: string of %d bytes", k.Selector, len(s))
			}
		}
		v := strings.Join(txt.Txt, "")
		_, p, _ := strings.Cut(v, "p=")
		raw, err := base64.StdEncoding.DecodeString(p)
		if err != nil {
			t.Fatalf("DKIM %s p=: %v", k.Selector, err)
		}
		priv, _ := x509.ParsePKCS8PrivateKey(k.PrivateKey)
		switch key := priv.(type) {
		case ed25519.PrivateKey:
			if !strings.Contains(v, "k=ed25519") || !key.Public().(ed25519.PublicKey).Equal(ed25519.PublicKey(raw)) {
				t.Errorf("ed25519 DKIM record %q does not carry the raw public key", v)
			}
		case *rsa.PrivateKey:
			pub, err := x509.ParsePKIXPublicKey(raw)
			if err != nil || !key.PublicKey.Equal(pub) || len(txt.Txt) < 2 {
				t.Errorf("rsa DKIM record %q (%d strings): %v", v, len(txt.Txt), err)
			}
		}
	}
}

// publish loads the zone output, every line as printed (comments too),
// into a DNS server.
func publish(t *testing.T, z string) *harness.DNS {
	d := harness.StartDNS(t)
	d.Add(t, strings.Split(strings.TrimSuffix(z, "\n"), "\n")...)
	return d
}

func statusByName(checks []zone.Check) map[string]zone.Check {
	m := map[string]zone.Check{}
	for _, c := range checks {
		m[c.Name] = c
	}
	return m
}

// servePolicy serves policy over HTTPS on loopback, with a certificate
// for mta-sts.example.test from a CA that cfg trusts (outbound.ca_file),
// on the port cfg fetches policies from.
func servePolicy(t *testing.T, cfg *config.Config, policy string) {
	ca := harness.NewCA(t)
	conf, _, _ := ca.Issue("mta-sts.example.test")
	cfg.Outbound.CAFile = filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(cfg.Outbound.CAFile, ca.PEM, 0o600); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Outbound.MTASTSPort = ln.Addr().(*net.TCPAddr).Port
	srv := &http.Server{TLSConfig: conf, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, policy)
	})}
	go srv.ServeTLS(ln, "", "")
	t.Cleanup(func() { srv.Close() })
}

func TestDoctorAllOK(t *testing.T) {
	cfg := testConfig()
	cfg.TLS.CertFile, cfg.TLS.KeyFile = "cert.pem", "key.pem"
	servePolicy(t, cfg, zone.MTASTSPolicy(cfg))
	keys := testKeys(t)
	d := publish(t, zone.Zone(zone.Records(cfg, "example.test", keys)))
	d.Add(t, "mail.example.test. 300 IN A 127.0.0.1") // mta-sts.example.test is a CNAME to it
	res := resolver.New(d.Addr)
	checks := zone.Doctor(context.Background(), cfg, res, "example.test", keys,
		zone.QueueSummary{}, time.Now().Add(90*24*time.Hour))
	if want := len(zone.Records(cfg, "example.test", keys)) + 3; len(checks) != want {
		t.Fatalf("%d checks, want %d", len(checks), want)
	}
	for _, c := range checks {
		if c.Status != zone.StatusOK {
			t.Errorf("%s: %s (%s) fix: %s", c.Name, c.Status, c.Detail, c.Fix)
		}
	}
}

func TestDoctorFindsProblems(t *testing.T) {
	cfg := testConfig()
	keys := testKeys(t)
	d := publish(t, zone.Zone(zone.Records(cfg, "example.test", keys)))
	d.Remove("_dmarc.example.test.", dns.TypeTXT)
	d.Remove("_imaps._tcp.example.test.", dns.TypeSRV)
	d.Remove("example.test.", dns.TypeMX)
	d.Add(t, "example.test. 300 IN MX 10 mx.elsewhere.test.")
	d.Remove("ed1._domainkey.example.test.", dns.TypeTXT)
	d.Add(t, `ed1._domainkey.example.test. 300 IN TXT "v=DKIM1; k=ed25519; p=AAAA"`)
	d.Remove("example.test.", dns.TypeTXT)
	d.Add(t, `example.test. 300 IN TXT "v=spf1 mx include:relay.test -all"`)
	d.Remove("mail.example.test.", dns.TypeTXT)
	d.Add(t, `mail.example.test. 300 IN TXT "v=spf1 ~all"`, `mail.example.test. 300 IN TXT "unrelated"`)
	d.Remove("_mta-sts.example.test.", dns.TypeTXT)
	d.Add(t, `_mta-sts.example.test. 300 IN TXT "v=STSv1; id=old"`)
	d.Remove("autoconfig.example.test.", dns.TypeCNAME)
	d.Add(t, "autoconfig.example.test. 300 IN CNAME www.elsewhere.test.")
	queue := zone.QueueSummary{Entries: 3, Retrying: 2, Oldest: time.Now().Add(-48 * time.Hour)}
	checks := statusByName(zone.Doctor(context.Background(), cfg, resolver.New(d.Addr), "example.test",
		keys, queue, time.Now().Add(-time.Hour)))
	want := map[string]struct{ status, fix string }{
		"TXT _dmarc.example.test.":                    {zone.StatusMissing, "v=DMARC1; p=quarantine"},
		"SRV _imaps._tcp.example.test.":               {zone.StatusMissing, "0 1 993 mail.example.test."},
		"MX example.test.":                            {zone.StatusWrong, "10 mail.example.test."},
		"TXT ed1._domainkey.example.test.":            {zone.StatusWrong, "v=DKIM1; k=ed25519; p="},
		"CNAME autoconfig.example.test.":              {zone.StatusWrong, "CNAME mail.example.test."},
		"certificate for mail.example.test":           {zone.StatusWrong, "renew"},
		"outbound queue":                              {zone.StatusWarn, "queue list"},
		"HTTPS mta-sts.example.test (MTA-STS policy)": {zone.StatusWrong, "reach the https listener (:443)"},
		"TXT example.test.":                           {zone.StatusOK, ""},
		"SRV _pop3._tcp.example.test.":                {zone.StatusOK, ""},
	}
	for name, w := range want {
		c, ok := checks[name]
		if !ok {
			t.Errorf("no check %q", name)
			continue
		}
		if c.Status != w.status || !strings.Contains(c.Fix, w.fix) {
			t.Errorf("%s: status %s fix %q; want %s with %q", name, c.Status, c.Fix, w.status, w.fix)
		}
	}
}

func TestMTASTSMode(t *testing.T) {
	cfg := testConfig()
	self := zone.MTASTSPolicy(cfg)
	if !strings.Contains(self, "mode: testing\r\n") || !strings.Contains(self, "mx: mail.example.test\r\n") ||
		!strings.HasPrefix(self, "version: STSv1\r\n") || !strings.Contains(self, "max_age: 604800") {
		t.Errorf("self-signed policy:\n%s", self)
	}
	idTesting := zone.MTASTSID(cfg)
	cfg.TLS.ACME, cfg.TLS.ACMEEmail = true, "admin@example.test"
	if p := zone.MTASTSPolicy(cfg); !strings.Contains(p, "mode: enforce\r\n") {
		t.Errorf("ACME policy:\n%s", p)
	}
	if id := zone.MTASTSID(cfg); id == idTesting || len(id) > 32 {
		t.Errorf("policy id %q did not change with the policy (was %q)", id, idTesting)
	}
}

func TestCertificateExpiry(t *testing.T) {
	if !zone.CertificateExpiry(&tls.Config{}).IsZero() {
		t.Error("no certificate: want zero")
	}
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	notAfter := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), NotBefore: time.Now(), NotAfter: notAfter}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, priv.Public(), priv)
	if err != nil {
		t.Fatal(err)
	}
	c := &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: priv}}}
	if got := zone.CertificateExpiry(c); !got.Equal(notAfter) {
		t.Errorf("expiry %v, want %v", got, notAfter)
	}
}

// TestDoctorPolicyElsewhere: a policy that names another MX (mta-sts.DOMAIN
// served by another host) is wrong.
func TestDoctorPolicyElsewhere(t *testing.T) {
	cfg := testConfig()
	other := *cfg
	other.Hostname = "mx.elsewhere.test"
	servePolicy(t, cfg, zone.MTASTSPolicy(&other))
	d := publish(t, zone.Zone(zone.Records(cfg, "example.test", nil)))
	d.Add(t, "mail.example.test. 300 IN A 127.0.0.1")
	c := statusByName(zone.Doctor(context.Background(), cfg, resolver.New(d.Addr), "example.test", nil,
		zone.QueueSummary{}, time.Now().Add(90*24*time.Hour)))["HTTPS mta-sts.example.test (MTA-STS policy)"]
	if c.Status != zone.StatusWrong || !strings.Contains(c.Detail, "mx mx.elsewhere.test") || !strings.Contains(c.Fix, "CNAME mail.example.test.") {
		t.Fatalf("%+v", c)
	}
}

// With the self-signed certificate init makes, senders cannot fetch the
// policy: the fix says the certificate is what is missing, not to set
// the https listener, which is set.
func TestDoctorPolicyUntrustedCertificate(t *testing.T) {
	cfg := testConfig()
	servePolicy(t, cfg, zone.MTASTSPolicy(cfg))
	cfg.Outbound.CAFile = "" // the system's roots do not trust the test CA
	d := publish(t, zone.Zone(zone.Records(cfg, "example.test", nil)))
	d.Add(t, "mail.example.test. 300 IN A 127.0.0.1")
	c := statusByName(zone.Doctor(context.Background(), cfg, resolver.New(d.Addr), "example.test", nil,
		zone.QueueSummary{}, time.Now().Add(90*24*time.Hour)))["HTTPS mta-sts.example.test (MTA-STS policy)"]
	if c.Status != zone.StatusWrong || !strings.Contains(c.Fix, "certificate must name mta-sts.example.test") ||
		strings.Contains(c.Fix, "set [listen] https") {
		t.Fatalf("%+v", c)
	}
	// Nothing answering on the policy port: the fix is the address.
	cfg.Outbound.MTASTSPort = 1
	c = statusByName(zone.Doctor(context.Background(), cfg, resolver.New(d.Addr), "example.test", nil,
		zone.QueueSummary{}, time.Now().Add(90*24*time.Hour)))["HTTPS mta-sts.example.test (MTA-STS policy)"]
	if c.Status != zone.StatusWrong || !strings.Contains(c.Fix, "port 443 reach the https listener") {
		t.Fatalf("%+v", c)
	}
}

// The HELO name's SPF record printed with another domain's records
// says which zone it goes in: pasted into that domain's zone it is out of
// zone.
func TestHostnameSPFZone(t *testing.T) {
	cfg := testConfig()
	comment := func(domain string) string {
		for _, r := range zone.Records(cfg, domain, nil) {
			if r.Name == "mail.example.test." && r.Type == "TXT" {
				return r.Comment
			}
		}
		t.Fatalf("%s: no SPF record for the hostname", domain)
		return ""
	}
	if c := comment("example.test"); strings.Contains(c, "belongs in the zone") {
		t.Errorf("example.test: %q", c)
	}
	if c := comment("other.test"); !strings.Contains(c, "belongs in the zone of mail.example.test, not of other.test") {
		t.Errorf("other.test: %q", c)
	}
}

// A DKIM key record without its optional v=DKIM1 tag (RFC 6376 section
// 3.6.1) is the key: doctor found "no v=DKIM1 record" and asked to
// publish it again.
func TestDoctorDKIMWithoutVersion(t *testing.T) {
	cfg := testConfig()
	keys := testKeys(t)
	d := publish(t, zone.Zone(zone.Records(cfg, "example.test", keys)))
	for _, r := range zone.Records(cfg, "example.test", keys) {
		if strings.Contains(r.Name, "._domainkey.") {
			d.Remove(r.Name, dns.TypeTXT)
			d.Add(t, r.Name+" 300 IN TXT "+zone.QuoteTXT(strings.TrimPrefix(r.Value, "v=DKIM1; ")))
		}
	}
	checks := zone.Doctor(context.Background(), cfg, resolver.New(d.Addr), "example.test", keys,
		zone.QueueSummary{}, time.Now().Add(90*24*time.Hour))
	n := 0
	for _, c := range checks {
		if strings.Contains(c.Name, "._domainkey.") {
			n++
			if c.Status != zone.StatusOK {
				t.Errorf("%s: %s (%s)", c.Name, c.Status, c.Detail)
			}
		}
	}
	if n == 0 {
		t.Fatal("no DKIM check")
	}
}

// TestDoctorNoDNS: when no lookup answers, doctor says so once, rather
// than calling every record missing and telling to publish it.
func TestDoctorNoDNS(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := pc.LocalAddr().String()
	pc.Close() // nothing answers there: port unreachable
	cfg := testConfig()
	checks := zone.Doctor(context.Background(), cfg, resolver.New(dead), "example.test",
		testKeys(t), zone.QueueSummary{}, time.Now().Add(90*24*time.Hour))
	if len(checks) != 3 || checks[0].Name != "DNS" || checks[0].Status != zone.StatusUnknown ||
		!strings.Contains(checks[0].Fix, "dns_server") {
		for _, c := range checks {
			t.Logf("%s %s: %s; fix: %s", c.Status, c.Name, c.Detail, c.Fix)
		}
		t.Fatalf("%d checks, want DNS unknown, the certificate and the queue", len(checks))
	}
}
