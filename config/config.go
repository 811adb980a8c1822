// Package config loads and validates posthorn.toml, the one configuration
// file of a Posthorn installation.
//
// Implementation notes: every key has a default in Default; an unknown key,
// a value of the wrong type or a value that does not validate is an error
// that names the key and the line it is on. Paths in the file are relative
// to the file's directory.
package config

import (
	"crypto/tls"
	"crypto/x509"
	"encoding"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/pelletier/go-toml/v2"
	"github.com/pelletier/go-toml/v2/unstable"

	"github.com/posthorn/posthorn/internal/smtpaddr"
)

// Config is the whole configuration. The TOML keys are a public interface
// (shared/DESIGN.md).
type Config struct {
	// Hostname is this server's name: SMTP greeting, Received:, EHLO.
	Hostname string `toml:"hostname"`
	// DataDir holds posthorn.db (with its write-ahead log posthorn.db-wal
	// while open), the self-signed certificate and the control socket.
	// Relative to the config file.
	DataDir string `toml:"data_dir"`
	// AllowPlaintextAuth lets AUTH, LOGIN and USER/PASS work without TLS.
	AllowPlaintextAuth bool `toml:"allow_plaintext_auth"`
	// MaxMessageBytes is the largest message accepted (SIZE, APPENDLIMIT).
	// Mail is refused while the data directory's file system has less
	// than twice this free (store.Options.MinFree).
	MaxMessageBytes int64 `toml:"max_message_bytes"`
	// LogLevel is "debug", "info", "warn" or "error".
	LogLevel string `toml:"log_level"`

	Listen   Listen   `toml:"listen"`   // [listen]: where each protocol listens
	TLS      TLS      `toml:"tls"`      // [tls]: certificate files or ACME
	Outbound Outbound `toml:"outbound"` // [outbound]: delivery to other servers
	Limits   Limits   `toml:"limits"`   // [limits]: what one client can cost

	// Path is the file this was loaded from ("" for defaults).
	Path string `toml:"-"`
}

// Listen holds the listening addresses; "" turns a listener off.
type Listen struct {
	SMTP        string `toml:"smtp"`        // inbound MTA, port 25
	Submission  string `toml:"submission"`  // MSA with STARTTLS, 587
	Submissions string `toml:"submissions"` // MSA with implicit TLS, 465
	IMAP        string `toml:"imap"`        // IMAP with STARTTLS, 143
	IMAPS       string `toml:"imaps"`       // IMAP with implicit TLS, 993
	POP3        string `toml:"pop3"`        // POP3 with STLS, 110
	POP3S       string `toml:"pop3s"`       // POP3 with implicit TLS, 995
	HTTP        string `toml:"http"`        // autoconfig, MTA-STS policy, ACME HTTP-01
	HTTPS       string `toml:"https"`       // autoconfig and MTA-STS policy over TLS, 443
	Metrics     string `toml:"metrics"`     // Prometheus /metrics
}

// TLS says where certificates come from.
type TLS struct {
	// CertFile and KeyFile are PEM files; both empty: a self-signed
	// certificate for Hostname is made in DataDir.
	CertFile string `toml:"cert_file"`
	KeyFile  string `toml:"key_file"`
	// ACME obtains and renews a certificate for Hostname.
	ACME      bool   `toml:"acme"`
	ACMEEmail string `toml:"acme_email"`
	// ACMEDirectory is the ACME directory URL ("" for Let's Encrypt).
	ACMEDirectory string `toml:"acme_directory"`
}

