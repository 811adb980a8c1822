package deploy

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/pelletier/go-toml/v2"

	"github.com/posthorn/posthorn/config"
)

// configKeys lists the dotted TOML keys of a struct type.
func configKeys(t reflect.Type, prefix string) []string {
	var keys []string
	for i := range t.NumField() {
		f := t.Field(i)
		tag := strings.Split(f.Tag.Get("toml"), ",")[0]
		if tag == "" || tag == "-" {
			continue
		}
		if f.Type.Kind() == reflect.Struct && f.Type != reflect.TypeOf(config.Duration{}) {
			keys = append(keys, configKeys(f.Type, prefix+tag+".")...)
			continue
		}
		keys = append(keys, prefix+tag)
	}
	return keys
}

// fileKeys lists the dotted keys set in a TOML document.
func fileKeys(m map[string]any, prefix string) []string {
	var keys []string
	for k, v := range m {
		if sub, ok := v.(map[string]any); ok {
			keys = append(keys, fileKeys(sub, prefix+k+".")...)
			continue
		}
		keys = append(keys, prefix+k)
	}
	return keys
}

// The example configuration loads, sets every key there is, and shows the
// defaults except where it says it shows an example value.
func TestExampleConfig(t *testing.T) {
	cfg, err := config.Load("posthorn.toml.example")
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile("posthorn.toml.example")
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := toml.Unmarshal(data, &m); err != nil {
		t.Fatal(err)
	}
	want := configKeys(reflect.TypeOf(config.Config{}), "")
	got := fileKeys(m, "")
	sort.Strings(want)
	sort.Strings(got)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("keys in the example:\n%v\nkeys in config.Config:\n%v", got, want)
	}
	def := config.Default()
	ex := *cfg
	ex.Path = ""
	// The values the file marks as examples.
	ex.Hostname, ex.DataDir = def.Hostname, def.DataDir
	ex.Listen.HTTP, ex.Listen.HTTPS, ex.Listen.Metrics = def.Listen.HTTP, def.Listen.HTTPS, def.Listen.Metrics
	if !reflect.DeepEqual(ex, def) {
		t.Errorf("example differs from the defaults:\n%+v\n%+v", ex, def)
	}
	if cfg.DataDir != "/var/lib/posthorn" || cfg.Listen.Metrics != "127.0.0.1:9425" {
		t.Errorf("data_dir %q, metrics %q", cfg.DataDir, cfg.Listen.Metrics)
	}
}

// systemd accepts the unit: systemd-analyze verify prints nothing. The
// binary path is pointed at a stub, since posthorn is not installed here.
func TestSystemdUnit(t *testing.T) {
	unit, err := os.ReadFile("posthorn.service")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"User=posthorn", "ExecStart=/usr/local/bin/posthorn serve --config /etc/posthorn/posthorn.toml",
		"AmbientCapabilities=CAP_NET_BIND_SERVICE", "CapabilityBoundingSet=CAP_NET_BIND_SERVICE",
		"ProtectSystem=strict", "ReadWritePaths=/var/lib/posthorn", "NoNewPrivileges=yes",
		"PrivateTmp=yes", "ProtectHome=yes", "Restart=on-failure",
	} {
		if !strings.Contains(string(unit), "\n"+want+"\n") {
			t.Errorf("unit lacks %q", want)
		}
	}
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze not installed")
	}
	dir := t.TempDir()
	stub := filepath.Join(dir, "posthorn")
	if err := os.WriteFile(stub, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "posthorn.service")
	text := strings.ReplaceAll(string(unit), "/usr/local/bin/posthorn", stub)
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(analyze, "verify", path).CombinedOutput()
	if err != nil || len(out) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// The container file builds from the module and runs as a non-root user
// with the config and data volumes.
func TestContainerfile(t *testing.T) {
	data, err := os.ReadFile("Containerfile")
	if err != nil {
		t.Fatal(err)
	}
	text := string(data)
	for _, want := range []string{
		"FROM docker.io/library/golang:", "AS build", "go build", "./cmd/posthorn",
		"USER ", "VOLUME [\"/etc/posthorn\", \"/var/lib/posthorn\"]", "\nEXPOSE ",
		`ENTRYPOINT ["/usr/local/bin/posthorn"]`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("Containerfile lacks %q", want)
		}
	}
	// Every listener of the example configuration that is not kept on
	// loopback is exposed.
	cfg, err := config.Load("posthorn.toml.example")
	if err != nil {
		t.Fatal(err)
	}
	_, line, _ := strings.Cut(text, "\nEXPOSE ")
	line, _, _ = strings.Cut(line, "\n")
	exposed := strings.Fields(line)
	l := cfg.Listen
	for _, addr := range []string{l.SMTP, l.Submission, l.Submissions, l.IMAP, l.IMAPS, l.POP3, l.POP3S, l.HTTP, l.HTTPS, l.Metrics} {
		host, port, err := net.SplitHostPort(addr)
		if err != nil || host == "127.0.0.1" {
			continue
		}
		if !slices.Contains(exposed, port) {
			t.Errorf("listener %s is not in EXPOSE %v", addr, exposed)
		}
	}
	// The build context leaves out the repository's history, binaries and
	// the demo's keys and store.
	ignore, err := os.ReadFile("../.dockerignore")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{".git", "demo", "bin"} {
		if !slices.Contains(strings.Fields(string(ignore)), want) {
			t.Errorf(".dockerignore lacks %s", want)
		}
	}
	if strings.Contains(text, "USER root") || strings.Contains(text, "USER 0") {
		t.Error("Containerfile runs as root")
	}
}