// Outbound configures delivery to other servers.
type Outbound struct {
	// Smarthost "host:port" receives all outbound mail instead of MX hosts.
	Smarthost string `toml:"smarthost"`
	// SmarthostUser and SmarthostPassword log in to the smarthost with
	// AUTH PLAIN (over TLS only); empty: no AUTH.
	SmarthostUser     string `toml:"smarthost_user"`
	SmarthostPassword string `toml:"smarthost_password"`
	// MXPort is the port used on remote MX hosts.
	MXPort int `toml:"mx_port"`
	// MTASTSPort is the port of remote MTA-STS policy hosts (HTTPS).
	MTASTSPort int `toml:"mta_sts_port"`
	// CAFile is a PEM file of the certificate authorities that verify
	// remote servers (MX hosts under an MTA-STS policy, policy hosts, the
	// smarthost); "" uses the system's.
	CAFile string `toml:"ca_file"`
	// DNSServer "host:port" replaces the system resolver.
	DNSServer string `toml:"dns_server"`
	// RetryInitial is the first retry delay; it doubles up to RetryMax.
	RetryInitial Duration `toml:"retry_initial"`
	RetryMax     Duration `toml:"retry_max"`
	// GiveUpAfter bounces a message still undelivered after this long.
	GiveUpAfter Duration `toml:"give_up_after"`
	// DelayNotice sends a delay DSN once a message has waited this long;
	// "0" sends none (as Postfix's delay_warning_time = 0).
	DelayNotice Duration `toml:"delay_notice"`
	// Workers is the number of concurrent outbound deliveries.
	Workers int `toml:"workers"`
}

// Limits bound what one client can cost.
type Limits struct {
	MaxRecipients       int      `toml:"max_recipients"`         // per message
	MaxLineBytes        int      `toml:"max_line_bytes"`         // SMTP and POP3 command line length (POP3: at least 1100, for SASL); IMAP has its own 48 KiB, which long UID sets need
	MaxConnections      int      `toml:"max_connections"`        // all protocols together
	MaxConnectionsPerIP int      `toml:"max_connections_per_ip"` // per client address, all protocols together
	CommandTimeout      Duration `toml:"command_timeout"`        // SMTP/POP3 idle between commands, and for the next bytes in DATA
	DataTimeout         Duration `toml:"data_timeout"`           // one SMTP DATA/BDAT transfer (25 and submission), plus 1 s per KiB received
	IMAPIdleTimeout     Duration `toml:"imap_idle_timeout"`      // IMAP inactivity (RFC 9051: at least 30 min)
	MaxBadRecipients    int      `toml:"max_bad_recipients"`     // unknown RCPTs before the session is cut
	DefaultQuotaBytes   int64    `toml:"default_quota_bytes"`    // for new accounts; 0: none
	MaxHeaderFields     int      `toml:"max_header_fields"`      // parsing limit per message
	MaxMIMEDepth        int      `toml:"max_mime_depth"`         // parsing limit per message
	// MaxDataInFlight bounds the bytes of the message bodies being
	// received at once (SMTP, submission, IMAP APPEND together); one that
	// finds no room is refused for now. 0: four times max_message_bytes,
	// and at least 256 MiB. One client on port 25 (an IPv4 address, an
	// IPv6 /64) holds at most a quarter of it, or one message of
	// max_message_bytes if that is more.
	MaxDataInFlight int64 `toml:"max_data_in_flight"`
}

// Duration is a time.Duration written as a string ("5m", "4h", "120h").
type Duration struct{ time.Duration }

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("%q is not a duration (use e.g. \"5m\", \"4h\")", b)
	}
	if v < 0 {
		return fmt.Errorf("duration %q is negative", b)
	}
	d.Duration = v
	return nil
}

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// Default returns the configuration used where the file is silent.
func Default() Config {
	return Config{
		Hostname:        defaultHostname(),
		DataDir:         "data",
		MaxMessageBytes: 50 << 20,
		LogLevel:        "info",
		Listen: Listen{
			SMTP: ":25", Submission: ":587", Submissions: ":465",
			IMAP: ":143", IMAPS: ":993", POP3: ":110", POP3S: ":995",
		},
		Outbound: Outbound{
			MXPort:       25,
			MTASTSPort:   443,
			RetryInitial: Duration{5 * time.Minute},
			RetryMax:     Duration{4 * time.Hour},
			GiveUpAfter:  Duration{5 * 24 * time.Hour},
			DelayNotice:  Duration{4 * time.Hour},
			Workers:      32,
		},
		Limits: Limits{
			MaxRecipients:       100,
			MaxLineBytes:        4096,
			MaxConnections:      4000,
			MaxConnectionsPerIP: 50,
			CommandTimeout:      Duration{5 * time.Minute},
			DataTimeout:         Duration{10 * time.Minute},
			IMAPIdleTimeout:     Duration{30 * time.Minute},
			MaxBadRecipients:    10,
			MaxHeaderFields:     1000,
			MaxMIMEDepth:        50,
		},
	}
}

func defaultHostname() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		return "localhost"
	}
	return h
}

// Error is a problem in the configuration file, with the key and line.
type Error struct {
	Path string
	Key  string
	Line int
	Msg  string
}

func (e *Error) Error() string {
	loc := e.Path
	if e.Line > 0 {
		loc += ":" + strconv.Itoa(e.Line)
	}
	if e.Key != "" {
		return fmt.Sprintf("%s: %s: %s", loc, e.Key, e.Msg)
	}
	return fmt.Sprintf("%s: %s", loc, e.Msg)
}

// Load reads and validates a configuration file.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	c, err := Parse(path, data)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// Parse decodes and validates configuration text; path names it in errors
// and is the base for relative paths.
func Parse(path string, data []byte) (*Config, error) {
	lines, err := checkKeys(path, data, reflect.TypeFor[Config]())
	if err != nil {
		return nil, err
	}
	c := Default()
	dec := toml.NewDecoder(strings.NewReader(string(data))).DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return nil, decodeError(path, lines, err)
	}
	c.Path = path
	if err := c.validate(); err != nil {
		var ce *Error
		if errors.As(err, &ce) {
			ce.Path = path
			ce.Line = lines[ce.Key]
		}
		return nil, err
	}
	return &c, nil
}

func decodeError(path string, lines map[string]int, err error) error {
	var strict *toml.StrictMissingError
	if errors.As(err, &strict) && len(strict.Errors) > 0 {
		e := strict.Errors[0]
		row, _ := e.Position()
		return &Error{Path: path, Key: strings.Join(e.Key(), "."), Line: row, Msg: "unknown key"}
	}
	var de *toml.DecodeError
	if errors.As(err, &de) {
		row, _ := de.Position()
		return &Error{Path: path, Key: strings.Join(de.Key(), "."), Line: row, Msg: typeMessage(de.Error())}
	}
	// Type mismatches may come without a position; find the key's line.
	msg := err.Error()
	key := ""
	if i := strings.Index(msg, "field "); i >= 0 {
		f := strings.Fields(msg[i+len("field "):])
		if len(f) > 0 {
			key = strings.Trim(f[0], `"':`)
			if j := strings.Index(key, "Config."); j >= 0 {
				key = key[j+len("Config."):]
			}
		}
	}
	return &Error{Path: path, Key: key, Line: lines[key], Msg: msg}
}

// typeMessage says in the file's terms what go-toml's "cannot decode
// TOML string into struct field config.Config.MaxMessageBytes of type
// int64" means; other messages are kept.
func typeMessage(msg string) string {
	m := typeMismatch.FindStringSubmatch(msg)
	if m == nil {
		return msg
	}
	want := map[string]string{
		"int": "a whole number", "int64": "a whole number", "bool": "true or false", "string": "a string in quotes",
	}[m[2]]
	if want == "" {
		return msg
	}
	return "must be " + want + ", not a TOML " + m[1]
}

var typeMismatch = regexp.MustCompile(`cannot decode TOML (\w+) into struct field \S+ of type (\S+)`)

// checkKeys walks the keys of the document in order and returns an error
// for the first one that is not exactly a key of root (the toml tag names
// of the struct, recursing into its tables, maps and arrays of tables),
// and the line on which each dotted key ("listen.smtp") is first set.
// go-toml matches struct fields ignoring case, even with
// DisallowUnknownFields, but TOML keys are case-sensitive: "DATA_DIR" is
// not "data_dir", and must not quietly override it. A document that does
// not parse is left to the decoder, which reports the syntax error with
// its position.
func checkKeys(path string, data []byte, root reflect.Type) (map[string]int, error) {
	w := &keyWalker{path: path, lines: map[string]int{}}
	for i, b := range data {
		if b == '\n' {
			w.newlines = append(w.newlines, i)
		}
	}
	w.p.Reset(data)
	table, prefix := root, "" // the table of the last [header]
	for w.p.NextExpression() {
		n := w.p.Expression()
		switch n.Kind {
		case unstable.Table, unstable.ArrayTable:
			t, name, err := w.key(root, "", n.Key())
			if err != nil {
				return w.lines, err
			}
			table, prefix = t, name
		case unstable.KeyValue:
			t, name, err := w.key(table, prefix, n.Key())
			if err != nil {
				return w.lines, err
			}
			if err := w.value(t, name, n.Value()); err != nil {
				return w.lines, err
			}
		}
	}
	return w.lines, nil
}

// keyWalker checks the keys of one document against a struct type.
type keyWalker struct {
	path     string
	p        unstable.Parser
	newlines []int // offsets of the line ends, for the line of an offset
	lines    map[string]int
}

// key follows the (dotted) key it from t, named prefix, and returns the
// type and the dotted name of what it names.
func (w *keyWalker) key(t reflect.Type, prefix string, it unstable.Iterator) (reflect.Type, string, error) {
	for it.Next() {
		k := it.Node()
		name := string(k.Data)
		full := name
		if prefix != "" {
			full = prefix + "." + name
		}
		line := sort.SearchInts(w.newlines, int(k.Raw.Offset)) + 1
		ft, ok := tomlField(t, name)
		if !ok {
			msg := "unknown key"
			if known := foldedField(t, name); known != "" {
				msg = fmt.Sprintf("unknown key (keys are case-sensitive: did you mean %q?)", known)
			}
			return nil, "", &Error{Path: w.path, Key: full, Line: line, Msg: msg}
		}
		if _, seen := w.lines[full]; !seen {
			w.lines[full] = line
		}
		t, prefix = ft, full
	}
	return t, prefix, nil
}

// value checks the keys inside an inline table, or inside the inline
// tables of an array, set as the value of t.
func (w *keyWalker) value(t reflect.Type, prefix string, v *unstable.Node) error {
	switch v.Kind {
	case unstable.InlineTable:
		it := v.Children()
		for it.Next() {
			kv := it.Node()
			if kv.Kind != unstable.KeyValue {
				continue
			}
			ft, name, err := w.key(t, prefix, kv.Key())
			if err != nil {
				return err
			}
			if err := w.value(ft, name, kv.Value()); err != nil {
				return err
			}
		}
	case unstable.Array:
		it := v.Children()
		for it.Next() {
			if err := w.value(t, prefix, it.Node()); err != nil {
				return err
			}
		}
	case unstable.String:
	default:
		// go-toml hands a number to UnmarshalText as its text, whose
		// error then carries neither key nor line.
		if t == reflect.TypeFor[Duration]() {
			return &Error{Path: w.path, Key: prefix, Line: w.lines[prefix],
				Msg: "must be a duration in quotes, such as \"5m\" or \"4h\""}
		}
	}
	return nil
}

var textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()

// tableType returns the type whose keys a TOML table of type t holds: t
// itself for a struct or a map, the element type for an array of tables
// (whose last element a dotted key or a [header] continues), or nil when t
// is a value (Duration is a string in the file).
func tableType(t reflect.Type) reflect.Type {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t.Kind() == reflect.Slice || t.Kind() == reflect.Array {
		return tableType(t.Elem())
	}
	if reflect.PointerTo(t).Implements(textUnmarshaler) {
		return nil
	}
	if t.Kind() == reflect.Struct || (t.Kind() == reflect.Map && t.Key().Kind() == reflect.String) {
		return t
	}
	return nil
}

// tomlKey returns the key of struct field f ("" for none) and whether f
// is an embedded struct whose keys are those of the enclosing table.
func tomlKey(f reflect.StructField) (key string, embedded bool) {
	tag, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
	switch {
	case tag == "-":
		return "", false
	case tag == "" && f.Anonymous && tableType(f.Type) != nil && tableType(f.Type).Kind() == reflect.Struct:
		return "", true
	case !f.IsExported():
		return "", false
	case tag == "":
		return f.Name, false
	}
	return tag, false
}

// tomlField returns the type of the key name, exactly as spelled, in a
// table of type t.
func tomlField(t reflect.Type, name string) (reflect.Type, bool) {
	t = tableType(t)
	if t == nil {
		return nil, false
	}
	if t.Kind() == reflect.Map {
		return t.Elem(), true
	}
	for i := range t.NumField() {
		f := t.Field(i)
		key, embedded := tomlKey(f)
		if embedded {
			if ft, ok := tomlField(f.Type, name); ok {
				return ft, true
			}
		} else if key != "" && key == name {
			return f.Type, true
		}
	}
	return nil, false
}

// foldedField returns the key of a struct table t that differs from name
// only in case, or "".
func foldedField(t reflect.Type, name string) string {
	t = tableType(t)
	if t == nil || t.Kind() != reflect.Struct {
		return ""
	}
	for i := range t.NumField() {
		f := t.Field(i)
		key, embedded := tomlKey(f)
		if embedded {
			if k := foldedField(f.Type, name); k != "" {
				return k
			}
		} else if key != "" && strings.EqualFold(key, name) {
			return key
		}
	}
	return ""
}

func bad(key, format string, args ...any) error {
	return &Error{Key: key, Msg: fmt.Sprintf(format, args...)}
}

// hostnameProblem says what keeps h from being a host name that can be
// the MX target, the EHLO name and a certificate's name, or "" (see
// smtpaddr.NameProblem; underscores are let through, as some machines'
// names have them; RFC 5321 section 4.1.2), nor an IP address. validate
// drops a trailing dot first: the name is the same.
func hostnameProblem(h string) string {
	if a, ok := smtpaddr.ALabels(h); ok {
		return fmt.Sprintf("write it in A-labels, %q", a)
	}
	if net.ParseIP(h) != nil {
		return "it is an IP address; use the name whose A record points at it"
	}
	return smtpaddr.NameProblem(h, true)
}

func (c *Config) validate() error {
	// "mail.example.org." (as written in a zone file) is the same name;
	// the EHLO name, the MX target printed and the certificate's name
	// are written without the dot.
	if len(c.Hostname) > 1 {
		c.Hostname = strings.TrimSuffix(c.Hostname, ".")
	}
	if msg := hostnameProblem(c.Hostname); msg != "" {
		return bad("hostname", "%q is not a host name: %s", c.Hostname, msg)
	}
	if c.DataDir == "" {
		return bad("data_dir", "must not be empty")
	}
	if c.MaxMessageBytes < 1024 {
		return bad("max_message_bytes", "%d is too small (at least 1024)", c.MaxMessageBytes)
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		return bad("log_level", "%q is not one of debug, info, warn, error", c.LogLevel)
	}
	listen := []keyAddr{
		{"listen.smtp", c.Listen.SMTP}, {"listen.submission", c.Listen.Submission},
		{"listen.submissions", c.Listen.Submissions}, {"listen.imap", c.Listen.IMAP},
		{"listen.imaps", c.Listen.IMAPS}, {"listen.pop3", c.Listen.POP3},
		{"listen.pop3s", c.Listen.POP3S}, {"listen.http", c.Listen.HTTP},
		{"listen.https", c.Listen.HTTPS}, {"listen.metrics", c.Listen.Metrics},
	}
	remote := []keyAddr{
		{"outbound.smarthost", c.Outbound.Smarthost},
		{"outbound.dns_server", c.Outbound.DNSServer},
	}
	for _, a := range append(listen[:len(listen):len(listen)], remote...) {
		if a.addr == "" {
			continue
		}
		if _, port, err := net.SplitHostPort(a.addr); err != nil {
			return bad(a.key, "%q is not host:port", a.addr)
		} else if p, err := strconv.Atoi(port); err != nil || p < 0 || p > 65535 {
			return bad(a.key, "%q has no valid port", a.addr)
		}
	}
	if err := listenConflict(listen); err != nil {
		return err
	}
	if (c.TLS.CertFile == "") != (c.TLS.KeyFile == "") {
		return bad("tls.cert_file", "cert_file and key_file must be set together")
	}
	if err := c.checkCertFiles(); err != nil {
		return err
	}
	if c.TLS.ACME && c.TLS.ACMEEmail == "" {
		return bad("tls.acme_email", "acme = true needs an e-mail address")
	}
	if c.Outbound.MXPort < 1 || c.Outbound.MXPort > 65535 {
		return bad("outbound.mx_port", "%d is not a port", c.Outbound.MXPort)
	}
	if c.Outbound.MTASTSPort < 1 || c.Outbound.MTASTSPort > 65535 {
		return bad("outbound.mta_sts_port", "%d is not a port", c.Outbound.MTASTSPort)
	}
	if _, err := c.OutboundRoots(); err != nil {
		return bad("outbound.ca_file", "%v", err)
	}
	if c.Outbound.Workers < 1 {
		return bad("outbound.workers", "must be at least 1")
	}
	if c.Outbound.RetryInitial.Duration <= 0 {
		return bad("outbound.retry_initial", "must be positive")
	}
	if c.Outbound.RetryMax.Duration < c.Outbound.RetryInitial.Duration {
		return bad("outbound.retry_max", "must not be below retry_initial")
	}
	if c.Outbound.GiveUpAfter.Duration <= 0 {
		return bad("outbound.give_up_after", "must be positive")
	}
	l := c.Limits
	checks := []struct {
		key string
		v   int
		min int
	}{
		{"limits.max_recipients", l.MaxRecipients, 1},
		{"limits.max_line_bytes", l.MaxLineBytes, 512},
		{"limits.max_connections", l.MaxConnections, 1},
		{"limits.max_connections_per_ip", l.MaxConnectionsPerIP, 1},
		{"limits.max_bad_recipients", l.MaxBadRecipients, 1},
		{"limits.max_header_fields", l.MaxHeaderFields, 10},
		{"limits.max_mime_depth", l.MaxMIMEDepth, 1},
	}
	for _, ch := range checks {
		if ch.v < ch.min {
			return bad(ch.key, "%d is too small (at least %d)", ch.v, ch.min)
		}
	}
	for _, ch := range []struct {
		key string
		v   time.Duration
	}{
		{"limits.command_timeout", l.CommandTimeout.Duration},
		{"limits.data_timeout", l.DataTimeout.Duration},
		{"limits.imap_idle_timeout", l.IMAPIdleTimeout.Duration},
	} {
		if ch.v < time.Second {
			return bad(ch.key, "%v is too short (at least 1s)", ch.v)
		}
	}
	if l.DefaultQuotaBytes < 0 {
		return bad("limits.default_quota_bytes", "must not be negative")
	}
	if l.MaxDataInFlight != 0 && l.MaxDataInFlight < c.MaxMessageBytes+1<<20 {
		return bad("limits.max_data_in_flight", "%d is too small: 0 (the default), or at least max_message_bytes + 1 MiB (%d)",
			l.MaxDataInFlight, c.MaxMessageBytes+1<<20)
	}
	return nil
}

// keyAddr is an address and the key that sets it.
type keyAddr struct{ key, addr string }

// listenConflict returns an error naming both keys when two listeners
// would bind the same address and port, which serve refuses. An empty
// address is a listener that is off; port 0 lets the system pick a free
// port and never conflicts. A host that is empty or "::" listens on every
// address of its port, "0.0.0.0" on every IPv4 address; a host name
// conflicts only with the same name.
func listenConflict(listen []keyAddr) error {
	type bound struct {
		keyAddr
		host string
		port int
	}
	var seen []bound
	for _, a := range listen {
		if a.addr == "" {
			continue
		}
		host, port, err := net.SplitHostPort(a.addr)
		if err != nil {
			continue
		}
		p, err := strconv.Atoi(port)
		if err != nil || p == 0 {
			continue
		}
		for _, s := range seen {
			if s.port == p && hostsOverlap(s.host, host) {
				return bad(a.key, "%q overlaps %s = %q: two listeners cannot share an address and port", a.addr, s.key, s.addr)
			}
		}
		seen = append(seen, bound{a, host, p})
	}
	return nil
}

// hostsOverlap says whether listening on hosts a and b with the same port
// conflicts.
func hostsOverlap(a, b string) bool {
	if strings.EqualFold(a, b) {
		return true
	}
	ia, errA := netip.ParseAddr(a)
	ib, errB := netip.ParseAddr(b)
	// "" and "::" listen on every address, IPv4 included (dual stack).
	if a == "" || b == "" || (errA == nil && ia == netip.IPv6Unspecified()) || (errB == nil && ib == netip.IPv6Unspecified()) {
		return true
	}
	if errA != nil || errB != nil {
		return false // a host name: only the same name is known to conflict
	}
	ia, ib = ia.Unmap(), ib.Unmap()
	switch {
	case ia == ib:
		return true
	case ia == netip.IPv4Unspecified():
		return ib.Is4()
	case ib == netip.IPv4Unspecified():
		return ia.Is4()
	}
	return false
}

// checkCertFiles reads tls.cert_file and tls.key_file, when they are set,
// and checks that they make a certificate, as serve does when it starts.
func (c *Config) checkCertFiles() error {
	if c.TLS.CertFile == "" || c.TLS.KeyFile == "" {
		return nil
	}
	certPEM, err := os.ReadFile(c.Abs(c.TLS.CertFile))
	if err != nil {
		return bad("tls.cert_file", "%v", err)
	}
	keyPEM, err := os.ReadFile(c.Abs(c.TLS.KeyFile))
	if err != nil {
		return bad("tls.key_file", "%v", err)
	}
	if _, err := tls.X509KeyPair(certPEM, keyPEM); err != nil {
		if strings.Contains(err.Error(), "certificate input") {
			return bad("tls.cert_file", "%s: %v", c.Abs(c.TLS.CertFile), err)
		}
		return bad("tls.key_file", "%s with tls.cert_file %s: %v", c.Abs(c.TLS.KeyFile), c.Abs(c.TLS.CertFile), err)
	}
	return nil
}

// Abs resolves a path from the file against the file's directory.
func (c *Config) Abs(p string) string {
	if p == "" || filepath.IsAbs(p) {
		return p
	}
	base := "."
	if c.Path != "" {
		base = filepath.Dir(c.Path)
	}
	return filepath.Join(base, p)
}

// OutboundRoots returns the certificate authorities of outbound.ca_file,
// or nil (the system's) when it is not set.
func (c *Config) OutboundRoots() (*x509.CertPool, error) {
	if c.Outbound.CAFile == "" {
		return nil, nil
	}
	b, err := os.ReadFile(c.Abs(c.Outbound.CAFile))
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("no PEM certificate in %s", c.Abs(c.Outbound.CAFile))
	}
	return pool, nil
}

// DataPath is a path inside the data directory.
func (c *Config) DataPath(name string) string {
	return filepath.Join(c.Abs(c.DataDir), name)
}

// FindPath returns the config file to use: the flag, then
// $POSTHORN_CONFIG, then ./posthorn.toml, then /etc/posthorn/posthorn.toml.
func FindPath(flag string) string {
	if flag != "" {
		return flag
	}
	if p := os.Getenv("POSTHORN_CONFIG"); p != "" {
		return p
	}
	if _, err := os.Stat("posthorn.toml"); err == nil {
		return "posthorn.toml"
	}
	return filepath.Join("/etc", "posthorn", "posthorn.toml")
}
